/*
 * test_special_backward: special values (NaN, +Inf, -Inf) through lgh_backward. One value
 * is planted in dy, x, W, b, γ or β; lgh_forward saves what the backward needs (mean, rstd
 * and the pre-norm h, or mean and rstd only, so that the backward recomputes h); then
 * lgh_backward computes all five gradients, and each gradient's pattern of NaN and
 * infinities and its finite values are checked against the double-precision oracle
 * (lgh_reference_backward), which applies lgh.h's formulas as they stand:
 *
 *   dz = dy unless z <= lo or z >= hi (a NaN z passes dy), then the GroupNorm backward.
 *
 * What that gives (docs/PRECISION.md, "Special values", the backward), with c in group g:
 *
 *   dy[r, c] special, z[r, c] clamped   -> nothing changes: every gradient finite
 *   dy[r, c] = NaN, not clamped         -> dx row r, dW rows of g, db[g], dγ[c], dβ[c] NaN
 *   dy[r, c] = ±Inf, not clamped        -> the same elements non-finite: dβ[c] = that ±Inf,
 *                                          dx row r NaN; dγ[c], db[g], dW rows of g ±Inf or
 *                                          NaN, from the signs of x̂ (Inf − Inf is NaN)
 *   x[r, k] special                     -> dx row r, all of dW, db, dγ NaN; dβ finite
 *   W[c, k] or b[c] special             -> all of dx, dW rows of g, db[g], dγ[g] NaN; dβ finite
 *   γ[c] = NaN                          -> all of dx, dW rows of g, db[g] NaN; dγ, dβ finite
 *   γ[c] = ±Inf                         -> as γ = NaN: z[:, c] = (h − mean)·rstd·γ + β is
 *                                          ±Inf, clamped, so dz = 0 and 0·γ is NaN in every
 *                                          row; dγ[c] = dβ[c] = 0
 *   β[c] = NaN                          -> every gradient finite: z[:, c] is NaN, so channel c
 *                                          passes dy in every row (dβ[c] = Σ_r dy[r, c])
 *   β[c] = ±Inf                         -> every gradient finite: z[:, c] = ±Inf is clamped,
 *                                          dγ[c] = dβ[c] = 0
 *
 * The test first checks that the oracle itself follows this table (a documentation check,
 * per case), then holds each engine to the oracle element by element.
 *
 *   test_special_backward [--engine cpu|cpu-staged|cublaslt|sm80|sm90|auto] [--case N] [--verbose]
 *
 * Shapes (M, K, N, G): 9x16x48x3, clamp [-1, 0.75] (many clamped elements); 33x24x256x1,
 * clamp [-2, 2], one wide group, with aligned padding on every matrix (guards checked);
 * 9x16x48x3 with an infinite clamp [-Inf, +Inf] (only an infinite z is clamped). Each shape
 * runs in every dtype with fresh random inputs (as test_backward: x in [0, 1), nn.Linear's
 * W, b and β in [-0.5, 0.5), γ in [0.5, 1.5), dy in [-1, 1)), and one special value is
 * planted per case:
 *   dy at rows {0, last} x groups {first, last} x elements {first, last of the group}
 *      (moved along the group past elements whose z is near lo / hi, see below), and, with
 *      a finite clamp, at an element whose z is clamped and at one whose z passes;
 *   x at rows {0, middle, last} x k {0, last};
 *   W at the first and last channel of the first and last group x k {0, last};
 *   b, γ and β at those channels;
 * each position with NaN, +Inf and -Inf. float32 runs fp32, tf32 and 3xtf32. Case numbers
 * enumerate shape x dtype x position x value in that order; case i always gets the same
 * inputs for the same LGH_TEST_SEED.
 *
 * Every (case, math) runs twice, with h saved and with h recomputed (mean and rstd saved
 * in both). Each runs lgh_forward once (outputs poisoned first) and lgh_backward twice:
 * with the gradients poisoned with NaN, then with a finite sentinel (12345), because under
 * NaN poison an unwritten element is indistinguishable from an expected NaN. Each call is
 * checked element by element:
 *   - where the oracle is finite, the engine is finite, and the relative Frobenius error
 *     of those elements is within the bound: 1e-5 fp32 / 3xtf32, 1e-3 tf32 (past it, 1e-3
 *     plus the error exact arithmetic makes on tf32-rounded x and W, as test_backward),
 *     2e-2 bfloat16 / float16;
 *   - where the oracle is NaN, the engine is NaN; where it is ±Inf, the engine has the
 *     same infinity (isnan and infinities compared strictly, except for the two
 *     allowances below);
 *   - no element holds the sentinel after the second call; padding and the tail after
 *     each gradient are untouched.
 *
 * dy is 0 where the oracle's z is within 1e-2 (float32) or 5e-2 (16-bit) of lo or hi,
 * relative to max(1, |lo|, |hi|) (lgh_reference_near_clamp says why: an engine's z a
 * rounding error away may fall on the other side of the clamp), and, for γ[c] = ±Inf, at
 * the elements of channel c where an engine's h − mean may be exactly 0 and so its z NaN
 * (passing dy) rather than ±Inf (clamped): |h − mean| within the engine's rounding, as
 * test_special. There dz = 0 either way, and 0·γ is NaN either way.
 *
 * The two allowances, where the oracle is non-finite and an engine may correctly give
 * another non-finite value; nowhere else:
 *   1. Signs of x̂. When a (row, group) holds one infinite dz·γ (dy = ±Inf; γ = ±Inf gives
 *      none, its z being clamped), m1 = mean(dz·γ) and m2 = mean(dz·γ·x̂) are infinite and
 *      dh = rstd·(dz·γ − m1 − x̂·m2) is, per element, ±Inf or NaN (Inf − Inf) from the sign
 *      of x̂ of that element and of the infinite one; dγ[c] = Σ dz·x̂ likewise. Where such
 *      an |x̂| is within an engine's rounding of zero (|h − mean| within the product's
 *      error bound, plus twice the rounding of |h| to a 16-bit dtype, which the backward
 *      may take; the CPU engine, float32 in every mode, is held to fp32's), the engine may
 *      see the other sign. Those elements, and the sums and products they reach unless a
 *      certain NaN reaches them too, must be non-finite, of any kind. Everything else,
 *      including every NaN that comes from a NaN, an x̂ of NaN or a 0·Inf, is strict.
 *   2. 3xtf32 split products. The sm80 / sm90 engines compute a 3xtf32 product by
 *      splitting each operand into a tf32 high part and the remainder; for an infinite
 *      dh the remainder is Inf − Inf = NaN, so dW = dhᵀ·x (and dx = dh·W) is NaN where the
 *      exact product is ±Inf. In 3xtf32 on those engines (as the backward plan reports
 *      them), a ±Inf of the oracle's dx or dW may therefore be NaN (never finite, never
 *      the other infinity). cuBLASLt computes 3xtf32 in float32 and the CPU engine in
 *      float32: strict there.
 * Sums of infinities do not need an allowance: with one planted value, every sum has at
 * most one infinite term per row, or terms whose NaN-ness does not depend on the order of
 * the additions (Inf + (−Inf) and NaN + anything are NaN in any order).
 *
 * Engines: cpu on a CPU context (cpu-staged: the same, with every buffer moved through the
 * GPU tier's upload and download); cublaslt, sm80, sm90 and auto on CUDA device 0. Without a
 * device the GPU engines print "GPU tier: skipped (no CUDA device)" and exit 77 (ctest
 * SKIP_RETURN_CODE). cpu and auto must take every case; a forced GPU engine may answer
 * LGH_STATUS_NOT_SUPPORTED (a counted skip, after which nothing may have been written);
 * a forward the forced engine refuses runs on AUTO (the backward is what is tested).
 * Exit: 0 all passed (some may be skipped), 1 a failure, 77 nothing ran.
 *
 * Before the cases, the checker checks itself: a NaN turned finite, a NaN turned
 * infinite, a wrong infinity, an infinity where a finite value belongs, a finite value
 * where the allowance asks for a non-finite one, an unwritten sentinel and a wrong finite
 * value must each be caught, and the allowances must allow what they say and no more.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/norm_output.h"
#include "cpu/reference.h"
#include "lgh.h"
#include "support/tst.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const lgh_dtype_t kDtypes[] = {LGH_DTYPE_FLOAT32, LGH_DTYPE_BFLOAT16, LGH_DTYPE_FLOAT16};
#define N_DTYPES COUNT(kDtypes)

/* The finite sentinel of the second call: no gradient here comes near it (|dy| < 1, at most
 * 33 rows, and rstd of a few units on these random inputs). */
#define SENTINEL 12345.0

/* Elements after the last row of each gradient that must stay untouched. */
enum { TAIL = 16 };

/* ---- shapes and planted values ------------------------------------------------------------ */

typedef struct shape {
    int64_t m, k, n, groups;
    int pad;       /* 0 packed, 1 aligned padding (16 bytes for every dtype) */
    double lo, hi; /* the clamp (may be infinite) */
    const char *why;
} shape_t;

static const shape_t kShapes[] = {
    {9, 16, 48, 3, 0, -1.0, 0.75, "groups of 16, a tight clamp"},
    {33, 24, 256, 1, 1, -2.0, 2.0, "one group of 256, padded"},
    {9, 16, 48, 3, 0, -INFINITY, INFINITY, "infinite clamp"},
};
#define N_SHAPES COUNT(kShapes)
static const float kEps = 1e-5f;

enum { GR_DX, GR_DW, GR_DB, GR_DG, GR_DBE, N_GRADS };
static const char *const kGradNames[N_GRADS] = {"dx", "dW", "db", "dgamma", "dbeta"};

typedef enum where { AT_DY, AT_X, AT_W, AT_B, AT_GAMMA, AT_BETA, N_WHERE } where_t;
static const char *const kWhereName[N_WHERE] = {"dy", "x", "W", "b", "gamma", "beta"};

static const double kValues[] = {NAN, INFINITY, -INFINITY};
#define N_VALUES COUNT(kValues)

/* dy positions: a listed one (row, group, element), or one found on the case's data. */
typedef enum dy_kind { DY_AT, DY_CLAMPED, DY_PASSING } dy_kind_t;

typedef struct plant {
    where_t where;
    int64_t row, col; /* dy, x, W: (row, column); b / γ / β: (0, channel) */
    dy_kind_t kind;   /* dy only */
    int value;        /* index into kValues */
} plant_t;

static int64_t ldx_of(const shape_t *s) { return s->pad ? s->k + 8 : s->k; }
static int64_t ldw_of(const shape_t *s) { return s->pad ? s->k + 16 : s->k; }
static int64_t lddy_of(const shape_t *s) { return s->pad ? s->n + 8 : s->n; }
static int64_t ldh_of(const shape_t *s) { return s->pad ? s->n + 16 : s->n; }
static int64_t lddx_of(const shape_t *s) { return s->pad ? s->k + 8 : s->k; }
static int64_t lddw_of(const shape_t *s) { return s->pad ? s->k + 24 : s->k; }

static int finite_clamp(const shape_t *s) { return isfinite(s->lo) && isfinite(s->hi); }

/* Adds v to list[*n] unless already there. */
static void add_unique(int64_t *list, int *n, int64_t v)
{
    for (int i = 0; i < *n; ++i)
        if (list[i] == v) return;
    list[(*n)++] = v;
}

/* The positions of a shape, each with every value, in a fixed order (part of the case
 * number). Returns the count; out may be NULL. */
static int list_plants(const shape_t *s, plant_t *out)
{
    int64_t rows3[3], rows2[2], ks[2], grps[2], elems[2], chans[4];
    int n3 = 0, n2 = 0, nk = 0, ng = 0, ne = 0, nc = 0;
    const int64_t gs = s->n / s->groups;
    add_unique(rows3, &n3, 0), add_unique(rows3, &n3, s->m / 2), add_unique(rows3, &n3, s->m - 1);
    add_unique(rows2, &n2, 0), add_unique(rows2, &n2, s->m - 1);
    add_unique(ks, &nk, 0), add_unique(ks, &nk, s->k - 1);
    add_unique(grps, &ng, 0), add_unique(grps, &ng, s->groups - 1);
    add_unique(elems, &ne, 0), add_unique(elems, &ne, gs - 1);
    for (int g = 0; g < ng; ++g)
        for (int e = 0; e < ne; ++e) add_unique(chans, &nc, grps[g] * gs + elems[e]);
    int count = 0;
#define PUT(w_, r_, c_, kind_)                                                 \
    for (int v_ = 0; v_ < N_VALUES; ++v_, ++count)                             \
        if (out) out[count] = (plant_t){(w_), (r_), (c_), (kind_), v_};
    for (int i = 0; i < n2; ++i)
        for (int g = 0; g < ng; ++g)
            for (int e = 0; e < ne; ++e) PUT(AT_DY, rows2[i], grps[g] * gs + elems[e], DY_AT);
    if (finite_clamp(s)) {
        PUT(AT_DY, -1, -1, DY_CLAMPED);
        PUT(AT_DY, -1, -1, DY_PASSING);
    }
    for (int i = 0; i < n3; ++i)
        for (int j = 0; j < nk; ++j) PUT(AT_X, rows3[i], ks[j], DY_AT);
    for (int i = 0; i < nc; ++i)
        for (int j = 0; j < nk; ++j) PUT(AT_W, chans[i], ks[j], DY_AT);
    for (int w = AT_B; w <= AT_BETA; ++w)
        for (int i = 0; i < nc; ++i) PUT((where_t)w, 0, chans[i], DY_AT);
#undef PUT
    return count;
}

/* Case ids: shape-major, then dtype, then plant. */
static int g_case_base[N_SHAPES + 1];

static void number_cases(void)
{
    g_case_base[0] = 0;
    for (int s = 0; s < N_SHAPES; ++s)
        g_case_base[s + 1] = g_case_base[s] + N_DTYPES * list_plants(&kShapes[s], NULL);
}

static int n_cases(void) { return g_case_base[N_SHAPES]; }

/* ---- one case: host data, the planted value, the oracle, the allowances ------------------ */

/* Math modes by lgh_math_t index; DEFAULT stands for the 16-bit dtypes. */
enum { N_MODES = 4 };

typedef struct case_data {
    int id;
    const shape_t *s;
    lgh_dtype_t dt;
    plant_t p;       /* dy: row / col resolved on the data */
    int dy_clamped;  /* dy plant: whether z at the position is clamped */
    int64_t ldx, ldw, lddy, ldh, lddx, lddw;
    size_t x_elems, w_elems, dy_elems, h_elems, out_elems[N_GRADS];
    void *x, *w, *bias, *gamma, *beta, *dy; /* host, dtype dt */
    double *ref[N_GRADS];                   /* packed: dx [m][k], dW [n][k], vectors [n] */
    /* Allowance 1 per math mode (NULL where the mode does not apply to the dtype): 1 where
     * the oracle's non-finite element may be any non-finite value. */
    unsigned char *loose[N_MODES][N_GRADS];
    int64_t near;     /* elements of dy zeroed near lo / hi or where a γ = ±Inf z may be NaN */
} case_data_t;

static int64_t grad_rows(const shape_t *s, int q)
{
    return q == GR_DX ? s->m : q == GR_DW ? s->n : 1;
}
static int64_t grad_cols(const shape_t *s, int q) { return q <= GR_DW ? s->k : s->n; }
static int64_t grad_ld(const case_data_t *c, int q)
{
    return q == GR_DX ? c->lddx : q == GR_DW ? c->lddw : c->s->n;
}

static void free_case(case_data_t *c)
{
    free(c->x), free(c->w), free(c->bias), free(c->gamma), free(c->beta), free(c->dy);
    for (int q = 0; q < N_GRADS; ++q) {
        free(c->ref[q]);
        for (int m = 0; m < N_MODES; ++m) free(c->loose[m][q]);
    }
    memset(c, 0, sizeof *c);
}

static lgh_args_t host_args(const case_data_t *c)
{
    const shape_t *s = c->s;
    lgh_args_t a;
    lgh_args_init(&a, s->m, s->k, s->n, s->groups);
    a.dtype = c->dt;
    a.eps = kEps, a.lo = (float)s->lo, a.hi = (float)s->hi;
    a.x = c->x, a.w = c->w, a.bias = c->bias, a.gamma = c->gamma, a.beta = c->beta;
    a.ldx = c->ldx, a.ldw = c->ldw;
    return a;
}

static lgh_backward_args_t host_backward_args(const case_data_t *c)
{
    lgh_backward_args_t b;
    memset(&b, 0, sizeof b);
    b.fwd = host_args(c);
    b.dy = c->dy;
    b.lddy = c->lddy;
    return b;
}

static const char *value_name(int v) { return v == 0 ? "NaN" : v == 1 ? "+Inf" : "-Inf"; }

static void describe_plant(char *buf, size_t len, const case_data_t *c)
{
    const plant_t *p = &c->p;
    const char *v = value_name(p->value);
    const int64_t gs = c->s->n / c->s->groups;
    switch (p->where) {
    case AT_DY:
        snprintf(buf, len, "dy[%" PRId64 ",%" PRId64 "]=%s (group %" PRId64 " element %" PRId64
                 ", z %s)", p->row, p->col, v, p->col / gs, p->col % gs,
                 c->dy_clamped ? "clamped" : "passing");
        break;
    case AT_X: snprintf(buf, len, "x[%" PRId64 ",%" PRId64 "]=%s", p->row, p->col, v); break;
    case AT_W: snprintf(buf, len, "W[%" PRId64 ",%" PRId64 "]=%s", p->row, p->col, v); break;
    default: snprintf(buf, len, "%s[%" PRId64 "]=%s", kWhereName[p->where], p->col, v); break;
    }
}

static double near_tolerance(lgh_dtype_t dt) { return dt == LGH_DTYPE_FLOAT32 ? 1e-2 : 5e-2; }

/* A bound on how far an engine's h = x·w + b may be from the exact one, relative to
 * Σ|x·w| + |b|, per math mode (index lgh_math_t; DEFAULT = the 16-bit dtypes, whose
 * operands are exact and whose products accumulate in float32), as test_special's. */
static const double kProductTol[N_MODES] = {1e-4, 1e-5, 4e-3, 1e-5};

/* The forward state in double on the planted inputs (the oracle's formulas; summation
 * order aside): what the test needs to place dy and to know which signs are fragile. */
typedef struct model {
    double *h, *sc, *z, *xh; /* [m][n]: h, Σ|x·w| + |b|, z, x̂ */
    double *mu, *rs, *msc, *mabs; /* [m][groups]: mean, rstd, mean of sc, mean of |h| */
} model_t;

static void free_model(model_t *md)
{
    free(md->h), free(md->sc), free(md->z), free(md->xh);
    free(md->mu), free(md->rs), free(md->msc), free(md->mabs);
}

static int make_model(const case_data_t *c, model_t *md)
{
    const shape_t *s = c->s;
    const int64_t m = s->m, n = s->n, G = s->groups, gs = n / G;
    const size_t mn = (size_t)(m * n), mg = (size_t)(m * G);
    md->h = malloc(mn * sizeof(double)), md->sc = malloc(mn * sizeof(double));
    md->z = malloc(mn * sizeof(double)), md->xh = malloc(mn * sizeof(double));
    md->mu = malloc(mg * sizeof(double)), md->rs = malloc(mg * sizeof(double));
    md->msc = malloc(mg * sizeof(double)), md->mabs = malloc(mg * sizeof(double));
    if (!md->h || !md->sc || !md->z || !md->xh || !md->mu || !md->rs || !md->msc || !md->mabs)
        return -1;
    for (int64_t r = 0; r < m; ++r)
        for (int64_t j = 0; j < n; ++j) {
            const double b = tst_load(c->dt, c->bias, j);
            double acc = 0.0, mag = 0.0;
            for (int64_t k = 0; k < s->k; ++k) {
                const double t = tst_load(c->dt, c->x, r * c->ldx + k) *
                                 tst_load(c->dt, c->w, j * c->ldw + k);
                acc += t, mag += fabs(t);
            }
            md->h[r * n + j] = acc + b, md->sc[r * n + j] = mag + fabs(b);
        }
    for (int64_t r = 0; r < m; ++r)
        for (int64_t g = 0; g < G; ++g) {
            const double *v = md->h + r * n + g * gs;
            double sum = 0.0, m2 = 0.0, sc = 0.0, ab = 0.0;
            for (int64_t j = 0; j < gs; ++j) sum += v[j];
            const double mu = sum / (double)gs;
            for (int64_t j = 0; j < gs; ++j) {
                m2 += (v[j] - mu) * (v[j] - mu);
                sc += md->sc[r * n + g * gs + j], ab += fabs(v[j]);
            }
            const double rs = 1.0 / sqrt(m2 / (double)gs + (double)kEps);
            md->mu[r * G + g] = mu, md->rs[r * G + g] = rs;
            md->msc[r * G + g] = sc / (double)gs, md->mabs[r * G + g] = ab / (double)gs;
            for (int64_t j = 0; j < gs; ++j) {
                const int64_t col = g * gs + j;
                md->xh[r * n + col] = (v[j] - mu) * rs;
                md->z[r * n + col] = lgh_norm_affine_d(v[j], mu, rs, tst_load(c->dt, c->gamma, col),
                                                       tst_load(c->dt, c->beta, col));
            }
        }
    return 0;
}

/* Twice the relative rounding of a 16-bit h (half an ulp: 2^-8 bfloat16, 2^-11 float16):
 * the backward may take h rounded to the dtype (saved), and its statistics from that h. */
static double rounding_of_h(lgh_dtype_t dt)
{
    return dt == LGH_DTYPE_BFLOAT16 ? 1.0 / 128.0 : dt == LGH_DTYPE_FLOAT16 ? 1.0 / 1024.0 : 0.0;
}

/* Whether an engine in math mode `mode` may see the other sign of x̂ at (r, col). */
static int xhat_sign_fragile(const case_data_t *c, const model_t *md, int mode, int64_t r,
                             int64_t col)
{
    const int64_t G = c->s->groups, n = c->s->n, t = r * G + col / (n / G);
    const double d = fabs(md->h[r * n + col] - md->mu[t]);
    double tol = kProductTol[mode] * (md->sc[r * n + col] + md->msc[t]);
    tol += (fabs(md->h[r * n + col]) + md->mabs[t]) * rounding_of_h(c->dt);
    return !(d > tol);
}

/* For γ[col] = ±Inf: whether an engine's z at (r, col) may be NaN (h − mean exactly 0 in
 * its arithmetic) where the oracle's is ±Inf, or the reverse: |h − mean| within the
 * rounding of the dtype's loosest mode (as test_special's ambiguous_elements). z = ±Inf of
 * either sign is clamped, so only that matters, not the sign. */
static int gamma_inf_z_fragile(const case_data_t *c, const model_t *md, int64_t r, int64_t col)
{
    return xhat_sign_fragile(c, md, c->dt == LGH_DTYPE_FLOAT32 ? LGH_MATH_TF32 : LGH_MATH_DEFAULT,
                             r, col);
}

/* Allowance 1 for one math mode (see the header): per element of each gradient, whether
 * the oracle's non-finite value may be another non-finite value. Classifies dh per
 * element as finite, certain NaN, or fragile, and propagates that through the sums and
 * products (a certain NaN wins over a fragile term). */
enum { DH_FINITE = 0, DH_NAN = 1, DH_FRAGILE = 2, DH_FIXED = 3 /* non-finite, sign certain */ };

static int loose_masks(case_data_t *c, const model_t *md, int mode)
{
    const shape_t *s = c->s;
    const int64_t m = s->m, n = s->n, k = s->k, G = s->groups, gs = n / G;
    const double lo = (double)(float)s->lo, hi = (double)(float)s->hi;
    unsigned char *cls = calloc((size_t)(m * n), 1);
    unsigned char *dg_term = calloc((size_t)(m * n), 1); /* dz·x̂ terms of dγ */
    if (!cls || !dg_term) {
        free(cls), free(dg_term);
        return -1;
    }
    for (int q = 0; q < N_GRADS; ++q) {
        c->loose[mode][q] = calloc((size_t)(grad_rows(s, q) * grad_cols(s, q)), 1);
        if (!c->loose[mode][q]) {
            free(cls), free(dg_term);
            return -1;
        }
    }
    for (int64_t r = 0; r < m; ++r)
        for (int64_t g = 0; g < G; ++g) {
            int nan_row = 0, n_inf = 0;
            int64_t inf_col = -1;
            for (int64_t j = 0; j < gs; ++j) {
                const int64_t col = g * gs + j;
                const double z = md->z[r * n + col];
                const double dz = (z <= lo || z >= hi) ? 0.0 : tst_load(c->dt, c->dy, r * c->lddy + col);
                const double gv = dz * tst_load(c->dt, c->gamma, col), xh = md->xh[r * n + col];
                if (isnan(gv) || isnan(xh)) nan_row = 1;
                else if (isinf(gv)) ++n_inf, inf_col = col;
                /* dγ's term dz·x̂: NaN from a NaN is certain; ±Inf·x̂ (NaN for an x̂ of 0) is
                 * fragile where x̂'s sign is. */
                const double term = dz * xh;
                const int inf_times_xh = isinf(dz) && !isnan(xh);
                unsigned char tc = DH_FINITE;
                if (inf_times_xh) tc = xhat_sign_fragile(c, md, mode, r, col) ? DH_FRAGILE : DH_FIXED;
                if (isnan(term) && !inf_times_xh) tc = DH_NAN;
                dg_term[r * n + col] = tc;
            }
            for (int64_t j = 0; j < gs; ++j) {
                const int64_t col = g * gs + j;
                unsigned char v = DH_FINITE;
                if (nan_row) v = DH_NAN;
                else if (n_inf > 1) v = DH_FRAGILE; /* not with one planted value */
                else if (n_inf == 1)
                    v = col == inf_col ? DH_NAN
                        : (xhat_sign_fragile(c, md, mode, r, col) ||
                           xhat_sign_fragile(c, md, mode, r, inf_col)) ? DH_FRAGILE : DH_FIXED;
                cls[r * n + col] = v;
            }
        }
    /* db[c], dW[c, :]: over the rows of column c; dx[r, :]: over the columns of row r;
     * dγ[c]: over its terms. Loose where a fragile term reaches and no certain NaN does. */
    for (int64_t col = 0; col < n; ++col) {
        int any_nan = 0, any_frag = 0, g_nan = 0, g_frag = 0;
        for (int64_t r = 0; r < m; ++r) {
            any_nan |= cls[r * n + col] == DH_NAN, any_frag |= cls[r * n + col] == DH_FRAGILE;
            g_nan |= dg_term[r * n + col] == DH_NAN, g_frag |= dg_term[r * n + col] == DH_FRAGILE;
        }
        const unsigned char l = any_frag && !any_nan;
        c->loose[mode][GR_DB][col] = l;
        for (int64_t kk = 0; kk < k; ++kk) c->loose[mode][GR_DW][col * k + kk] = l;
        c->loose[mode][GR_DG][col] = g_frag && !g_nan;
    }
    for (int64_t r = 0; r < m; ++r) {
        int any_nan = 0, any_frag = 0;
        for (int64_t col = 0; col < n; ++col)
            any_nan |= cls[r * n + col] == DH_NAN, any_frag |= cls[r * n + col] == DH_FRAGILE;
        for (int64_t kk = 0; kk < k; ++kk) c->loose[mode][GR_DX][r * k + kk] = any_frag && !any_nan;
    }
    free(cls), free(dg_term);
    return 0;
}

/* Places a dy plant on the data: a listed position moves along its group (wrapping) past
 * elements whose z is near the clamp; a clamped / passing one is the first such element,
 * row-major from the middle row. Returns -1 when there is none. */
static int place_dy(case_data_t *c, const model_t *md, const unsigned char *near)
{
    const shape_t *s = c->s;
    const int64_t m = s->m, n = s->n, gs = n / s->groups;
    const double lo = (double)(float)s->lo, hi = (double)(float)s->hi;
    if (c->p.kind == DY_AT) {
        const int64_t r = c->p.row, c0 = c->p.col / gs * gs, e0 = c->p.col - c0;
        for (int64_t i = 0; i < gs; ++i) {
            const int64_t col = c0 + (e0 + i) % gs;
            if (near[r * n + col]) continue;
            c->p.col = col;
            return 0;
        }
        return -1;
    }
    for (int64_t i = 0; i < m * n; ++i) {
        const int64_t at = (i + (m / 2) * n) % (m * n), r = at / n, col = at % n;
        const double z = md->z[at];
        if (near[at] || isnan(z)) continue;
        const int clamped = z <= lo || z >= hi;
        if (clamped == (c->p.kind == DY_CLAMPED)) {
            c->p.row = r, c->p.col = col;
            return 0;
        }
    }
    return -1;
}

static int make_case(case_data_t *c, int id, uint64_t seed, char *why, size_t why_len)
{
    memset(c, 0, sizeof *c);
    c->id = id;
    snprintf(why, why_len, "out of host memory");
    int si = 0;
    while (id >= g_case_base[si + 1]) ++si;
    const shape_t *s = &kShapes[si];
    c->s = s;
    const int within = id - g_case_base[si];
    const int np = list_plants(s, NULL);
    c->dt = kDtypes[within / np];
    plant_t *plants = malloc((size_t)np * sizeof *plants);
    if (!plants) return -1;
    list_plants(s, plants);
    c->p = plants[within % np];
    free(plants);
    c->ldx = ldx_of(s), c->ldw = ldw_of(s), c->lddy = lddy_of(s), c->ldh = ldh_of(s);
    c->lddx = lddx_of(s), c->lddw = lddw_of(s);

    const size_t eb = tst_elem_bytes(c->dt);
    c->x_elems = (size_t)((s->m - 1) * c->ldx + s->k);
    c->w_elems = (size_t)((s->n - 1) * c->ldw + s->k);
    c->dy_elems = (size_t)((s->m - 1) * c->lddy + s->n);
    c->h_elems = (size_t)(s->m * c->ldh + TAIL);
    for (int q = 0; q < N_GRADS; ++q)
        c->out_elems[q] = (size_t)(grad_rows(s, q) * grad_ld(c, q) + TAIL);
    c->x = malloc(c->x_elems * eb);
    c->w = malloc(c->w_elems * eb);
    c->bias = malloc((size_t)s->n * eb);
    c->gamma = malloc((size_t)s->n * eb);
    c->beta = malloc((size_t)s->n * eb);
    c->dy = malloc(c->dy_elems * eb);
    int bad = !c->x || !c->w || !c->bias || !c->gamma || !c->beta || !c->dy;
    for (int q = 0; q < N_GRADS; ++q) {
        c->ref[q] = malloc((size_t)(grad_rows(s, q) * grad_cols(s, q)) * sizeof(double));
        bad |= !c->ref[q];
    }
    if (bad) return -1;

    /* As test_backward; input padding holds a NaN guard, so an engine that reads it fails. */
    tst_rng_t r = tst_rng_make(seed, (uint64_t)id);
    const double wb = 1.0 / sqrt((double)s->k);
    tst_fill_matrix(c->dt, c->x, s->m, s->k, c->ldx, (int64_t)c->x_elems, &r, 0.0, 1.0);
    tst_fill_matrix(c->dt, c->w, s->n, s->k, c->ldw, (int64_t)c->w_elems, &r, -wb, wb);
    tst_fill_matrix(c->dt, c->bias, 1, s->n, s->n, s->n, &r, -0.5, 0.5);
    tst_fill_matrix(c->dt, c->gamma, 1, s->n, s->n, s->n, &r, 0.5, 1.5);
    tst_fill_matrix(c->dt, c->beta, 1, s->n, s->n, s->n, &r, -0.5, 0.5);
    tst_fill_matrix(c->dt, c->dy, s->m, s->n, c->lddy, (int64_t)c->dy_elems, &r, -1.0, 1.0);

    const double v = kValues[c->p.value];
    switch (c->p.where) {
    case AT_DY: break; /* after dy is zeroed near the clamp */
    case AT_X: tst_store(c->dt, c->x, c->p.row * c->ldx + c->p.col, v); break;
    case AT_W: tst_store(c->dt, c->w, c->p.row * c->ldw + c->p.col, v); break;
    case AT_B: tst_store(c->dt, c->bias, c->p.col, v); break;
    case AT_GAMMA: tst_store(c->dt, c->gamma, c->p.col, v); break;
    case AT_BETA: tst_store(c->dt, c->beta, c->p.col, v); break;
    default: break;
    }

    model_t md;
    memset(&md, 0, sizeof md);
    unsigned char *near = calloc((size_t)(s->m * s->n), 1);
    int rc = -1;
    if (!near || make_model(c, &md) != 0) goto out;

    /* dy = 0 near the clamp (an infinite clamp has nothing near it: a finite z cannot
     * reach it) and at the γ = ±Inf elements whose z an engine may see as NaN. */
    lgh_args_t a = host_args(c);
    if (finite_clamp(s) && lgh_reference_near_clamp(&a, near_tolerance(c->dt), near, NULL) != 0) {
        snprintf(why, why_len, "lgh_reference_near_clamp failed");
        goto out;
    }
    if (c->p.where == AT_GAMMA && c->p.value != 0)
        for (int64_t row = 0; row < s->m; ++row)
            if (gamma_inf_z_fragile(c, &md, row, c->p.col)) near[row * s->n + c->p.col] = 1;
    for (int64_t i = 0; i < s->m; ++i)
        for (int64_t j = 0; j < s->n; ++j)
            if (near[i * s->n + j]) {
                tst_store(c->dt, c->dy, i * c->lddy + j, 0.0);
                ++c->near;
            }
    if (c->p.where == AT_DY) {
        if (place_dy(c, &md, near) != 0) {
            snprintf(why, why_len, "no %s element for the dy plant",
                     c->p.kind == DY_CLAMPED ? "clamped" : c->p.kind == DY_PASSING ? "passing"
                                                                                   : "usable");
            goto out;
        }
        const double z = md.z[c->p.row * s->n + c->p.col];
        c->dy_clamped = z <= (double)a.lo || z >= (double)a.hi;
        tst_store(c->dt, c->dy, c->p.row * c->lddy + c->p.col, v);
    }

    lgh_backward_args_t b = host_backward_args(c);
    if (lgh_reference_backward(&b, c->ref[GR_DX], c->ref[GR_DW], c->ref[GR_DB], c->ref[GR_DG],
                               c->ref[GR_DBE]) != 0) {
        snprintf(why, why_len, "lgh_reference_backward failed");
        goto out;
    }
    for (int mode = 0; mode < N_MODES; ++mode) {
        if ((c->dt == LGH_DTYPE_FLOAT32) == (mode == LGH_MATH_DEFAULT)) continue;
        if (loose_masks(c, &md, mode) != 0) goto out;
    }
    rc = 0;
out:
    free(near);
    free_model(&md);
    return rc;
}

/* ---- the documented rules, on the oracle --------------------------------------------------- */

/* What docs/PRECISION.md (and the header's table) says of each gradient element, given
 * the planted value: EXP_FINITE, EXP_NAN or EXP_NONFINITE (NaN or ±Inf). The exact values
 * the rules name are checked in check_rules. */
enum { EXP_FINITE, EXP_NAN, EXP_NONFINITE };

static int expected_class(const case_data_t *c, int q, int64_t i, int64_t j)
{
    const shape_t *s = c->s;
    const int64_t gs = s->n / s->groups;
    const plant_t *p = &c->p;
    /* the planted channel's group (x: unused), and the element's channel (dW: its row;
     * vectors: j) */
    const int64_t pg = (p->where == AT_W ? p->row : p->col) / gs;
    const int64_t ch = q == GR_DW ? i : q == GR_DX ? -1 : j;
    const int in_group = ch >= 0 && ch / gs == pg;
    switch (p->where) {
    case AT_DY: {
        if (c->dy_clamped) return EXP_FINITE;
        const int nonf = p->value == 0 ? EXP_NAN : EXP_NONFINITE;
        switch (q) {
        case GR_DX: return i == p->row ? EXP_NAN : EXP_FINITE;
        case GR_DW:
        case GR_DB: return in_group ? nonf : EXP_FINITE;
        default: return ch == p->col ? nonf : EXP_FINITE; /* dγ, dβ */
        }
    }
    case AT_X:
        switch (q) {
        case GR_DX: return i == p->row ? EXP_NAN : EXP_FINITE;
        case GR_DBE: return EXP_FINITE;
        default: return EXP_NAN;
        }
    case AT_W:
    case AT_B:
        switch (q) {
        case GR_DX: return EXP_NAN;
        case GR_DBE: return EXP_FINITE;
        default: return in_group ? EXP_NAN : EXP_FINITE;
        }
    case AT_GAMMA:
        switch (q) {
        case GR_DX: return EXP_NAN;
        case GR_DW:
        case GR_DB: return in_group ? EXP_NAN : EXP_FINITE; /* γ NaN or ±Inf alike */
        default: return EXP_FINITE;
        }
    default: return EXP_FINITE; /* β */
    }
}

/* Returns 0 when the oracle follows the rules; else writes the first departure. */
static int check_rules(const case_data_t *c, char *buf, size_t len)
{
    const shape_t *s = c->s;
    for (int q = 0; q < N_GRADS; ++q)
        for (int64_t i = 0; i < grad_rows(s, q); ++i)
            for (int64_t j = 0; j < grad_cols(s, q); ++j) {
                const double v = c->ref[q][i * grad_cols(s, q) + j];
                const int want = expected_class(c, q, i, j);
                const int ok = want == EXP_FINITE ? isfinite(v)
                               : want == EXP_NAN  ? isnan(v)
                                                  : !isfinite(v);
                if (!ok) {
                    snprintf(buf, len, "%s[%" PRId64 ",%" PRId64 "] is %g, the rules say %s",
                             kGradNames[q], i, j, v,
                             want == EXP_FINITE ? "finite" : want == EXP_NAN ? "NaN" : "non-finite");
                    return 1;
                }
            }
    /* Exact values the rules name. */
    const plant_t *p = &c->p;
    const int64_t ch = p->col;
    if (p->where == AT_DY && !c->dy_clamped && p->value != 0 &&
        c->ref[GR_DBE][ch] != kValues[p->value]) {
        snprintf(buf, len, "dbeta[%" PRId64 "] is %g, the rules say %g", ch, c->ref[GR_DBE][ch],
                 kValues[p->value]);
        return 1;
    }
    if (p->where == AT_BETA && p->value != 0 &&
        (c->ref[GR_DBE][ch] != 0.0 || c->ref[GR_DG][ch] != 0.0)) {
        snprintf(buf, len, "beta[%" PRId64 "]=±Inf clamps the channel, yet dgamma %g dbeta %g", ch,
                 c->ref[GR_DG][ch], c->ref[GR_DBE][ch]);
        return 1;
    }
    if (p->where == AT_GAMMA && p->value != 0 &&
        (c->ref[GR_DBE][ch] != 0.0 || c->ref[GR_DG][ch] != 0.0)) {
        snprintf(buf, len, "gamma[%" PRId64 "]=±Inf clamps the channel, yet dgamma %g dbeta %g",
                 ch, c->ref[GR_DG][ch], c->ref[GR_DBE][ch]);
        return 1;
    }
    if (p->where == AT_BETA && p->value == 0) { /* every z of the channel NaN: dy passes */
        double sum = 0.0, mag = 0.0;
        for (int64_t r = 0; r < s->m; ++r) {
            const double d = tst_load(c->dt, c->dy, r * c->lddy + ch);
            sum += d, mag += fabs(d);
        }
        if (!(fabs(c->ref[GR_DBE][ch] - sum) <= 1e-12 * mag)) {
            snprintf(buf, len, "beta[%" PRId64 "]=NaN: dbeta %g, the rules say sum of dy %g", ch,
                     c->ref[GR_DBE][ch], sum);
            return 1;
        }
    }
    return 0;
}

/* ---- the checker ---------------------------------------------------------------------------- */

typedef struct verdict {
    int64_t finite_lost;  /* oracle finite, engine NaN or ±Inf */
    int64_t nan_lost;     /* oracle NaN (strict), engine not NaN */
    int64_t inf_wrong;    /* oracle ±Inf (strict), engine anything else (allowance 2 aside) */
    int64_t loose_finite; /* allowance 1 element, engine finite */
    int64_t sentinel;     /* elements still holding the sentinel */
    int64_t first;        /* row * cols + col of the first bad element, -1 if none */
    int64_t finite;       /* elements compared by value */
    int64_t loose;        /* allowance 1 elements met */
    int64_t split_nan;    /* allowance 2 used: ±Inf in the oracle, NaN in the engine */
    double rel;           /* over the finite elements */
} verdict_t;

static int verdict_bad(const verdict_t *v)
{
    return v->finite_lost || v->nan_lost || v->inf_wrong || v->loose_finite || v->sentinel;
}

/* got: rows x cols at ld in dt; ref packed doubles; loose (may be NULL): allowance 1;
 * split_nan_ok: allowance 2; sentinel: the value unwritten elements hold (NAN: none). */
static verdict_t check_grad(lgh_dtype_t dt, const void *got, int64_t rows, int64_t cols, int64_t ld,
                            const double *ref, const unsigned char *loose, int split_nan_ok,
                            double sentinel)
{
    verdict_t v;
    memset(&v, 0, sizeof v);
    v.first = -1;
    double num = 0.0, den = 0.0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
            const int64_t i = r * cols + c;
            const double g = tst_load(dt, got, r * ld + c), want = ref[i];
            int bad = 0;
            if (!isnan(sentinel) && g == sentinel) {
                ++v.sentinel, bad = 1;
            } else if (isfinite(want)) {
                if (!isfinite(g)) {
                    ++v.finite_lost, bad = 1;
                } else {
                    const double d = g - want;
                    num += d * d, den += want * want;
                    ++v.finite;
                }
            } else if (loose && loose[i]) {
                ++v.loose;
                if (isfinite(g)) ++v.loose_finite, bad = 1;
            } else if (isnan(want)) {
                if (!isnan(g)) ++v.nan_lost, bad = 1;
            } else if (g != want) {
                if (split_nan_ok && isnan(g)) ++v.split_nan;
                else ++v.inf_wrong, bad = 1;
            }
            if (bad && v.first < 0) v.first = i;
        }
    v.rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
    return v;
}

/* ---- the tf32 allowance (as test_backward's tf32_floors) -------------------------------- */

static float tf32_of(float v, int round_to_nearest)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) { /* finite: keep the top 10 mantissa bits */
        if (round_to_nearest) u += 0x1000u;
        u &= 0xffffe000u;
    }
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Per gradient, ||ref' - ref|| / ||ref|| over the elements finite in both, ref' the oracle
 * on x and W rounded as tf32 tensor cores read them (W truncated, x truncated or rounded
 * to nearest), the larger of the two. NaN when it cannot allocate. */
static void tf32_floors(const case_data_t *c, double floor[N_GRADS])
{
    const shape_t *s = c->s;
    float *x = malloc(c->x_elems * sizeof(float)), *w = malloc(c->w_elems * sizeof(float));
    double *got[N_GRADS] = {NULL};
    int bad = !x || !w;
    for (int q = 0; q < N_GRADS; ++q) {
        floor[q] = NAN;
        got[q] = malloc((size_t)(grad_rows(s, q) * grad_cols(s, q)) * sizeof(double));
        bad |= !got[q];
    }
    if (!bad) {
        for (int q = 0; q < N_GRADS; ++q) floor[q] = 0.0;
        for (size_t i = 0; i < c->w_elems; ++i) w[i] = tf32_of(((const float *)c->w)[i], 0);
        for (int x_rn = 0; x_rn < 2; ++x_rn) {
            for (size_t i = 0; i < c->x_elems; ++i) x[i] = tf32_of(((const float *)c->x)[i], x_rn);
            lgh_backward_args_t b = host_backward_args(c);
            b.fwd.x = x, b.fwd.w = w;
            if (lgh_reference_backward(&b, got[GR_DX], got[GR_DW], got[GR_DB], got[GR_DG],
                                       got[GR_DBE]) != 0) {
                for (int q = 0; q < N_GRADS; ++q) floor[q] = NAN;
                break;
            }
            for (int q = 0; q < N_GRADS; ++q) {
                double num = 0.0, den = 0.0;
                for (int64_t i = 0; i < grad_rows(s, q) * grad_cols(s, q); ++i) {
                    if (!isfinite(got[q][i]) || !isfinite(c->ref[q][i])) continue;
                    const double d = got[q][i] - c->ref[q][i];
                    num += d * d, den += c->ref[q][i] * c->ref[q][i];
                }
                floor[q] = fmax(floor[q], den > 0.0 ? sqrt(num / den) : sqrt(num));
            }
        }
    }
    free(x), free(w);
    for (int q = 0; q < N_GRADS; ++q) free(got[q]);
}

static double bwd_bound(lgh_dtype_t dt, lgh_math_t resolved)
{
    if (dt != LGH_DTYPE_FLOAT32) return 2e-2;
    return resolved == LGH_MATH_TF32 ? 1e-3 : 1e-5;
}

/* ---- targets --------------------------------------------------------------------------------- */

typedef struct target {
    const char *name;
    lgh_engine_t engine;
    int on_gpu;
    int must_take; /* NOT_SUPPORTED is a failure, not a skip */
    int staged;    /* CPU context, buffers staged like the GPU tier's (tst_set_staged_host) */
    lgh_context_t ctx;
    tst_tally_t tally;
    long passed_by_where[N_WHERE];
    long forward_by_auto;
    int64_t loose_met, split_nan_used, finite_compared;
} target_t;

static int g_verbose;

static void replay_hint(const target_t *t, const case_data_t *c)
{
    printf("      replay: LGH_TEST_SEED=%" PRIu64 " test_special_backward --engine %s --case %d\n",
           tst_base_seed(), t->name, c->id);
}

static void fill_sentinel(lgh_dtype_t dt, void *buf, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t col = 0; col < cols; ++col) tst_store(dt, buf, r * ld + col, SENTINEL);
}

/* One (case, math, save mode) on a target: the forward, then the backward under NaN
 * poison and under the sentinel. Returns 0 pass, 1 fail, 2 skip (the engine declined). */
static int run_one(target_t *t, const case_data_t *c, lgh_math_t math, int save_h)
{
    const shape_t *s = c->s;
    char what[640], pl[96], msg[512] = "";
    describe_plant(pl, sizeof pl, c);
    snprintf(what, sizeof what,
             "case %d [%s %s %s] M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " G=%" PRId64
             "%s clamp=[%g,%g] h=%s %s",
             c->id, t->name, lgh_dtype_name(c->dt), lgh_math_name(math), s->m, s->k, s->n,
             s->groups, s->pad ? " padded" : "", s->lo, s->hi, save_h ? "saved" : "recomputed", pl);
    const size_t eb = tst_elem_bytes(c->dt);
    const int gpu = t->on_gpu;
    const size_t stat_elems = (size_t)(s->m * s->groups);
    int rc = 1;

    tst_buf_t x = {0}, w = {0}, b = {0}, g = {0}, be = {0}, y = {0}, mean = {0}, rstd = {0};
    tst_buf_t h = {0}, dy = {0}, out[N_GRADS];
    memset(out, 0, sizeof out);
    int alloc_bad =
        tst_buf_alloc(&x, c->x_elems * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&w, c->w_elems * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&b, (size_t)s->n * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&g, (size_t)s->n * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&be, (size_t)s->n * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&y, (size_t)(s->m * s->n) * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&mean, stat_elems * 4, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&rstd, stat_elems * 4, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&dy, c->dy_elems * eb, gpu, msg, sizeof msg) ||
        (save_h && tst_buf_alloc(&h, c->h_elems * eb, gpu, msg, sizeof msg));
    for (int q = 0; q < N_GRADS && !alloc_bad; ++q)
        alloc_bad = tst_buf_alloc(&out[q], c->out_elems[q] * eb, gpu, msg, sizeof msg);
    if (alloc_bad) {
        printf("FAIL %s: allocation: %s\n", what, msg);
        goto done;
    }
    memcpy(x.host, c->x, x.bytes);
    memcpy(w.host, c->w, w.bytes);
    memcpy(b.host, c->bias, b.bytes);
    memcpy(g.host, c->gamma, g.bytes);
    memcpy(be.host, c->beta, be.bytes);
    memcpy(dy.host, c->dy, dy.bytes);
    tst_poison_matrix(LGH_DTYPE_FLOAT32, mean.host, s->m, s->groups, s->groups, (int64_t)stat_elems);
    tst_poison_matrix(LGH_DTYPE_FLOAT32, rstd.host, s->m, s->groups, s->groups, (int64_t)stat_elems);
    tst_poison_matrix(c->dt, y.host, s->m, s->n, s->n, s->m * s->n);
    if (save_h) tst_poison_matrix(c->dt, h.host, s->m, s->n, c->ldh, (int64_t)c->h_elems);
    if (tst_buf_upload(&x, msg, sizeof msg) || tst_buf_upload(&w, msg, sizeof msg) ||
        tst_buf_upload(&b, msg, sizeof msg) || tst_buf_upload(&g, msg, sizeof msg) ||
        tst_buf_upload(&be, msg, sizeof msg) || tst_buf_upload(&dy, msg, sizeof msg) ||
        tst_buf_upload(&y, msg, sizeof msg) || tst_buf_upload(&mean, msg, sizeof msg) ||
        tst_buf_upload(&rstd, msg, sizeof msg) || (save_h && tst_buf_upload(&h, msg, sizeof msg))) {
        printf("FAIL %s: upload: %s\n", what, msg);
        goto done;
    }

    /* The forward that saves what the backward needs. */
    lgh_args_t fa = host_args(c);
    fa.math = math;
    fa.engine = t->engine;
    fa.x = x.dev, fa.w = w.dev, fa.bias = b.dev, fa.gamma = g.dev, fa.beta = be.dev;
    fa.y = y.dev;
    fa.mean = mean.dev, fa.rstd = rstd.dev;
    if (save_h) fa.h = h.dev, fa.ldh = c->ldh;
    lgh_status_t st = lgh_forward(t->ctx, &fa, NULL, 0, NULL);
    if (st == LGH_STATUS_NOT_SUPPORTED && t->engine != LGH_ENGINE_AUTO) {
        fa.engine = LGH_ENGINE_AUTO;
        st = lgh_forward(t->ctx, &fa, NULL, 0, NULL);
        t->forward_by_auto++;
        fa.engine = t->engine;
    }
    if (gpu && tst_dev_sync(msg, sizeof msg)) {
        printf("FAIL %s: forward: %s (lgh_forward returned %s)\n", what, msg, lgh_status_string(st));
        replay_hint(t, c);
        goto done;
    }
    if (st != LGH_STATUS_SUCCESS) {
        printf("FAIL %s: lgh_forward: %s: %s\n", what, lgh_status_string(st), lgh_last_error(t->ctx));
        goto done;
    }
    if (save_h) {
        if (tst_buf_download(&h, msg, sizeof msg)) {
            printf("FAIL %s: download of h: %s\n", what, msg);
            goto done;
        }
        const int64_t damage = tst_guard_damage(c->dt, h.host, s->m, s->n, c->ldh, (int64_t)c->h_elems);
        if (damage) {
            printf("FAIL %s: the forward wrote %" PRId64 " padding/tail elements of h\n", what, damage);
            replay_hint(t, c);
            goto done;
        }
    }

    lgh_backward_args_t ba;
    memset(&ba, 0, sizeof ba);
    ba.fwd = fa; /* its y, mean, rstd and h are ignored */
    ba.dy = dy.dev, ba.lddy = c->lddy;
    ba.mean = mean.dev, ba.rstd = rstd.dev;
    if (save_h) ba.h = h.dev, ba.ldh = c->ldh;
    ba.dx = out[GR_DX].dev, ba.lddx = c->lddx;
    ba.dw = out[GR_DW].dev, ba.lddw = c->lddw;
    ba.dbias = out[GR_DB].dev, ba.dgamma = out[GR_DG].dev, ba.dbeta = out[GR_DBE].dev;

    lgh_engine_t picked = LGH_ENGINE_COUNT;
    const lgh_status_t plan = lgh_backward_plan(t->ctx, &ba, &picked, NULL);
    const int skippable = !t->must_take && plan == LGH_STATUS_NOT_SUPPORTED;
    if (plan != LGH_STATUS_SUCCESS && !skippable) {
        printf("FAIL %s: lgh_backward_plan: %s: %s\n", what, lgh_status_string(plan),
               lgh_last_error(t->ctx));
        goto done;
    }
    const lgh_math_t resolved = c->dt == LGH_DTYPE_FLOAT32
                                    ? (math == LGH_MATH_DEFAULT ? LGH_MATH_TF32 : math)
                                    : LGH_MATH_DEFAULT;
    /* Allowance 2: 3xtf32 products that split their operands (header). */
    const int split_ok = c->dt == LGH_DTYPE_FLOAT32 && resolved == LGH_MATH_3XTF32 &&
                         (picked == LGH_ENGINE_SM80 || picked == LGH_ENGINE_SM90);
    const double bound = bwd_bound(c->dt, resolved);
    /* Allowance 1 follows the arithmetic that ran: the CPU engine computes tf32 and 3xtf32
     * in float32 (lgh.h), so it is held to fp32's rounding in every mode. */
    const int loose_mode = c->dt == LGH_DTYPE_FLOAT32 && picked == LGH_ENGINE_CPU ? (int)LGH_MATH_FP32
                                                                                   : (int)resolved;

    int ok = 1;
    for (int pass = 0; pass < 2; ++pass) {
        double sent_stored = NAN; /* the sentinel as the dtype stores it (second call) */
        if (pass) {
            uint32_t tmp;
            tst_store(c->dt, &tmp, 0, SENTINEL);
            sent_stored = tst_load(c->dt, &tmp, 0);
        }
        for (int q = 0; q < N_GRADS; ++q) {
            tst_poison_matrix(c->dt, out[q].host, grad_rows(s, q), grad_cols(s, q), grad_ld(c, q),
                              (int64_t)c->out_elems[q]);
            if (pass) fill_sentinel(c->dt, out[q].host, grad_rows(s, q), grad_cols(s, q), grad_ld(c, q));
            if (tst_buf_upload(&out[q], msg, sizeof msg)) {
                printf("FAIL %s: upload: %s\n", what, msg);
                goto done;
            }
        }
        st = lgh_backward(t->ctx, &ba, NULL, 0, NULL);
        if (gpu && tst_dev_sync(msg, sizeof msg)) {
            printf("FAIL %s: %s (lgh_backward returned %s)\n", what, msg, lgh_status_string(st));
            replay_hint(t, c);
            goto done;
        }
        if (st != plan) {
            printf("FAIL %s: lgh_backward returned %s (%s) but lgh_backward_plan said %s\n", what,
                   lgh_status_string(st), lgh_last_error(t->ctx), lgh_status_string(plan));
            goto done;
        }
        for (int q = 0; q < N_GRADS; ++q)
            if (tst_buf_download(&out[q], msg, sizeof msg)) {
                printf("FAIL %s: download: %s\n", what, msg);
                goto done;
            }

        if (skippable) { /* refused: nothing may have been written */
            int64_t touched = 0;
            for (int q = 0; q < N_GRADS; ++q) {
                for (int64_t r = 0; r < grad_rows(s, q); ++r)
                    for (int64_t col = 0; col < grad_cols(s, q); ++col) {
                        const int64_t i = r * grad_ld(c, q) + col;
                        touched += pass ? tst_load(c->dt, out[q].host, i) != sent_stored
                                        : !tst_is_pattern(c->dt, out[q].host, i, TST_POISON);
                    }
                touched += tst_guard_damage(c->dt, out[q].host, grad_rows(s, q), grad_cols(s, q),
                                            grad_ld(c, q), (int64_t)c->out_elems[q]);
            }
            if (touched) {
                printf("FAIL %s: refused with NOT_SUPPORTED but wrote %" PRId64 " gradient elements\n",
                       what, touched);
                goto done;
            }
            if (g_verbose) printf("skip %s: %s\n", what, lgh_last_error(t->ctx));
            rc = 2;
            goto done;
        }

        verdict_t v[N_GRADS];
        int64_t damage[N_GRADS];
        int past = 0;
        for (int q = 0; q < N_GRADS; ++q) {
            v[q] = check_grad(c->dt, out[q].host, grad_rows(s, q), grad_cols(s, q), grad_ld(c, q),
                              c->ref[q], c->loose[loose_mode][q], split_ok && q <= GR_DW, sent_stored);
            damage[q] = tst_guard_damage(c->dt, out[q].host, grad_rows(s, q), grad_cols(s, q),
                                         grad_ld(c, q), (int64_t)c->out_elems[q]);
            past |= !(v[q].rel <= bound);
        }
        double floor[N_GRADS] = {0};
        const int use_floor = c->dt == LGH_DTYPE_FLOAT32 && resolved == LGH_MATH_TF32 && past;
        if (use_floor) tf32_floors(c, floor);
        int pass_ok = 1;
        char detail[1024] = "";
        size_t at = 0;
        for (int q = 0; q < N_GRADS; ++q) {
            const int this_ok = !verdict_bad(&v[q]) && v[q].rel <= bound + floor[q] && damage[q] == 0;
            pass_ok &= this_ok;
            if (pass == 0) {
                t->loose_met += v[q].loose, t->split_nan_used += v[q].split_nan;
                t->finite_compared += v[q].finite;
            }
            if (at < sizeof detail)
                at += (size_t)snprintf(detail + at, sizeof detail - at, "%s%s %.3g%s", q ? ", " : "",
                                       kGradNames[q], v[q].rel, this_ok ? "" : " (!)");
            if (at < sizeof detail && (v[q].loose || v[q].split_nan))
                at += (size_t)snprintf(detail + at, sizeof detail - at, " [%" PRId64 " loose, %" PRId64
                                       " split NaN]", v[q].loose, v[q].split_nan);
            if (at < sizeof detail && use_floor)
                at += (size_t)snprintf(detail + at, sizeof detail - at, " [tf32 floor %.3g]", floor[q]);
            if (at < sizeof detail && verdict_bad(&v[q]))
                at += (size_t)snprintf(detail + at, sizeof detail - at,
                                       " [finite lost %" PRId64 ", NaN lost %" PRId64
                                       ", Inf wrong %" PRId64 ", loose but finite %" PRId64
                                       ", unwritten %" PRId64 "]",
                                       v[q].finite_lost, v[q].nan_lost, v[q].inf_wrong,
                                       v[q].loose_finite, v[q].sentinel);
            if (at < sizeof detail && damage[q])
                at += (size_t)snprintf(detail + at, sizeof detail - at,
                                       " [%" PRId64 " padding/tail elements overwritten]", damage[q]);
            if (at >= sizeof detail) at = sizeof detail - 1;
        }
        if (!pass_ok || g_verbose) {
            printf("%s %s%s%s, gradients poisoned with %s: %s (bound %.0e; dy zeroed at %" PRId64 ")\n",
                   pass_ok ? "ok  " : "FAIL", what, t->engine == LGH_ENGINE_AUTO ? " ran " : "",
                   t->engine == LGH_ENGINE_AUTO ? lgh_engine_name(picked) : "", pass ? "12345" : "NaN",
                   detail, bound, c->near);
            for (int q = 0; q < N_GRADS && !pass_ok; ++q) {
                if (v[q].first < 0) continue;
                const int64_t i = v[q].first, cols = grad_cols(s, q), r = i / cols, col = i % cols;
                const unsigned char *loose = c->loose[loose_mode][q];
                printf("      first bad %s[%" PRId64 ",%" PRId64 "]: got %g, reference %.9g%s\n",
                       kGradNames[q], r, col, tst_load(c->dt, out[q].host, r * grad_ld(c, q) + col),
                       c->ref[q][i], loose && loose[i] ? " (any non-finite allowed)" : "");
            }
            if (!pass_ok) replay_hint(t, c);
        }
        ok &= pass_ok;
    }
    rc = ok ? 0 : 1;

done:
    for (int q = 0; q < N_GRADS; ++q) tst_buf_free(&out[q]);
    tst_buf_free(&x), tst_buf_free(&w), tst_buf_free(&b), tst_buf_free(&g), tst_buf_free(&be);
    tst_buf_free(&y), tst_buf_free(&mean), tst_buf_free(&rstd), tst_buf_free(&h), tst_buf_free(&dy);
    return rc;
}

static void count(target_t *t, const case_data_t *c, int rc)
{
    if (rc == 0) t->tally.passed++, t->passed_by_where[c->p.where]++;
    else if (rc == 1) t->tally.failed++;
    else t->tally.skipped++;
}

static void run_case_on(target_t *t, const case_data_t *c)
{
    static const lgh_math_t f32_modes[] = {LGH_MATH_FP32, LGH_MATH_TF32, LGH_MATH_3XTF32};
    static const lgh_math_t half_modes[] = {LGH_MATH_DEFAULT};
    const int f32 = c->dt == LGH_DTYPE_FLOAT32;
    const lgh_math_t *modes = f32 ? f32_modes : half_modes;
    const int nm = f32 ? COUNT(f32_modes) : COUNT(half_modes);
    for (int i = 0; i < nm; ++i)
        for (int save_h = 1; save_h >= 0; --save_h) count(t, c, run_one(t, c, modes[i], save_h));
}

/* ---- the checker checks itself ------------------------------------------------------------ */

/* Each mistake the cases rely on catching, made on purpose on a 3 x 5 gradient at ld 7 in
 * every dtype. Returns the number of checks that did not behave. */
static int checker_self_test(void)
{
    enum { R = 3, C = 5, LD = 7, TOTAL = R * LD + TAIL };
    int bad = 0;
    for (int d = 0; d < N_DTYPES; ++d) {
        const lgh_dtype_t dt = kDtypes[d];
        uint32_t y[TOTAL]; /* big enough for any dtype */
        double ref[R * C];
        unsigned char loose[R * C] = {0};
        tst_poison_matrix(dt, y, R, C, LD, TOTAL);
        /* row 1 NaN, (0, 2) +Inf, (2, 3) -Inf, the rest finite */
        for (int r = 0; r < R; ++r)
            for (int c = 0; c < C; ++c) {
                const double v = r == 1 ? NAN : (r == 0 && c == 2) ? INFINITY
                                 : (r == 2 && c == 3) ? -INFINITY : 0.25 * (c - 2) + 0.125 * r;
                tst_store(dt, y, r * LD + c, v);
                ref[r * C + c] = tst_load(dt, y, r * LD + c);
            }
        verdict_t v = check_grad(dt, y, R, C, LD, ref, NULL, 0, NAN);
        bad += verdict_bad(&v) || v.rel != 0.0 || v.finite != R * C - C - 2;

        /* A NaN turned finite, and turned infinite. */
        tst_store(dt, y, 1 * LD + 1, 0.5);
        v = check_grad(dt, y, R, C, LD, ref, NULL, 0, NAN);
        bad += !(v.nan_lost == 1 && v.first == C + 1);
        tst_store(dt, y, 1 * LD + 1, INFINITY);
        v = check_grad(dt, y, R, C, LD, ref, NULL, 0, NAN);
        bad += v.nan_lost != 1;
        /* ... which allowance 1 accepts (any non-finite), and allowance 2 does not. */
        loose[1 * C + 1] = 1;
        v = check_grad(dt, y, R, C, LD, ref, loose, 0, NAN);
        bad += verdict_bad(&v) || v.loose != 1;
        v = check_grad(dt, y, R, C, LD, ref, NULL, 1, NAN);
        bad += v.nan_lost != 1;
        /* A loose element that came out finite. */
        tst_store(dt, y, 1 * LD + 1, 0.5);
        v = check_grad(dt, y, R, C, LD, ref, loose, 0, NAN);
        bad += v.loose_finite != 1;
        loose[1 * C + 1] = 0;
        tst_store(dt, y, 1 * LD + 1, NAN);

        /* Infinities: the other one, NaN (allowance 2 only), finite. */
        tst_store(dt, y, 0 * LD + 2, -INFINITY);
        v = check_grad(dt, y, R, C, LD, ref, NULL, 1, NAN);
        bad += v.inf_wrong != 1;
        tst_store(dt, y, 0 * LD + 2, NAN);
        v = check_grad(dt, y, R, C, LD, ref, NULL, 0, NAN);
        bad += v.inf_wrong != 1;
        v = check_grad(dt, y, R, C, LD, ref, NULL, 1, NAN);
        bad += verdict_bad(&v) || v.split_nan != 1;
        tst_store(dt, y, 0 * LD + 2, 1.0);
        v = check_grad(dt, y, R, C, LD, ref, NULL, 1, NAN);
        bad += v.inf_wrong != 1;
        tst_store(dt, y, 0 * LD + 2, INFINITY);

        /* An infinity or a NaN where the reference is finite. */
        tst_store(dt, y, 2 * LD + 0, INFINITY);
        v = check_grad(dt, y, R, C, LD, ref, NULL, 0, NAN);
        bad += !(v.finite_lost == 1 && v.first == 2 * C);
        tst_store(dt, y, 2 * LD + 0, NAN);
        loose[2 * C] = 1; /* allowance 1 never covers a finite reference */
        v = check_grad(dt, y, R, C, LD, ref, loose, 1, NAN);
        bad += v.finite_lost != 1;
        loose[2 * C] = 0;
        tst_store(dt, y, 2 * LD + 0, ref[2 * C]);

        /* An element left holding the sentinel. */
        uint32_t tmp;
        tst_store(dt, &tmp, 0, SENTINEL);
        const double sent = tst_load(dt, &tmp, 0);
        tst_store(dt, y, 2 * LD + 4, SENTINEL);
        v = check_grad(dt, y, R, C, LD, ref, NULL, 0, sent);
        bad += !(v.sentinel == 1 && v.first == 2 * C + 4);
        tst_store(dt, y, 2 * LD + 4, ref[2 * C + 4]);

        /* A wrong finite value fails the bound, though every special value is right. */
        tst_store(dt, y, 2 * LD + 1, ref[2 * C + 1] + 0.25);
        v = check_grad(dt, y, R, C, LD, ref, NULL, 0, NAN);
        bad += verdict_bad(&v) || !(v.rel > bwd_bound(dt, LGH_MATH_DEFAULT));
    }
    if (bad) printf("FAIL checker self-test: %d checks did not catch what they must\n", bad);
    return bad;
}

/* ---- set-up --------------------------------------------------------------------------------- */

static tst_setup_t setup_target(target_t *t)
{
    if (t->staged) tst_set_staged_host(1); /* a CPU context with the GPU tier's buffers */
    return tst_open_target(t->name, t->engine, t->on_gpu && !t->staged, &t->ctx, NULL);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: test_special_backward [--engine cpu|cpu-staged|cublaslt|sm80|sm90|auto]\n"
            "                             [--case N] [--verbose]\n"
            "  Plants NaN / +Inf / -Inf in dy, x, W, b, gamma and beta and checks lgh_backward's\n"
            "  special values and finite values against the double-precision reference.\n"
            "  LGH_TEST_SEED=<n> replays a run's inputs; --case runs one case.\n");
}

int main(int argc, char **argv)
{
    const char *engine_arg = "cpu";
    int only_case = -1;
    number_cases();
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--engine") && i + 1 < argc) {
            engine_arg = argv[++i];
        } else if (!strcmp(argv[i], "--case") && i + 1 < argc) {
            char *end;
            only_case = (int)strtol(argv[++i], &end, 10);
            if (*end || only_case < 0 || only_case >= n_cases()) {
                fprintf(stderr, "test_special_backward: --case %s: expected 0..%d\n", argv[i],
                        n_cases() - 1);
                return 2;
            }
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            g_verbose = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "test_special_backward: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    /* cpu-staged: the CPU engine with every buffer moved through the GPU tier's upload,
     * download and synchronisation (as test_matrix's), so that path runs without a GPU. */
    static const struct {
        const char *name;
        lgh_engine_t engine;
        int on_gpu, must_take, staged;
    } known[] = {{"cpu", LGH_ENGINE_CPU, 0, 1, 0},
                 {"cpu-staged", LGH_ENGINE_CPU, 1, 1, 1},
                 {"cublaslt", LGH_ENGINE_CUBLASLT, 1, 0, 0},
                 {"sm80", LGH_ENGINE_SM80, 1, 0, 0},
                 {"sm90", LGH_ENGINE_SM90, 1, 0, 0},
                 {"auto", LGH_ENGINE_AUTO, 1, 1, 0}};
    target_t t;
    memset(&t, 0, sizeof t);
    for (int i = 0; i < COUNT(known); ++i)
        if (!strcmp(engine_arg, known[i].name)) {
            t.name = known[i].name, t.engine = known[i].engine;
            t.on_gpu = known[i].on_gpu, t.must_take = known[i].must_take;
            t.staged = known[i].staged;
        }
    if (!t.name) {
        fprintf(stderr, "test_special_backward: unknown engine '%s'\n", engine_arg);
        usage(stderr);
        return 2;
    }

    char title[64];
    snprintf(title, sizeof title, "test_special_backward[%s]", engine_arg);
    tst_print_seed(title);
    /* LGH_ENGINE replaces AUTO: the auto target then runs that engine, which may answer
     * NOT_SUPPORTED unless it is the CPU's. */
    const char *env = getenv("LGH_ENGINE");
    lgh_engine_t env_engine = LGH_ENGINE_AUTO;
    if (t.engine == LGH_ENGINE_AUTO && env && *env &&
        lgh_engine_from_name(env, &env_engine) == LGH_STATUS_SUCCESS && env_engine != LGH_ENGINE_AUTO) {
        printf("note: LGH_ENGINE=%s is set; it replaces AUTO\n", env);
        t.must_take = env_engine == LGH_ENGINE_CPU;
    }

    tst_tally_t total = {0, 0, 0};
    if (checker_self_test()) total.failed++;

    const tst_setup_t setup = setup_target(&t);
    if (setup == TST_SETUP_FAIL) total.failed++;
    long rules_checked = 0, clamped_dy = 0, passing_dy = 0;
    if (setup == TST_SETUP_OK) {
        for (int id = 0; id < n_cases(); ++id) {
            if (only_case >= 0 && id != only_case) continue;
            case_data_t c;
            char why[256];
            if (make_case(&c, id, tst_base_seed(), why, sizeof why)) {
                printf("FAIL case %d: could not build inputs or the reference: %s\n", id, why);
                total.failed++;
                free_case(&c);
                continue;
            }
            char rule[256];
            if (check_rules(&c, rule, sizeof rule)) {
                char pl[96];
                describe_plant(pl, sizeof pl, &c);
                printf("FAIL case %d [%s] %s: the reference departs from the documented rules: %s\n",
                       id, lgh_dtype_name(c.dt), pl, rule);
                total.failed++;
            } else {
                ++rules_checked;
            }
            if (c.p.where == AT_DY) c.dy_clamped ? ++clamped_dy : ++passing_dy;
            run_case_on(&t, &c);
            free_case(&c);
        }
        printf("%s: %ld cases follow the documented rules on the reference (dy planted at %ld "
               "clamped and %ld passing elements)\n", t.name, rules_checked, clamped_dy, passing_dy);
        printf("%s: runs passed per planted input:", t.name);
        for (int w = 0; w < N_WHERE; ++w) printf(" %s %ld", kWhereName[w], t.passed_by_where[w]);
        printf("\n%s: %" PRId64 " finite gradient elements compared; %" PRId64
               " non-finite elements met under the sign allowance, %" PRId64
               " infinities given as NaN by a split 3xtf32 product\n",
               t.name, t.finite_compared, t.loose_met, t.split_nan_used);
        if (t.forward_by_auto)
            printf("%s: %ld forwards ran on AUTO (the engine refused them)\n", t.name,
                   t.forward_by_auto);
        if (t.tally.skipped)
            printf("%s: %ld runs skipped: the engine answered NOT_SUPPORTED (--verbose for each "
                   "reason)\n", t.name, t.tally.skipped);
    }
    if (t.ctx) lgh_destroy(t.ctx);

    total.passed += t.tally.passed;
    total.failed += t.tally.failed;
    total.skipped += t.tally.skipped;
    tst_summary(title, &total);
    if (total.failed) return 1;
    if (total.passed == 0) return TST_EXIT_SKIP;
    return 0;
}
