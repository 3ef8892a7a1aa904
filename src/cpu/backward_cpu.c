/*
 * The CPU engine's backward (lgh_backward on a CPU context; the formulas: include/lgh.h).
 *
 *   1. h: the forward's saved pre-norm (any dtype, read widened), or recomputed as
 *      x·Wᵀ (sgemm) + b in float, the same float addition as the forward's pass;
 *   2. per (row, group), one thread: z, the clamp mask, x̂ from h and its mean and rstd
 *      (the forward's for float32 data with h saved, else two passes over h in double:
 *      lgh.h says why) with the forward's own formula (common/norm_output.h), the two
 *      group sums Σ dz·γ and Σ dz·γ·x̂ in double, then dh into a float32 buffer;
 *   3. per block of columns, one thread, rows in order: dβ = Σ dz, dγ = Σ dz·x̂ and
 *      db = Σ dh accumulated in double (z, dz, x̂ recomputed) — a fixed order, so the sums
 *      are the same on every run;
 *   4. the products through the engine's one BLAS primitive C = A·Bᵀ (blas.h), on
 *      transposed copies: dx = dh·(Wᵀ)ᵀ and dW = (dhᵀ)·(xᵀ)ᵀ.
 *
 * Float32 products in every math mode, as the forward. Workspace (host, 64-byte aligned
 * pieces): h (when recomputed), dh, Wᵀ, dhᵀ, xᵀ as needed, float32 copies of 16-bit x, W,
 * b, γ, β, float32 dx / dW for 16-bit outputs, and the BLAS scratch.
 */
#include "cpu/backward_cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "common/norm_output.h"
#include "cpu/blas.h"
#include "cpu/convert.h"
#include "cpu/widen.h"

enum { ALIGN = 64, COL_BLOCK = 64 };

typedef struct bwd_layout {
    size_t h, stats, dh, wt, dht, xt, xf, wf, bf, gf, betaf, dxf, dwf, scratch, total;
} bwd_layout_t;

static bool place(size_t *end, int64_t count, size_t elem, size_t *at)
{
    size_t bytes;
    if (count < 0 || __builtin_mul_overflow((size_t)count, elem, &bytes)) return false;
    if (__builtin_add_overflow(bytes, (size_t)ALIGN - 1, &bytes)) return false;
    bytes &= ~(size_t)(ALIGN - 1);
    *at = *end;
    return !__builtin_add_overflow(*end, bytes, end);
}

static bool needs_dh(const lgh_bwd_problem_t *p) { return p->dx || p->dw || p->dbias; }

static bool make_layout(const struct lgh_context *ctx, const lgh_bwd_problem_t *p, bwd_layout_t *l)
{
    const lgh_args_t *a = &p->f.a;
    const bool f32 = a->dtype == LGH_DTYPE_FLOAT32;
    int64_t mn, nk, mk;
    size_t end = 0;
    *l = (bwd_layout_t){0};
    if (__builtin_mul_overflow(a->m, a->n, &mn) || __builtin_mul_overflow(a->n, a->k, &nk) ||
        __builtin_mul_overflow(a->m, a->k, &mk))
        return false;
    const size_t f = sizeof(float);
    const bool gemm_x = !p->h || p->dw;  /* x as float32 for a product */
    const bool gemm_w = !p->h || p->dx;
    if (!p->h && !place(&end, mn, f, &l->h)) return false;
    int64_t mg2;
    if (__builtin_mul_overflow(a->m, 2 * a->groups, &mg2)) return false;
    if (!p->mean && !place(&end, mg2, f, &l->stats)) return false; /* mean, rstd from h */
    if (needs_dh(p) && !place(&end, mn, f, &l->dh)) return false;
    if (p->dx && !place(&end, nk, f, &l->wt)) return false;
    if (p->dw && (!place(&end, mn, f, &l->dht) || !place(&end, mk, f, &l->xt))) return false;
    if (!f32) {
        if ((gemm_x && !place(&end, mk, f, &l->xf)) || (gemm_w && !place(&end, nk, f, &l->wf)) ||
            !place(&end, a->n, f, &l->bf) || !place(&end, a->n, f, &l->gf) ||
            !place(&end, a->n, f, &l->betaf))
            return false;
        if (p->dx && !place(&end, mk, f, &l->dxf)) return false;
        if (p->dw && !place(&end, nk, f, &l->dwf)) return false;
    }
    /* The largest product: h (m x n by k), dx (m x k by n) or dW (n x k by m). */
    const int threads = lgh_device_props(ctx)->cpu_threads;
    size_t scratch = lgh_cpu_sgemm_scratch_bytes(a->m, a->n, a->k, threads);
    size_t s2 = lgh_cpu_sgemm_scratch_bytes(a->m, a->k, a->n, threads);
    size_t s3 = lgh_cpu_sgemm_scratch_bytes(a->n, a->k, a->m, threads);
    if (s2 > scratch) scratch = s2;
    if (s3 > scratch) scratch = s3;
    if (!place(&end, (int64_t)scratch, 1, &l->scratch)) return false;
    if (end == 0) return true;
    return !__builtin_add_overflow(end, (size_t)ALIGN, &l->total);
}

lgh_status_t lgh_cpu_bwd_can_implement(struct lgh_context *ctx, const lgh_bwd_problem_t *p,
                                       char *why, size_t why_len)
{
    const lgh_args_t *a = &p->f.a;
    /* The products' shapes (n, k of each C = A·Bᵀ) and their packed leading dimensions. */
    if (!lgh_cpu_sgemm_supports(a->n, a->k, a->k, a->k, a->n, why, why_len) ||
        !lgh_cpu_sgemm_supports(a->k, a->n, a->n, a->n, a->k, why, why_len) ||
        !lgh_cpu_sgemm_supports(a->k, a->m, a->m, a->m, a->k, why, why_len) ||
        (a->dtype == LGH_DTYPE_FLOAT32 &&
         !lgh_cpu_sgemm_supports(a->n, a->k, a->ldx, a->ldw, a->n, why, why_len)))
        return LGH_STATUS_NOT_SUPPORTED;
    bwd_layout_t l;
    if (!make_layout(ctx, p, &l)) {
        snprintf(why, why_len, "the backward's float32 buffers for M=%lld K=%lld N=%lld overflow "
                 "the address space", (long long)a->m, (long long)a->k, (long long)a->n);
        return LGH_STATUS_NOT_SUPPORTED;
    }
    return LGH_STATUS_SUCCESS;
}

size_t lgh_cpu_bwd_workspace_size(struct lgh_context *ctx, const lgh_bwd_problem_t *p)
{
    bwd_layout_t l;
    return make_layout(ctx, p, &l) ? l.total : 0;
}

/* Element i of a dtype array, as float. */
static inline float load_f(const void *base, lgh_dtype_t dt, int64_t i)
{
    switch (dt) {
    case LGH_DTYPE_BFLOAT16: return lgh_bf16_to_float(((const uint16_t *)base)[i]);
    case LGH_DTYPE_FLOAT16: return lgh_fp16_to_float(((const uint16_t *)base)[i]);
    default: return ((const float *)base)[i];
    }
}

static inline void store_f(void *base, lgh_dtype_t dt, int64_t i, float v)
{
    switch (dt) {
    case LGH_DTYPE_BFLOAT16: ((uint16_t *)base)[i] = lgh_float_to_bf16(v); break;
    case LGH_DTYPE_FLOAT16: ((uint16_t *)base)[i] = lgh_float_to_fp16(v); break;
    default: ((float *)base)[i] = v; break;
    }
}

/* What the per-element passes read: h (float buffer or the saved dtype array), dy, the
 * forward's statistics and float32 γ, β. */
typedef struct bwd_inputs {
    const lgh_bwd_problem_t *p;
    const float *hf; /* recomputed h [m][n], or NULL: read p->h */
    const float *gamma, *beta;
} bwd_inputs_t;

static inline float h_at(const bwd_inputs_t *in, int64_t r, int64_t c)
{
    const lgh_bwd_problem_t *p = in->p;
    if (in->hf) return in->hf[r * p->f.a.n + c];
    return load_f(p->h, p->f.a.dtype, r * p->ldh + c);
}

/* dz and x̂ of element (r, c) with its group's statistics. */
static inline void dz_xhat(const bwd_inputs_t *in, int64_t r, int64_t c, float mean, float rstd,
                           float *dz, float *xhat)
{
    const lgh_bwd_problem_t *p = in->p;
    const float h = h_at(in, r, c);
    const float z = lgh_norm_affine(h, mean, rstd, in->gamma[c], in->beta[c]);
    const float dy = load_f(p->dy, p->f.a.dtype, r * p->lddy + c);
    *dz = (z <= p->f.a.lo || z >= p->f.a.hi) ? 0.0f : dy; /* torch's rule: NaN z passes dy */
    *xhat = (h - mean) * rstd;
}

static void transpose(const float *src, int64_t rows, int64_t cols, int64_t lds, float *dst,
                      int nt)
{
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
    for (int64_t c0 = 0; c0 < cols; c0 += 32)
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = c0; c < c0 + 32 && c < cols; ++c) dst[c * rows + r] = src[r * lds + c];
    (void)nt;
}

/* Writes a float [rows][cols] buffer (packed) into a dtype matrix at leading dim ld. */
static void narrow(const float *src, int64_t rows, int64_t cols, lgh_dtype_t dt, void *dst, int64_t ld)
{
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) store_f(dst, dt, r * ld + c, src[r * cols + c]);
}

lgh_status_t lgh_cpu_bwd_run(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *ws,
                             size_t ws_bytes, void *stream)
{
    (void)stream;
    const lgh_args_t *a = &p->f.a;
    const int cpu_threads = lgh_device_props(ctx)->cpu_threads;
    const int threads = cpu_threads > 0 ? cpu_threads : 1;
    const lgh_dtype_t dt = a->dtype;
    const bool f32 = dt == LGH_DTYPE_FLOAT32;
    const int64_t m = a->m, n = a->n, k = a->k, groups = a->groups, gs = n / groups;
    bwd_layout_t l;
    if (!make_layout(ctx, p, &l))
        return lgh_set_error(ctx, LGH_STATUS_INTERNAL_ERROR, "cpu backward: workspace size overflows");
    if (l.total > 0 && (!ws || ws_bytes < l.total)) {
        return lgh_set_error(ctx, LGH_STATUS_WORKSPACE_TOO_SMALL,
                             "cpu backward: workspace of %zu bytes, needs %zu", ws ? ws_bytes : 0,
                             l.total);
    }
    char *base = ws ? (char *)(((uintptr_t)ws + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1)) : NULL;
#define AT(field) ((float *)(base + l.field))
    void *scratch = base ? base + l.scratch : NULL;

    /* float32 views of the inputs */
    const float *xf = f32 ? (const float *)a->x : NULL, *wf = f32 ? (const float *)a->w : NULL;
    int64_t ldxf = a->ldx, ldwf = a->ldw;
    const float *bf = (const float *)a->bias, *gf = (const float *)a->gamma;
    const float *betaf = (const float *)a->beta;
    if (!f32) {
        if (!p->h || p->dw) { /* x as float32 for a product (make_layout placed it) */
            lgh_cpu_widen(a->x, m, k, a->ldx, dt, AT(xf), threads);
            xf = AT(xf), ldxf = k;
        }
        if (!p->h || p->dx) {
            lgh_cpu_widen(a->w, n, k, a->ldw, dt, AT(wf), threads);
            wf = AT(wf), ldwf = k;
        }
        lgh_cpu_widen(a->bias, 1, n, n, dt, AT(bf), 1);
        lgh_cpu_widen(a->gamma, 1, n, n, dt, AT(gf), 1);
        lgh_cpu_widen(a->beta, 1, n, n, dt, AT(betaf), 1);
        bf = AT(bf), gf = AT(gf), betaf = AT(betaf);
    }

    bwd_inputs_t in = {p, NULL, gf, betaf};
    if (!p->h) { /* recompute h = x·Wᵀ + b exactly as the forward's pass forms it */
        float *h = AT(h);
        lgh_cpu_sgemm_nt(m, n, k, xf, ldxf, wf, ldwf, h, n, threads, scratch);
        for (int64_t r = 0; r < m; ++r)
            for (int64_t c = 0; c < n; ++c) h[r * n + c] = h[r * n + c] + bf[c];
        in.hf = h;
    }

    /* The statistics: the forward's, or mean and rstd of the h used here (lgh.h), two
     * passes in double as the forward's. */
    const float *mean_of = p->mean, *rstd_of = p->rstd;
    if (!p->mean) {
        float *st = AT(stats);
        const int64_t items = m * groups;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
        for (int64_t t = 0; t < items; ++t) {
            const int64_t r = t / groups, c0 = (t % groups) * gs;
            double sum = 0.0;
            for (int64_t c = c0; c < c0 + gs; ++c) sum += h_at(&in, r, c);
            const double mean = sum / (double)gs;
            double m2 = 0.0;
            for (int64_t c = c0; c < c0 + gs; ++c) {
                const double d = h_at(&in, r, c) - mean;
                m2 += d * d;
            }
            st[t] = (float)mean;
            st[items + t] = (float)(1.0 / sqrt(m2 / (double)gs + (double)a->eps));
        }
        mean_of = st, rstd_of = st + items;
    }

    /* 2. dh per (row, group) */
    float *dh = needs_dh(p) ? AT(dh) : NULL;
    if (dh) {
        const int64_t items = m * groups;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
        for (int64_t t = 0; t < items; ++t) {
            const int64_t r = t / groups, g = t % groups, c0 = g * gs;
            const float mean = mean_of[t], rstd = rstd_of[t];
            double s1 = 0.0, s2 = 0.0;
            for (int64_t c = c0; c < c0 + gs; ++c) {
                float dz, xhat;
                dz_xhat(&in, r, c, mean, rstd, &dz, &xhat);
                const double gv = (double)dz * gf[c];
                s1 += gv;
                s2 += gv * xhat;
            }
            const float m1 = (float)(s1 / (double)gs), m2 = (float)(s2 / (double)gs);
            for (int64_t c = c0; c < c0 + gs; ++c) {
                float dz, xhat;
                dz_xhat(&in, r, c, mean, rstd, &dz, &xhat);
                dh[r * n + c] = rstd * (dz * gf[c] - m1 - xhat * m2);
            }
        }
    }

    /* 3. column sums, rows in order */
    if (p->dbias || p->dgamma || p->dbeta) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
        for (int64_t c0 = 0; c0 < n; c0 += COL_BLOCK) {
            const int64_t c1 = c0 + COL_BLOCK < n ? c0 + COL_BLOCK : n;
            double sb[COL_BLOCK] = {0}, sg[COL_BLOCK] = {0}, sbe[COL_BLOCK] = {0};
            for (int64_t r = 0; r < m; ++r) {
                for (int64_t c = c0; c < c1; ++c) {
                    const int64_t t = r * groups + c / gs;
                    float dz, xhat;
                    dz_xhat(&in, r, c, mean_of[t], rstd_of[t], &dz, &xhat);
                    sbe[c - c0] += dz;
                    sg[c - c0] += (double)dz * xhat;
                    if (dh) sb[c - c0] += dh[r * n + c];
                }
            }
            for (int64_t c = c0; c < c1; ++c) {
                if (p->dbeta) store_f(p->dbeta, dt, c, (float)sbe[c - c0]);
                if (p->dgamma) store_f(p->dgamma, dt, c, (float)sg[c - c0]);
                if (p->dbias) store_f(p->dbias, dt, c, (float)sb[c - c0]);
            }
        }
    }

    /* 4. the products */
    if (p->dx) { /* dx[m,k] = dh[m,n] · (Wᵀ[k,n])ᵀ */
        float *wt = AT(wt);
        transpose(wf, n, k, ldwf, wt, threads);
        if (f32) {
            lgh_cpu_sgemm_nt(m, k, n, dh, n, wt, n, (float *)p->dx, p->lddx, threads, scratch);
        } else {
            lgh_cpu_sgemm_nt(m, k, n, dh, n, wt, n, AT(dxf), k, threads, scratch);
            narrow(AT(dxf), m, k, dt, p->dx, p->lddx);
        }
    }
    if (p->dw) { /* dW[n,k] = dhᵀ[n,m] · (xᵀ[k,m])ᵀ */
        float *dht = AT(dht), *xt = AT(xt);
        transpose(dh, m, n, n, dht, threads);
        transpose(xf, m, k, ldxf, xt, threads);
        if (f32) {
            lgh_cpu_sgemm_nt(n, k, m, dht, m, xt, m, (float *)p->dw, p->lddw, threads, scratch);
        } else {
            lgh_cpu_sgemm_nt(n, k, m, dht, m, xt, m, AT(dwf), k, threads, scratch);
            narrow(AT(dwf), n, k, dt, p->dw, p->lddw);
        }
    }
#undef AT
    return LGH_STATUS_SUCCESS;
}
