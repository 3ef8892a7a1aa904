/*
 * The error of `lgh run` against the double-precision reference (lgh_reference_rows),
 * on all rows or on a sample of them, the sampled rows spread over the CPU's threads so
 * that checking the reference problem takes a second, not minutes; and, for
 * `lgh run --backward`, the five gradients against lgh_reference_backward (dx on the
 * sampled rows, dW, db, dγ, dβ on whole groups summed over every row, split by rows
 * over the threads) after zeroing dy near the clamp (lgh_reference_near_clamp).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cpu/reference.h"

double cli_bound(lgh_dtype_t dt, lgh_math_t math)
{
    if (dt != LGH_DTYPE_FLOAT32) return 1e-2;
    return (math == LGH_MATH_FP32 || math == LGH_MATH_3XTF32 || math == LGH_MATH_ACCURATE) ? 1e-5
                                                                                            : 1e-3;
}

typedef struct job {
    const lgh_args_t *a; /* the sampled rows as a problem of their own */
    int64_t begin, end;
    double *ref; /* [rows, n] */
    int rc;
} job_t;

static void *worker(void *p)
{
    job_t *j = p;
    j->rc = j->begin < j->end ? lgh_reference_rows(j->a, j->begin, j->end,
                                                   j->ref + j->begin * j->a->n, NULL, NULL)
                              : 0;
    return NULL;
}

int cli_check_rows(const lgh_args_t *a, const int64_t *row_ids, int64_t rows, const void *y,
                   double *rel, double *max_abs, int64_t *nonfinite)
{
    const int64_t n = a->n, k = a->k;
    const size_t eb = a->dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
    const int64_t ldx = a->ldx ? a->ldx : k;

    /* The sampled rows of x, packed: the reference then reads W once per thread, not
     * once per sampled row. */
    void *xs = malloc((size_t)(rows * k) * eb);
    double *ref = malloc((size_t)(rows * n) * sizeof(double));
    if (!xs || !ref) {
        free(xs);
        free(ref);
        return -1;
    }
    for (int64_t i = 0; i < rows; ++i)
        memcpy((char *)xs + (size_t)(i * k) * eb,
               (const char *)a->x + (size_t)(row_ids[i] * ldx) * eb, (size_t)k * eb);
    lgh_args_t sample = *a;
    sample.m = rows;
    sample.x = xs;
    sample.ldx = 0;

    enum { MAX_THREADS = 64 };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (int)ncpu;
    if (nt > rows) nt = (int)rows;
    job_t jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < nt; ++t) {
        jobs[t] = (job_t){&sample, rows * t / nt, rows * (t + 1) / nt, ref, 0};
        if (t > 0) started[t] = pthread_create(&th[t], NULL, worker, &jobs[t]) == 0;
        if (t > 0 && !started[t]) worker(&jobs[t]);
    }
    worker(&jobs[0]);
    int rc = jobs[0].rc;
    for (int t = 1; t < nt; ++t) {
        if (started[t]) pthread_join(th[t], NULL);
        if (jobs[t].rc) rc = jobs[t].rc;
    }
    free(xs);
    if (rc) {
        free(ref);
        return -1;
    }

    /* y holds the sampled rows packed: compare them as a problem of `rows` rows. */
    lgh_args_t packed = sample;
    packed.y = (void *)y;
    packed.ldy = 0;
    *nonfinite = 0;
    for (int64_t i = 0; i < rows * n; ++i) {
        float v;
        if (eb == 4) {
            memcpy(&v, (const char *)y + 4 * i, 4);
        } else {
            /* NaN / inf in 16 bits: exponent all ones (bf16: 0x7f80, fp16: 0x7c00). */
            uint16_t h;
            memcpy(&h, (const char *)y + 2 * i, 2);
            const uint16_t mask = a->dtype == LGH_DTYPE_BFLOAT16 ? 0x7f80 : 0x7c00;
            v = (h & mask) == mask ? NAN : 0.0f;
        }
        if (!isfinite(v)) ++*nonfinite;
    }
    *rel = lgh_reference_error(&packed, 0, rows, ref, max_abs);
    free(ref);
    return 0;
}

/* ---- the backward ------------------------------------------------------------------------ */

double cli_backward_bound(lgh_dtype_t dt, lgh_math_t math)
{
    if (dt != LGH_DTYPE_FLOAT32) return 2e-2;
    return (math == LGH_MATH_FP32 || math == LGH_MATH_3XTF32 || math == LGH_MATH_ACCURATE) ? 1e-5
                                                                                            : 1e-3;
}

double cli_near_clamp_tolerance(lgh_dtype_t dt) { return dt == LGH_DTYPE_FLOAT32 ? 1e-2 : 5e-2; }

enum { MAX_POOL = 64 };

static int cpu_threads(void)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    return ncpu < 1 ? 1 : ncpu > MAX_POOL ? MAX_POOL : (int)ncpu;
}

/* One reference call on a sub-problem (a run of rows, a run of whole groups): either
 * lgh_reference_near_clamp (near != NULL) or lgh_reference_backward. */
typedef struct bjob {
    lgh_backward_args_t sub;         /* host pointers into the inputs */
    double tol;                      /* near-clamp job: rel_tol */
    unsigned char *near;             /* near-clamp job: [sub.fwd.m, sub.fwd.n] */
    int64_t count;                   /* near-clamp job: elements marked */
    double *dx, *dw, *db, *dg, *dbe; /* reference job: outputs, NULL where not wanted */
    int rc;
} bjob_t;

typedef struct pool {
    bjob_t *jobs;
    int njobs, next;
    pthread_mutex_t lock;
} pool_t;

static void *pool_worker(void *p)
{
    pool_t *pl = p;
    for (;;) {
        pthread_mutex_lock(&pl->lock);
        const int i = pl->next++;
        pthread_mutex_unlock(&pl->lock);
        if (i >= pl->njobs) return NULL;
        bjob_t *j = &pl->jobs[i];
        j->rc = j->near ? lgh_reference_near_clamp(&j->sub.fwd, j->tol, j->near, &j->count)
                        : lgh_reference_backward(&j->sub, j->dx, j->dw, j->db, j->dg, j->dbe);
    }
}

/* Runs the jobs on up to nt threads, the calling one included; 0 if every job gave 0. */
static int run_pool(bjob_t *jobs, int njobs, int nt)
{
    pool_t pl;
    pl.jobs = jobs, pl.njobs = njobs, pl.next = 0;
    pthread_mutex_init(&pl.lock, NULL);
    if (nt > njobs) nt = njobs;
    if (nt > MAX_POOL) nt = MAX_POOL;
    pthread_t th[MAX_POOL];
    int started[MAX_POOL] = {0};
    for (int t = 1; t < nt; ++t) started[t] = pthread_create(&th[t], NULL, pool_worker, &pl) == 0;
    pool_worker(&pl);
    for (int t = 1; t < nt; ++t)
        if (started[t]) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&pl.lock);
    int rc = 0;
    for (int i = 0; i < njobs; ++i) rc |= jobs[i].rc != 0;
    return rc ? -1 : 0;
}

/* The sub-problem of rows [r0, r1) of (x, dy) as given (x at leading dim ldx, dy at lddy)
 * and the channels of groups [g0, g1). */
static lgh_backward_args_t sub_problem(const lgh_backward_args_t *b, const void *x, int64_t ldx,
                                       const void *dy, int64_t lddy, int64_t r0, int64_t r1,
                                       int64_t g0, int64_t g1)
{
    const lgh_args_t *f = &b->fwd;
    const size_t eb = f->dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
    const int64_t gs = f->n / f->groups, c0 = g0 * gs;
    const int64_t ldw = f->ldw ? f->ldw : f->k;
    lgh_backward_args_t s;
    memset(&s, 0, sizeof s);
    s.fwd = *f;
    s.fwd.m = r1 - r0;
    s.fwd.n = (g1 - g0) * gs;
    s.fwd.groups = g1 - g0;
    s.fwd.x = (const char *)x + (size_t)(r0 * ldx) * eb;
    s.fwd.ldx = ldx;
    s.fwd.w = (const char *)f->w + (size_t)(c0 * ldw) * eb;
    s.fwd.ldw = ldw;
    s.fwd.bias = (const char *)f->bias + (size_t)c0 * eb;
    s.fwd.gamma = (const char *)f->gamma + (size_t)c0 * eb;
    s.fwd.beta = (const char *)f->beta + (size_t)c0 * eb;
    s.fwd.y = NULL, s.fwd.mean = s.fwd.rstd = NULL, s.fwd.h = NULL;
    s.dy = (const char *)dy + (size_t)(r0 * lddy + c0) * eb;
    s.lddy = lddy;
    return s;
}

/* The rows s lists, of a [m, cols] matrix at leading dim ld, packed into a new buffer. */
static void *pack_rows(const void *src, int64_t ld, int64_t cols, size_t eb,
                       const cli_bwd_sample_t *s)
{
    char *out = malloc((size_t)(s->rows * cols) * eb);
    if (!out) return NULL;
    for (int64_t i = 0; i < s->rows; ++i)
        memcpy(out + (size_t)(i * cols) * eb, (const char *)src + (size_t)(s->row_ids[i] * ld) * eb,
               (size_t)cols * eb);
    return out;
}

/* Row chunks: at least one row each, at most nt of them. */
static int64_t chunks_of(int64_t rows, int nt) { return rows < nt ? rows : nt; }

static void store_zero(lgh_dtype_t dt, void *buf, int64_t i)
{
    if (dt == LGH_DTYPE_FLOAT32) ((float *)buf)[i] = 0.0f;
    else ((uint16_t *)buf)[i] = 0; /* +0 in bfloat16 and float16 alike */
}

int cli_mask_near_clamp(const lgh_backward_args_t *b, const cli_bwd_sample_t *s, void *dy,
                        double rel_tol, int64_t *zeroed)
{
    const lgh_args_t *f = &b->fwd;
    const size_t eb = f->dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
    const int64_t m = f->m, n = f->n, k = f->k, gs = f->n / f->groups;
    const int64_t ldx = f->ldx ? f->ldx : k;
    const int nt = cpu_threads();
    *zeroed = 0;

    /* The sampled rows (all channels), packed; then each listed group over all rows. */
    void *xs = pack_rows(f->x, ldx, k, eb, s);
    const int64_t rc_rows = chunks_of(s->rows, nt), rc_all = chunks_of(m, nt);
    const int njobs = (int)(rc_rows + s->ngroups * rc_all);
    bjob_t *jobs = calloc((size_t)njobs, sizeof *jobs);
    unsigned char *near_rows = malloc((size_t)(s->rows * n));
    unsigned char *near_groups = malloc((size_t)(m * s->ngroups * gs));
    int rc = -1;
    if (!xs || !jobs || !near_rows || !near_groups) goto out;
    int j = 0;
    for (int64_t c = 0; c < rc_rows; ++c, ++j) {
        const int64_t r0 = s->rows * c / rc_rows, r1 = s->rows * (c + 1) / rc_rows;
        jobs[j].sub = sub_problem(b, xs, k, dy, n, r0, r1, 0, f->groups);
        jobs[j].tol = rel_tol;
        jobs[j].near = near_rows + r0 * n;
    }
    for (int64_t q = 0; q < s->ngroups; ++q) {
        const int64_t g = s->group_ids[q];
        unsigned char *base = near_groups + q * m * gs;
        for (int64_t c = 0; c < rc_all; ++c, ++j) {
            const int64_t r0 = m * c / rc_all, r1 = m * (c + 1) / rc_all;
            jobs[j].sub = sub_problem(b, f->x, ldx, dy, n, r0, r1, g, g + 1);
            jobs[j].tol = rel_tol;
            jobs[j].near = base + r0 * gs;
        }
    }
    if (run_pool(jobs, njobs, nt) != 0) goto out;

    /* Zero dy there (an element in both parts counts once). */
    for (int64_t i = 0; i < s->rows; ++i)
        for (int64_t c = 0; c < n; ++c)
            if (near_rows[i * n + c]) {
                const int64_t e = s->row_ids[i] * n + c;
                int already = 0;
                if (f->dtype == LGH_DTYPE_FLOAT32) already = ((float *)dy)[e] == 0.0f;
                else already = (((uint16_t *)dy)[e] & 0x7fff) == 0;
                if (!already) ++*zeroed;
                store_zero(f->dtype, dy, e);
            }
    for (int64_t q = 0; q < s->ngroups; ++q) {
        const int64_t c0 = s->group_ids[q] * gs;
        const unsigned char *base = near_groups + q * m * gs;
        for (int64_t r = 0; r < m; ++r)
            for (int64_t c = 0; c < gs; ++c)
                if (base[r * gs + c]) {
                    const int64_t e = r * n + c0 + c;
                    int already = 0;
                    if (f->dtype == LGH_DTYPE_FLOAT32) already = ((float *)dy)[e] == 0.0f;
                    else already = (((uint16_t *)dy)[e] & 0x7fff) == 0;
                    if (!already) ++*zeroed;
                    store_zero(f->dtype, dy, e);
                }
    }
    rc = 0;
out:
    free(xs);
    free(jobs);
    free(near_rows);
    free(near_groups);
    return rc;
}

/* Relative Frobenius error (and max abs) of `count` elements of g (dtype) against ref. */
static double vec_error(lgh_dtype_t dt, const void *g, const double *ref, int64_t count,
                        double *max_abs)
{
    lgh_args_t v;
    memset(&v, 0, sizeof v);
    v.dtype = dt;
    v.n = count;
    v.y = (void *)g;
    return lgh_reference_error(&v, 0, 1, ref, max_abs);
}

int cli_check_backward(const lgh_backward_args_t *b, const cli_bwd_sample_t *s,
                       const void *dx_rows, const void *dw_groups, const void *dbias,
                       const void *dgamma, const void *dbeta, cli_bwd_errors_t *out)
{
    const lgh_args_t *f = &b->fwd;
    const lgh_dtype_t dt = f->dtype;
    const size_t eb = dt == LGH_DTYPE_FLOAT32 ? 4 : 2;
    const int64_t m = f->m, n = f->n, k = f->k, gs = f->n / f->groups;
    const int64_t ldx = f->ldx ? f->ldx : k;
    const int64_t nsel = s->ngroups * gs; /* channels checked */
    const int nt = cpu_threads();
    for (int q = 0; q < 5; ++q) out->rel[q] = out->max_abs[q] = NAN;

    /* dx: the sampled rows, packed, split by rows; each job widens W whole, so the
     * number of jobs at once is kept to about 2 GiB of it. */
    const double w_bytes = (double)n * (double)k * 8.0;
    int nt_dx = (int)(2147483648.0 / (w_bytes > 1.0 ? w_bytes : 1.0));
    nt_dx = nt_dx < 1 ? 1 : nt_dx > nt ? nt : nt_dx;
    const int64_t rc_rows = chunks_of(s->rows, nt_dx), rc_all = chunks_of(m, nt);
    void *xs = pack_rows(f->x, ldx, k, eb, s);
    void *dys = pack_rows(b->dy, b->lddy ? b->lddy : n, n, eb, s);
    double *ref_dx = malloc((size_t)(s->rows * k) * sizeof(double));
    /* Parameter gradients: per (group, row chunk) partial sums, added up in chunk order. */
    const int64_t npart = s->ngroups * rc_all;
    double *part_dw = malloc((size_t)(npart * gs * k) * sizeof(double));
    double *part_v = malloc((size_t)(npart * gs * 3) * sizeof(double));
    double *ref_dw = calloc((size_t)(nsel * k), sizeof(double));
    double *ref_v = calloc((size_t)(nsel * 3), sizeof(double));
    void *sel = malloc((size_t)nsel * eb);
    bjob_t *jobs = calloc((size_t)(rc_rows > npart ? rc_rows : npart), sizeof *jobs);
    int rc = -1;
    if (!xs || !dys || !ref_dx || !part_dw || !part_v || !ref_dw || !ref_v || !sel || !jobs)
        goto out;

    for (int64_t c = 0; c < rc_rows; ++c) {
        const int64_t r0 = s->rows * c / rc_rows, r1 = s->rows * (c + 1) / rc_rows;
        jobs[c].sub = sub_problem(b, xs, k, dys, n, r0, r1, 0, f->groups);
        jobs[c].dx = ref_dx + r0 * k;
    }
    if (run_pool(jobs, (int)rc_rows, nt_dx) != 0) goto out;
    out->rel[0] = vec_error(dt, dx_rows, ref_dx, s->rows * k, &out->max_abs[0]);

    memset(jobs, 0, (size_t)npart * sizeof *jobs);
    for (int64_t q = 0; q < s->ngroups; ++q)
        for (int64_t c = 0; c < rc_all; ++c) {
            const int64_t i = q * rc_all + c, g = s->group_ids[q];
            const int64_t r0 = m * c / rc_all, r1 = m * (c + 1) / rc_all;
            jobs[i].sub = sub_problem(b, f->x, ldx, b->dy, b->lddy ? b->lddy : n, r0, r1, g, g + 1);
            jobs[i].dw = part_dw + i * gs * k;
            jobs[i].db = part_v + (i * 3 + 0) * gs;
            jobs[i].dg = part_v + (i * 3 + 1) * gs;
            jobs[i].dbe = part_v + (i * 3 + 2) * gs;
        }
    if (run_pool(jobs, (int)npart, nt) != 0) goto out;
    for (int64_t q = 0; q < s->ngroups; ++q)
        for (int64_t c = 0; c < rc_all; ++c) {
            const int64_t i = q * rc_all + c;
            for (int64_t e = 0; e < gs * k; ++e) ref_dw[q * gs * k + e] += part_dw[i * gs * k + e];
            for (int v = 0; v < 3; ++v)
                for (int64_t e = 0; e < gs; ++e)
                    ref_v[v * nsel + q * gs + e] += part_v[(i * 3 + v) * gs + e];
        }
    out->rel[1] = vec_error(dt, dw_groups, ref_dw, nsel * k, &out->max_abs[1]);
    const void *vecs[3] = {dbias, dgamma, dbeta};
    for (int v = 0; v < 3; ++v) {
        for (int64_t q = 0; q < s->ngroups; ++q)
            memcpy((char *)sel + (size_t)(q * gs) * eb,
                   (const char *)vecs[v] + (size_t)(s->group_ids[q] * gs) * eb, (size_t)gs * eb);
        out->rel[2 + v] = vec_error(dt, sel, ref_v + v * nsel, nsel, &out->max_abs[2 + v]);
    }
    rc = 0;
out:
    free(xs);
    free(dys);
    free(ref_dx);
    free(part_dw);
    free(part_v);
    free(ref_dw);
    free(ref_v);
    free(sel);
    free(jobs);
    return rc;
}
