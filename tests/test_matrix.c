/*
 * test_matrix: lgh_forward over the shape matrix, checked against the double-precision
 * reference (lgh_reference_rows) within docs/PRECISION.md's bounds.
 *
 *   test_matrix [--engine cpu|cublaslt|sm80|sm90|auto|all|cpu-staged] [--case N] [--reduced]
 *               [--small-m] [--verbose]
 *
 * Shapes: M in {1, 7, 128, 1000} x K in {8, 100, 1024} x group size in {1, 8, 48, 64, 97,
 * 300, 512, 768, 1024, 2048} x G in {1, 3} (N = group size * G; G = 1 only above 512; 97 and
 * 300 make groups that begin and end inside the 256-channel tiles of the sm90 kernel, odd
 * and spanning up to three tiles). Each shape cycles
 * through packed, odd-padded and aligned-padded leading dimensions, with or without the
 * mean / rstd outputs, with or without a caller workspace, several clamps and eps, and
 * (float32, some shapes) a large bias offset that defeats E[x^2] - E[x]^2. Every shape
 * runs in every dtype with fresh random inputs (case = shape x dtype; case i always gets
 * the same inputs for the same LGH_TEST_SEED); float32 runs every math mode. The reference is computed once per
 * case and reused across math modes and engines.
 *
 * Before each call y is poisoned with NaN and the padding between its rows (and a tail
 * after the last row) with a guard pattern; mean / rstd likewise. After it: the relative
 * Frobenius error of y, mean and rstd must be within the bound (an unwritten element is
 * NaN and fails), and every guard element must be unchanged. The input padding holds a
 * NaN too, so an engine that reads it fails. One exception to the bound: a tf32 y past
 * 1e-3 passes within 1.5 times the error exact arithmetic makes on tf32-rounded operands
 * of the same inputs (tf32_floor: tiny, nearly constant groups amplify tf32 rounding).
 *
 * Engines: cpu runs on a CPU context; cublaslt, sm80, sm90 and auto on CUDA device 0.
 * Without a device the GPU engines exit 77 (ctest SKIP_RETURN_CODE) after printing
 * "GPU tier: skipped (no CUDA device)". cpu, cublaslt and auto must take every shape;
 * sm80 / sm90 may answer LGH_STATUS_NOT_SUPPORTED, which is a counted, printed skip
 * (and then nothing may have been written). With LGH_ENGINE set (e.g. LGH_ENGINE=sm90), the auto
 * target runs that engine under the same rules.
 * Exit: 0 all passed (some may be skipped), 1 a failure, 77 nothing ran.
 *
 * cpu-staged runs the CPU engine with every buffer moved through the GPU tier's upload /
 * download code (host memory standing in for the device), to check that code here.
 * --reduced keeps M in {7, 128} and K in {8, 100} (every group size, dtype and math mode),
 * for slow runs such as compute-sanitizer; case numbers stay those of the full matrix.
 * --small-m replaces the matrix's M and K by the small-batch set, M in {1, 2, 3, 7, 16, 33,
 * 64, 100, 128, 255} x K in {520, 1048} (K long enough for the sm90 engine to split it:
 * LGH_SM90_VARIANT=S forces S parts there); with --reduced, M in {1, 33, 128} and K = 520.
 *
 * Before the matrix, the checker checks itself: an unwritten element, a write into the
 * padding or the tail, and a wrong value must each be caught.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lgh.h"
#include "support/tst.h"

/* ---- the matrix ------------------------------------------------------------------------ */

static const int64_t kMs[] = {1, 7, 128, 1000};
static const int64_t kKs[] = {8, 100, 1024};
static const int64_t kSmallMs[] = {1, 2, 3, 7, 16, 33, 64, 100, 128, 255};
static const int64_t kSmallKs[] = {520, 1048};
static const int64_t kGroupSizes[] = {1, 8, 48, 64, 97, 300, 512, 768, 1024, 2048};
static const int64_t kGroupCounts[] = {1, 3};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
/* Groups wider than 512 only with G = 1, so N stays moderate and the reference cheap. They
 * are the fused engines' wide paths: sm90 takes 1024 with a cluster of 4 CTAs, 768 (three
 * tiles) and 2048 with one CTA going tile after tile; sm80 its wide mode. */
#define WIDE_GROUP 512

static const lgh_dtype_t kDtypes[] = {LGH_DTYPE_FLOAT32, LGH_DTYPE_BFLOAT16, LGH_DTYPE_FLOAT16};
#define N_DTYPES COUNT(kDtypes)

/* (M, K, group size, G) of every shape, in a fixed order: the shape index is part of
 * the replay recipe. */
typedef struct dims {
    int64_t m, k, gs, g;
} dims_t;
#define MAX_SHAPES (COUNT(kSmallMs) * COUNT(kSmallKs) * COUNT(kGroupSizes) * COUNT(kGroupCounts))
static dims_t g_dims[MAX_SHAPES];
static int g_n_shapes;

static void list_shapes(int small_m)
{
    const int64_t *ms = small_m ? kSmallMs : kMs, *ks = small_m ? kSmallKs : kKs;
    const int n_ms = small_m ? COUNT(kSmallMs) : COUNT(kMs), n_ks = small_m ? COUNT(kSmallKs) : COUNT(kKs);
    g_n_shapes = 0;
    for (int mi = 0; mi < n_ms; ++mi)
        for (int ki = 0; ki < n_ks; ++ki)
            for (int si = 0; si < COUNT(kGroupSizes); ++si)
                for (int gi = 0; gi < COUNT(kGroupCounts); ++gi) {
                    if (kGroupSizes[si] > WIDE_GROUP && kGroupCounts[gi] != 1) continue;
                    g_dims[g_n_shapes++] =
                        (dims_t){ms[mi], ks[ki], kGroupSizes[si], kGroupCounts[gi]};
                }
}

/* One shape and the variations it carries. */
typedef struct shape {
    int64_t m, k, n, groups;
    int64_t ldx, ldw, ldy; /* resolved (never 0); args get 0 when packed */
    int packed;
    int stats;         /* ask for mean / rstd */
    int own_workspace; /* pass a caller workspace of exactly lgh_plan's size */
    int offset_bias;   /* float32 only: bias around 8, so the mean dwarfs the spread */
    float eps, lo, hi;
} shape_t;

static shape_t make_shape(int idx)
{
    shape_t s;
    memset(&s, 0, sizeof s);
    s.m = g_dims[idx].m;
    s.k = g_dims[idx].k;
    s.groups = g_dims[idx].g;
    s.n = g_dims[idx].gs * s.groups;

    switch (idx % 3) {
    case 0: /* packed */
        s.packed = 1;
        s.ldx = s.k, s.ldw = s.k, s.ldy = s.n;
        break;
    case 1: /* odd padding: rows not 16-byte aligned */
        s.ldx = s.k + 3, s.ldw = s.k + 5, s.ldy = s.n + 1;
        break;
    default: /* aligned padding (16 bytes for every dtype) */
        s.ldx = s.k + 8, s.ldw = s.k + 16, s.ldy = s.n + 8;
        break;
    }
    s.stats = (idx / 3) % 2;
    s.own_workspace = (idx / 2) % 2;
    s.offset_bias = idx % 5 == 4;
    static const float clamps[3][2] = {{-2.0f, 2.0f}, {-1.0f, 0.75f}, {-0.5f, 3.0f}};
    s.lo = clamps[idx % 3 == 0 ? (idx / 3) % 3 : idx % 3][0];
    s.hi = clamps[idx % 3 == 0 ? (idx / 3) % 3 : idx % 3][1];
    s.eps = idx % 7 == 3 ? 1e-2f : 1e-5f;
    return s;
}

/* ---- one case's host data and reference ---------------------------------------------- */

typedef struct case_data {
    int id;
    shape_t s;
    lgh_dtype_t dt;
    size_t x_elems, w_elems, y_elems, stat_elems;
    void *x, *w, *bias, *gamma, *beta; /* host, dtype dt */
    double *ref_y, *ref_mean, *ref_rstd;
    double value_scale2; /* typical square of a pre-norm value: see mean_error() */
} case_data_t;

/* Elements after the last row of y / the statistics that must stay untouched. */
enum { TAIL = 16 };

static void free_case(case_data_t *c)
{
    free(c->x), free(c->w), free(c->bias), free(c->gamma), free(c->beta);
    free(c->ref_y), free(c->ref_mean), free(c->ref_rstd);
    memset(c, 0, sizeof *c);
}

/* Host args for the reference (pointers to the host inputs). */
static lgh_args_t host_args(const case_data_t *c)
{
    lgh_args_t a;
    lgh_args_init(&a, c->s.m, c->s.k, c->s.n, c->s.groups);
    a.dtype = c->dt;
    a.eps = c->s.eps, a.lo = c->s.lo, a.hi = c->s.hi;
    a.x = c->x, a.w = c->w, a.bias = c->bias, a.gamma = c->gamma, a.beta = c->beta;
    if (!c->s.packed) a.ldx = c->s.ldx, a.ldw = c->s.ldw, a.ldy = c->s.ldy;
    return a;
}

static int make_case(case_data_t *c, int id, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->id = id;
    c->s = make_shape(id / N_DTYPES);
    c->dt = kDtypes[id % N_DTYPES];
    const shape_t *s = &c->s;
    const size_t eb = tst_elem_bytes(c->dt);
    c->x_elems = (size_t)((s->m - 1) * s->ldx + s->k);
    c->w_elems = (size_t)((s->n - 1) * s->ldw + s->k);
    c->y_elems = (size_t)(s->m * s->ldy + TAIL);
    c->stat_elems = (size_t)(s->m * s->groups + TAIL);
    c->x = malloc(c->x_elems * eb);
    c->w = malloc(c->w_elems * eb);
    c->bias = malloc((size_t)s->n * eb);
    c->gamma = malloc((size_t)s->n * eb);
    c->beta = malloc((size_t)s->n * eb);
    c->ref_y = malloc((size_t)(s->m * s->n) * sizeof(double));
    c->ref_mean = malloc((size_t)(s->m * s->groups) * sizeof(double));
    c->ref_rstd = malloc((size_t)(s->m * s->groups) * sizeof(double));
    if (!c->x || !c->w || !c->bias || !c->gamma || !c->beta || !c->ref_y || !c->ref_mean ||
        !c->ref_rstd)
        return -1;

    /* nn.Linear's initialisation for W; x in [0, 1) as in the reference problem. */
    tst_rng_t r = tst_rng_make(seed, (uint64_t)id);
    const double wb = 1.0 / sqrt((double)s->k);
    tst_fill_matrix(c->dt, c->x, s->m, s->k, s->ldx, (int64_t)c->x_elems, &r, 0.0, 1.0);
    tst_fill_matrix(c->dt, c->w, s->n, s->k, s->ldw, (int64_t)c->w_elems, &r, -wb, wb);
    const int offset = s->offset_bias && c->dt == LGH_DTYPE_FLOAT32;
    tst_fill_matrix(c->dt, c->bias, 1, s->n, s->n, s->n, &r, offset ? 7.5 : -0.5,
                    offset ? 8.5 : 0.5);
    tst_fill_matrix(c->dt, c->gamma, 1, s->n, s->n, s->n, &r, 0.5, 1.5);
    tst_fill_matrix(c->dt, c->beta, 1, s->n, s->n, s->n, &r, -0.5, 0.5);

    /* E[v^2] of a pre-norm value v = b + x.w if the products had random signs:
     * mean over n of b_n^2 + sum_k w_nk^2 * (mean over rows of x_mk^2). */
    double *x2 = calloc((size_t)s->k, sizeof(double));
    if (!x2) return -1;
    for (int64_t m = 0; m < s->m; ++m)
        for (int64_t k = 0; k < s->k; ++k) {
            const double v = tst_load(c->dt, c->x, m * s->ldx + k);
            x2[k] += v * v / (double)s->m;
        }
    double scale2 = 0.0;
    for (int64_t n = 0; n < s->n; ++n) {
        const double b = tst_load(c->dt, c->bias, n);
        double acc = b * b;
        for (int64_t k = 0; k < s->k; ++k) {
            const double w = tst_load(c->dt, c->w, n * s->ldw + k);
            acc += w * w * x2[k];
        }
        scale2 += acc / (double)s->n;
    }
    free(x2);
    c->value_scale2 = scale2;

    lgh_args_t a = host_args(c);
    return tst_reference(&a, c->ref_y, c->ref_mean, c->ref_rstd);
}

/* The error floor of tf32 on this case's inputs. docs/PRECISION.md's tf32 bound (1e-3) holds at
 * typical conditioning; but a group of a few channels whose values nearly agree divides
 * the operands' rounding error by a small standard deviation, and then no tf32 engine
 * meets it (seen: M = 1, K = 100, one group of 8 channels, 1.35e-3 on sm90). The floor is
 * ||ref' - ref|| / ||ref||, ref' the double-precision layer on operands rounded as tf32
 * tensor cores read them: W truncated to 10 mantissa bits (a float32 B operand in shared
 * memory), x truncated or rounded to nearest (cvt.rna), the larger of the two. A tf32
 * result passes if within max(bound, 1.5 x floor): an engine's error is its operands'
 * (measured: equal to three digits), while a typical case's floor is 2.5-5.4e-4, so its
 * bound stays 1e-3 (the checker self-test holds that). Computed only for a result past the
 * bound. NaN when it cannot allocate (the case then fails). */
static float tf32_of(float v, int round_to_nearest)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) {   /* finite: keep the top 10 mantissa bits */
        if (round_to_nearest) u += 0x1000u;   /* half of the 13 dropped bits, away from 0 */
        u &= 0xffffe000u;
    }
    memcpy(&v, &u, sizeof v);
    return v;
}

static double tf32_floor(const case_data_t *c)
{
    const shape_t *s = &c->s;
    float *x = malloc(c->x_elems * sizeof(float)), *w = malloc(c->w_elems * sizeof(float));
    double *y = malloc((size_t)(s->m * s->n) * sizeof(double));
    double floor = NAN;
    if (x && w && y) {
        for (size_t i = 0; i < c->w_elems; ++i) w[i] = tf32_of(((const float *)c->w)[i], 0);
        floor = 0.0;
        for (int x_rn = 0; x_rn < 2; ++x_rn) {
            for (size_t i = 0; i < c->x_elems; ++i) x[i] = tf32_of(((const float *)c->x)[i], x_rn);
            lgh_args_t a = host_args(c);
            a.x = x, a.w = w;
            if (tst_reference(&a, y, NULL, NULL) != 0) {
                floor = NAN;
                break;
            }
            double num = 0.0, den = 0.0;
            for (int64_t i = 0; i < s->m * s->n; ++i) {
                const double d = y[i] - c->ref_y[i];
                num += d * d, den += c->ref_y[i] * c->ref_y[i];
            }
            floor = fmax(floor, sqrt(num / den));
        }
    }
    free(x), free(w), free(y);
    return floor;
}

/* ---- targets (engine + context) ------------------------------------------------------ */

typedef struct target {
    const char *name;
    lgh_engine_t engine;
    int on_gpu;
    int must_take; /* NOT_SUPPORTED is a failure, not a skip */
    int staged;    /* CPU context, buffers staged like the GPU tier's (tst_set_staged_host) */
    lgh_engine_t env_engine; /* auto target: LGH_ENGINE's engine, which replaces AUTO */
    lgh_context_t ctx;
    tst_buf_t ws; /* caller workspace, grown as needed */
    tst_tally_t tally;
    /* worst figures per dtype x math, for the closing table */
    double worst_rel[N_DTYPES][4], worst_abs[N_DTYPES][4];
    long ran[N_DTYPES][4];
    long auto_picked[LGH_ENGINE_COUNT];
} target_t;

static int g_verbose;

static const char *yesno(int v) { return v ? "yes" : "no"; }

static void describe(char *buf, size_t len, const target_t *t, const case_data_t *c,
                     lgh_math_t math)
{
    const shape_t *s = &c->s;
    snprintf(buf, len,
             "case %d [%s %s %s] M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " G=%" PRId64
             " ldx=%" PRId64 " ldw=%" PRId64 " ldy=%" PRId64 " stats=%s ws=%s eps=%g clamp=[%g,%g]%s",
             c->id, t->name, lgh_dtype_name(c->dt), lgh_math_name(math), s->m, s->k, s->n,
             s->groups, s->ldx, s->ldw, s->ldy, yesno(s->stats),
             s->own_workspace ? "caller" : "context", (double)s->eps, (double)s->lo,
             (double)s->hi, s->offset_bias && c->dt == LGH_DTYPE_FLOAT32 ? " bias~8" : "");
}

static void replay_hint(const target_t *t, const case_data_t *c)
{
    printf("      replay: LGH_TEST_SEED=%" PRIu64 " test_matrix --engine %s --case %d\n",
           tst_base_seed(), t->name, c->id);
}

/* The error of the mean output. A mean is a sum of GEMM results, so its error is
 * relative to the size of the values averaged, not to the mean itself (a group of one
 * value near zero has a mean near zero with the same absolute error): the Frobenius norm
 * of the difference over that of sqrt(mean^2 + var) per (row, group), the RMS of the
 * group's values, floored by the typical size of a pre-norm value. */
static tst_err_t mean_error(const case_data_t *c, const float *mean)
{
    const int64_t count = c->s.m * c->s.groups;
    tst_err_t e = {0.0, 0.0, 0};
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < count; ++i) {
        const double r = c->ref_rstd[i];
        double var = 1.0 / (r * r) - (double)c->s.eps;
        if (var < 0.0) var = 0.0;
        double size2 = c->ref_mean[i] * c->ref_mean[i] + var;
        if (size2 < c->value_scale2) size2 = c->value_scale2;
        den += size2;
        if (!isfinite(mean[i])) {
            ++e.nonfinite;
            continue;
        }
        const double d = fabs((double)mean[i] - c->ref_mean[i]);
        num += d * d;
        if (d > e.max_abs) e.max_abs = d;
    }
    e.rel = e.nonfinite ? NAN : sqrt(num / den);
    return e;
}

/* Runs one (case, math) on one target. Returns 0 pass, 1 fail, 2 skip. */
static int run_one(target_t *t, const case_data_t *c, lgh_math_t math)
{
    const shape_t *s = &c->s;
    char what[512], msg[512] = "";
    describe(what, sizeof what, t, c, math);
    const size_t eb = tst_elem_bytes(c->dt);
    int rc = 1;

    tst_buf_t x = {0}, w = {0}, b = {0}, g = {0}, be = {0}, y = {0}, mean = {0}, rstd = {0};
    const int gpu = t->on_gpu;
    if (tst_buf_alloc(&x, c->x_elems * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&w, c->w_elems * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&b, (size_t)s->n * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&g, (size_t)s->n * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&be, (size_t)s->n * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&y, c->y_elems * eb, gpu, msg, sizeof msg) ||
        (s->stats && (tst_buf_alloc(&mean, c->stat_elems * 4, gpu, msg, sizeof msg) ||
                      tst_buf_alloc(&rstd, c->stat_elems * 4, gpu, msg, sizeof msg)))) {
        printf("FAIL %s: allocation: %s\n", what, msg);
        goto done;
    }
    memcpy(x.host, c->x, x.bytes);
    memcpy(w.host, c->w, w.bytes);
    memcpy(b.host, c->bias, b.bytes);
    memcpy(g.host, c->gamma, g.bytes);
    memcpy(be.host, c->beta, be.bytes);
    tst_poison_matrix(c->dt, y.host, s->m, s->n, s->ldy, (int64_t)c->y_elems);
    if (s->stats) {
        tst_poison_matrix(LGH_DTYPE_FLOAT32, mean.host, s->m, s->groups, s->groups,
                          (int64_t)c->stat_elems);
        tst_poison_matrix(LGH_DTYPE_FLOAT32, rstd.host, s->m, s->groups, s->groups,
                          (int64_t)c->stat_elems);
    }
    if (tst_buf_upload(&x, msg, sizeof msg) || tst_buf_upload(&w, msg, sizeof msg) ||
        tst_buf_upload(&b, msg, sizeof msg) || tst_buf_upload(&g, msg, sizeof msg) ||
        tst_buf_upload(&be, msg, sizeof msg) || tst_buf_upload(&y, msg, sizeof msg) ||
        (s->stats && (tst_buf_upload(&mean, msg, sizeof msg) ||
                      tst_buf_upload(&rstd, msg, sizeof msg)))) {
        printf("FAIL %s: upload: %s\n", what, msg);
        goto done;
    }

    lgh_args_t a = host_args(c);
    a.math = math;
    a.engine = t->engine;
    a.x = x.dev, a.w = w.dev, a.bias = b.dev, a.gamma = g.dev, a.beta = be.dev, a.y = y.dev;
    if (s->stats) a.mean = mean.dev, a.rstd = rstd.dev;

    lgh_engine_t picked = LGH_ENGINE_COUNT;
    size_t ws_bytes = 0;
    lgh_status_t plan = lgh_plan(t->ctx, &a, &picked, &ws_bytes);
    const int skippable = !t->must_take && plan == LGH_STATUS_NOT_SUPPORTED;
    if (plan != LGH_STATUS_SUCCESS && !skippable) {
        printf("FAIL %s: lgh_plan: %s: %s\n", what, lgh_status_string(plan),
               lgh_last_error(t->ctx));
        goto done;
    }
    const lgh_engine_t forced = t->engine != LGH_ENGINE_AUTO ? t->engine : t->env_engine;
    if (plan == LGH_STATUS_SUCCESS && forced != LGH_ENGINE_AUTO && picked != forced) {
        printf("FAIL %s: lgh_plan chose engine %s for forced engine %s\n", what,
               lgh_engine_name(picked), lgh_engine_name(forced));
        goto done;
    }

    void *ws = NULL;
    if (s->own_workspace && plan == LGH_STATUS_SUCCESS && ws_bytes > 0) {
        if (ws_bytes > t->ws.bytes) {
            tst_buf_free(&t->ws);
            if (tst_buf_alloc(&t->ws, ws_bytes, gpu, msg, sizeof msg)) {
                printf("FAIL %s: workspace of %zu bytes: %s\n", what, ws_bytes, msg);
                goto done;
            }
        }
        ws = t->ws.dev;
    }

    lgh_status_t st = lgh_forward(t->ctx, &a, ws, ws ? ws_bytes : 0, NULL);
    if (gpu && tst_dev_sync(msg, sizeof msg)) {
        printf("FAIL %s: %s (lgh_forward returned %s)\n", what, msg, lgh_status_string(st));
        replay_hint(t, c);
        goto done;
    }
    if (st != plan) {
        printf("FAIL %s: lgh_forward returned %s (%s) but lgh_plan said %s\n", what,
               lgh_status_string(st), lgh_last_error(t->ctx), lgh_status_string(plan));
        goto done;
    }
    if (tst_buf_download(&y, msg, sizeof msg) ||
        (s->stats && (tst_buf_download(&mean, msg, sizeof msg) ||
                      tst_buf_download(&rstd, msg, sizeof msg)))) {
        printf("FAIL %s: download: %s\n", what, msg);
        goto done;
    }

    if (skippable) {
        /* Refused: nothing may have been written. */
        int64_t touched = 0;
        for (int64_t r = 0; r < s->m; ++r)
            for (int64_t col = 0; col < s->n; ++col)
                touched += !tst_is_pattern(c->dt, y.host, r * s->ldy + col, TST_POISON);
        touched += tst_guard_damage(c->dt, y.host, s->m, s->n, s->ldy, (int64_t)c->y_elems);
        if (touched) {
            printf("FAIL %s: refused with NOT_SUPPORTED but wrote %" PRId64 " elements of y\n",
                   what, touched);
            goto done;
        }
        if (g_verbose) printf("skip %s: %s\n", what, lgh_last_error(t->ctx));
        rc = 2;
        goto done;
    }

    const lgh_math_t resolved = c->dt == LGH_DTYPE_FLOAT32
                                    ? (math == LGH_MATH_DEFAULT ? LGH_MATH_TF32 : math)
                                    : LGH_MATH_DEFAULT;
    const double bound = tst_bound(c->dt, resolved);
    tst_err_t e = tst_compare(c->dt, y.host, s->m, s->n, s->ldy, c->ref_y);
    int64_t damage = tst_guard_damage(c->dt, y.host, s->m, s->n, s->ldy, (int64_t)c->y_elems);
    tst_err_t em = {0, 0, 0}, er = {0, 0, 0};
    int64_t stat_damage = 0;
    if (s->stats) {
        em = mean_error(c, mean.host);
        er = tst_compare(LGH_DTYPE_FLOAT32, rstd.host, s->m, s->groups, s->groups, c->ref_rstd);
        stat_damage = tst_guard_damage(LGH_DTYPE_FLOAT32, mean.host, s->m, s->groups, s->groups,
                                       (int64_t)c->stat_elems) +
                      tst_guard_damage(LGH_DTYPE_FLOAT32, rstd.host, s->m, s->groups,
                                       s->groups, (int64_t)c->stat_elems);
    }
    /* tf32 past the bound: allowed if the inputs' conditioning explains it (tf32_floor). */
    double tf32_fl = 0.0, y_bound = bound;
    if (c->dt == LGH_DTYPE_FLOAT32 && resolved == LGH_MATH_TF32 && !(e.rel <= bound)) {
        tf32_fl = tf32_floor(c);
        if (1.5 * tf32_fl > bound) y_bound = 1.5 * tf32_fl;
    }
    const int ok = e.rel <= y_bound && damage == 0 && stat_damage == 0 &&
                   (!s->stats || (em.rel <= bound && er.rel <= bound));

    const int di = (int)(c->id % N_DTYPES), mi = (int)resolved;
    if (!(e.rel <= t->worst_rel[di][mi])) t->worst_rel[di][mi] = e.rel;
    if (e.max_abs > t->worst_abs[di][mi]) t->worst_abs[di][mi] = e.max_abs;
    t->ran[di][mi]++;
    if (t->engine == LGH_ENGINE_AUTO && picked < LGH_ENGINE_COUNT) t->auto_picked[picked]++;

    if (!ok || g_verbose) {
        printf("%s %s%s%s: rel %.3g (bound %.0e) max abs %.3g", ok ? "ok  " : "FAIL", what,
               t->engine == LGH_ENGINE_AUTO ? " ran " : "",
               t->engine == LGH_ENGINE_AUTO ? lgh_engine_name(picked) : "", e.rel, bound,
               e.max_abs);
        if (tf32_fl > 0.0)
            printf(" (tf32 floor of these inputs %.3g: bound %.3g)", tf32_fl, y_bound);
        if (e.nonfinite) printf(", %" PRId64 " non-finite (unwritten?)", e.nonfinite);
        if (damage) printf(", %" PRId64 " padding/tail elements of y overwritten", damage);
        if (s->stats) {
            printf("; mean rel %.3g, rstd rel %.3g", em.rel, er.rel);
            if (em.nonfinite || er.nonfinite)
                printf(" (%" PRId64 " non-finite)", em.nonfinite + er.nonfinite);
            if (stat_damage) printf(", %" PRId64 " elements past mean/rstd overwritten", stat_damage);
        }
        printf("\n");
        if (!ok) replay_hint(t, c);
    }
    rc = ok ? 0 : 1;

done:
    tst_buf_free(&x), tst_buf_free(&w), tst_buf_free(&b), tst_buf_free(&g);
    tst_buf_free(&be), tst_buf_free(&y), tst_buf_free(&mean), tst_buf_free(&rstd);
    return rc;
}

static void count(target_t *t, int rc)
{
    if (rc == 0) t->tally.passed++;
    else if (rc == 1) t->tally.failed++;
    else t->tally.skipped++;
}

static void run_case_on(target_t *t, const case_data_t *c)
{
    if (c->dt == LGH_DTYPE_FLOAT32) {
        static const lgh_math_t modes[] = {LGH_MATH_FP32, LGH_MATH_TF32, LGH_MATH_3XTF32};
        for (int i = 0; i < COUNT(modes); ++i) count(t, run_one(t, c, modes[i]));
        /* DEFAULT must mean TF32; once per few shapes is enough to see it resolve. */
        if (c->id % 4 == 0) count(t, run_one(t, c, LGH_MATH_DEFAULT));
    } else {
        count(t, run_one(t, c, LGH_MATH_DEFAULT));
    }
}

/* ---- the checker checks itself ------------------------------------------------------- */

/* The failures the matrix relies on catching, made on purpose on a small y (3 x 5 at
 * ld 7, every dtype). Returns the number of checks that did not behave. */
static int checker_self_test(void)
{
    enum { R = 3, C = 5, LD = 7, TOTAL = R * LD + TAIL };
    double ref[R * C];
    tst_rng_t rng = tst_rng_make(tst_base_seed(), 0xc0ffee);
    int bad = 0;
    for (int d = 0; d < N_DTYPES; ++d) {
        const lgh_dtype_t dt = kDtypes[d];
        uint32_t y[TOTAL]; /* big enough for any dtype */
        tst_poison_matrix(dt, y, R, C, LD, TOTAL);
        tst_err_t e = tst_compare(dt, y, R, C, LD, ref);
        bad += !(e.nonfinite == R * C && !(e.rel <= 1.0)); /* all unwritten: NaN fails */
        for (int r = 0; r < R; ++r)
            for (int c = 0; c < C; ++c) {
                tst_store(dt, y, r * LD + c, tst_uniform(&rng, -2.0, 2.0));
                ref[r * C + c] = tst_load(dt, y, r * LD + c);
            }
        e = tst_compare(dt, y, R, C, LD, ref);
        bad += !(e.rel == 0.0 && e.max_abs == 0.0 && e.nonfinite == 0);
        bad += tst_guard_damage(dt, y, R, C, LD, TOTAL) != 0;
        tst_store(dt, y, 1 * LD + C, 0.0); /* padding after row 1 */
        bad += tst_guard_damage(dt, y, R, C, LD, TOTAL) != 1;
        tst_store_pattern(dt, y, 1 * LD + C, TST_GUARD);
        tst_store(dt, y, R * LD + 3, 0.0); /* the tail */
        bad += tst_guard_damage(dt, y, R, C, LD, TOTAL) != 1;
        tst_store_pattern(dt, y, R * LD + 3, TST_GUARD);
        tst_store_pattern(dt, y, 2 * LD + 4, TST_POISON); /* one element unwritten */
        e = tst_compare(dt, y, R, C, LD, ref);
        bad += !(e.nonfinite == 1 && !(e.rel <= 1.0));
        tst_store(dt, y, 2 * LD + 4, ref[2 * C + 4] + 0.25); /* one element wrong */
        e = tst_compare(dt, y, R, C, LD, ref);
        bad += !(e.rel > tst_bound(dt, LGH_MATH_TF32) && e.max_abs >= 0.2);
    }

    /* The tf32 exception (tf32_floor) must not loosen a well-conditioned case: on a typical
     * shape (M = 128, K = 1024, groups of 64, float32, no bias offset) the floor is nonzero
     * and below two thirds of the bound, so the bound stays 1e-3 there. */
    for (int id = 0; id < g_n_shapes * N_DTYPES; ++id) {
        const dims_t *dd = &g_dims[id / N_DTYPES];
        if (kDtypes[id % N_DTYPES] != LGH_DTYPE_FLOAT32 || dd->m != 128 || dd->k != 1024 || dd->gs != 64 ||
            make_shape(id / N_DTYPES).offset_bias)
            continue;
        case_data_t c;
        const double fl = make_case(&c, id, tst_base_seed()) == 0 ? tf32_floor(&c) : NAN;
        free_case(&c);
        if (g_verbose) printf("checker self-test: tf32 floor of case %d: %.3g\n", id, fl);
        bad += !(fl > 0.0 && 1.5 * fl < tst_bound(LGH_DTYPE_FLOAT32, LGH_MATH_TF32));
        break;
    }
    if (bad) printf("FAIL checker self-test: %d checks did not catch what they must\n", bad);
    return bad;
}

/* ---- set-up of the targets ------------------------------------------------------------ */


/* Creates the context and decides whether the target runs here. */
static tst_setup_t setup_target(target_t *t, tst_gpu_t *gpu)
{
    if (t->staged) tst_set_staged_host(1); /* a CPU context with the GPU tier's buffers */
    return tst_open_target(t->name, t->engine, t->on_gpu && !t->staged, &t->ctx, gpu);
}

static void print_table(const target_t *t)
{
    static const char *const math_names[4] = {"-", "fp32", "tf32", "3xtf32"};
    printf("%s: worst errors against the reference\n", t->name);
    printf("  %-9s %-7s %6s %11s %11s %8s\n", "dtype", "math", "runs", "rel", "max abs",
           "bound");
    for (int d = 0; d < N_DTYPES; ++d) {
        for (int m = 0; m < 4; ++m) {
            if (!t->ran[d][m]) continue;
            printf("  %-9s %-7s %6ld %11.3g %11.3g %8.0e\n", lgh_dtype_name(kDtypes[d]),
                   math_names[m], t->ran[d][m], t->worst_rel[d][m], t->worst_abs[d][m],
                   tst_bound(kDtypes[d], (lgh_math_t)m));
        }
    }
    if (t->engine == LGH_ENGINE_AUTO) {
        printf("  auto chose:");
        for (int e = 0; e < LGH_ENGINE_COUNT; ++e)
            if (t->auto_picked[e])
                printf(" %s x%ld", lgh_engine_name((lgh_engine_t)e), t->auto_picked[e]);
        printf("\n");
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: test_matrix [--engine cpu|cublaslt|sm80|sm90|auto|all|cpu-staged] [--case N] "
            "[--reduced] [--small-m] [--verbose]\n"
            "  Runs lgh_forward over the shape matrix against the double-precision reference.\n"
            "  LGH_TEST_SEED=<n> replays a run's inputs; --case runs one case (shape x dtype).\n");
}

int main(int argc, char **argv)
{
    const char *engine_arg = "cpu";
    int only_case = -1, reduced = 0, small_m = 0;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--small-m")) small_m = 1;
    }
    list_shapes(small_m);
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--engine") && i + 1 < argc) {
            engine_arg = argv[++i];
        } else if (!strcmp(argv[i], "--case") && i + 1 < argc) {
            char *end;
            only_case = (int)strtol(argv[++i], &end, 10);
            if (*end || only_case < 0 || only_case >= g_n_shapes * N_DTYPES) {
                fprintf(stderr, "test_matrix: --case %s: expected 0..%d\n", argv[i],
                        g_n_shapes * N_DTYPES - 1);
                return 2;
            }
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            g_verbose = 1;
        } else if (!strcmp(argv[i], "--reduced")) {
            reduced = 1;
        } else if (!strcmp(argv[i], "--small-m")) {
            /* (read above: it decides the shape list) */
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "test_matrix: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    target_t targets[6];
    int nt = 0;
    /* cpu-staged: the CPU engine with every buffer moved through the GPU tier's upload
     * and download path (host memory standing in for the device), so that path is
     * exercised where there is no GPU. Not part of "all": it changes every device buffer
     * of the process into host memory. */
    static const struct {
        const char *name;
        lgh_engine_t engine;
        int on_gpu, must_take, staged;
    } known[] = {{"cpu", LGH_ENGINE_CPU, 0, 1, 0},
                 {"cublaslt", LGH_ENGINE_CUBLASLT, 1, 1, 0},
                 {"sm80", LGH_ENGINE_SM80, 1, 0, 0},
                 {"sm90", LGH_ENGINE_SM90, 1, 0, 0},
                 {"auto", LGH_ENGINE_AUTO, 1, 1, 0},
                 {"cpu-staged", LGH_ENGINE_CPU, 1, 1, 1}};
    for (int i = 0; i < COUNT(known); ++i) {
        if (known[i].staged ? strcmp(engine_arg, known[i].name)
                            : strcmp(engine_arg, "all") && strcmp(engine_arg, known[i].name))
            continue;
        memset(&targets[nt], 0, sizeof targets[nt]);
        targets[nt].name = known[i].name;
        targets[nt].engine = known[i].engine;
        targets[nt].on_gpu = known[i].on_gpu;
        targets[nt].must_take = known[i].must_take;
        targets[nt].staged = known[i].staged;
        ++nt;
    }
    if (nt == 0) {
        fprintf(stderr, "test_matrix: unknown engine '%s'\n", engine_arg);
        usage(stderr);
        return 2;
    }

    char title[64];
    snprintf(title, sizeof title, "test_matrix[%s]", engine_arg);
    tst_print_seed(title);
    /* LGH_ENGINE replaces AUTO: the auto target then runs that engine, and may skip
     * what it cannot run only if that engine may (sm80, sm90). */
    const char *env = getenv("LGH_ENGINE");
    lgh_engine_t env_engine = LGH_ENGINE_AUTO;
    if (env && *env && lgh_engine_from_name(env, &env_engine) == LGH_STATUS_SUCCESS &&
        env_engine != LGH_ENGINE_AUTO) {
        printf("note: LGH_ENGINE=%s is set; it replaces AUTO on the auto target\n", env);
        for (int i = 0; i < nt; ++i) {
            if (targets[i].engine != LGH_ENGINE_AUTO) continue;
            targets[i].env_engine = env_engine;
            targets[i].must_take = env_engine == LGH_ENGINE_CPU || env_engine == LGH_ENGINE_CUBLASLT;
        }
    }

    const int self_bad = checker_self_test();

    tst_gpu_t gpu = {NULL, 0};
    int setup_failed = 0;
    target_t *active[6];
    int na = 0;
    for (int i = 0; i < nt; ++i) {
        tst_setup_t s = setup_target(&targets[i], &gpu);
        if (s == TST_SETUP_OK) active[na++] = &targets[i];
        if (s == TST_SETUP_FAIL) setup_failed = 1;
    }

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int ref_failures = 0;
    if (na > 0) {
        for (int id = 0; id < g_n_shapes * N_DTYPES; ++id) {
            if (only_case >= 0 && id != only_case) continue;
            const dims_t *d = &g_dims[id / N_DTYPES];
            if (reduced && !small_m && !((d->m == 7 || d->m == 128) && (d->k == 8 || d->k == 100))) continue;
            if (reduced && small_m && !((d->m == 1 || d->m == 33 || d->m == 128) && d->k == 520)) continue;
            case_data_t c;
            if (make_case(&c, id, tst_base_seed())) {
                printf("FAIL case %d: could not build inputs or the reference\n", id);
                ++ref_failures;
                free_case(&c);
                continue;
            }
            for (int i = 0; i < na; ++i) run_case_on(active[i], &c);
            free_case(&c);
        }
    }
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);

    tst_tally_t total = {0, ref_failures + setup_failed, 0};
    if (self_bad) total.failed++;
    for (int i = 0; i < na; ++i) {
        print_table(active[i]);
        if (active[i]->tally.skipped)
            printf("%s: %ld runs skipped: the engine answered NOT_SUPPORTED (run with "
                   "--verbose for each reason)\n",
                   active[i]->name, active[i]->tally.skipped);
        total.passed += active[i]->tally.passed;
        total.failed += active[i]->tally.failed;
        total.skipped += active[i]->tally.skipped;
        tst_buf_free(&active[i]->ws);
    }
    for (int i = 0; i < nt; ++i)
        if ((!targets[i].on_gpu || targets[i].staged) && targets[i].ctx) lgh_destroy(targets[i].ctx);
    if (gpu.ctx) lgh_destroy(gpu.ctx);

    printf("time: %.1f s\n",
           (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec));
    tst_summary(title, &total);
    if (total.failed) return 1;
    if (total.passed == 0) return TST_EXIT_SKIP; /* nothing ran here: say so to ctest */
    return 0;
}
