/*
 * test_range: float16 data whose pre-norm values x·Wᵀ + b lie beyond float16's range
 * (|h| up to ~1.2e5 > 65504). The output is normalised and clamped, so it is small; an
 * engine that keeps the pre-norm in float32 (fused registers, a float32 product) gives it
 * right, one that stores the pre-norm in float16 gives Inf and then NaN. Every engine
 * must either be right (against the double-precision reference, within the 16-bit bound
 * 1e-2, no element non-finite) or decline the problem with LGH_STATUS_NOT_SUPPORTED and
 * write nothing.
 *
 *   test_range [--engine cpu|cublaslt|sm80|sm90|auto] [--verbose]
 *
 * Shapes (M, K, N, G) and inputs (b in [-1, 1), γ in [0.5, 1.5), β in [-0.5, 0.5)):
 *   33 x 512 x 256 x 4     x in [200, 300), W in [0.5, 1): groups of 64 inside one tile
 *   17 x 512 x 1024 x 1    the same, one group of 1024 (sm90 clusters)
 *    5 x 256 x 2048 x 1    W in [1, 2): one group of 2048 (sm90 tile after tile; sm80 wide)
 * 8300 x 32 x 1024 x 4     x in [2000, 3000), W in [1, 2): more rows than the cublaslt
 *                          engine's float32 chunk holds
 * Without a CUDA device the GPU engines exit 77 after "GPU tier: skipped (no CUDA device)".
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgh.h"
#include "support/tst.h"

typedef struct shape {
    int64_t m, k, n, g;
    double x_lo, x_hi, w_lo, w_hi;
} shape_t;

static const shape_t kShapes[] = {
    {33, 512, 256, 4, 200.0, 300.0, 0.5, 1.0},
    {17, 512, 1024, 1, 200.0, 300.0, 0.5, 1.0},
    {5, 256, 2048, 1, 200.0, 300.0, 1.0, 2.0},
    {8300, 32, 1024, 4, 2000.0, 3000.0, 1.0, 2.0},
};
#define N_SHAPES ((int)(sizeof kShapes / sizeof kShapes[0]))

/* Runs one shape on one engine: 0 pass, 1 fail, 2 skip (declined). */
static int run_shape(lgh_context_t ctx, int on_gpu, lgh_engine_t engine, const char *ename, int idx,
                     uint64_t seed, int verbose)
{
    const shape_t *s = &kShapes[idx];
    const lgh_dtype_t dt = LGH_DTYPE_FLOAT16;
    const size_t eb = 2;
    char msg[256] = "";
    int rc = 1;
    tst_buf_t x = {0}, w = {0}, b = {0}, g = {0}, be = {0}, y = {0};
    double *ref = malloc((size_t)(s->m * s->n) * sizeof(double));
    if (!ref || tst_buf_alloc(&x, (size_t)(s->m * s->k) * eb, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&w, (size_t)(s->n * s->k) * eb, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&b, (size_t)s->n * eb, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&g, (size_t)s->n * eb, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&be, (size_t)s->n * eb, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&y, (size_t)(s->m * s->n) * eb, on_gpu, msg, sizeof msg)) {
        printf("FAIL [%s] shape %d: allocation: %s\n", ename, idx, msg);
        goto done;
    }
    tst_rng_t r = tst_rng_make(seed, (uint64_t)idx);
    tst_fill_matrix(dt, x.host, s->m, s->k, s->k, s->m * s->k, &r, s->x_lo, s->x_hi);
    tst_fill_matrix(dt, w.host, s->n, s->k, s->k, s->n * s->k, &r, s->w_lo, s->w_hi);
    tst_fill_matrix(dt, b.host, 1, s->n, s->n, s->n, &r, -1.0, 1.0);
    tst_fill_matrix(dt, g.host, 1, s->n, s->n, s->n, &r, 0.5, 1.5);
    tst_fill_matrix(dt, be.host, 1, s->n, s->n, s->n, &r, -0.5, 0.5);
    tst_poison_matrix(dt, y.host, s->m, s->n, s->n, s->m * s->n);

    lgh_args_t a;
    lgh_args_init(&a, s->m, s->k, s->n, s->g);
    a.dtype = dt;
    a.x = x.host, a.w = w.host, a.bias = b.host, a.gamma = g.host, a.beta = be.host;
    if (tst_reference(&a, ref, NULL, NULL) != 0) {
        printf("FAIL [%s] shape %d: the reference failed\n", ename, idx);
        goto done;
    }
    double hmax = 0.0; /* how far beyond float16 the pre-norm goes (for the report) */
    for (int64_t n = 0; n < s->n; n += s->n / 4) {
        double acc = tst_load(dt, b.host, n);
        for (int64_t k = 0; k < s->k; ++k) acc += tst_load(dt, x.host, k) * tst_load(dt, w.host, n * s->k + k);
        if (fabs(acc) > hmax) hmax = fabs(acc);
    }
    if (tst_buf_upload(&x, msg, sizeof msg) || tst_buf_upload(&w, msg, sizeof msg) ||
        tst_buf_upload(&b, msg, sizeof msg) || tst_buf_upload(&g, msg, sizeof msg) ||
        tst_buf_upload(&be, msg, sizeof msg) || tst_buf_upload(&y, msg, sizeof msg)) {
        printf("FAIL [%s] shape %d: upload: %s\n", ename, idx, msg);
        goto done;
    }
    a.engine = engine;
    a.x = x.dev, a.w = w.dev, a.bias = b.dev, a.gamma = g.dev, a.beta = be.dev, a.y = y.dev;
    lgh_status_t st = lgh_forward(ctx, &a, NULL, 0, NULL);
    if (on_gpu && tst_dev_sync(msg, sizeof msg)) {
        printf("FAIL [%s] shape %d: %s\n", ename, idx, msg);
        goto done;
    }
    if (tst_buf_download(&y, msg, sizeof msg)) {
        printf("FAIL [%s] shape %d: download: %s\n", ename, idx, msg);
        goto done;
    }
    if (st == LGH_STATUS_NOT_SUPPORTED) {
        int64_t touched = 0;
        for (int64_t i = 0; i < s->m * s->n; ++i) touched += !tst_is_pattern(dt, y.host, i, TST_POISON);
        if (touched) {
            printf("FAIL [%s] shape %d: declined but wrote %" PRId64 " elements\n", ename, idx, touched);
            goto done;
        }
        if (verbose) printf("skip [%s] shape %d: %s\n", ename, idx, lgh_last_error(ctx));
        rc = 2;
        goto done;
    }
    if (st != LGH_STATUS_SUCCESS) {
        printf("FAIL [%s] shape %d: %s: %s\n", ename, idx, lgh_status_string(st), lgh_last_error(ctx));
        goto done;
    }
    tst_err_t e = tst_compare(dt, y.host, s->m, s->n, s->n, ref);
    const double bound = tst_bound(dt, LGH_MATH_DEFAULT);
    const int ok = e.nonfinite == 0 && e.rel <= bound;
    if (!ok || verbose) {
        printf("%s [%s] M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " G=%" PRId64
               " float16, pre-norm up to %.3g: rel %.3g (bound %.0e), %" PRId64 " non-finite\n",
               ok ? "ok  " : "FAIL", ename, s->m, s->k, s->n, s->g, hmax, e.rel, bound, e.nonfinite);
    }
    rc = ok ? 0 : 1;
done:
    tst_buf_free(&x), tst_buf_free(&w), tst_buf_free(&b), tst_buf_free(&g), tst_buf_free(&be), tst_buf_free(&y);
    free(ref);
    return rc;
}

int main(int argc, char **argv)
{
    const char *ename = "cpu";
    int verbose = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--engine") == 0 && i + 1 < argc) ename = argv[++i];
        else if (strcmp(argv[i], "--verbose") == 0) verbose = 1;
        else {
            fprintf(stderr, "usage: test_range [--engine cpu|cublaslt|sm80|sm90|auto] [--verbose]\n");
            return 2;
        }
    }
    lgh_engine_t engine;
    if (lgh_engine_from_name(ename, &engine) != LGH_STATUS_SUCCESS) {
        fprintf(stderr, "test_range: unknown engine '%s'\n", ename);
        return 2;
    }
    const int on_gpu = engine != LGH_ENGINE_CPU;
    if (on_gpu && (!tst_have_cuda() || tst_dev_cc(0) < 0)) {
        printf("GPU tier: skipped (no CUDA device)\n");
        return TST_EXIT_SKIP;
    }
    lgh_context_t ctx;
    if (lgh_create(&ctx, on_gpu ? 0 : LGH_DEVICE_CPU) != LGH_STATUS_SUCCESS) {
        printf("FAIL: lgh_create: %s\n", lgh_last_error(NULL));
        return 1;
    }
    if (on_gpu && engine != LGH_ENGINE_AUTO && !lgh_engine_available(ctx, engine)) {
        printf("GPU tier: engine %s not available on this device: skipped\n", ename);
        lgh_destroy(ctx);
        return TST_EXIT_SKIP;
    }
    tst_print_seed("test_range");
    tst_tally_t t = {0, 0, 0};
    for (int i = 0; i < N_SHAPES; ++i) {
        const int rc = run_shape(ctx, on_gpu, engine, ename, i, tst_base_seed(), verbose);
        if (rc == 0) t.passed++;
        else if (rc == 1) t.failed++;
        else t.skipped++;
    }
    lgh_destroy(ctx);
    char name[64];
    snprintf(name, sizeof name, "test_range[%s]", ename);
    tst_summary(name, &t);
    return t.failed ? 1 : t.passed ? 0 : TST_EXIT_SKIP;
}
