/*
 * test_backward: lgh_backward over a shape matrix, every gradient checked against the
 * double-precision reference (lgh_reference_backward, src/cpu/reference.c).
 *
 *   test_backward [--engine cpu|cublaslt|sm80|sm90|auto] [--case N] [--verbose]
 *
 * Shapes: M in {1, 7, 100} x K in {8, 100, 256} x group size in {1, 8, 48, 64, 512} x
 * G in {1, 3}, then one larger shape (M=300, K=1024, N=1024, G=8) for the products'
 * blocking and three with wide groups (1024, 2048 and 4096 channels). Each shape cycles through packed, odd-padded and aligned-padded leading
 * dimensions of x, W, dy, h, dx and dW; with or without the saved h (lgh_args_t.h: the
 * backward reuses it, or recomputes x·Wᵀ + b); all five gradients or a subset (dx only;
 * dγ and dβ only; dW and db; db only); the context's workspace or a caller's of exactly
 * lgh_backward_plan's size; several clamps and eps; (float32, some shapes) a bias around
 * 8 so that the mean dwarfs the spread. Every shape runs in every dtype (case = shape x
 * dtype; case i gets the same inputs for the same LGH_TEST_SEED); float32 runs every math
 * mode. The reference is computed once per case.
 *
 * One run: lgh_forward (same engine, math and inputs) saves mean, rstd and maybe h; the
 * gradients are poisoned with NaN and their padding (and a tail after the last row)
 * with a guard pattern; lgh_backward; each wanted gradient's relative Frobenius error
 * must be within the bound (an unwritten element is NaN and fails) and every guard
 * element unchanged. Then the outputs are poisoned again and lgh_backward runs a second
 * time: dW, db, dγ and dβ must come back bit for bit the same (lgh.h promises them
 * deterministic). Bounds: float32 and 3xtf32 1e-5, tf32 1e-3, bfloat16 / float16 2e-2
 * (dβ's error relative to the larger of ||dβ|| and the typical size of its sums, dbeta_rel);
 * a tf32 gradient past 1e-3 passes within 1e-3 plus the error exact arithmetic makes on
 * tf32-rounded x and W of the same inputs (tf32_floors: small groups amplify the rounding
 * of h, as for test_matrix's y).
 *
 * dy is uniform in [-1, 1) except where the reference's z (the value the clamp sees) is
 * within rel_tol·max(1, |lo|, |hi|) of lo or hi, where it is 0 (lgh_reference_near_clamp
 * says why: the clamp's gradient is discontinuous, and an engine's z a rounding error
 * away from the reference's may fall on the other side). rel_tol is a few times the
 * error an engine's z may have: 1e-2 for float32 (its tf32 mode included), 5e-2 for
 * bfloat16 / float16 (a saved h is rounded to the dtype).
 *
 * Before the matrix, the refusals of lgh_backward and lgh_backward_plan: NULL dy, mean,
 * rstd or x, no gradient asked for, lddx / lddw / lddy / ldh too small, N not a multiple
 * of G, a caller workspace below the plan's size, and on a GPU context a host dy; each
 * must return its status, set a message and write nothing.
 *
 * Engines: cpu on a CPU context; cublaslt, sm80, sm90 and auto on CUDA device 0, exiting
 * 77 (ctest's SKIP_RETURN_CODE) without a device. cpu and auto must take every case; a
 * forced GPU engine may answer LGH_STATUS_NOT_SUPPORTED (a counted skip, after which
 * nothing may have been written). Exit: 0 all passed (some may be skipped), 1 a failure,
 * 77 nothing ran.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/reference.h"
#include "lgh.h"
#include "support/tst.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- the matrix ------------------------------------------------------------------------ */

typedef struct dims {
    int64_t m, k, gs, g;
} dims_t;

static const int64_t kMs[] = {1, 7, 100};
static const int64_t kKs[] = {8, 100, 256};
static const int64_t kGroupSizes[] = {1, 8, 48, 64, 512};
static const int64_t kGroupCounts[] = {1, 3};
/* After the matrix: many rows, a deep K and N = 1024; then wide groups, which the GPU
 * norm backward's one-pass kernel spreads over teams of 4 and 8 warps (1024 and 2048
 * channels), and one wider than it takes (4096: the three-kernel path). */
static const dims_t kLarge[] = {{300, 1024, 128, 8}, {37, 64, 1024, 2}, {21, 32, 2048, 1}, {19, 32, 4096, 1}};

static const lgh_dtype_t kDtypes[] = {LGH_DTYPE_FLOAT32, LGH_DTYPE_BFLOAT16, LGH_DTYPE_FLOAT16};
#define N_DTYPES COUNT(kDtypes)

#define MAX_SHAPES (COUNT(kMs) * COUNT(kKs) * COUNT(kGroupSizes) * COUNT(kGroupCounts) + COUNT(kLarge))
static dims_t g_dims[MAX_SHAPES];
static int g_n_shapes;

static void list_shapes(void)
{
    g_n_shapes = 0;
    for (int mi = 0; mi < COUNT(kMs); ++mi)
        for (int ki = 0; ki < COUNT(kKs); ++ki)
            for (int si = 0; si < COUNT(kGroupSizes); ++si)
                for (int gi = 0; gi < COUNT(kGroupCounts); ++gi)
                    g_dims[g_n_shapes++] =
                        (dims_t){kMs[mi], kKs[ki], kGroupSizes[si], kGroupCounts[gi]};
    for (int i = 0; i < COUNT(kLarge); ++i) g_dims[g_n_shapes++] = kLarge[i];
}

/* The gradients, as bits of shape_t.want, in the order of the tables. */
enum { GR_DX, GR_DW, GR_DB, GR_DG, GR_DBE, N_GRADS };
#define WANT(g) (1u << (g))
#define WANT_ALL (WANT(N_GRADS) - 1u)
static const char *const kGradNames[N_GRADS] = {"dx", "dW", "db", "dgamma", "dbeta"};

typedef struct shape {
    int64_t m, k, n, groups;
    int64_t ldx, ldw, lddy, ldh, lddx, lddw; /* resolved (never 0); args get 0 when packed */
    int packed;
    int save_h;        /* the forward saves h and the backward reuses it */
    unsigned want;     /* WANT(GR_*) bits */
    int own_workspace; /* a caller workspace of exactly lgh_backward_plan's size */
    int offset_bias;   /* float32 only: bias around 8 */
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
    case 0:
        s.packed = 1;
        s.ldx = s.k, s.ldw = s.k, s.lddy = s.n, s.ldh = s.n, s.lddx = s.k, s.lddw = s.k;
        break;
    case 1: /* odd padding: rows not 16-byte aligned */
        s.ldx = s.k + 3, s.ldw = s.k + 5, s.lddy = s.n + 1, s.ldh = s.n + 3;
        s.lddx = s.k + 1, s.lddw = s.k + 7;
        break;
    default: /* aligned padding (16 bytes for every dtype) */
        s.ldx = s.k + 8, s.ldw = s.k + 16, s.lddy = s.n + 8, s.ldh = s.n + 16;
        s.lddx = s.k + 8, s.lddw = s.k + 24;
        break;
    }
    s.save_h = (idx / 3) % 2;
    switch (idx % 8) {
    case 5: s.want = WANT(GR_DX); break;
    case 6: s.want = WANT(GR_DG) | WANT(GR_DBE); break;
    case 7: s.want = (idx / 8) % 2 ? WANT(GR_DB) : WANT(GR_DW) | WANT(GR_DB); break;
    default: s.want = WANT_ALL; break;
    }
    s.own_workspace = (idx / 2) % 2;
    s.offset_bias = idx % 5 == 4;
    static const float clamps[3][2] = {{-2.0f, 2.0f}, {-1.0f, 0.75f}, {-0.5f, 3.0f}};
    const int ci = idx % 3 == 0 ? (idx / 3) % 3 : idx % 3;
    s.lo = clamps[ci][0], s.hi = clamps[ci][1];
    s.eps = idx % 7 == 3 ? 1e-2f : 1e-5f;
    return s;
}

/* ---- one case's host data and reference ---------------------------------------------- */

/* Elements after the last row of an output that must stay untouched. */
enum { TAIL = 16 };

typedef struct case_data {
    int id;
    shape_t s;
    lgh_dtype_t dt;
    size_t x_elems, w_elems, dy_elems, h_elems, out_elems[N_GRADS];
    void *x, *w, *bias, *gamma, *beta, *dy; /* host, dtype dt */
    double *ref[N_GRADS];                   /* packed: dx [m][k], dW [n][k], vectors [n] */
    double dy_rss;                          /* sqrt of the sum of dy² (after the zeroing): the
                                               typical size of dβ's sums (dbeta_rel) */
    int64_t near;                           /* elements of dy zeroed near lo / hi */
} case_data_t;

static int64_t grad_rows(const shape_t *s, int g)
{
    return g == GR_DX ? s->m : g == GR_DW ? s->n : 1;
}
static int64_t grad_cols(const shape_t *s, int g) { return g <= GR_DW ? s->k : s->n; }
static int64_t grad_ld(const shape_t *s, int g)
{
    return g == GR_DX ? s->lddx : g == GR_DW ? s->lddw : s->n;
}

static void free_case(case_data_t *c)
{
    free(c->x), free(c->w), free(c->bias), free(c->gamma), free(c->beta), free(c->dy);
    for (int g = 0; g < N_GRADS; ++g) free(c->ref[g]);
    memset(c, 0, sizeof *c);
}

/* The forward problem on the host inputs. */
static lgh_args_t host_args(const case_data_t *c)
{
    lgh_args_t a;
    lgh_args_init(&a, c->s.m, c->s.k, c->s.n, c->s.groups);
    a.dtype = c->dt;
    a.eps = c->s.eps, a.lo = c->s.lo, a.hi = c->s.hi;
    a.x = c->x, a.w = c->w, a.bias = c->bias, a.gamma = c->gamma, a.beta = c->beta;
    if (!c->s.packed) a.ldx = c->s.ldx, a.ldw = c->s.ldw;
    return a;
}

static double near_tolerance(lgh_dtype_t dt) { return dt == LGH_DTYPE_FLOAT32 ? 1e-2 : 5e-2; }

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
    c->dy_elems = (size_t)((s->m - 1) * s->lddy + s->n);
    c->h_elems = (size_t)(s->m * s->ldh + TAIL);
    for (int g = 0; g < N_GRADS; ++g)
        c->out_elems[g] = (size_t)(grad_rows(s, g) * grad_ld(s, g) + TAIL);
    c->x = malloc(c->x_elems * eb);
    c->w = malloc(c->w_elems * eb);
    c->bias = malloc((size_t)s->n * eb);
    c->gamma = malloc((size_t)s->n * eb);
    c->beta = malloc((size_t)s->n * eb);
    c->dy = malloc(c->dy_elems * eb);
    unsigned char *near = malloc((size_t)(s->m * s->n));
    int bad = !c->x || !c->w || !c->bias || !c->gamma || !c->beta || !c->dy || !near;
    for (int g = 0; g < N_GRADS; ++g) {
        c->ref[g] = malloc((size_t)(grad_rows(s, g) * grad_cols(s, g)) * sizeof(double));
        bad |= !c->ref[g];
    }
    if (bad) {
        free(near);
        return -1;
    }

    /* As test_matrix: x in [0, 1), nn.Linear's W, γ and β away from 1 and 0. Input
     * padding holds a NaN guard, so an engine that reads it fails. */
    tst_rng_t r = tst_rng_make(seed, (uint64_t)id);
    const double wb = 1.0 / sqrt((double)s->k);
    tst_fill_matrix(c->dt, c->x, s->m, s->k, s->ldx, (int64_t)c->x_elems, &r, 0.0, 1.0);
    tst_fill_matrix(c->dt, c->w, s->n, s->k, s->ldw, (int64_t)c->w_elems, &r, -wb, wb);
    const int offset = s->offset_bias && c->dt == LGH_DTYPE_FLOAT32;
    tst_fill_matrix(c->dt, c->bias, 1, s->n, s->n, s->n, &r, offset ? 7.5 : -0.5,
                    offset ? 8.5 : 0.5);
    tst_fill_matrix(c->dt, c->gamma, 1, s->n, s->n, s->n, &r, 0.5, 1.5);
    tst_fill_matrix(c->dt, c->beta, 1, s->n, s->n, s->n, &r, -0.5, 0.5);
    tst_fill_matrix(c->dt, c->dy, s->m, s->n, s->lddy, (int64_t)c->dy_elems, &r, -1.0, 1.0);

    lgh_args_t a = host_args(c);
    if (lgh_reference_near_clamp(&a, near_tolerance(c->dt), near, &c->near) != 0) {
        free(near);
        return -1;
    }
    for (int64_t i = 0; i < s->m; ++i)
        for (int64_t j = 0; j < s->n; ++j)
            if (near[i * s->n + j]) tst_store(c->dt, c->dy, i * s->lddy + j, 0.0);
    free(near);
    double ss = 0.0;
    for (int64_t i = 0; i < s->m; ++i)
        for (int64_t j = 0; j < s->n; ++j) {
            const double v = tst_load(c->dt, c->dy, i * s->lddy + j);
            ss += v * v;
        }
    c->dy_rss = sqrt(ss);

    lgh_backward_args_t b;
    memset(&b, 0, sizeof b);
    b.fwd = a;
    b.dy = c->dy;
    b.lddy = s->lddy;
    return lgh_reference_backward(&b, c->ref[GR_DX], c->ref[GR_DW], c->ref[GR_DB],
                                  c->ref[GR_DG], c->ref[GR_DBE]);
}

/* ---- targets (engine + context) ------------------------------------------------------ */

typedef struct target {
    const char *name;
    lgh_engine_t engine;
    int on_gpu;
    int must_take; /* NOT_SUPPORTED is a failure, not a skip */
    lgh_context_t ctx;
    tst_buf_t ws; /* caller workspace, grown as needed */
    tst_tally_t tally;
    double worst[N_DTYPES][4][N_GRADS];
    long ran[N_DTYPES][4];
    long auto_picked[LGH_ENGINE_COUNT];
    long forward_by_auto; /* forced engine refused the forward: AUTO's forward used */
} target_t;

static int g_verbose;

/* dβ[c] = Σ_m dz[m, c] is a plain sum of ±dy values, so when they cancel (|dβ| far below
 * the size of its terms: few rows, one column) float32's rounding error, which scales with
 * the terms, is large against dβ itself — seen once: M = 100, N = 1, a sum ~0.05 of terms
 * ~0.5 came out 1.25e-5 relative in every mode. So dβ's error is taken relative to the
 * larger of ||dβ|| and dy_rss, the size a sum of random-sign terms has (√M·rms): a
 * missing or doubled row still moves it by ~1/√M of that, far past every bound. */
static double dbeta_rel(const case_data_t *c, double rel)
{
    const int64_t n = c->s.n;
    double rr = 0.0;
    for (int64_t j = 0; j < n; ++j) rr += c->ref[GR_DBE][j] * c->ref[GR_DBE][j];
    const double ref_norm = sqrt(rr);
    const double abs_err = ref_norm > 0.0 ? rel * ref_norm : rel; /* (tst_compare: absolute when ref is 0) */
    const double scale = ref_norm > c->dy_rss ? ref_norm : c->dy_rss;
    return scale > 0.0 ? abs_err / scale : abs_err;
}

static double bwd_bound(lgh_dtype_t dt, lgh_math_t resolved)
{
    if (dt != LGH_DTYPE_FLOAT32) return 2e-2;
    return resolved == LGH_MATH_TF32 ? 1e-3 : 1e-5;
}

/* The error floor of tf32 on this case's inputs, per gradient, as test_matrix's for y:
 * ||ref' - ref|| / ||ref||, ref' the double-precision gradients on operands rounded as
 * tf32 tensor cores read them (W truncated to 10 mantissa bits, x truncated or rounded to
 * nearest, the larger of the two). That is the part of a tf32 engine's error that comes
 * from h (and so x̂ and the mask's neighbourhood): a group whose values nearly agree
 * divides the operands' rounding by a small standard deviation, which dγ shows first
 * (emulated tf32: up to 2.1e-3 on groups of 8 channels). The products dh·W and dhᵀ·x
 * round their own operands on top of it, so a tf32 gradient passes within bound + floor:
 * in an emulation of the whole tf32 backward over this matrix's shapes (every operand
 * truncated, sums exact) the worst error was 0.68 of that. Computed only for a result
 * past the bound; NaN when it cannot allocate (the case then fails). */
static float tf32_of(float v, int round_to_nearest)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) { /* finite: keep the top 10 mantissa bits */
        if (round_to_nearest) u += 0x1000u; /* half of the 13 dropped bits, away from 0 */
        u &= 0xffffe000u;
    }
    memcpy(&v, &u, sizeof v);
    return v;
}

static void tf32_floors(const case_data_t *c, double floor[N_GRADS])
{
    const shape_t *s = &c->s;
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
            lgh_backward_args_t b;
            memset(&b, 0, sizeof b);
            b.fwd = host_args(c);
            b.fwd.x = x, b.fwd.w = w;
            b.dy = c->dy;
            b.lddy = s->lddy;
            if (lgh_reference_backward(&b, got[GR_DX], got[GR_DW], got[GR_DB], got[GR_DG],
                                       got[GR_DBE]) != 0) {
                for (int q = 0; q < N_GRADS; ++q) floor[q] = NAN;
                break;
            }
            for (int q = 0; q < N_GRADS; ++q) {
                double num = 0.0, den = 0.0;
                for (int64_t i = 0; i < grad_rows(s, q) * grad_cols(s, q); ++i) {
                    const double d = got[q][i] - c->ref[q][i];
                    num += d * d, den += c->ref[q][i] * c->ref[q][i];
                }
                const double e = den > 0.0 ? sqrt(num / den) : sqrt(num);
                floor[q] = fmax(floor[q], e);
            }
        }
    }
    free(x), free(w);
    for (int q = 0; q < N_GRADS; ++q) free(got[q]);
}

static void describe(char *buf, size_t len, const target_t *t, const case_data_t *c,
                     lgh_math_t math)
{
    const shape_t *s = &c->s;
    char want[64] = "";
    for (int g = 0; g < N_GRADS; ++g)
        if (s->want & WANT(g)) {
            strcat(want, want[0] ? "," : "");
            strcat(want, kGradNames[g]);
        }
    snprintf(buf, len,
             "case %d [%s %s %s] M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " G=%" PRId64
             " ld x/w/dy/h/dx/dw=%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64
             "/%" PRId64 " h=%s want=%s ws=%s eps=%g clamp=[%g,%g]%s",
             c->id, t->name, lgh_dtype_name(c->dt), lgh_math_name(math), s->m, s->k, s->n,
             s->groups, s->ldx, s->ldw, s->lddy, s->ldh, s->lddx, s->lddw,
             s->save_h ? "saved" : "recomputed", want, s->own_workspace ? "caller" : "context",
             (double)s->eps, (double)s->lo, (double)s->hi,
             s->offset_bias && c->dt == LGH_DTYPE_FLOAT32 ? " bias~8" : "");
}

static void replay_hint(const target_t *t, const case_data_t *c)
{
    printf("      replay: LGH_TEST_SEED=%" PRIu64 " test_backward --engine %s --case %d\n",
           tst_base_seed(), t->name, c->id);
}

/* Poisons the wanted gradients (NaN in the rows, guard in padding and tail) and uploads
 * them. */
static int poison_outputs(const case_data_t *c, tst_buf_t *out, char *msg, size_t len)
{
    for (int g = 0; g < N_GRADS; ++g) {
        if (!(c->s.want & WANT(g))) continue;
        tst_poison_matrix(c->dt, out[g].host, grad_rows(&c->s, g), grad_cols(&c->s, g),
                          grad_ld(&c->s, g), (int64_t)c->out_elems[g]);
        if (tst_buf_upload(&out[g], msg, len)) return -1;
    }
    return 0;
}

static int download_outputs(const case_data_t *c, tst_buf_t *out, char *msg, size_t len)
{
    for (int g = 0; g < N_GRADS; ++g)
        if ((c->s.want & WANT(g)) && tst_buf_download(&out[g], msg, len)) return -1;
    return 0;
}

/* Runs one (case, math) on one target. Returns 0 pass, 1 fail, 2 skip. */
static int run_one(target_t *t, const case_data_t *c, lgh_math_t math)
{
    const shape_t *s = &c->s;
    char what[640], msg[512] = "";
    describe(what, sizeof what, t, c, math);
    const size_t eb = tst_elem_bytes(c->dt);
    const int gpu = t->on_gpu;
    const size_t stat_elems = (size_t)(s->m * s->groups);
    int rc = 1;
    void *saved[N_GRADS] = {NULL};

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
        (s->save_h && tst_buf_alloc(&h, c->h_elems * eb, gpu, msg, sizeof msg));
    for (int q = 0; q < N_GRADS && !alloc_bad; ++q)
        if (s->want & WANT(q)) alloc_bad = tst_buf_alloc(&out[q], c->out_elems[q] * eb, gpu, msg, sizeof msg);
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
    if (s->save_h) tst_poison_matrix(c->dt, h.host, s->m, s->n, s->ldh, (int64_t)c->h_elems);
    if (tst_buf_upload(&x, msg, sizeof msg) || tst_buf_upload(&w, msg, sizeof msg) ||
        tst_buf_upload(&b, msg, sizeof msg) || tst_buf_upload(&g, msg, sizeof msg) ||
        tst_buf_upload(&be, msg, sizeof msg) || tst_buf_upload(&dy, msg, sizeof msg) ||
        tst_buf_upload(&mean, msg, sizeof msg) || tst_buf_upload(&rstd, msg, sizeof msg) ||
        (s->save_h && tst_buf_upload(&h, msg, sizeof msg))) {
        printf("FAIL %s: upload: %s\n", what, msg);
        goto done;
    }

    /* The forward that saves what the backward needs: the target's engine, or AUTO where
     * a forced engine cannot run this forward (the backward is what is tested here). */
    lgh_args_t fa = host_args(c);
    fa.math = math;
    fa.engine = t->engine;
    fa.x = x.dev, fa.w = w.dev, fa.bias = b.dev, fa.gamma = g.dev, fa.beta = be.dev;
    fa.y = y.dev;
    fa.mean = mean.dev, fa.rstd = rstd.dev;
    if (s->save_h) {
        fa.h = h.dev;
        fa.ldh = s->packed ? 0 : s->ldh;
    }
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
    if (s->save_h) {
        if (tst_buf_download(&h, msg, sizeof msg)) {
            printf("FAIL %s: download of h: %s\n", what, msg);
            goto done;
        }
        const int64_t damage = tst_guard_damage(c->dt, h.host, s->m, s->n, s->ldh, (int64_t)c->h_elems);
        if (damage) {
            printf("FAIL %s: the forward wrote %" PRId64 " padding/tail elements of h\n", what, damage);
            replay_hint(t, c);
            goto done;
        }
    }

    lgh_backward_args_t ba;
    memset(&ba, 0, sizeof ba);
    ba.fwd = fa; /* its y, mean, rstd and h are ignored */
    ba.dy = dy.dev;
    ba.mean = mean.dev, ba.rstd = rstd.dev;
    if (s->save_h) ba.h = h.dev;
    if (!s->packed) ba.lddy = s->lddy, ba.ldh = s->save_h ? s->ldh : 0, ba.lddx = s->lddx, ba.lddw = s->lddw;
    void **slots[N_GRADS] = {&ba.dx, &ba.dw, &ba.dbias, &ba.dgamma, &ba.dbeta};
    for (int q = 0; q < N_GRADS; ++q)
        if (s->want & WANT(q)) *slots[q] = out[q].dev;

    lgh_engine_t picked = LGH_ENGINE_COUNT;
    size_t ws_bytes = 0;
    const lgh_status_t plan = lgh_backward_plan(t->ctx, &ba, &picked, &ws_bytes);
    const int skippable = !t->must_take && plan == LGH_STATUS_NOT_SUPPORTED;
    if (plan != LGH_STATUS_SUCCESS && !skippable) {
        printf("FAIL %s: lgh_backward_plan: %s: %s\n", what, lgh_status_string(plan),
               lgh_last_error(t->ctx));
        goto done;
    }
    if (plan == LGH_STATUS_SUCCESS && t->engine != LGH_ENGINE_AUTO && picked != t->engine) {
        printf("FAIL %s: lgh_backward_plan chose engine %s for forced engine %s\n", what,
               lgh_engine_name(picked), t->name);
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

    int ok = 1;
    for (int pass = 0; pass < 2; ++pass) {
        if (poison_outputs(c, out, msg, sizeof msg)) {
            printf("FAIL %s: upload: %s\n", what, msg);
            goto done;
        }
        st = lgh_backward(t->ctx, &ba, ws, ws ? ws_bytes : 0, NULL);
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
        if (download_outputs(c, out, msg, sizeof msg)) {
            printf("FAIL %s: download: %s\n", what, msg);
            goto done;
        }

        if (skippable) { /* refused: nothing may have been written */
            int64_t touched = 0;
            for (int q = 0; q < N_GRADS; ++q) {
                if (!(s->want & WANT(q))) continue;
                for (int64_t r = 0; r < grad_rows(s, q); ++r)
                    for (int64_t col = 0; col < grad_cols(s, q); ++col)
                        touched += !tst_is_pattern(c->dt, out[q].host, r * grad_ld(s, q) + col, TST_POISON);
                touched += tst_guard_damage(c->dt, out[q].host, grad_rows(s, q), grad_cols(s, q),
                                            grad_ld(s, q), (int64_t)c->out_elems[q]);
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

        if (pass == 0) {
            const lgh_math_t resolved = c->dt == LGH_DTYPE_FLOAT32
                                            ? (math == LGH_MATH_DEFAULT ? LGH_MATH_TF32 : math)
                                            : LGH_MATH_DEFAULT;
            const double bound = bwd_bound(c->dt, resolved);
            const int di = c->id % N_DTYPES, mi = (int)resolved;
            char detail[768] = "";
            size_t at = 0;
            tst_err_t e[N_GRADS];
            int64_t damage[N_GRADS] = {0};
            int past = 0;
            for (int q = 0; q < N_GRADS; ++q) {
                if (!(s->want & WANT(q))) continue;
                e[q] = tst_compare(c->dt, out[q].host, grad_rows(s, q), grad_cols(s, q),
                                   grad_ld(s, q), c->ref[q]);
                if (q == GR_DBE) e[q].rel = dbeta_rel(c, e[q].rel);
                damage[q] = tst_guard_damage(c->dt, out[q].host, grad_rows(s, q), grad_cols(s, q),
                                             grad_ld(s, q), (int64_t)c->out_elems[q]);
                past |= !(e[q].rel <= bound);
            }
            /* tf32 past the bound: bound + the floor of these inputs (tf32_floors). */
            double floor[N_GRADS] = {0};
            const int use_floor = c->dt == LGH_DTYPE_FLOAT32 && resolved == LGH_MATH_TF32 && past;
            if (use_floor) tf32_floors(c, floor);
            for (int q = 0; q < N_GRADS; ++q) {
                if (!(s->want & WANT(q))) continue;
                const int this_ok = e[q].rel <= bound + floor[q] && damage[q] == 0;
                ok &= this_ok;
                if (!(e[q].rel <= t->worst[di][mi][q])) t->worst[di][mi][q] = e[q].rel;
                at += (size_t)snprintf(detail + at, sizeof detail - at, "%s%s %.3g%s", at ? ", " : "",
                                       kGradNames[q], e[q].rel, this_ok ? "" : " (!)");
                if (use_floor && at < sizeof detail)
                    at += (size_t)snprintf(detail + at, sizeof detail - at, " [tf32 floor %.3g]",
                                           floor[q]);
                if (e[q].nonfinite && at < sizeof detail)
                    at += (size_t)snprintf(detail + at, sizeof detail - at,
                                           " [%" PRId64 " non-finite]", e[q].nonfinite);
                if (damage[q] && at < sizeof detail)
                    at += (size_t)snprintf(detail + at, sizeof detail - at,
                                           " [%" PRId64 " padding/tail elements overwritten]", damage[q]);
                if (at >= sizeof detail) at = sizeof detail - 1;
            }
            t->ran[di][mi]++;
            if (t->engine == LGH_ENGINE_AUTO && picked < LGH_ENGINE_COUNT) t->auto_picked[picked]++;
            if (!ok || g_verbose) {
                printf("%s %s%s%s: %s (bound %.0e; dy zeroed at %" PRId64 " near lo/hi)\n",
                       ok ? "ok  " : "FAIL", what, t->engine == LGH_ENGINE_AUTO ? " ran " : "",
                       t->engine == LGH_ENGINE_AUTO ? lgh_engine_name(picked) : "", detail, bound,
                       c->near);
                if (!ok) replay_hint(t, c);
            }
            /* Keep the first run's deterministic gradients for the second. */
            for (int q = GR_DW; q < N_GRADS; ++q) {
                if (!(s->want & WANT(q))) continue;
                if (!(saved[q] = malloc(out[q].bytes))) {
                    printf("FAIL %s: out of host memory\n", what);
                    goto done;
                }
                memcpy(saved[q], out[q].host, out[q].bytes);
            }
        } else {
            for (int q = GR_DW; q < N_GRADS; ++q) {
                if (!(s->want & WANT(q)) || !memcmp(saved[q], out[q].host, out[q].bytes)) continue;
                int64_t differ = 0;
                for (int64_t r = 0; r < grad_rows(s, q); ++r)
                    for (int64_t col = 0; col < grad_cols(s, q); ++col) {
                        const int64_t i = r * grad_ld(s, q) + col;
                        differ += memcmp((char *)saved[q] + i * (int64_t)eb,
                                         (char *)out[q].host + i * (int64_t)eb, eb) != 0;
                    }
                printf("FAIL %s: %s not deterministic: %" PRId64 " elements differ between two "
                       "identical calls\n", what, kGradNames[q], differ);
                replay_hint(t, c);
                ok = 0;
            }
        }
    }
    rc = ok ? 0 : 1;

done:
    for (int q = 0; q < N_GRADS; ++q) {
        free(saved[q]);
        tst_buf_free(&out[q]);
    }
    tst_buf_free(&x), tst_buf_free(&w), tst_buf_free(&b), tst_buf_free(&g), tst_buf_free(&be);
    tst_buf_free(&y), tst_buf_free(&mean), tst_buf_free(&rstd), tst_buf_free(&h), tst_buf_free(&dy);
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
        if (c->id % 4 == 0) count(t, run_one(t, c, LGH_MATH_DEFAULT)); /* resolves to TF32 */
    } else {
        count(t, run_one(t, c, LGH_MATH_DEFAULT));
    }
}

/* ---- refusals ---------------------------------------------------------------------------- */

/* A small valid float32 problem on the target's memory, its forward run, and guarded
 * gradient buffers. */
enum { RM = 4, RK = 8, RN = 6, RG = 2, RTOTAL = 64 };
typedef struct refusal_bufs {
    tst_buf_t x, w, b, g, be, y, mean, rstd, h, dy, out[N_GRADS];
} refusal_bufs_t;

static void refusal_free(refusal_bufs_t *r)
{
    tst_buf_t *all[] = {&r->x, &r->w, &r->b, &r->g, &r->be, &r->y, &r->mean, &r->rstd, &r->h, &r->dy};
    for (int i = 0; i < COUNT(all); ++i) tst_buf_free(all[i]);
    for (int q = 0; q < N_GRADS; ++q) tst_buf_free(&r->out[q]);
}

/* Guards every gradient buffer entirely (nothing in them may be written). */
static int guard_outputs(refusal_bufs_t *r, char *msg, size_t len)
{
    for (int q = 0; q < N_GRADS; ++q) {
        for (int64_t i = 0; i < RTOTAL; ++i)
            tst_store_pattern(LGH_DTYPE_FLOAT32, r->out[q].host, i, TST_GUARD);
        if (tst_buf_upload(&r->out[q], msg, len)) return -1;
    }
    return 0;
}

static int64_t outputs_touched(refusal_bufs_t *r, char *msg, size_t len)
{
    int64_t touched = 0;
    for (int q = 0; q < N_GRADS; ++q) {
        if (tst_buf_download(&r->out[q], msg, len)) return -1;
        for (int64_t i = 0; i < RTOTAL; ++i)
            touched += !tst_is_pattern(LGH_DTYPE_FLOAT32, r->out[q].host, i, TST_GUARD);
    }
    return touched;
}

typedef enum { BREAK_NONE, BREAK_DY, BREAK_MEAN, BREAK_RSTD, BREAK_X, BREAK_NO_OUTPUT,
               BREAK_LDDX, BREAK_LDDW, BREAK_LDDY, BREAK_LDH, BREAK_GROUPS, BREAK_WORKSPACE,
               BREAK_HOST_DY } breakage_t;

static void refusal_check(target_t *t, refusal_bufs_t *r, const char *label, breakage_t brk,
                          lgh_status_t want, lgh_status_t want_alt, int plan_checks)
{
    char msg[512] = "";
    lgh_backward_args_t a;
    lgh_backward_args_init(&a, RM, RK, RN, RG);
    a.fwd.engine = t->engine;
    a.fwd.math = LGH_MATH_FP32;
    a.fwd.x = r->x.dev, a.fwd.w = r->w.dev, a.fwd.bias = r->b.dev;
    a.fwd.gamma = r->g.dev, a.fwd.beta = r->be.dev;
    a.dy = r->dy.dev, a.mean = r->mean.dev, a.rstd = r->rstd.dev;
    a.dx = r->out[GR_DX].dev, a.dw = r->out[GR_DW].dev, a.dbias = r->out[GR_DB].dev;
    a.dgamma = r->out[GR_DG].dev, a.dbeta = r->out[GR_DBE].dev;
    void *ws = NULL;
    size_t ws_bytes = 0;
    tst_buf_t small_ws = {0};
    float host_dy[RM * RN] = {0};
    switch (brk) {
    case BREAK_NONE: break;
    case BREAK_DY: a.dy = NULL; break;
    case BREAK_MEAN: a.mean = NULL; break;
    case BREAK_RSTD: a.rstd = NULL; break;
    case BREAK_X: a.fwd.x = NULL; break;
    case BREAK_NO_OUTPUT: a.dx = a.dw = a.dbias = a.dgamma = a.dbeta = NULL; break;
    case BREAK_LDDX: a.lddx = RK - 1; break;
    case BREAK_LDDW: a.lddw = RK - 1; break;
    case BREAK_LDDY: a.lddy = RN - 1; break;
    case BREAK_LDH: a.h = r->h.dev, a.ldh = RN - 1; break;
    case BREAK_GROUPS: a.fwd.groups = 4; break; /* N = 6 */
    case BREAK_HOST_DY: a.dy = host_dy; break;
    case BREAK_WORKSPACE: {
        size_t need = 0;
        if (lgh_backward_plan(t->ctx, &a, NULL, &need) != LGH_STATUS_SUCCESS || need < 2) {
            count(t, 2);
            if (g_verbose) printf("skip refusal %s: the plan needs no workspace here\n", label);
            return;
        }
        if (tst_buf_alloc(&small_ws, need - 1, t->on_gpu, msg, sizeof msg)) {
            printf("FAIL refusal %s: allocation: %s\n", label, msg);
            count(t, 1);
            return;
        }
        ws = small_ws.dev;
        ws_bytes = need - 1;
        break;
    }
    }
    if (guard_outputs(r, msg, sizeof msg)) {
        printf("FAIL refusal %s: upload: %s\n", label, msg);
        count(t, 1);
        tst_buf_free(&small_ws);
        return;
    }
    lgh_engine_t picked = LGH_ENGINE_COUNT;
    const lgh_status_t plan = lgh_backward_plan(t->ctx, &a, &picked, NULL);
    const lgh_status_t st = lgh_backward(t->ctx, &a, ws, ws_bytes, NULL);
    const char *err = lgh_last_error(t->ctx);
    char err_copy[256];
    snprintf(err_copy, sizeof err_copy, "%s", err ? err : "");
    if (t->on_gpu) tst_dev_sync(msg, sizeof msg);
    const int64_t touched = outputs_touched(r, msg, sizeof msg);
    tst_buf_free(&small_ws);

    if (brk == BREAK_NONE) { /* the control: must run (a forced GPU engine may refuse) */
        if (st == LGH_STATUS_NOT_SUPPORTED && !t->must_take && plan == st && touched == 0) {
            count(t, 2);
            if (g_verbose) printf("skip refusal control: %s\n", err_copy);
        } else if (st != LGH_STATUS_SUCCESS || plan != LGH_STATUS_SUCCESS) {
            printf("FAIL refusal control [%s]: a valid backward returned %s (plan %s): %s\n",
                   t->name, lgh_status_string(st), lgh_status_string(plan), err_copy);
            count(t, 1);
        } else {
            count(t, 0);
        }
        return;
    }
    const int status_ok = st == want || (want_alt != LGH_STATUS_SUCCESS && st == want_alt);
    const lgh_status_t plan_want = plan_checks ? st : LGH_STATUS_SUCCESS;
    /* The plan does not touch memory (no memory-space or workspace checks); a forced GPU
     * engine without this backward may answer NOT_SUPPORTED there. */
    const int plan_ok = plan == plan_want ||
                        (!plan_checks && !t->must_take && plan == LGH_STATUS_NOT_SUPPORTED);
    const int ok = status_ok && plan_ok && err_copy[0] != '\0' && touched == 0;
    if (!ok) {
        printf("FAIL refusal %s [%s]: lgh_backward returned %s (want %s%s%s), lgh_backward_plan %s "
               "(want %s), message \"%s\", %" PRId64 " gradient elements written\n",
               label, t->name, lgh_status_string(st), lgh_status_string(want),
               want_alt != LGH_STATUS_SUCCESS ? " or " : "",
               want_alt != LGH_STATUS_SUCCESS ? lgh_status_string(want_alt) : "",
               lgh_status_string(plan), lgh_status_string(plan_want), err_copy, touched);
    } else if (g_verbose) {
        printf("ok   refusal %s: %s (\"%s\")\n", label, lgh_status_string(st), err_copy);
    }
    count(t, ok ? 0 : 1);
}

static void refusals(target_t *t)
{
    char msg[512] = "";
    refusal_bufs_t r;
    memset(&r, 0, sizeof r);
    const int gpu = t->on_gpu;
    tst_buf_t *in[] = {&r.x, &r.w, &r.b, &r.g, &r.be, &r.y, &r.mean, &r.rstd, &r.h, &r.dy};
    int bad = 0;
    for (int i = 0; i < COUNT(in) && !bad; ++i) bad = tst_buf_alloc(in[i], RTOTAL * 4, gpu, msg, sizeof msg);
    for (int q = 0; q < N_GRADS && !bad; ++q) bad = tst_buf_alloc(&r.out[q], RTOTAL * 4, gpu, msg, sizeof msg);
    if (bad) {
        printf("FAIL refusals [%s]: allocation: %s\n", t->name, msg);
        count(t, 1);
        refusal_free(&r);
        return;
    }
    tst_rng_t rng = tst_rng_make(tst_base_seed(), 0xbadc0de);
    for (int i = 0; i < COUNT(in); ++i) {
        tst_fill_matrix(LGH_DTYPE_FLOAT32, in[i]->host, 1, RTOTAL, RTOTAL, RTOTAL, &rng, 0.25, 1.0);
        if (tst_buf_upload(in[i], msg, sizeof msg)) bad = 1;
    }
    lgh_args_t fa;
    lgh_args_init(&fa, RM, RK, RN, RG);
    fa.math = LGH_MATH_FP32;
    fa.x = r.x.dev, fa.w = r.w.dev, fa.bias = r.b.dev, fa.gamma = r.g.dev, fa.beta = r.be.dev;
    fa.y = r.y.dev, fa.mean = r.mean.dev, fa.rstd = r.rstd.dev;
    const lgh_status_t fst = bad ? LGH_STATUS_INTERNAL_ERROR : lgh_forward(t->ctx, &fa, NULL, 0, NULL);
    if (gpu) tst_dev_sync(msg, sizeof msg);
    if (fst != LGH_STATUS_SUCCESS) {
        printf("FAIL refusals [%s]: the forward that saves mean / rstd: %s %s\n", t->name,
               lgh_status_string(fst), bad ? msg : lgh_last_error(t->ctx));
        count(t, 1);
        refusal_free(&r);
        return;
    }
    refusal_check(t, &r, "control", BREAK_NONE, LGH_STATUS_SUCCESS, LGH_STATUS_SUCCESS, 1);
    refusal_check(t, &r, "dy NULL", BREAK_DY, LGH_STATUS_NULL_POINTER, LGH_STATUS_SUCCESS, 1);
    refusal_check(t, &r, "mean NULL", BREAK_MEAN, LGH_STATUS_NULL_POINTER, LGH_STATUS_SUCCESS, 1);
    refusal_check(t, &r, "rstd NULL", BREAK_RSTD, LGH_STATUS_NULL_POINTER, LGH_STATUS_SUCCESS, 1);
    refusal_check(t, &r, "x NULL", BREAK_X, LGH_STATUS_NULL_POINTER, LGH_STATUS_SUCCESS, 1);
    /* lgh.h asks for at least one gradient without naming the status: NULL_POINTER (a
     * required pointer) or INVALID_VALUE (a bad argument) both read it right. */
    refusal_check(t, &r, "no gradient asked for", BREAK_NO_OUTPUT, LGH_STATUS_NULL_POINTER,
                  LGH_STATUS_INVALID_VALUE, 1);
    refusal_check(t, &r, "lddx < k", BREAK_LDDX, LGH_STATUS_INVALID_LEADING_DIM, LGH_STATUS_SUCCESS, 1);
    refusal_check(t, &r, "lddw < k", BREAK_LDDW, LGH_STATUS_INVALID_LEADING_DIM, LGH_STATUS_SUCCESS, 1);
    refusal_check(t, &r, "lddy < n", BREAK_LDDY, LGH_STATUS_INVALID_LEADING_DIM, LGH_STATUS_SUCCESS, 1);
    refusal_check(t, &r, "ldh < n", BREAK_LDH, LGH_STATUS_INVALID_LEADING_DIM, LGH_STATUS_SUCCESS, 1);
    refusal_check(t, &r, "N not a multiple of G", BREAK_GROUPS, LGH_STATUS_GROUPS_MISMATCH,
                  LGH_STATUS_SUCCESS, 1);
    refusal_check(t, &r, "workspace below the plan", BREAK_WORKSPACE,
                  LGH_STATUS_WORKSPACE_TOO_SMALL, LGH_STATUS_SUCCESS, 0);
    if (gpu)
        refusal_check(t, &r, "host dy on a GPU context", BREAK_HOST_DY,
                      LGH_STATUS_WRONG_MEMORY_SPACE, LGH_STATUS_SUCCESS, 0);
    refusal_free(&r);
}

/* ---- set-up of the targets ------------------------------------------------------------ */


static tst_setup_t setup_target(target_t *t)
{
    return tst_open_target(t->name, t->engine, t->on_gpu, &t->ctx, NULL);
}

static void print_table(const target_t *t)
{
    static const char *const math_names[4] = {"-", "fp32", "tf32", "3xtf32"};
    printf("%s: worst relative errors against the reference\n", t->name);
    printf("  %-9s %-7s %5s", "dtype", "math", "runs");
    for (int q = 0; q < N_GRADS; ++q) printf(" %10s", kGradNames[q]);
    printf(" %8s\n", "bound");
    for (int d = 0; d < N_DTYPES; ++d)
        for (int m = 0; m < 4; ++m) {
            if (!t->ran[d][m]) continue;
            printf("  %-9s %-7s %5ld", lgh_dtype_name(kDtypes[d]), math_names[m], t->ran[d][m]);
            for (int q = 0; q < N_GRADS; ++q) printf(" %10.3g", t->worst[d][m][q]);
            printf(" %8.0e\n", bwd_bound(kDtypes[d], (lgh_math_t)m));
        }
    if (t->engine == LGH_ENGINE_AUTO) {
        printf("  auto chose:");
        for (int e = 0; e < LGH_ENGINE_COUNT; ++e)
            if (t->auto_picked[e])
                printf(" %s x%ld", lgh_engine_name((lgh_engine_t)e), t->auto_picked[e]);
        printf("\n");
    }
    if (t->forward_by_auto)
        printf("  %ld forwards ran on AUTO (engine %s refused them)\n", t->forward_by_auto, t->name);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: test_backward [--engine cpu|cublaslt|sm80|sm90|auto] [--case N] [--verbose]\n"
            "  Runs lgh_backward over the shape matrix against the double-precision reference.\n"
            "  LGH_TEST_SEED=<n> replays a run's inputs; --case runs one case (shape x dtype).\n");
}

int main(int argc, char **argv)
{
    const char *engine_arg = "cpu";
    int only_case = -1;
    list_shapes();
    const int n_cases = g_n_shapes * N_DTYPES;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--engine") && i + 1 < argc) {
            engine_arg = argv[++i];
        } else if (!strcmp(argv[i], "--case") && i + 1 < argc) {
            char *end;
            only_case = (int)strtol(argv[++i], &end, 10);
            if (*end || only_case < 0 || only_case >= n_cases) {
                fprintf(stderr, "test_backward: --case %s: expected 0..%d\n", argv[i], n_cases - 1);
                return 2;
            }
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            g_verbose = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "test_backward: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    static const struct {
        const char *name;
        lgh_engine_t engine;
        int on_gpu, must_take;
    } known[] = {{"cpu", LGH_ENGINE_CPU, 0, 1},
                 {"cublaslt", LGH_ENGINE_CUBLASLT, 1, 0},
                 {"sm80", LGH_ENGINE_SM80, 1, 0},
                 {"sm90", LGH_ENGINE_SM90, 1, 0},
                 {"auto", LGH_ENGINE_AUTO, 1, 1}};
    target_t t;
    memset(&t, 0, sizeof t);
    for (int i = 0; i < COUNT(known); ++i)
        if (!strcmp(engine_arg, known[i].name)) {
            t.name = known[i].name;
            t.engine = known[i].engine;
            t.on_gpu = known[i].on_gpu;
            t.must_take = known[i].must_take;
        }
    if (!t.name) {
        fprintf(stderr, "test_backward: unknown engine '%s'\n", engine_arg);
        usage(stderr);
        return 2;
    }
    char title[64];
    snprintf(title, sizeof title, "test_backward[%s]", engine_arg);
    tst_print_seed(title);
    /* LGH_ENGINE replaces AUTO: the auto target then runs that engine, which may answer
     * NOT_SUPPORTED unless it is the CPU's. */
    const char *env = getenv("LGH_ENGINE");
    lgh_engine_t env_engine = LGH_ENGINE_AUTO;
    if (env && *env && t.engine == LGH_ENGINE_AUTO &&
        lgh_engine_from_name(env, &env_engine) == LGH_STATUS_SUCCESS &&
        env_engine != LGH_ENGINE_AUTO) {
        printf("note: LGH_ENGINE=%s is set; it replaces AUTO on this target\n", env);
        t.must_take = env_engine == LGH_ENGINE_CPU;
    }

    const tst_setup_t setup = setup_target(&t);
    tst_tally_t total = {0, setup == TST_SETUP_FAIL, 0};
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (setup == TST_SETUP_OK) {
        if (only_case < 0) refusals(&t);
        for (int id = 0; id < n_cases; ++id) {
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
        print_table(&t);
        if (t.tally.skipped)
            printf("%s: %ld runs skipped: the engine answered NOT_SUPPORTED (--verbose says why)\n",
                   t.name, t.tally.skipped);
        total.passed += t.tally.passed;
        total.failed += t.tally.failed;
        total.skipped += t.tally.skipped;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    tst_buf_free(&t.ws);
    if (t.ctx) lgh_destroy(t.ctx);
    printf("time: %.1f s\n",
           (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec));
    tst_summary(title, &total);
    if (total.failed) return 1;
    if (total.passed == 0) return TST_EXIT_SKIP;
    return 0;
}
