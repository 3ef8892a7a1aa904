/*
 * test_math_rule: the rule that resolves a math mode on a device (src/core/math_rule.c,
 * compiled into this program on its own, with src/core/names.c for the mode names), over
 * made-up device properties: every capability the table lists, the CPU, a GPU older than
 * tf32, and capabilities it does not list (told by the SM family's shared memory); DEFAULT
 * and the explicit modes; 16-bit data; each engine's float32-accurate mode. No context,
 * no device.
 *
 *   test_math_rule     (ctest: math_rule)
 */
#include <stdio.h>

#include "core/math_rule.h"

static int failed, passed;

static void expect(const char *label, lgh_math_t got, lgh_math_t want)
{
    if (got == want) {
        ++passed;
        return;
    }
    ++failed;
    printf("FAIL %s: got %s, want %s\n", label, lgh_math_name(got), lgh_math_name(want));
}

#define KB ((size_t)1024)

int main(void)
{
    /* label, ordinal, cc, opt-in shared memory per block (as the device reports it), and
     * what ACCURATE must resolve to. */
    static const struct {
        const char *label;
        int ordinal, major, minor;
        size_t smem;
        lgh_math_t want;
    } devices[] = {
        {"cpu", LGH_DEVICE_CPU, 0, 0, 0, LGH_MATH_FP32},
        {"cc 7.5 (no tf32)", 0, 7, 5, 64 * KB, LGH_MATH_FP32},
        {"cc 8.0 A100", 0, 8, 0, 163 * KB, LGH_MATH_3XTF32},
        {"cc 8.6 RTX 3090", 0, 8, 6, 99 * KB, LGH_MATH_FP32},
        {"cc 8.9 RTX 4090", 0, 8, 9, 99 * KB, LGH_MATH_FP32},
        {"cc 9.0 H100", 0, 9, 0, 227 * KB, LGH_MATH_3XTF32},
        {"cc 10.0 B200", 0, 10, 0, 227 * KB, LGH_MATH_3XTF32},
        {"cc 12.0 RTX 5090", 0, 12, 0, 99 * KB, LGH_MATH_FP32},
        /* The table wins over the family: a listed capability with an odd report. */
        {"cc 8.6, large smem reported", 0, 8, 6, 227 * KB, LGH_MATH_FP32},
        {"cc 9.0, small smem reported", 1, 9, 0, 99 * KB, LGH_MATH_3XTF32},
        /* Not in the table: the SM family decides. */
        {"cc 8.7 Orin (unlisted)", 0, 8, 7, 163 * KB, LGH_MATH_3XTF32},
        {"cc 10.3 (unlisted, data-centre SM)", 0, 10, 3, 227 * KB, LGH_MATH_3XTF32},
        {"cc 12.1 (unlisted, GeForce SM)", 0, 12, 1, 99 * KB, LGH_MATH_FP32},
        {"cc 13.0 (unlisted, data-centre SM)", 0, 13, 0, 227 * KB, LGH_MATH_3XTF32},
        {"cc 13.0 (unlisted, GeForce SM)", 0, 13, 0, 99 * KB, LGH_MATH_FP32},
        {"cc 13.0 (unlisted, smem unknown)", 0, 13, 0, 0, LGH_MATH_FP32},
    };
    char label[160];
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; ++i) {
        lgh_device_props_t d = {0};
        d.ordinal = devices[i].ordinal;
        d.cc_major = devices[i].major;
        d.cc_minor = devices[i].minor;
        d.smem_per_block_optin = devices[i].smem;
        snprintf(label, sizeof label, "%s: float32 accurate", devices[i].label);
        expect(label, lgh_math_for_device(&d, LGH_DTYPE_FLOAT32, LGH_MATH_ACCURATE), devices[i].want);
        /* DEFAULT is TF32 and explicit modes stay as asked, on every device. */
        snprintf(label, sizeof label, "%s: float32 default", devices[i].label);
        expect(label, lgh_math_for_device(&d, LGH_DTYPE_FLOAT32, LGH_MATH_DEFAULT), LGH_MATH_TF32);
        static const lgh_math_t explicit_modes[] = {LGH_MATH_FP32, LGH_MATH_TF32, LGH_MATH_3XTF32};
        for (int j = 0; j < 3; ++j) {
            snprintf(label, sizeof label, "%s: float32 %s", devices[i].label,
                     lgh_math_name(explicit_modes[j]));
            expect(label, lgh_math_for_device(&d, LGH_DTYPE_FLOAT32, explicit_modes[j]),
                   explicit_modes[j]);
        }
        /* 16-bit data ignores math: ACCURATE records what DEFAULT records. */
        snprintf(label, sizeof label, "%s: bfloat16 accurate", devices[i].label);
        expect(label, lgh_math_for_device(&d, LGH_DTYPE_BFLOAT16, LGH_MATH_ACCURATE),
               LGH_MATH_TF32);
        snprintf(label, sizeof label, "%s: float16 accurate", devices[i].label);
        expect(label, lgh_math_for_device(&d, LGH_DTYPE_FLOAT16, LGH_MATH_ACCURATE),
               LGH_MATH_TF32);
    }

    /* The table's ratios: the rule's threshold is 4. */
    static const struct {
        int major, minor;
        double lo, hi;
    } ratios[] = {{8, 0, 7.9, 8.1}, {8, 6, 0.99, 1.01}, {8, 9, 0.99, 1.01},
                  {9, 0, 7.0, 8.0}, {10, 0, 10.0, 20.0}, {12, 0, 0.99, 1.01}, {8, 7, 0.0, 0.0}};
    for (size_t i = 0; i < sizeof ratios / sizeof ratios[0]; ++i) {
        const double r = lgh_math_tf32_ratio(ratios[i].major, ratios[i].minor);
        if (r >= ratios[i].lo && r <= ratios[i].hi) {
            ++passed;
        } else {
            ++failed;
            printf("FAIL ratio of cc %d.%d: %g, want [%g, %g]\n", ratios[i].major, ratios[i].minor,
                   r, ratios[i].lo, ratios[i].hi);
        }
    }

    /* Each engine's float32-accurate mode, and settling a problem on it. */
    expect("engine cpu", lgh_math_accurate_for_engine(LGH_ENGINE_CPU), LGH_MATH_FP32);
    expect("engine cublaslt", lgh_math_accurate_for_engine(LGH_ENGINE_CUBLASLT), LGH_MATH_FP32);
    expect("engine sm80", lgh_math_accurate_for_engine(LGH_ENGINE_SM80), LGH_MATH_3XTF32);
    expect("engine sm90", lgh_math_accurate_for_engine(LGH_ENGINE_SM90), LGH_MATH_3XTF32);
    lgh_problem_t p = {0};
    p.accurate = true;
    p.a.math = LGH_MATH_3XTF32;
    lgh_math_settle(&p, LGH_ENGINE_CUBLASLT);
    expect("settle accurate on cublaslt", p.a.math, LGH_MATH_FP32);
    lgh_math_settle(&p, LGH_ENGINE_SM90);
    expect("settle accurate on sm90", p.a.math, LGH_MATH_3XTF32);
    p.accurate = false;
    p.a.math = LGH_MATH_TF32;
    lgh_math_settle(&p, LGH_ENGINE_CUBLASLT);
    expect("settle leaves an explicit mode", p.a.math, LGH_MATH_TF32);

    printf("test_math_rule: %d checks, %d passed, %d failed\n", passed + failed, passed, failed);
    return failed ? 1 : 0;
}
