/*
 * test_special: special values (NaN, +Inf, -Inf) in the inputs must give PyTorch's
 * pattern of special values in the output (nn.Linear -> nn.GroupNorm -> nn.Hardtanh),
 * checked against the double-precision reference (lgh_reference_rows), which uses the
 * same formulas (common/norm_output.h; docs/PRECISION.md, "Special values"):
 *
 *   x[r, k] NaN/±Inf        -> row r NaN
 *   W[n, k] or b[n] special -> the group holding channel n NaN in every row
 *   γ[n] or β[n] NaN        -> channel n NaN in every row
 *   β[n] = +Inf / -Inf      -> channel n = hi / lo
 *   γ[n] = ±Inf             -> per element ±Inf clamped to hi / lo, from the sign of
 *                              (h − mean)·γ (y = (h − mean)·(rstd·γ) + β, PyTorch's CUDA
 *                              GroupNorm on [M, N] input); NaN only where h equals the mean
 *
 *   test_special [--engine cpu|cublaslt|sm80|sm90|auto] [--case N] [--verbose]
 *
 * Shapes (M, K, N, G): 9x16x48x3 packed; 70x40x128x4 with aligned padding (guards
 * checked) and mean / rstd always; 33x24x1024x1 (a group of 1024: sm90's cluster path);
 * 5x8x2048x1 (sm90 going tile after tile in one CTA); 9x16x48x3 with an infinite clamp
 * [-Inf, +Inf], where the output itself can be ±Inf. Each shape runs in every dtype with
 * fresh random inputs, and one special value is planted per case: x at rows {0, middle,
 * last} x k {0, last}; W (k = 0), b, γ and β at the first and last channel of the first
 * and last group; each position with NaN, +Inf and -Inf. float32 runs fp32, tf32 and
 * 3xtf32. Case numbers enumerate shape x dtype x position x value in that order; case i
 * always gets the same inputs for the same LGH_TEST_SEED.
 *
 * Every (case, math) calls lgh_forward twice: once with y (and mean / rstd) poisoned
 * with NaN, once with a finite sentinel (12345), because under NaN poison an unwritten
 * element is indistinguishable from an expected NaN; the sentinel run must leave no
 * element equal to the sentinel. Each call is checked element by element:
 *   - isnan(y) == isnan(ref);
 *   - where ref is ±Inf (infinite clamp only), y equals it;
 *   - where ref is finite, y is finite, and the relative Frobenius error over those
 *     elements is within tst_bound (a tf32 result past 1e-3 passes within 1.5 times the
 *     error exact arithmetic makes on tf32-rounded operands, as in test_matrix);
 *   - where mean / rstd were asked for (shape 2 always, every third position elsewhere),
 *     isfinite(mean) and isfinite(rstd) equal the reference's (the reference's mean of a
 *     group holding one ±Inf is ±Inf where PyTorch and a merged (count, mean, M2) give
 *     NaN, so finiteness, not NaN-ness, is compared), and the finite ones are within
 *     the bound;
 *   - padding and the tail after y are untouched.
 * One allowance: with γ[n] = ±Inf the result is hi or lo from the sign of h − mean (NaN
 * where h equals the mean), and an engine computing h in tf32 or with float32 rounding
 * may see the other sign, or a difference of exactly 0, where the reference's |h − mean|
 * is within that rounding of zero. Such elements (flagged from error bounds on h and on
 * the mean) may be NaN, lo or hi; every other element of channel n must be exactly the
 * reference's lo / hi (not merely within the finite bound).
 *
 * Engines: cpu on a CPU context; cublaslt, sm80, sm90 and auto on CUDA device 0. Without
 * a device the GPU engines print "GPU tier: skipped (no CUDA device)" and exit 77 (ctest
 * SKIP_RETURN_CODE). sm80 / sm90 may answer LGH_STATUS_NOT_SUPPORTED for a shape: a
 * counted skip, and then nothing may have been written. Exit: 0 all passed (some may be
 * skipped), 1 a failure, 77 nothing ran.
 *
 * Before the cases, the checker checks itself: a flipped NaN, an unwritten sentinel, a
 * wrong infinity, an infinity where a finite value belongs and a wrong finite value must
 * each be caught.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgh.h"
#include "support/tst.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const lgh_dtype_t kDtypes[] = {LGH_DTYPE_FLOAT32, LGH_DTYPE_BFLOAT16, LGH_DTYPE_FLOAT16};
#define N_DTYPES COUNT(kDtypes)

/* The finite sentinel of the second call: no output can equal it (|y| <= max(|lo|, |hi|)
 * or infinite; rstd <= 1/sqrt(eps) = 316; |mean| is a few units). */
#define SENTINEL 12345.0

/* Elements after the last row of y / the statistics that must stay untouched. */
enum { TAIL = 16 };

/* ---- shapes and planted values ----------------------------------------------------------- */

typedef struct shape {
    int64_t m, k, n, groups;
    int pad;        /* 0 packed, 1 aligned padding (16 bytes for every dtype) */
    int stats;      /* 1: mean / rstd on every case; 0: every third position */
    double lo, hi;  /* the clamp (may be infinite) */
    const char *why;
} shape_t;

static const shape_t kShapes[] = {
    {9, 16, 48, 3, 0, 0, -2.0, 2.0, "small groups"},
    {70, 40, 128, 4, 1, 1, -1.0, 0.75, "padded, statistics"},
    {33, 24, 1024, 1, 0, 0, -2.0, 2.0, "group of 1024 (sm90 cluster)"},
    {5, 8, 2048, 1, 0, 0, -0.5, 3.0, "group of 2048 (sm90 tile after tile)"},
    {9, 16, 48, 3, 0, 0, -INFINITY, INFINITY, "infinite clamp"},
    {9, 520, 48, 3, 0, 0, -2.0, 2.0, "long K (sm90 split K)"},
};
#define N_SHAPES COUNT(kShapes)
static const float kEps = 1e-5f;

typedef enum where { AT_X, AT_W, AT_B, AT_GAMMA, AT_BETA } where_t;
static const char *const kWhereName[] = {"x", "W", "b", "gamma", "beta"};

static const double kValues[] = {NAN, INFINITY, -INFINITY};
#define N_VALUES COUNT(kValues)

typedef struct plant {
    where_t where;
    int64_t row, col; /* x: (row, k); W: (channel, 0); b / γ / β: (0, channel) */
    int value;        /* index into kValues */
} plant_t;

static int64_t ld_of(const shape_t *s, int64_t cols, int extra)
{
    return s->pad ? cols + extra : cols;
}
static int64_t ldx_of(const shape_t *s) { return ld_of(s, s->k, 8); }
static int64_t ldw_of(const shape_t *s) { return ld_of(s, s->k, 16); }
static int64_t ldy_of(const shape_t *s) { return ld_of(s, s->n, 8); }

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
    int64_t rows[3], ks[2], chans[4];
    int nr = 0, nk = 0, nc = 0;
    add_unique(rows, &nr, 0), add_unique(rows, &nr, s->m / 2), add_unique(rows, &nr, s->m - 1);
    add_unique(ks, &nk, 0), add_unique(ks, &nk, s->k - 1);
    const int64_t gs = s->n / s->groups;
    const int64_t groups[2] = {0, s->groups - 1};
    for (int g = 0; g < 2; ++g) {
        add_unique(chans, &nc, groups[g] * gs);
        add_unique(chans, &nc, groups[g] * gs + gs - 1);
    }
    int count = 0;
#define PUT(w_, r_, c_)                                                        \
    for (int v_ = 0; v_ < N_VALUES; ++v_, ++count)                             \
        if (out) out[count] = (plant_t){(w_), (r_), (c_), v_};
    for (int i = 0; i < nr; ++i)
        for (int j = 0; j < nk; ++j) PUT(AT_X, rows[i], ks[j]);
    for (int i = 0; i < nc; ++i) PUT(AT_W, chans[i], 0);
    for (int w = AT_B; w <= AT_BETA; ++w)
        for (int i = 0; i < nc; ++i) PUT((where_t)w, 0, chans[i]);
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

/* ---- one case: host data, the planted value, the reference ------------------------------- */

typedef struct case_data {
    int id;
    const shape_t *s;
    int shape_index;
    lgh_dtype_t dt;
    plant_t p;
    int stats;
    int64_t ldx, ldw, ldy;
    size_t x_elems, w_elems, y_elems, stat_elems;
    void *x, *w, *bias, *gamma, *beta; /* host, dtype dt */
    double *ref_y, *ref_mean, *ref_rstd;
    /* γ = ±Inf only: per element of y, AMB_EITHER where an engine's rounding may flip the
     * sign of h − mean or make it 0, AMB_EXACT at the channel's other elements (see
     * ambiguous_elements); NULL otherwise. Per math mode. */
    unsigned char *ambiguous[4];
    double lo_d, hi_d; /* lo / hi as the dtype stores them */
} case_data_t;

static void free_case(case_data_t *c)
{
    free(c->x), free(c->w), free(c->bias), free(c->gamma), free(c->beta);
    free(c->ref_y), free(c->ref_mean), free(c->ref_rstd);
    for (int i = 0; i < 4; ++i) free(c->ambiguous[i]);
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
    if (s->pad) a.ldx = c->ldx, a.ldw = c->ldw, a.ldy = c->ldy;
    return a;
}

static double rounded(lgh_dtype_t dt, double v)
{
    uint32_t tmp;
    tst_store(dt, &tmp, 0, v);
    return tst_load(dt, &tmp, 0);
}

static void describe_plant(char *buf, size_t len, const plant_t *p)
{
    const char *v = p->value == 0 ? "NaN" : p->value == 1 ? "+Inf" : "-Inf";
    switch (p->where) {
    case AT_X: snprintf(buf, len, "x[%" PRId64 ",%" PRId64 "]=%s", p->row, p->col, v); break;
    case AT_W: snprintf(buf, len, "W[%" PRId64 ",%" PRId64 "]=%s", p->row, p->col, v); break;
    default: snprintf(buf, len, "%s[%" PRId64 "]=%s", kWhereName[p->where], p->col, v); break;
    }
}

/* Per element of y for γ = ±Inf (case_data_t.ambiguous): the general rules; NaN, lo or hi
 * (the sign of h − mean is within rounding); exactly the reference's value. */
enum { AMB_NONE = 0, AMB_EITHER = 1, AMB_EXACT = 2 };

/* A bound on how far an engine's h = x·w + b may be from the exact one, relative to
 * Σ|x·w| + |b|, per math mode (index lgh_math_t; DEFAULT = the 16-bit dtypes, whose
 * operands are exact and whose products accumulate in float32). */
static const double kProductTol[4] = {1e-4, 1e-5, 4e-3, 1e-5};

/* For γ[c] = ±Inf: the elements of channel c whose value an engine's rounding may change.
 * y = (h − mean)·(rstd·γ) + β is ±Inf (hi / lo after the clamp) from the sign of h − mean,
 * NaN where h equals the mean; an element is ambiguous where |h − mean| is within the sum
 * of the bounds on the engine's errors in h and in the mean: the product's rounding
 * (kProductTol relative to Σ|x·w| + |b|, for the mean its average over the group), and for
 * the 16-bit dtypes h rounded to the dtype before the output is formed (twice the half
 * ulp, relative: 2^-7 bfloat16, 2^-10 float16; on h itself and on the mean of |h|). */
static int ambiguous_elements(case_data_t *c)
{
    const shape_t *s = c->s;
    const int64_t gs = s->n / s->groups, c0 = c->p.col / gs * gs;
    double *h = malloc((size_t)(s->m * gs) * sizeof(double));
    double *sc = malloc((size_t)(s->m * gs) * sizeof(double));
    if (!h || !sc) {
        free(h), free(sc);
        return -1;
    }
    for (int64_t r = 0; r < s->m; ++r)
        for (int64_t j = 0; j < gs; ++j) {
            const double b = tst_load(c->dt, c->bias, c0 + j);
            double acc = b, mag = fabs(b);
            for (int64_t k = 0; k < s->k; ++k) {
                const double t = tst_load(c->dt, c->x, r * c->ldx + k) *
                                 tst_load(c->dt, c->w, (c0 + j) * c->ldw + k);
                acc += t, mag += fabs(t);
            }
            h[r * gs + j] = acc, sc[r * gs + j] = mag;
        }
    const int modes[] = {LGH_MATH_DEFAULT, LGH_MATH_FP32, LGH_MATH_TF32, LGH_MATH_3XTF32};
    for (int mi = 0; mi < 4; ++mi) {
        const int m = modes[mi];
        if ((c->dt == LGH_DTYPE_FLOAT32) == (m == LGH_MATH_DEFAULT)) continue;
        unsigned char *amb = calloc((size_t)(s->m * s->n), 1);
        if (!amb) {
            free(h), free(sc);
            return -1;
        }
        const double tol = kProductTol[m];
        const double h_round = c->dt == LGH_DTYPE_BFLOAT16 ? 1.0 / 128.0
                               : c->dt == LGH_DTYPE_FLOAT16 ? 1.0 / 1024.0
                                                            : 0.0;
        for (int64_t r = 0; r < s->m; ++r) {
            double mean_sc = 0.0, mean_abs = 0.0;
            for (int64_t j = 0; j < gs; ++j)
                mean_sc += sc[r * gs + j] / (double)gs, mean_abs += fabs(h[r * gs + j]) / (double)gs;
            const double mean = c->ref_mean[r * s->groups + c0 / gs];
            const int64_t j = c->p.col - c0;
            const double hv = h[r * gs + j];
            const double err = tol * (sc[r * gs + j] + mean_sc) + h_round * (fabs(hv) + mean_abs);
            amb[r * s->n + c->p.col] = fabs(hv - mean) <= err ? AMB_EITHER : AMB_EXACT;
        }
        c->ambiguous[m] = amb;
    }
    free(h), free(sc);
    return 0;
}

static int make_case(case_data_t *c, int id, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->id = id;
    int si = 0;
    while (id >= g_case_base[si + 1]) ++si;
    const shape_t *s = &kShapes[si];
    c->s = s;
    c->shape_index = si;
    const int within = id - g_case_base[si];
    const int np = list_plants(s, NULL);
    c->dt = kDtypes[within / np];
    plant_t *plants = malloc((size_t)np * sizeof *plants);
    if (!plants) return -1;
    list_plants(s, plants);
    c->p = plants[within % np];
    free(plants);
    c->stats = s->stats || (within % np / N_VALUES) % 3 == 0;
    c->ldx = ldx_of(s), c->ldw = ldw_of(s), c->ldy = ldy_of(s);
    c->lo_d = rounded(c->dt, s->lo), c->hi_d = rounded(c->dt, s->hi);

    const size_t eb = tst_elem_bytes(c->dt);
    c->x_elems = (size_t)((s->m - 1) * c->ldx + s->k);
    c->w_elems = (size_t)((s->n - 1) * c->ldw + s->k);
    c->y_elems = (size_t)(s->m * c->ldy + TAIL);
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

    /* As test_matrix: x in [0, 1), W and b as nn.Linear initialises them, γ in [0.5, 1.5),
     * β in [-0.5, 0.5). */
    tst_rng_t r = tst_rng_make(seed, (uint64_t)id);
    const double wb = 1.0 / sqrt((double)s->k);
    tst_fill_matrix(c->dt, c->x, s->m, s->k, c->ldx, (int64_t)c->x_elems, &r, 0.0, 1.0);
    tst_fill_matrix(c->dt, c->w, s->n, s->k, c->ldw, (int64_t)c->w_elems, &r, -wb, wb);
    tst_fill_matrix(c->dt, c->bias, 1, s->n, s->n, s->n, &r, -wb, wb);
    tst_fill_matrix(c->dt, c->gamma, 1, s->n, s->n, s->n, &r, 0.5, 1.5);
    tst_fill_matrix(c->dt, c->beta, 1, s->n, s->n, s->n, &r, -0.5, 0.5);

    const double v = kValues[c->p.value];
    switch (c->p.where) {
    case AT_X: tst_store(c->dt, c->x, c->p.row * c->ldx + c->p.col, v); break;
    case AT_W: tst_store(c->dt, c->w, c->p.row * c->ldw + c->p.col, v); break;
    case AT_B: tst_store(c->dt, c->bias, c->p.col, v); break;
    case AT_GAMMA: tst_store(c->dt, c->gamma, c->p.col, v); break;
    case AT_BETA: tst_store(c->dt, c->beta, c->p.col, v); break;
    }

    lgh_args_t a = host_args(c);
    if (tst_reference(&a, c->ref_y, c->ref_mean, c->ref_rstd) != 0) return -1;
    if (c->p.where == AT_GAMMA && c->p.value != 0 && ambiguous_elements(c) != 0) return -1;
    return 0;
}

/* ---- the checker ------------------------------------------------------------------------- */

typedef struct verdict {
    int64_t nan_flip;     /* isnan(y) != isnan(ref) (ambiguous elements excepted) */
    int64_t inf_wrong;    /* ref ±Inf, y not equal to it */
    int64_t inf_extra;    /* ref finite, y ±Inf */
    int64_t amb_wrong;    /* ambiguous element neither NaN nor lo / hi */
    int64_t exact_wrong;  /* AMB_EXACT element not the reference's value */
    int64_t sentinel;     /* elements still holding the sentinel */
    int64_t first;        /* row * cols + col of the first bad element, -1 if none */
    int64_t finite;       /* elements compared by value */
    int64_t ambiguous;    /* elements allowed either way */
    double rel, max_abs;  /* over the finite elements */
} verdict_t;

static int verdict_bad(const verdict_t *v)
{
    return v->nan_flip || v->inf_wrong || v->inf_extra || v->amb_wrong || v->exact_wrong ||
           v->sentinel;
}

/* Checks y (rows x cols at ld, dtype dt) against ref (packed doubles) as the header says.
 * amb (AMB_* per element) may be NULL; sentinel is the value the unwritten elements would
 * hold (NAN: none to look for). lo / hi as the dtype stores them. */
static verdict_t check_y(lgh_dtype_t dt, const void *y, int64_t rows, int64_t cols, int64_t ld,
                         const double *ref, const unsigned char *amb, double lo, double hi,
                         double sentinel)
{
    verdict_t v;
    memset(&v, 0, sizeof v);
    v.first = -1;
    double num = 0.0, den = 0.0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
            const int64_t i = r * cols + c;
            const double got = tst_load(dt, y, r * ld + c), want = ref[i];
            int bad = 0;
            if (!isnan(sentinel) && got == sentinel) {
                ++v.sentinel, bad = 1;
            } else if (amb && amb[i] == AMB_EITHER) {
                ++v.ambiguous;
                if (!(isnan(got) || got == lo || got == hi)) ++v.amb_wrong, bad = 1;
            } else if (amb && amb[i] == AMB_EXACT &&
                       !(got == rounded(dt, want) || (isnan(got) && isnan(want)))) {
                ++v.exact_wrong, bad = 1;
            } else if (isnan(got) != isnan(want)) {
                ++v.nan_flip, bad = 1;
            } else if (isinf(want)) {
                if (got != want) ++v.inf_wrong, bad = 1;
            } else if (isinf(got)) {
                ++v.inf_extra, bad = 1;
            } else if (!isnan(want)) {
                const double d = fabs(got - want);
                num += d * d, den += want * want;
                if (d > v.max_abs) v.max_abs = d;
                ++v.finite;
            }
            if (bad && v.first < 0) v.first = i;
        }
    v.rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
    return v;
}

/* The statistics: finiteness must match the reference's per element; the finite ones
 * are compared (mean relative to the RMS of the group's values, sqrt(mean² + var); rstd
 * relative). Returns the number of finiteness mismatches and the larger relative error. */
static int64_t check_stats(const case_data_t *c, const float *mean, const float *rstd,
                           double sentinel, double *rel, int64_t *first)
{
    const int64_t count = c->s->m * c->s->groups;
    int64_t bad = 0;
    double mn = 0.0, md = 0.0, rn = 0.0, rd = 0.0;
    *first = -1;
    for (int64_t i = 0; i < count; ++i) {
        const double rm = c->ref_mean[i], rr = c->ref_rstd[i];
        const double gm = mean[i], gr = rstd[i];
        if (isfinite(gm) != isfinite(rm) || isfinite(gr) != isfinite(rr) ||
            (!isnan(sentinel) && (gm == sentinel || gr == sentinel))) {
            if (*first < 0) *first = i;
            ++bad;
            continue;
        }
        if (!isfinite(rm) || !isfinite(rr)) continue;
        double var = 1.0 / (rr * rr) - (double)kEps;
        if (var < 0.0) var = 0.0;
        mn += (gm - rm) * (gm - rm), md += rm * rm + var;
        rn += (gr - rr) * (gr - rr), rd += rr * rr;
    }
    const double em = md > 0.0 ? sqrt(mn / md) : 0.0, er = rd > 0.0 ? sqrt(rn / rd) : 0.0;
    *rel = em > er ? em : er;
    return bad;
}

/* ---- the tf32 allowance (as test_matrix's tf32_floor) ---------------------------------- */

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

/* ||ref' - ref|| / ||ref|| over the elements finite in both, ref' the reference on
 * operands rounded as tf32 tensor cores read them (W truncated, x truncated or rounded),
 * the larger of the two. NaN when it cannot allocate. */
static double tf32_floor(const case_data_t *c)
{
    const shape_t *s = c->s;
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
                if (!isfinite(y[i]) || !isfinite(c->ref_y[i])) continue;
                const double d = y[i] - c->ref_y[i];
                num += d * d, den += c->ref_y[i] * c->ref_y[i];
            }
            if (den > 0.0) floor = fmax(floor, sqrt(num / den));
        }
    }
    free(x), free(w), free(y);
    return floor;
}

/* ---- targets ------------------------------------------------------------------------------ */

typedef struct target {
    const char *name;
    lgh_engine_t engine;
    int on_gpu;
    int must_take; /* NOT_SUPPORTED is a failure, not a skip */
    lgh_context_t ctx;
    tst_tally_t tally;
    long ran_by_where[5];
} target_t;

static int g_verbose;

static void describe(char *buf, size_t len, const target_t *t, const case_data_t *c,
                     lgh_math_t math, const char *poison)
{
    const shape_t *s = c->s;
    char pl[64];
    describe_plant(pl, sizeof pl, &c->p);
    snprintf(buf, len,
             "case %d [%s %s %s] M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " G=%" PRId64
             "%s clamp=[%g,%g] stats=%s %s, y poisoned with %s",
             c->id, t->name, lgh_dtype_name(c->dt), lgh_math_name(math), s->m, s->k, s->n,
             s->groups, s->pad ? " padded" : "", s->lo, s->hi, c->stats ? "yes" : "no", pl,
             poison);
}

static void replay_hint(const target_t *t, const case_data_t *c)
{
    printf("      replay: LGH_TEST_SEED=%" PRIu64 " test_special --engine %s --case %d\n",
           tst_base_seed(), t->name, c->id);
}

static void fill_sentinel(lgh_dtype_t dt, void *buf, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t col = 0; col < cols; ++col) tst_store(dt, buf, r * ld + col, SENTINEL);
}

/* One lgh_forward of (case, math) on target with y poisoned by NaN (sentinel_run 0) or
 * by SENTINEL (1). Returns 0 pass, 1 fail, 2 skip (the engine declined). */
static int run_call(target_t *t, const case_data_t *c, lgh_math_t math, int sentinel_run)
{
    const shape_t *s = c->s;
    char what[512], msg[512] = "";
    describe(what, sizeof what, t, c, math, sentinel_run ? "12345" : "NaN");
    const size_t eb = tst_elem_bytes(c->dt);
    const int gpu = t->on_gpu;
    int rc = 1;

    tst_buf_t x = {0}, w = {0}, b = {0}, g = {0}, be = {0}, y = {0}, mean = {0}, rstd = {0};
    if (tst_buf_alloc(&x, c->x_elems * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&w, c->w_elems * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&b, (size_t)s->n * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&g, (size_t)s->n * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&be, (size_t)s->n * eb, gpu, msg, sizeof msg) ||
        tst_buf_alloc(&y, c->y_elems * eb, gpu, msg, sizeof msg) ||
        (c->stats && (tst_buf_alloc(&mean, c->stat_elems * 4, gpu, msg, sizeof msg) ||
                      tst_buf_alloc(&rstd, c->stat_elems * 4, gpu, msg, sizeof msg)))) {
        printf("FAIL %s: allocation: %s\n", what, msg);
        goto done;
    }
    memcpy(x.host, c->x, x.bytes);
    memcpy(w.host, c->w, w.bytes);
    memcpy(b.host, c->bias, b.bytes);
    memcpy(g.host, c->gamma, g.bytes);
    memcpy(be.host, c->beta, be.bytes);
    tst_poison_matrix(c->dt, y.host, s->m, s->n, c->ldy, (int64_t)c->y_elems);
    if (sentinel_run) fill_sentinel(c->dt, y.host, s->m, s->n, c->ldy);
    if (c->stats) {
        tst_poison_matrix(LGH_DTYPE_FLOAT32, mean.host, s->m, s->groups, s->groups,
                          (int64_t)c->stat_elems);
        tst_poison_matrix(LGH_DTYPE_FLOAT32, rstd.host, s->m, s->groups, s->groups,
                          (int64_t)c->stat_elems);
        if (sentinel_run) {
            fill_sentinel(LGH_DTYPE_FLOAT32, mean.host, s->m, s->groups, s->groups);
            fill_sentinel(LGH_DTYPE_FLOAT32, rstd.host, s->m, s->groups, s->groups);
        }
    }
    if (tst_buf_upload(&x, msg, sizeof msg) || tst_buf_upload(&w, msg, sizeof msg) ||
        tst_buf_upload(&b, msg, sizeof msg) || tst_buf_upload(&g, msg, sizeof msg) ||
        tst_buf_upload(&be, msg, sizeof msg) || tst_buf_upload(&y, msg, sizeof msg) ||
        (c->stats && (tst_buf_upload(&mean, msg, sizeof msg) ||
                      tst_buf_upload(&rstd, msg, sizeof msg)))) {
        printf("FAIL %s: upload: %s\n", what, msg);
        goto done;
    }

    lgh_args_t a = host_args(c);
    a.math = math;
    a.engine = t->engine;
    a.x = x.dev, a.w = w.dev, a.bias = b.dev, a.gamma = g.dev, a.beta = be.dev, a.y = y.dev;
    if (c->stats) a.mean = mean.dev, a.rstd = rstd.dev;

    lgh_engine_t picked = LGH_ENGINE_COUNT;
    const lgh_status_t plan = lgh_plan(t->ctx, &a, &picked, NULL);
    const int skippable = !t->must_take && plan == LGH_STATUS_NOT_SUPPORTED;
    if (plan != LGH_STATUS_SUCCESS && !skippable) {
        printf("FAIL %s: lgh_plan: %s: %s\n", what, lgh_status_string(plan),
               lgh_last_error(t->ctx));
        goto done;
    }
    const lgh_status_t st = lgh_forward(t->ctx, &a, NULL, 0, NULL);
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
        (c->stats && (tst_buf_download(&mean, msg, sizeof msg) ||
                      tst_buf_download(&rstd, msg, sizeof msg)))) {
        printf("FAIL %s: download: %s\n", what, msg);
        goto done;
    }
    const int64_t damage = tst_guard_damage(c->dt, y.host, s->m, s->n, c->ldy, (int64_t)c->y_elems);

    if (skippable) {
        /* Refused: nothing may have been written. */
        int64_t touched = damage;
        for (int64_t r = 0; r < s->m; ++r)
            for (int64_t col = 0; col < s->n; ++col)
                touched += sentinel_run
                               ? tst_load(c->dt, y.host, r * c->ldy + col) != rounded(c->dt, SENTINEL)
                               : !tst_is_pattern(c->dt, y.host, r * c->ldy + col, TST_POISON);
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
    const double sentinel = sentinel_run ? rounded(c->dt, SENTINEL) : NAN;
    const verdict_t v = check_y(c->dt, y.host, s->m, s->n, c->ldy, c->ref_y,
                                c->ambiguous[resolved], c->lo_d, c->hi_d, sentinel);
    double y_bound = bound, tf32_fl = 0.0;
    if (c->dt == LGH_DTYPE_FLOAT32 && resolved == LGH_MATH_TF32 && !(v.rel <= bound)) {
        tf32_fl = tf32_floor(c);
        if (1.5 * tf32_fl > bound) y_bound = 1.5 * tf32_fl;
    }
    int64_t stat_bad = 0, stat_first = -1, stat_damage = 0;
    double stat_rel = 0.0;
    if (c->stats) {
        stat_bad = check_stats(c, mean.host, rstd.host, sentinel_run ? SENTINEL : NAN, &stat_rel,
                               &stat_first);
        stat_damage = tst_guard_damage(LGH_DTYPE_FLOAT32, mean.host, s->m, s->groups, s->groups,
                                       (int64_t)c->stat_elems) +
                      tst_guard_damage(LGH_DTYPE_FLOAT32, rstd.host, s->m, s->groups,
                                       s->groups, (int64_t)c->stat_elems);
    }
    const int ok = !verdict_bad(&v) && v.rel <= y_bound && damage == 0 && stat_bad == 0 &&
                   stat_damage == 0 && stat_rel <= y_bound;

    if (!ok || g_verbose) {
        printf("%s %s%s%s: %" PRId64 " finite compared, rel %.3g (bound %.3g)", ok ? "ok  " : "FAIL",
               what, t->engine == LGH_ENGINE_AUTO ? " ran " : "",
               t->engine == LGH_ENGINE_AUTO ? lgh_engine_name(picked) : "", v.finite, v.rel,
               y_bound);
        if (tf32_fl > 0.0) printf(" (tf32 floor %.3g)", tf32_fl);
        if (v.ambiguous) printf(", %" PRId64 " sign-ambiguous", v.ambiguous);
        if (v.nan_flip) printf(", %" PRId64 " NaN where the reference is not or the reverse", v.nan_flip);
        if (v.inf_wrong) printf(", %" PRId64 " infinities wrong", v.inf_wrong);
        if (v.inf_extra) printf(", %" PRId64 " infinite where the reference is finite", v.inf_extra);
        if (v.amb_wrong) printf(", %" PRId64 " sign-ambiguous elements neither NaN, lo nor hi", v.amb_wrong);
        if (v.exact_wrong)
            printf(", %" PRId64 " gamma=±Inf elements not the reference's lo / hi", v.exact_wrong);
        if (v.sentinel) printf(", %" PRId64 " elements unwritten (still the sentinel)", v.sentinel);
        if (damage) printf(", %" PRId64 " padding/tail elements of y overwritten", damage);
        if (c->stats) {
            printf("; stats rel %.3g", stat_rel);
            if (stat_bad) printf(", %" PRId64 " mean/rstd finiteness mismatches or unwritten", stat_bad);
            if (stat_damage) printf(", %" PRId64 " elements past mean/rstd overwritten", stat_damage);
        }
        printf("\n");
        if (v.first >= 0) {
            const int64_t r = v.first / s->n, col = v.first % s->n;
            printf("      first bad y[%" PRId64 ",%" PRId64 "] (group %" PRId64 "): got %g, reference %.9g\n",
                   r, col, col / (s->n / s->groups), tst_load(c->dt, y.host, r * c->ldy + col),
                   c->ref_y[v.first]);
        }
        if (stat_first >= 0)
            printf("      first bad statistics (row %" PRId64 ", group %" PRId64
                   "): mean %g rstd %g, reference mean %.9g rstd %.9g\n",
                   stat_first / s->groups, stat_first % s->groups,
                   (double)((float *)mean.host)[stat_first], (double)((float *)rstd.host)[stat_first],
                   c->ref_mean[stat_first], c->ref_rstd[stat_first]);
        if (!ok) replay_hint(t, c);
    }
    rc = ok ? 0 : 1;

done:
    tst_buf_free(&x), tst_buf_free(&w), tst_buf_free(&b), tst_buf_free(&g);
    tst_buf_free(&be), tst_buf_free(&y), tst_buf_free(&mean), tst_buf_free(&rstd);
    return rc;
}

/* Both calls of one (case, math): 0 pass, 1 fail, 2 skip. */
static int run_one(target_t *t, const case_data_t *c, lgh_math_t math)
{
    const int first = run_call(t, c, math, 0);
    if (first == 2) return 2;
    const int second = run_call(t, c, math, 1);
    return first == 0 && second == 0 ? 0 : second == 2 ? 1 : first | second;
}

static void count(target_t *t, const case_data_t *c, int rc)
{
    if (rc == 0) t->tally.passed++, t->ran_by_where[c->p.where]++;
    else if (rc == 1) t->tally.failed++;
    else t->tally.skipped++;
}

static void run_case_on(target_t *t, const case_data_t *c)
{
    if (c->dt == LGH_DTYPE_FLOAT32) {
        static const lgh_math_t modes[] = {LGH_MATH_FP32, LGH_MATH_TF32, LGH_MATH_3XTF32};
        for (int i = 0; i < COUNT(modes); ++i) count(t, c, run_one(t, c, modes[i]));
    } else {
        count(t, c, run_one(t, c, LGH_MATH_DEFAULT));
    }
}

/* ---- the checker checks itself ------------------------------------------------------------ */

/* Each mistake the cases rely on catching, made on purpose on a 3 x 5 y at ld 7 in every
 * dtype. Returns the number of checks that did not behave. */
static int checker_self_test(void)
{
    enum { R = 3, C = 5, LD = 7, TOTAL = R * LD + TAIL };
    const double lo = -2.0, hi = 2.0;
    int bad = 0;
    for (int d = 0; d < N_DTYPES; ++d) {
        const lgh_dtype_t dt = kDtypes[d];
        uint32_t y[TOTAL]; /* big enough for any dtype */
        double ref[R * C];
        unsigned char amb[R * C] = {0};
        tst_poison_matrix(dt, y, R, C, LD, TOTAL);
        for (int r = 0; r < R; ++r)
            for (int c = 0; c < C; ++c) {
                const double v = r == 1 ? NAN : c == 2 ? hi : 0.25 * (c - 2) + 0.125 * r;
                tst_store(dt, y, r * LD + c, v);
                ref[r * C + c] = tst_load(dt, y, r * LD + c);
            }
        verdict_t v = check_y(dt, y, R, C, LD, ref, NULL, lo, hi, NAN);
        bad += verdict_bad(&v) || v.rel != 0.0 || v.finite != (R - 1) * C;

        /* A NaN flipped either way. */
        ref[0 * C + 3] = NAN;
        v = check_y(dt, y, R, C, LD, ref, NULL, lo, hi, NAN);
        bad += !(v.nan_flip == 1 && v.first == 3);
        ref[0 * C + 3] = tst_load(dt, y, 3);
        ref[1 * C + 1] = 0.5;
        v = check_y(dt, y, R, C, LD, ref, NULL, lo, hi, NAN);
        bad += !(v.nan_flip == 1 && v.first == C + 1);
        ref[1 * C + 1] = NAN;

        /* The same flip on an element marked ambiguous is allowed (NaN or lo / hi only). */
        amb[1 * C + 1] = amb[0 * C + 2] = AMB_EITHER;
        ref[1 * C + 1] = hi;
        v = check_y(dt, y, R, C, LD, ref, amb, lo, hi, NAN);
        bad += verdict_bad(&v) || v.ambiguous != 2;
        tst_store(dt, y, 0 * LD + 2, 0.5); /* ambiguous but neither NaN, lo nor hi */
        v = check_y(dt, y, R, C, LD, ref, amb, lo, hi, NAN);
        bad += v.amb_wrong != 1;
        tst_store(dt, y, 0 * LD + 2, hi);
        ref[1 * C + 1] = NAN;

        /* An element marked exact must be the reference's lo / hi: the other one is caught,
         * though the finite bound over many elements might let it pass. */
        amb[2 * C + 2] = AMB_EXACT;
        v = check_y(dt, y, R, C, LD, ref, amb, lo, hi, NAN);
        bad += verdict_bad(&v);
        tst_store(dt, y, 2 * LD + 2, lo);
        v = check_y(dt, y, R, C, LD, ref, amb, lo, hi, NAN);
        bad += !(v.exact_wrong == 1 && v.first == 2 * C + 2);
        tst_store(dt, y, 2 * LD + 2, hi);
        amb[2 * C + 2] = AMB_NONE;

        /* An element left holding the sentinel. */
        const double sent = rounded(dt, SENTINEL);
        tst_store(dt, y, 2 * LD + 4, SENTINEL);
        v = check_y(dt, y, R, C, LD, ref, NULL, lo, hi, sent);
        bad += !(v.sentinel == 1 && v.first == 2 * C + 4);
        tst_store(dt, y, 2 * LD + 4, ref[2 * C + 4]);

        /* Infinities: a wrong one, and one where the reference is finite. */
        tst_store(dt, y, 0 * LD + 0, INFINITY);
        ref[0] = -INFINITY;
        v = check_y(dt, y, R, C, LD, ref, NULL, lo, hi, NAN);
        bad += v.inf_wrong != 1;
        ref[0] = INFINITY;
        v = check_y(dt, y, R, C, LD, ref, NULL, lo, hi, NAN);
        bad += verdict_bad(&v);
        ref[0] = 1.0;
        v = check_y(dt, y, R, C, LD, ref, NULL, lo, hi, NAN);
        bad += v.inf_extra != 1;
        tst_store(dt, y, 0, -0.5);
        ref[0] = tst_load(dt, y, 0);

        /* A wrong finite value fails the bound, though every NaN is right. */
        tst_store(dt, y, 2 * LD + 1, ref[2 * C + 1] + 0.25);
        v = check_y(dt, y, R, C, LD, ref, NULL, lo, hi, NAN);
        bad += verdict_bad(&v) || !(v.rel > tst_bound(dt, LGH_MATH_TF32));
    }
    if (bad) printf("FAIL checker self-test: %d checks did not catch what they must\n", bad);
    return bad;
}

/* ---- set-up --------------------------------------------------------------------------------- */


static tst_setup_t setup_target(target_t *t)
{
    return tst_open_target(t->name, t->engine, t->on_gpu, &t->ctx, NULL);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: test_special [--engine cpu|cublaslt|sm80|sm90|auto] [--case N] [--verbose]\n"
            "  Plants NaN / +Inf / -Inf in x, W, b, gamma and beta and checks the output's\n"
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
                fprintf(stderr, "test_special: --case %s: expected 0..%d\n", argv[i], n_cases() - 1);
                return 2;
            }
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            g_verbose = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "test_special: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    static const struct {
        const char *name;
        lgh_engine_t engine;
        int on_gpu, must_take;
    } known[] = {{"cpu", LGH_ENGINE_CPU, 0, 1},
                 {"cublaslt", LGH_ENGINE_CUBLASLT, 1, 1},
                 {"sm80", LGH_ENGINE_SM80, 1, 0},
                 {"sm90", LGH_ENGINE_SM90, 1, 0},
                 {"auto", LGH_ENGINE_AUTO, 1, 1}};
    target_t t;
    memset(&t, 0, sizeof t);
    for (int i = 0; i < COUNT(known); ++i)
        if (!strcmp(engine_arg, known[i].name)) {
            t.name = known[i].name, t.engine = known[i].engine;
            t.on_gpu = known[i].on_gpu, t.must_take = known[i].must_take;
        }
    if (!t.name) {
        fprintf(stderr, "test_special: unknown engine '%s'\n", engine_arg);
        usage(stderr);
        return 2;
    }

    char title[64];
    snprintf(title, sizeof title, "test_special[%s]", engine_arg);
    tst_print_seed(title);
    /* LGH_ENGINE replaces AUTO: the auto target may then skip what that engine may. */
    const char *env = getenv("LGH_ENGINE");
    lgh_engine_t env_engine = LGH_ENGINE_AUTO;
    if (t.engine == LGH_ENGINE_AUTO && env && *env &&
        lgh_engine_from_name(env, &env_engine) == LGH_STATUS_SUCCESS &&
        env_engine != LGH_ENGINE_AUTO) {
        printf("note: LGH_ENGINE=%s is set; it replaces AUTO\n", env);
        t.must_take = env_engine == LGH_ENGINE_CPU || env_engine == LGH_ENGINE_CUBLASLT;
    }

    tst_tally_t total = {0, 0, 0};
    if (checker_self_test()) total.failed++;

    const tst_setup_t setup = setup_target(&t);
    if (setup == TST_SETUP_FAIL) total.failed++;
    if (setup == TST_SETUP_OK) {
        for (int id = 0; id < n_cases(); ++id) {
            if (only_case >= 0 && id != only_case) continue;
            case_data_t c;
            if (make_case(&c, id, tst_base_seed())) {
                printf("FAIL case %d: could not build inputs or the reference\n", id);
                total.failed++;
                free_case(&c);
                continue;
            }
            run_case_on(&t, &c);
            free_case(&c);
        }
        printf("%s: passed per planted input:", t.name);
        for (int w = 0; w < 5; ++w) printf(" %s %ld", kWhereName[w], t.ran_by_where[w]);
        printf("\n");
        if (t.tally.skipped)
            printf("%s: %ld runs skipped: the engine answered NOT_SUPPORTED (--verbose for "
                   "each reason)\n", t.name, t.tally.skipped);
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
