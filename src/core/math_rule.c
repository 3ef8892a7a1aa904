/* The math-mode rule (math_rule.h; the table and its sources are in include/lgh.h). */
#include "math_rule.h"

/* 3xtf32 costs two to three tf32 products (two where the low-by-low term is dropped) and
 * some splitting, so it beats exact fp32 only where tf32 runs several times faster. */
#define ACCURATE_TF32_RATIO 4.0

/* Opt-in shared memory per block that marks the data-centre SM for a capability the table
 * does not list: A100 163 KB, H100 and B200 227 KB, against 99 KB on the GeForce SMs of
 * cc 8.6, 8.9 and 12.0. Jetson Orin (cc 8.7, no published tf32 rate) has 163 KB and, by
 * its published int8 rate, A100's tensor cores per SM beside 128 fp32 lanes (about 4x). */
#define DATACENTRE_SMEM_BYTES ((size_t)160 * 1024)

double lgh_math_tf32_ratio(int cc_major, int cc_minor)
{
    /* Dense tf32 tensor / fp32 SIMT TFLOPS from NVIDIA's datasheets (sparse rates
     * halved). */
    static const struct {
        int major, minor;
        double tf32, fp32;
    } table[] = {
        {8, 0, 156.0, 19.5},   /* A100 SXM */
        {8, 6, 35.6, 35.6},    /* RTX 3090 */
        {8, 9, 82.6, 82.6},    /* RTX 4090 */
        {9, 0, 494.7, 66.9},   /* H100 SXM */
        {10, 0, 1100.0, 75.0}, /* B200 (HGX, per GPU) */
        {12, 0, 104.8, 104.8}, /* RTX 5090 */
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; ++i)
        if (table[i].major == cc_major && table[i].minor == cc_minor)
            return table[i].tf32 / table[i].fp32;
    return 0.0;
}

/* FP32 or 3XTF32 for a float32-accurate request on the device. */
static lgh_math_t accurate_for_device(const lgh_device_props_t *d)
{
    if (d->ordinal == LGH_DEVICE_CPU) return LGH_MATH_FP32;
    if (d->cc_major < 8) return LGH_MATH_FP32; /* no tf32 tensor cores before Ampere */
    const double ratio = lgh_math_tf32_ratio(d->cc_major, d->cc_minor);
    if (ratio > 0.0) return ratio >= ACCURATE_TF32_RATIO ? LGH_MATH_3XTF32 : LGH_MATH_FP32;
    /* A capability the table does not know (a later GPU, or Orin's 8.7 with no published
     * tf32 rate): told by the family of its SM, which its shared memory gives away. */
    return d->smem_per_block_optin >= DATACENTRE_SMEM_BYTES ? LGH_MATH_3XTF32 : LGH_MATH_FP32;
}

lgh_math_t lgh_math_for_device(const lgh_device_props_t *props, lgh_dtype_t dtype, lgh_math_t math)
{
    if (math == LGH_MATH_DEFAULT) return LGH_MATH_TF32;
    if (math != LGH_MATH_ACCURATE) return math;
    /* 16-bit data ignores math: record what DEFAULT records, so both tune as one problem. */
    if (dtype != LGH_DTYPE_FLOAT32) return LGH_MATH_TF32;
    return accurate_for_device(props);
}

lgh_math_t lgh_math_accurate_for_engine(lgh_engine_t id)
{
    switch (id) {
    case LGH_ENGINE_SM80:
    case LGH_ENGINE_SM90: return LGH_MATH_3XTF32;
    default: return LGH_MATH_FP32;
    }
}

void lgh_math_settle(lgh_problem_t *p, lgh_engine_t id)
{
    if (p->accurate) p->a.math = lgh_math_accurate_for_engine(id);
}
