/*
 * `lgh run --backward`: after the forward's lines, one training step per iteration: the
 * forward saving mean and rstd (and, unless --recompute, the pre-norm h), then
 * lgh_backward for all five gradients (dx, dW, db, dγ, dβ). Prints the backward's engine,
 * the median step time next to the forward-only time and the backward alone, and each
 * gradient's error against the double-precision lgh_reference_backward.
 *
 * dy is uniform in [-1, 1), then set to 0 where the reference's pre-clamp z is within
 * cli_near_clamp_tolerance() of lo or hi (in the part of the problem the check reads):
 * there a correct engine may put z on the other side of the clamp. The gradients are
 * filled with NaN before the first call, so an element no call writes fails the check.
 *
 * What is checked: dx on the rows the forward's check uses (all rows when cheap, else 64
 * spread over M, or --check-rows); dW, db, dγ, dβ on whole groups summed over every row
 * (all groups when M*N*K <= 2^28, else as many as about 2^31 multiply-adds of the
 * reference allow, at least one, spread over G; or --check-groups).
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double cli_median(float *ms, int n)
{
    qsort(ms, (size_t)n, sizeof(float), cmp_float);
    return n % 2 ? ms[n / 2] : 0.5 * ((double)ms[n / 2 - 1] + ms[n / 2]);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

enum { B_DY, B_MEAN, B_RSTD, B_H, B_DX, B_DW, B_DB, B_DG, B_DBE, B_COUNT };
static const char *const kGradNames[5] = {"dx", "dW", "db", "dgamma", "dbeta"};

typedef struct step {
    lgh_context_t ctx;
    const lgh_args_t *fwd; /* the forward, saving mean / rstd (/ h) */
    const lgh_backward_args_t *bwd;
    void *stream;
} step_t;

static lgh_status_t call_step(void *p)
{
    const step_t *c = p;
    lgh_status_t s = lgh_forward(c->ctx, c->fwd, NULL, 0, c->stream);
    return s != LGH_STATUS_SUCCESS ? s : lgh_backward(c->ctx, c->bwd, NULL, 0, c->stream);
}

static lgh_status_t call_backward(void *p)
{
    const step_t *c = p;
    return lgh_backward(c->ctx, c->bwd, NULL, 0, c->stream);
}

/* warmup untimed + iters timed calls of fn; the milliseconds of the timed ones in ms[].
 * Prints the error and returns -1 on failure. */
static int time_calls(const run_opts_t *o, void *stream, cli_call_fn fn, void *arg,
                      lgh_context_t ctx, float *ms)
{
    char err[512] = "";
    lgh_status_t s = LGH_STATUS_SUCCESS;
    if (o->device != LGH_DEVICE_CPU) {
        if ((o->warmup > 0 && cli_gpu_time(stream, o->warmup, fn, arg, ms, &s, err, sizeof err)) ||
            cli_gpu_time(stream, o->iters, fn, arg, ms, &s, err, sizeof err) ||
            cli_gpu_sync(stream, err, sizeof err)) {
            if (s != LGH_STATUS_SUCCESS)
                fprintf(stderr, "lgh run: %s (%s)\n", lgh_last_error(ctx), lgh_status_string(s));
            else
                fprintf(stderr, "lgh run: %s\n", err);
            return -1;
        }
        return 0;
    }
    for (int i = 0; i < o->warmup + o->iters; ++i) {
        const double t0 = now_ms();
        s = fn(arg);
        const double t1 = now_ms();
        if (s != LGH_STATUS_SUCCESS) {
            fprintf(stderr, "lgh run: %s (%s)\n", lgh_last_error(ctx), lgh_status_string(s));
            return -1;
        }
        if (i >= o->warmup) ms[i - o->warmup] = (float)(t1 - t0);
    }
    return 0;
}

typedef struct bres {
    void *buf[B_COUNT]; /* device buffers (GPU) or host buffers (CPU) */
    void *dy_host, *poison, *dx_rows, *dw_groups, *vecs[3];
    int64_t *row_ids, *group_ids;
    float *ms;
    int gpu;
} bres_t;

static void release(bres_t *r)
{
    for (int i = 0; i < B_COUNT; ++i) {
        if (r->gpu) cli_gpu_free(r->buf[i]);
        else if (r->buf[i] != r->dy_host) free(r->buf[i]);
    }
    free(r->dy_host);
    free(r->poison);
    free(r->dx_rows);
    free(r->dw_groups);
    for (int i = 0; i < 3; ++i) free(r->vecs[i]);
    free(r->row_ids);
    free(r->group_ids);
    free(r->ms);
}

/* Copies bytes from a buffer of the context's memory space to the host. */
static int fetch(const bres_t *r, void *dst, const void *src, size_t bytes)
{
    char err[512];
    if (!r->gpu) {
        memcpy(dst, src, bytes);
        return 0;
    }
    if (cli_gpu_download(dst, src, bytes, err, sizeof err)) {
        fprintf(stderr, "lgh run: reading the gradients back: %s\n", err);
        return -1;
    }
    return 0;
}

int cli_run_backward(lgh_context_t ctx, const run_opts_t *o, const lgh_args_t *a,
                     const lgh_args_t *host, void *stream, double forward_ms)
{
    bres_t r;
    memset(&r, 0, sizeof r);
    r.gpu = o->device != LGH_DEVICE_CPU;
    int rc = CLI_FAIL;
    char err[512] = "";
    const int64_t m = o->m, k = o->k, n = o->n, g = o->groups, gs = n / g;
    const size_t eb = o->dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;

    /* The backward problem, checked (and its engine chosen) before anything is allocated. */
    static char nowhere[16];
    lgh_backward_args_t b;
    lgh_backward_args_init(&b, m, k, n, g);
    b.fwd = *a;
    b.fwd.y = NULL, b.fwd.mean = b.fwd.rstd = NULL, b.fwd.h = NULL, b.fwd.ldh = 0;
    b.dy = nowhere;
    b.mean = b.rstd = (const float *)(void *)nowhere;
    b.h = o->recompute ? NULL : nowhere;
    b.dx = b.dw = b.dbias = b.dgamma = b.dbeta = nowhere;
    lgh_engine_t engine = LGH_ENGINE_AUTO;
    size_t ws_bytes = 0;
    lgh_math_t math = LGH_MATH_DEFAULT; /* the products' concrete mode */
    lgh_status_t s = lgh_backward_plan(ctx, &b, &engine, &ws_bytes);
    if (s == LGH_STATUS_SUCCESS) s = lgh_backward_plan_math(ctx, &b, &math);
    if (s != LGH_STATUS_SUCCESS) {
        if (cli_status_is_argument_error(s))
            return cli_usage_error("run", "%s", lgh_last_error(ctx));
        fprintf(stderr, "lgh run: backward: %s (%s)\n", lgh_last_error(ctx), lgh_status_string(s));
        return CLI_FAIL;
    }

    /* What the check reads: the forward check's rows for dx, whole groups for the rest. */
    const double mnk = (double)m * (double)n * (double)k;
    int64_t rows = o->check_rows;
    if (rows < 0) rows = mnk <= 268435456.0 ? m : 64;
    if (rows > m) rows = m;
    int64_t ngroups = 0;
    if (rows > 0) {
        ngroups = o->check_groups;
        if (ngroups < 0) {
            const double per_group = (double)m * (double)gs * (double)k;
            ngroups = mnk <= 268435456.0 ? g : (int64_t)(2147483648.0 / per_group);
        }
        if (ngroups < 1) ngroups = 1;
        if (ngroups > g) ngroups = g;
    }
    r.row_ids = malloc(sizeof(int64_t) * (size_t)(rows > 0 ? rows : 1));
    r.group_ids = malloc(sizeof(int64_t) * (size_t)(ngroups > 0 ? ngroups : 1));
    r.ms = malloc(sizeof(float) * (size_t)(o->iters > o->warmup ? o->iters : o->warmup + 1));
    r.dy_host = malloc((size_t)(m * n) * eb);
    if (!r.row_ids || !r.group_ids || !r.ms || !r.dy_host) {
        fprintf(stderr, "lgh run: out of host memory\n");
        goto out;
    }
    for (int64_t i = 0; i < rows; ++i)
        r.row_ids[i] = rows == 1 ? 0 : (int64_t)((double)i * (double)(m - 1) / (double)(rows - 1));
    for (int64_t i = 0; i < ngroups; ++i)
        r.group_ids[i] =
            ngroups == 1 ? 0 : (int64_t)((double)i * (double)(g - 1) / (double)(ngroups - 1));
    const cli_bwd_sample_t sample = {r.row_ids, rows, r.group_ids, ngroups};

    /* dy, zeroed near the clamp where the check looks. */
    uint64_t seed = o->seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
    cli_fill_uniform(o->dtype, r.dy_host, m * n, &seed, -1.0, 1.0);
    lgh_backward_args_t hb = b; /* host pointers, for the reference */
    hb.fwd = *host;
    hb.fwd.y = NULL, hb.fwd.mean = hb.fwd.rstd = NULL, hb.fwd.h = NULL;
    hb.dy = r.dy_host;
    hb.lddy = 0;
    const double near_tol = cli_near_clamp_tolerance(o->dtype);
    int64_t zeroed = 0;
    if (rows > 0 && cli_mask_near_clamp(&hb, &sample, r.dy_host, near_tol, &zeroed) != 0) {
        fprintf(stderr, "lgh run: the reference refused the problem (near-clamp mask)\n");
        goto out;
    }

    /* Buffers: dy (uploaded), mean, rstd, h, and the gradients poisoned with NaN. */
    const int64_t counts[B_COUNT] = {m * n, m * g, m * g, o->recompute ? 0 : m * n, m * k, n * k,
                                     n, n, n};
    const size_t sizes[B_COUNT] = {eb, 4, 4, eb, eb, eb, eb, eb, eb};
    int64_t most = 0;
    for (int i = B_DX; i < B_COUNT; ++i) most = counts[i] > most ? counts[i] : most;
    if (r.gpu) {
        r.poison = malloc((size_t)most * eb);
        if (!r.poison) {
            fprintf(stderr, "lgh run: out of host memory\n");
            goto out;
        }
        cli_fill_nan(o->dtype, r.poison, most);
    }
    for (int i = 0; i < B_COUNT; ++i) {
        if (counts[i] == 0) continue;
        const size_t bytes = (size_t)counts[i] * sizes[i];
        if (!r.gpu) {
            if (i == B_DY) {
                r.buf[i] = r.dy_host;
                continue;
            }
            if (!(r.buf[i] = malloc(bytes))) {
                fprintf(stderr, "lgh run: out of host memory (%zu bytes)\n", bytes);
                goto out;
            }
            if (i >= B_DX) cli_fill_nan(o->dtype, r.buf[i], counts[i]);
            continue;
        }
        if (cli_gpu_alloc(o->device, &r.buf[i], bytes, err, sizeof err) ||
            (i == B_DY && cli_gpu_upload(r.buf[i], r.dy_host, bytes, err, sizeof err)) ||
            (i >= B_DX && cli_gpu_upload(r.buf[i], r.poison, bytes, err, sizeof err))) {
            fprintf(stderr, "lgh run: device memory: %s\n", err);
            goto out;
        }
    }
    if (r.gpu && cli_gpu_sync(stream, err, sizeof err)) {
        fprintf(stderr, "lgh run: %s\n", err);
        goto out;
    }

    lgh_args_t fs = *a; /* the training forward: saves mean, rstd (and h) */
    fs.mean = r.buf[B_MEAN], fs.rstd = r.buf[B_RSTD], fs.h = r.buf[B_H], fs.ldh = 0;
    b.dy = r.buf[B_DY], b.lddy = 0;
    b.mean = r.buf[B_MEAN], b.rstd = r.buf[B_RSTD];
    b.h = r.buf[B_H], b.ldh = 0;
    b.dx = r.buf[B_DX], b.dw = r.buf[B_DW];
    b.dbias = r.buf[B_DB], b.dgamma = r.buf[B_DG], b.dbeta = r.buf[B_DBE];

    step_t call = {ctx, &fs, &b, stream};
    if (time_calls(o, stream, call_step, &call, ctx, r.ms) != 0) goto out;
    const double step_ms = cli_median(r.ms, o->iters);
    const float step_min = r.ms[0], step_max = r.ms[o->iters - 1];
    if (time_calls(o, stream, call_backward, &call, ctx, r.ms) != 0) goto out;
    const double bwd_ms = cli_median(r.ms, o->iters);

    const char *env = getenv("LGH_ENGINE");
    printf("  backward: engine %s%s%s (%s), workspace %zu bytes; the forward saves %s\n",
           lgh_engine_name(engine), o->dtype == LGH_DTYPE_FLOAT32 ? " " : "",
           o->dtype == LGH_DTYPE_FLOAT32 ? lgh_math_name(math) : "",
           o->engine != LGH_ENGINE_AUTO ? "forced by --engine"
           : env && *env && strcmp(env, "auto") ? "forced by LGH_ENGINE"
                                                : "chosen by lgh_backward_plan",
           ws_bytes,
           o->recompute ? "mean and rstd (--recompute: the backward recomputes h = x W^T + b)"
                        : "mean, rstd and h = x W^T + b");
    printf("  step:   median %.4f ms over %d steps (forward with saves + backward of dx, dW, db,"
           " dgamma, dbeta; min %.4f, max %.4f); forward only %.4f ms, backward alone %.4f ms\n",
           step_ms, o->iters, (double)step_min, (double)step_max, forward_ms, bwd_ms);
    const double step_flop = (o->recompute ? 8.0 : 6.0) * mnk;
    printf("  speed:  %.3g TFLOP/s per step (%d*M*N*K = %.3g GFLOP: %s)\n",
           step_flop / (step_ms * 1e-3) / 1e12, o->recompute ? 8 : 6, step_flop * 1e-9,
           o->recompute ? "forward, h again, dx, dW" : "forward, dx, dW");

    if (rows == 0) {
        printf("  gradients: not checked (--check-rows 0)\n");
        rc = CLI_OK;
        goto out;
    }

    /* lgh's gradients back on the host: dx's checked rows, dW's checked groups, db, dγ, dβ. */
    r.dx_rows = malloc((size_t)(rows * k) * eb);
    r.dw_groups = malloc((size_t)(ngroups * gs * k) * eb);
    for (int i = 0; i < 3; ++i) r.vecs[i] = malloc((size_t)n * eb);
    if (!r.dx_rows || !r.dw_groups || !r.vecs[0] || !r.vecs[1] || !r.vecs[2]) {
        fprintf(stderr, "lgh run: out of host memory for the check\n");
        goto out;
    }
    for (int64_t i = 0; i < rows; ++i)
        if (fetch(&r, (char *)r.dx_rows + (size_t)(i * k) * eb,
                  (const char *)r.buf[B_DX] + (size_t)(r.row_ids[i] * k) * eb, (size_t)k * eb))
            goto out;
    for (int64_t q = 0; q < ngroups; ++q)
        if (fetch(&r, (char *)r.dw_groups + (size_t)(q * gs * k) * eb,
                  (const char *)r.buf[B_DW] + (size_t)(r.group_ids[q] * gs * k) * eb,
                  (size_t)(gs * k) * eb))
            goto out;
    for (int i = 0; i < 3; ++i)
        if (fetch(&r, r.vecs[i], r.buf[B_DB + i], (size_t)n * eb)) goto out;

    cli_bwd_errors_t e;
    if (cli_check_backward(&hb, &sample, r.dx_rows, r.dw_groups, r.vecs[0], r.vecs[1], r.vecs[2],
                           &e) != 0) {
        fprintf(stderr, "lgh run: the reference refused the backward problem\n");
        goto out;
    }
    const double bound = cli_backward_bound(o->dtype, math);
    char rows_txt[96], groups_txt[96];
    if (rows == m) snprintf(rows_txt, sizeof rows_txt, "all %" PRId64 " rows", rows);
    else snprintf(rows_txt, sizeof rows_txt, "%" PRId64 " sampled rows (of %" PRId64 ")", rows, m);
    if (ngroups == g) snprintf(groups_txt, sizeof groups_txt, "all %" PRId64 " groups", ngroups);
    else
        snprintf(groups_txt, sizeof groups_txt, "%" PRId64 " sampled group%s (of %" PRId64 ")",
                 ngroups, ngroups == 1 ? "" : "s", g);
    printf("  gradients vs the fp64 reference (dx on %s; dW, db, dgamma, dbeta on %s, summed over "
           "every row; dy zeroed at %" PRId64 " elements within %.0e of lo/hi):\n",
           rows_txt, groups_txt, zeroed, near_tol);
    int ok = 1;
    for (int q = 0; q < 5; ++q) {
        const int this_ok = e.rel[q] <= bound;
        ok &= this_ok;
        printf("    %-7s rel %.3g, max abs %.3g: %s %.0e%s\n", kGradNames[q], e.rel[q],
               e.max_abs[q], this_ok ? "within bound" : "OUT OF BOUND", bound,
               isnan(e.rel[q]) ? " (NaN: an element unwritten or not finite)" : "");
    }
    rc = ok ? CLI_OK : CLI_FAIL;

out:
    release(&r);
    return rc;
}
