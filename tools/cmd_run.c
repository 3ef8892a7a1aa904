/*
 * `lgh run`: runs one problem (the reference problem by default) on a CUDA device or the
 * CPU, and prints the engine that ran, the median time, TFLOP/s and the error against
 * the double-precision reference.
 *
 * Timing: CUDA events around each call on a stream of the program's own (GPU), or
 * clock_gettime around each call (CPU); warm-up calls first; the median is reported.
 * Inputs are random (x in [0, 1) as in the reference problem, W and b as nn.Linear
 * initialises them, gamma in [0.5, 1.5), beta in [-0.5, 0.5)); y is filled with NaN
 * before the first call, so an element no call writes shows up in the check.
 *
 * The check uses all rows when the reference is cheap (M*N*K <= 2^28), otherwise 64
 * rows spread over M, and says which ("error on 64 sampled rows (of 1024)"). An error
 * above docs/PRECISION.md's bound exits 1.
 *
 * With --backward, run_backward.c then times training steps (the forward saving what
 * lgh_backward needs, then lgh_backward for all five gradients) and checks the gradients
 * against lgh_reference_backward.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void print_help(void)
{
    printf("usage: lgh run [options]\n"
           "\n"
           "Runs y = hardtanh(groupnorm(x W^T + b)) once per iteration and prints the engine\n"
           "that ran, the median time, TFLOP/s (2*M*N*K per call) and the error against the\n"
           "double-precision reference (on a sample of rows when the full reference would\n"
           "be slow). Exits 1 when the error is above the bound for the dtype and math mode\n"
           "(float32: fp32/3xtf32 1e-5, tf32 1e-3; bfloat16/float16 1e-2).\n"
           "\n"
           "options:\n");
    cli_print_run_options(stdout);
    printf("  --iters N          timed calls (default 50 on a GPU, 5 on the CPU)\n"
           "  --warmup N         untimed calls first (default 10 on a GPU, 1 on the CPU)\n"
           "  --check-rows R     check R rows spread over M against the reference (default:\n"
           "                     all rows when M*N*K <= 2^28, else 64); 0: no check\n"
           "  --backward         also time training steps: the forward saving mean, rstd and\n"
           "                     the pre-norm h, then lgh_backward for dx, dW, db, dgamma and\n"
           "                     dbeta; prints the median step time next to the forward-only\n"
           "                     time and the backward alone, and each gradient's error\n"
           "                     against the fp64 reference (bounds: float32 fp32/3xtf32 1e-5,\n"
           "                     tf32 1e-3; bfloat16/float16 2e-2). dy is random in [-1, 1),\n"
           "                     zeroed where z is within 1e-2 (16-bit: 5e-2) of lo or hi\n"
           "  --recompute        with --backward: the forward saves only mean and rstd and\n"
           "                     the backward recomputes h (less memory, one more GEMM)\n"
           "  --check-groups G   with --backward: check dW, db, dgamma, dbeta on G groups\n"
           "                     spread over the groups (default: all when M*N*K <= 2^28,\n"
           "                     else about 2^31 multiply-adds' worth); dx is checked on\n"
           "                     the --check-rows rows\n"
           "  --help             this text\n"
           "\n"
           "examples:\n"
           "  lgh run                                   the reference problem, float32, tf32\n"
           "  lgh run --dtype bfloat16 --engine cublaslt\n"
           "  lgh run --m 64 --k 64 --n 64 --groups 4 --device cpu\n"
           "  lgh run --backward --dtype bfloat16       a training step of the reference problem\n");
}

typedef struct call {
    lgh_context_t ctx;
    const lgh_args_t *args;
    void *stream;
} call_t;

static lgh_status_t call_forward(void *p)
{
    const call_t *c = p;
    return lgh_forward(c->ctx, c->args, NULL, 0, c->stream);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Frees whatever run() allocated. */
typedef struct res {
    void *host[6];
    void *dev[6];
    void *sample;
    void *stream;
    float *ms;
    int64_t *rows;
    lgh_context_t ctx;
} res_t;

static void release(res_t *r)
{
    for (int i = 0; i < 6; ++i) {
        free(r->host[i]);
        cli_gpu_free(r->dev[i]);
    }
    free(r->sample);
    free(r->ms);
    free(r->rows);
    cli_gpu_stream_destroy(r->stream);
    lgh_destroy(r->ctx);
}

static int run(const run_opts_t *o_in)
{
    run_opts_t o = *o_in;
    res_t r;
    memset(&r, 0, sizeof r);
    char err[512] = "";
    int rc = CLI_FAIL;

    /* Device: the one asked for, else CUDA device 0 when there is one, else the CPU. */
    const char *fallback_note = NULL;
    char note[400];
    lgh_status_t s = lgh_create(&r.ctx, o.device);
    if (s != LGH_STATUS_SUCCESS) {
        if (o.device_given) {
            if (s == LGH_STATUS_NO_DEVICE)
                fprintf(stderr, "lgh run: no CUDA device %d: %s\n", o.device, lgh_last_error(NULL));
            else
                fprintf(stderr, "lgh run: cannot create a context on %s: %s\n",
                        o.device == LGH_DEVICE_CPU ? "the CPU" : "the CUDA device",
                        lgh_last_error(NULL));
            return CLI_FAIL;
        }
        snprintf(note, sizeof note, "no CUDA device (%s): running on the CPU", lgh_last_error(NULL));
        fallback_note = note;
        o.device = LGH_DEVICE_CPU;
        s = lgh_create(&r.ctx, o.device);
        if (s != LGH_STATUS_SUCCESS) {
            fprintf(stderr, "lgh run: cannot create a CPU context: %s\n", lgh_last_error(NULL));
            return CLI_FAIL;
        }
    }
    const int gpu = o.device != LGH_DEVICE_CPU;
    if (gpu && !cli_gpu_built()) {
        fprintf(stderr, "lgh run: this lgh program was built without the CUDA runtime\n");
        release(&r);
        return CLI_FAIL;
    }
    if (!o.iters_given) o.iters = gpu ? 50 : 5;
    if (!o.warmup_given) o.warmup = gpu ? 10 : 1;

    /* The problem, checked (and its engine chosen) before anything is allocated. */
    lgh_args_t a;
    lgh_args_init(&a, o.m, o.k, o.n, o.groups);
    a.dtype = o.dtype, a.math = o.math, a.engine = o.engine;
    a.eps = o.eps, a.lo = o.lo, a.hi = o.hi;
    static char nowhere[16];
    a.x = a.w = a.bias = a.gamma = a.beta = nowhere;
    a.y = nowhere;
    lgh_engine_t engine = LGH_ENGINE_AUTO;
    size_t ws_bytes = 0;
    /* The concrete mode that runs (DEFAULT and ACCURATE resolved; DEFAULT for 16-bit). */
    lgh_math_t math = LGH_MATH_DEFAULT;
    s = lgh_plan(r.ctx, &a, &engine, &ws_bytes);
    if (s == LGH_STATUS_SUCCESS) s = lgh_plan_math(r.ctx, &a, &math);
    if (s != LGH_STATUS_SUCCESS) {
        /* Sizes, eps or the clamp the library refuses are wrong arguments (exit 2); an
         * engine that cannot run here is a failure (exit 1). */
        if (cli_status_is_argument_error(s))
            rc = cli_usage_error("run", "%s", lgh_last_error(r.ctx));
        else
            fprintf(stderr, "lgh run: %s (%s)\n", lgh_last_error(r.ctx), lgh_status_string(s));
        release(&r);
        return rc;
    }

    /* Inputs on the host, copied to the device for a GPU context. */
    const size_t eb = o.dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
    const int64_t counts[6] = {o.m * o.k, o.n * o.k, o.n, o.n, o.n, o.m * o.n};
    for (int i = 0; i < 6; ++i) {
        r.host[i] = malloc((size_t)counts[i] * eb);
        if (!r.host[i]) {
            fprintf(stderr, "lgh run: out of host memory (%" PRId64 " bytes)\n",
                    counts[i] * (int64_t)eb);
            goto out;
        }
    }
    uint64_t seed = o.seed * 0x2545f4914f6cdd1dull + 1;
    const double wb = 1.0 / sqrt((double)o.k);
    cli_fill_uniform(o.dtype, r.host[0], counts[0], &seed, 0.0, 1.0);
    cli_fill_uniform(o.dtype, r.host[1], counts[1], &seed, -wb, wb);
    cli_fill_uniform(o.dtype, r.host[2], counts[2], &seed, -wb, wb);
    cli_fill_uniform(o.dtype, r.host[3], counts[3], &seed, 0.5, 1.5);
    cli_fill_uniform(o.dtype, r.host[4], counts[4], &seed, -0.5, 0.5);
    cli_fill_nan(o.dtype, r.host[5], counts[5]);
    void *ptr[6];
    for (int i = 0; i < 6; ++i) {
        ptr[i] = r.host[i];
        if (!gpu) continue;
        if (cli_gpu_alloc(o.device, &r.dev[i], (size_t)counts[i] * eb, err, sizeof err) ||
            cli_gpu_upload(r.dev[i], r.host[i], (size_t)counts[i] * eb, err, sizeof err)) {
            fprintf(stderr, "lgh run: device memory: %s\n", err);
            goto out;
        }
        ptr[i] = r.dev[i];
    }
    if (gpu && (cli_gpu_stream_create(o.device, &r.stream, err, sizeof err) ||
                cli_gpu_sync(r.stream, err, sizeof err))) {
        fprintf(stderr, "lgh run: %s\n", err);
        goto out;
    }
    a.x = ptr[0], a.w = ptr[1], a.bias = ptr[2], a.gamma = ptr[3], a.beta = ptr[4], a.y = ptr[5];

    /* Warm-up, then timed calls. */
    call_t call = {r.ctx, &a, r.stream};
    r.ms = malloc(sizeof(float) * (size_t)(o.iters > o.warmup ? o.iters : o.warmup + 1));
    if (!r.ms) goto out;
    if (gpu) {
        if (o.warmup > 0 && cli_gpu_time(r.stream, o.warmup, call_forward, &call, r.ms, &s, err,
                                         sizeof err)) {
            if (s != LGH_STATUS_SUCCESS)
                fprintf(stderr, "lgh run: %s (%s)\n", lgh_last_error(r.ctx), lgh_status_string(s));
            else
                fprintf(stderr, "lgh run: %s\n", err);
            goto out;
        }
        if (cli_gpu_time(r.stream, o.iters, call_forward, &call, r.ms, &s, err, sizeof err)) {
            if (s != LGH_STATUS_SUCCESS)
                fprintf(stderr, "lgh run: %s (%s)\n", lgh_last_error(r.ctx), lgh_status_string(s));
            else
                fprintf(stderr, "lgh run: %s\n", err);
            goto out;
        }
        if (cli_gpu_sync(r.stream, err, sizeof err)) {
            fprintf(stderr, "lgh run: %s\n", err);
            goto out;
        }
    } else {
        for (int i = 0; i < o.warmup + o.iters; ++i) {
            const double t0 = now_ms();
            s = lgh_forward(r.ctx, &a, NULL, 0, NULL);
            const double t1 = now_ms();
            if (s != LGH_STATUS_SUCCESS) {
                fprintf(stderr, "lgh run: %s (%s)\n", lgh_last_error(r.ctx), lgh_status_string(s));
                goto out;
            }
            if (i >= o.warmup) r.ms[i - o.warmup] = (float)(t1 - t0);
        }
    }
    const double median = cli_median(r.ms, o.iters);
    const double flop = 2.0 * (double)o.m * (double)o.n * (double)o.k;

    const int f32 = o.dtype == LGH_DTYPE_FLOAT32;
    printf("lgh %d.%d.%d run: M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " groups=%" PRId64
           " %s%s%s%s\n",
           LGH_VERSION_MAJOR, LGH_VERSION_MINOR, LGH_VERSION_PATCH, o.m, o.k, o.n, o.groups,
           lgh_dtype_name(o.dtype), f32 ? " " : "", f32 ? lgh_math_name(math) : "",
           f32 && o.math == LGH_MATH_ACCURATE ? " (--math accurate)" : "");
    if (fallback_note) printf("  note: %s\n", fallback_note);
    printf("  device: %s\n", lgh_device_description(r.ctx));
    const char *env = getenv("LGH_ENGINE");
    printf("  engine: %s (%s), workspace %zu bytes\n", lgh_engine_name(engine),
           o.engine != LGH_ENGINE_AUTO ? "forced by --engine"
           : env && *env && strcmp(env, "auto") ? "forced by LGH_ENGINE"
                                                : "chosen by lgh_plan",
           ws_bytes);
    printf("  time:   median %.4f ms over %d calls (min %.4f, max %.4f; %d warm-up; %s)\n", median,
           o.iters, (double)r.ms[0], (double)r.ms[o.iters - 1], o.warmup,
           gpu ? "CUDA events" : "clock_gettime");
    printf("  speed:  %.3g TFLOP/s (2*M*N*K = %.3g GFLOP per call)\n", flop / (median * 1e-3) / 1e12,
           flop * 1e-9);

    lgh_args_t host = a;
    host.x = r.host[0], host.w = r.host[1], host.bias = r.host[2], host.gamma = r.host[3];
    host.beta = r.host[4], host.y = NULL;

    /* The check: all rows when cheap, else R rows spread evenly (first and last included). */
    int64_t rows = o.check_rows;
    if (rows < 0) rows = (double)o.m * (double)o.n * (double)o.k <= 268435456.0 ? o.m : 64;
    if (rows > o.m) rows = o.m;
    if (rows == 0) {
        printf("  error:  not checked (--check-rows 0)\n");
        rc = o.backward ? cli_run_backward(r.ctx, &o, &a, &host, r.stream, median) : CLI_OK;
        goto out;
    }
    r.rows = malloc(sizeof(int64_t) * (size_t)rows);
    r.sample = malloc((size_t)(rows * o.n) * eb);
    if (!r.rows || !r.sample) {
        fprintf(stderr, "lgh run: out of host memory for the check\n");
        goto out;
    }
    for (int64_t i = 0; i < rows; ++i)
        r.rows[i] = rows == 1 ? 0 : (int64_t)((double)i * (double)(o.m - 1) / (double)(rows - 1));
    for (int64_t i = 0; i < rows; ++i) {
        const size_t row_bytes = (size_t)o.n * eb;
        const char *src = (const char *)ptr[5] + (size_t)r.rows[i] * row_bytes;
        char *dst = (char *)r.sample + (size_t)i * row_bytes;
        if (!gpu) {
            memcpy(dst, src, row_bytes);
        } else if (cli_gpu_download(dst, src, row_bytes, err, sizeof err)) {
            fprintf(stderr, "lgh run: reading y back: %s\n", err);
            goto out;
        }
    }
    double rel = NAN, max_abs = NAN;
    int64_t nonfinite = 0;
    if (cli_check_rows(&host, r.rows, rows, r.sample, &rel, &max_abs, &nonfinite)) {
        fprintf(stderr, "lgh run: the reference refused the problem\n");
        goto out;
    }
    const double bound = cli_bound(o.dtype, math);
    char which[96];
    if (rows == o.m)
        snprintf(which, sizeof which, "all %" PRId64 " rows", rows);
    else
        snprintf(which, sizeof which, "%" PRId64 " sampled rows (of %" PRId64 ")", rows, o.m);
    const int ok = rel <= bound;
    printf("  error on %s vs the fp64 reference: rel %.3g, max abs %.3g: %s %.0e\n", which, rel,
           max_abs, ok ? "within bound" : "EXCEEDS bound", bound);
    if (nonfinite)
        printf("  %" PRId64 " elements of y are NaN or infinite (never written?)\n", nonfinite);
    rc = ok ? CLI_OK : CLI_FAIL;
    if (o.backward) {
        const int brc = cli_run_backward(r.ctx, &o, &a, &host, r.stream, median);
        if (brc != CLI_OK) rc = brc;
    }

out:
    release(&r);
    return rc;
}

int cli_cmd_run(int argc, char **argv)
{
    run_opts_t o;
    int rc = cli_parse_run_opts("run", argc, argv, &o);
    if (rc == CLI_HELP) {
        print_help();
        return CLI_OK;
    }
    if (rc != CLI_OK) return rc;
    return run(&o);
}
