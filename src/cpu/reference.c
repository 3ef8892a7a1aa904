/*
 * The double-precision reference (lgh_reference_rows, src/cpu/reference.h): the oracle
 * every engine is tested against, built as the static library lgh_reference for the
 * tests and the CLI. It is not an engine and is never linked into liblgh.
 *
 * Every input is widened to double; each output element is the product accumulated in
 * double over k = 0, 1, ..., K-1 in that order, then the bias, a two-pass mean and
 * biased variance per (row, group), normalisation, γ/β and the clamp, all in double.
 *
 * The product is blocked so that the tests can afford it (M=1000, K=N=1024 in well
 * under a second): rows in chunks of ROW_CHUNK, K in blocks of K_BLOCK, N in blocks of
 * N_BLOCK; each x block is widened row-major and each W block widened and transposed
 * ([k][n]) so the innermost loop is an axpy over 4 columns of 4 rows held in registers.
 * Blocking changes where values are kept, never the order of the additions.
 */
#include "cpu/reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/norm_output.h"
#include "cpu/convert.h"

enum { ROW_CHUNK = 256, K_BLOCK = 256, N_BLOCK = 64, TILE = 4 };

static double load(const void *base, lgh_dtype_t dtype, int64_t i)
{
    switch (dtype) {
    case LGH_DTYPE_BFLOAT16: return lgh_bf16_to_float(((const uint16_t *)base)[i]);
    case LGH_DTYPE_FLOAT16: return lgh_fp16_to_float(((const uint16_t *)base)[i]);
    default: return ((const float *)base)[i];
    }
}

/* acc[4][4] += xs[4 rows][kb] · wt[kb][4 columns], for one 4x4 tile; xs rows are
 * x_stride apart, wt rows w_stride apart. */
static void tile_4x4(int64_t kb, const double *xs, int64_t x_stride, const double *wt,
                     int64_t w_stride, double acc[TILE][TILE])
{
    double c[TILE][TILE];
    memcpy(c, acc, sizeof c);
    for (int64_t k = 0; k < kb; ++k) {
        const double *w = wt + k * w_stride;
        for (int r = 0; r < TILE; ++r) {
            const double xv = xs[r * x_stride + k];
            for (int j = 0; j < TILE; ++j) c[r][j] += xv * w[j];
        }
    }
    memcpy(acc, c, sizeof c);
}

/* y[rows][n] = x[row_begin.., :] · Wᵀ, in double, k in ascending order. */
static int product(const lgh_args_t *a, int64_t ldx, int64_t ldw, int64_t row_begin,
                   int64_t rows, double *y)
{
    const int64_t k_total = a->k, n_total = a->n;
    const int64_t kb_max = k_total < K_BLOCK ? k_total : K_BLOCK;
    const int64_t rc_max = rows < ROW_CHUNK ? rows : ROW_CHUNK;
    const int64_t rc_pad = (rc_max + TILE - 1) / TILE * TILE;
    double *xs = calloc((size_t)(rc_pad * kb_max), sizeof *xs);  /* [row][k] */
    double *wt = calloc((size_t)(kb_max * N_BLOCK), sizeof *wt); /* [k][n] */
    if (!xs || !wt) {
        free(xs);
        free(wt);
        return -1;
    }
    memset(y, 0, (size_t)(rows * n_total) * sizeof *y);

    for (int64_t r0 = 0; r0 < rows; r0 += ROW_CHUNK) {
        const int64_t rc = rows - r0 < ROW_CHUNK ? rows - r0 : ROW_CHUNK;
        for (int64_t k0 = 0; k0 < k_total; k0 += K_BLOCK) {
            const int64_t kb = k_total - k0 < K_BLOCK ? k_total - k0 : K_BLOCK;
            /* Rows past rc stay zero (calloc; later chunks are never shorter than kb). */
            for (int64_t r = 0; r < rc; ++r)
                for (int64_t k = 0; k < kb; ++k)
                    xs[r * kb + k] = load(a->x, a->dtype, (row_begin + r0 + r) * ldx + k0 + k);
            for (int64_t r = rc; r < (rc + TILE - 1) / TILE * TILE; ++r)
                memset(xs + r * kb, 0, (size_t)kb * sizeof *xs);

            for (int64_t n0 = 0; n0 < n_total; n0 += N_BLOCK) {
                const int64_t nb = n_total - n0 < N_BLOCK ? n_total - n0 : N_BLOCK;
                const int64_t nb_pad = (nb + TILE - 1) / TILE * TILE;
                for (int64_t k = 0; k < kb; ++k) {
                    for (int64_t j = 0; j < nb; ++j)
                        wt[k * nb_pad + j] = load(a->w, a->dtype, (n0 + j) * ldw + k0 + k);
                    for (int64_t j = nb; j < nb_pad; ++j) wt[k * nb_pad + j] = 0.0;
                }
                for (int64_t r = 0; r < rc; r += TILE) {
                    for (int64_t j = 0; j < nb; j += TILE) {
                        double acc[TILE][TILE];
                        const int rn = rc - r < TILE ? (int)(rc - r) : TILE;
                        const int jn = nb - j < TILE ? (int)(nb - j) : TILE;
                        double *yt = y + (r0 + r) * n_total + n0 + j;
                        for (int i = 0; i < TILE; ++i)
                            for (int q = 0; q < TILE; ++q)
                                acc[i][q] = i < rn && q < jn ? yt[i * n_total + q] : 0.0;
                        tile_4x4(kb, xs + r * kb, kb, wt + j, nb_pad, acc);
                        for (int i = 0; i < rn; ++i)
                            for (int q = 0; q < jn; ++q) yt[i * n_total + q] = acc[i][q];
                    }
                }
            }
        }
    }
    free(xs);
    free(wt);
    return 0;
}

int lgh_reference_rows(const lgh_args_t *a, int64_t row_begin, int64_t row_end, double *y_out,
                       double *mean_out, double *rstd_out)
{
    if (!a || !y_out || !a->x || !a->w || !a->bias || !a->gamma || !a->beta) return -1;
    if (a->m <= 0 || a->k <= 0 || a->n <= 0 || a->groups <= 0 || a->n % a->groups != 0) return -1;
    if (a->dtype != LGH_DTYPE_FLOAT32 && a->dtype != LGH_DTYPE_BFLOAT16 &&
        a->dtype != LGH_DTYPE_FLOAT16)
        return -1;
    if (row_begin < 0 || row_end < row_begin || row_end > a->m) return -1;
    const int64_t ldx = a->ldx ? a->ldx : a->k;
    const int64_t ldw = a->ldw ? a->ldw : a->k;
    if (ldx < a->k || ldw < a->k) return -1;
    if (!(a->eps > 0.0f) || isnan(a->lo) || isnan(a->hi) || a->lo > a->hi) return -1;

    const int64_t rows = row_end - row_begin;
    if (rows == 0) return 0;
    if (product(a, ldx, ldw, row_begin, rows, y_out) != 0) return -1;

    const int64_t n = a->n, groups = a->groups, gs = n / groups;
    const double eps = a->eps, lo = a->lo, hi = a->hi;
    for (int64_t r = 0; r < rows; ++r) {
        double *yr = y_out + r * n;
        for (int64_t j = 0; j < n; ++j) yr[j] += load(a->bias, a->dtype, j);
        for (int64_t g = 0; g < groups; ++g) {
            double *v = yr + g * gs;
            double sum = 0.0;
            for (int64_t j = 0; j < gs; ++j) sum += v[j];
            const double mean = sum / (double)gs;
            double m2 = 0.0;
            for (int64_t j = 0; j < gs; ++j) m2 += (v[j] - mean) * (v[j] - mean);
            const double rstd = 1.0 / sqrt(m2 / (double)gs + eps);
            for (int64_t j = 0; j < gs; ++j) {
                const int64_t c = g * gs + j;
                const double o = lgh_norm_affine_d(v[j], mean, rstd, load(a->gamma, a->dtype, c),
                                                   load(a->beta, a->dtype, c));
                v[j] = lgh_hardtanh_d(o, lo, hi);
            }
            if (mean_out) mean_out[r * groups + g] = mean;
            if (rstd_out) rstd_out[r * groups + g] = rstd;
        }
    }
    return 0;
}

double lgh_reference_error(const lgh_args_t *a, int64_t row_begin, int64_t row_end,
                           const double *ref, double *max_abs)
{
    if (max_abs) *max_abs = NAN;
    if (!a || !a->y || !ref || a->n <= 0 || row_begin < 0 || row_end <= row_begin) return NAN;
    const int64_t ldy = a->ldy ? a->ldy : a->n;
    if (ldy < a->n) return NAN;
    double diff2 = 0.0, ref2 = 0.0, worst = 0.0;
    for (int64_t r = row_begin; r < row_end; ++r) {
        for (int64_t j = 0; j < a->n; ++j) {
            const double want = ref[(r - row_begin) * a->n + j];
            const double got = load(a->y, a->dtype, r * ldy + j);
            const double d = fabs(got - want);
            if (isnan(d)) {
                if (max_abs) *max_abs = NAN;
                return NAN; /* an unwritten (poisoned) or broken element fails every bound */
            }
            diff2 += d * d;
            ref2 += want * want;
            if (d > worst) worst = d;
        }
    }
    if (max_abs) *max_abs = worst;
    return ref2 > 0.0 ? sqrt(diff2 / ref2) : sqrt(diff2);
}

/* ---- backward (lgh_reference_backward, lgh_reference_near_clamp) ------------------------
 *
 * The forward state is recomputed the way lgh_reference_rows computes it (the same
 * product(), bias, two-pass statistics), so h, mean and rstd are bit for bit the
 * forward reference's. The two gradient products use gemm_d below: the same 4x4
 * register tiles, blocked over the inner index and the columns, each element summed
 * over the inner index in ascending order.
 */

/* Checks the forward problem as lgh_reference_rows does and resolves its leading dims. */
static int resolve_forward(const lgh_args_t *a, int64_t *ldx, int64_t *ldw)
{
    if (!a || !a->x || !a->w || !a->bias || !a->gamma || !a->beta) return -1;
    if (a->m <= 0 || a->k <= 0 || a->n <= 0 || a->groups <= 0 || a->n % a->groups != 0) return -1;
    if (a->dtype != LGH_DTYPE_FLOAT32 && a->dtype != LGH_DTYPE_BFLOAT16 &&
        a->dtype != LGH_DTYPE_FLOAT16)
        return -1;
    *ldx = a->ldx ? a->ldx : a->k;
    *ldw = a->ldw ? a->ldw : a->k;
    if (*ldx < a->k || *ldw < a->k) return -1;
    if (!(a->eps > 0.0f) || isnan(a->lo) || isnan(a->hi) || a->lo > a->hi) return -1;
    return 0;
}

/* h [m][n] = x·Wᵀ + b and mean / rstd [m][groups], in double, as the forward reference. */
static int forward_state(const lgh_args_t *a, int64_t ldx, int64_t ldw, double *h, double *mean,
                         double *rstd)
{
    if (product(a, ldx, ldw, 0, a->m, h) != 0) return -1;
    const int64_t n = a->n, groups = a->groups, gs = n / groups;
    for (int64_t r = 0; r < a->m; ++r) {
        double *hr = h + r * n;
        for (int64_t j = 0; j < n; ++j) hr[j] += load(a->bias, a->dtype, j);
        for (int64_t g = 0; g < groups; ++g) {
            const double *v = hr + g * gs;
            double sum = 0.0;
            for (int64_t j = 0; j < gs; ++j) sum += v[j];
            const double mu = sum / (double)gs;
            double m2 = 0.0;
            for (int64_t j = 0; j < gs; ++j) m2 += (v[j] - mu) * (v[j] - mu);
            mean[r * groups + g] = mu;
            rstd[r * groups + g] = 1.0 / sqrt(m2 / (double)gs + (double)a->eps);
        }
    }
    return 0;
}

enum { G_KB = 256, G_NB = 64 };

/* C [rows][cols] = A [rows][inner] (leading dim lda) · B [inner][cols] (leading dim ldb),
 * C packed; every element summed over the inner index in ascending order. */
static void gemm_d(int64_t rows, int64_t cols, int64_t inner, const double *A, int64_t lda,
                   const double *B, int64_t ldb, double *C)
{
    memset(C, 0, (size_t)(rows * cols) * sizeof *C);
    for (int64_t j0 = 0; j0 < cols; j0 += G_NB) {
        const int64_t nb = cols - j0 < G_NB ? cols - j0 : G_NB;
        for (int64_t p0 = 0; p0 < inner; p0 += G_KB) {
            const int64_t kb = inner - p0 < G_KB ? inner - p0 : G_KB;
            for (int64_t i = 0; i < rows; i += TILE) {
                const int rn = rows - i < TILE ? (int)(rows - i) : TILE;
                for (int64_t j = j0; j < j0 + nb; j += TILE) {
                    const int jn = j0 + nb - j < TILE ? (int)(j0 + nb - j) : TILE;
                    double *ct = C + i * cols + j;
                    if (rn == TILE && jn == TILE) {
                        double acc[TILE][TILE];
                        for (int r = 0; r < TILE; ++r)
                            for (int q = 0; q < TILE; ++q) acc[r][q] = ct[r * cols + q];
                        tile_4x4(kb, A + i * lda + p0, lda, B + p0 * ldb + j, ldb, acc);
                        for (int r = 0; r < TILE; ++r)
                            for (int q = 0; q < TILE; ++q) ct[r * cols + q] = acc[r][q];
                        continue;
                    }
                    for (int r = 0; r < rn; ++r) /* edge tile: same order of additions */
                        for (int q = 0; q < jn; ++q) {
                            double c = ct[r * cols + q];
                            for (int64_t p = 0; p < kb; ++p)
                                c += A[(i + r) * lda + p0 + p] * B[(p0 + p) * ldb + j + q];
                            ct[r * cols + q] = c;
                        }
                }
            }
        }
    }
}

/* A matrix of the data's dtype widened to packed doubles [rows][cols]. */
static double *widen_matrix(const void *base, lgh_dtype_t dtype, int64_t rows, int64_t cols,
                            int64_t ld)
{
    double *d = malloc((size_t)(rows * cols) * sizeof *d);
    if (!d) return NULL;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) d[r * cols + c] = load(base, dtype, r * ld + c);
    return d;
}

int lgh_reference_backward(const lgh_backward_args_t *a, double *dx, double *dw, double *dbias,
                           double *dgamma, double *dbeta)
{
    int64_t ldx, ldw;
    if (!a || resolve_forward(&a->fwd, &ldx, &ldw) != 0 || !a->dy) return -1;
    const lgh_args_t *f = &a->fwd;
    const int64_t m = f->m, k = f->k, n = f->n, groups = f->groups, gs = n / groups;
    const int64_t lddy = a->lddy ? a->lddy : n;
    if (lddy < n) return -1;
    const lgh_dtype_t dt = f->dtype;
    const double lo = f->lo, hi = f->hi;
    const int want_dh = dx || dw || dbias;

    double *h = malloc((size_t)(m * n) * sizeof *h);
    double *mean = malloc((size_t)(m * groups) * sizeof *mean);
    double *rstd = malloc((size_t)(m * groups) * sizeof *rstd);
    double *dh = want_dh ? malloc((size_t)(m * n) * sizeof *dh) : NULL;
    double *gv = malloc((size_t)gs * sizeof *gv), *xh = malloc((size_t)gs * sizeof *xh);
    double *wd = NULL, *xd = NULL, *dht = NULL;
    int rc = -1;
    if (!h || !mean || !rstd || (want_dh && !dh) || !gv || !xh) goto done;
    if (forward_state(f, ldx, ldw, h, mean, rstd) != 0) goto done;

    if (dgamma) memset(dgamma, 0, (size_t)n * sizeof *dgamma);
    if (dbeta) memset(dbeta, 0, (size_t)n * sizeof *dbeta);
    for (int64_t r = 0; r < m; ++r) {
        for (int64_t g = 0; g < groups; ++g) {
            const double mu = mean[r * groups + g], rs = rstd[r * groups + g];
            double sum_g = 0.0, sum_gx = 0.0;
            for (int64_t j = 0; j < gs; ++j) {
                const int64_t c = g * gs + j;
                const double hv = h[r * n + c];
                const double gamma = load(f->gamma, dt, c), beta = load(f->beta, dt, c);
                const double z = lgh_norm_affine_d(hv, mu, rs, gamma, beta);
                /* torch's hardtanh_backward: zero where z <= lo or z >= hi, so NaN passes. */
                const double dz = (z <= lo || z >= hi) ? 0.0 : load(a->dy, dt, r * lddy + c);
                xh[j] = (hv - mu) * rs;
                if (dbeta) dbeta[c] += dz;
                if (dgamma) dgamma[c] += dz * xh[j];
                gv[j] = dz * gamma;
                sum_g += gv[j];
                sum_gx += gv[j] * xh[j];
            }
            if (!want_dh) continue;
            const double mean_g = sum_g / (double)gs, mean_gx = sum_gx / (double)gs;
            for (int64_t j = 0; j < gs; ++j)
                dh[r * n + g * gs + j] = rs * (gv[j] - mean_g - xh[j] * mean_gx);
        }
    }
    if (dbias) {
        memset(dbias, 0, (size_t)n * sizeof *dbias);
        for (int64_t r = 0; r < m; ++r)
            for (int64_t c = 0; c < n; ++c) dbias[c] += dh[r * n + c];
    }
    if (dx) { /* dx [m][k] = dh [m][n] · W [n][k] */
        if (!(wd = widen_matrix(f->w, dt, n, k, ldw))) goto done;
        gemm_d(m, k, n, dh, n, wd, k, dx);
    }
    if (dw) { /* dW [n][k] = dhᵀ [n][m] · x [m][k] */
        if (!(xd = widen_matrix(f->x, dt, m, k, ldx))) goto done;
        if (!(dht = malloc((size_t)(n * m) * sizeof *dht))) goto done;
        for (int64_t r = 0; r < m; ++r)
            for (int64_t c = 0; c < n; ++c) dht[c * m + r] = dh[r * n + c];
        gemm_d(n, k, m, dht, m, xd, k, dw);
    }
    rc = 0;

done:
    free(h), free(mean), free(rstd), free(dh), free(gv), free(xh);
    free(wd), free(xd), free(dht);
    return rc;
}

int lgh_reference_near_clamp(const lgh_args_t *a, double rel_tol, unsigned char *near,
                             int64_t *count)
{
    int64_t ldx, ldw;
    if (count) *count = 0;
    if (resolve_forward(a, &ldx, &ldw) != 0 || !(rel_tol >= 0.0)) return -1;
    const int64_t m = a->m, n = a->n, groups = a->groups, gs = n / groups;
    const double lo = a->lo, hi = a->hi;
    const double tol = rel_tol * fmax(1.0, fmax(fabs(lo), fabs(hi)));
    double *h = malloc((size_t)(m * n) * sizeof *h);
    double *mean = malloc((size_t)(m * groups) * sizeof *mean);
    double *rstd = malloc((size_t)(m * groups) * sizeof *rstd);
    int rc = -1;
    if (h && mean && rstd && forward_state(a, ldx, ldw, h, mean, rstd) == 0) {
        int64_t total = 0;
        for (int64_t r = 0; r < m; ++r)
            for (int64_t c = 0; c < n; ++c) {
                const int64_t g = c / gs;
                const double z = lgh_norm_affine_d(h[r * n + c], mean[r * groups + g],
                                                   rstd[r * groups + g],
                                                   load(a->gamma, a->dtype, c),
                                                   load(a->beta, a->dtype, c));
                const int is_near = fabs(z - lo) <= tol || fabs(z - hi) <= tol;
                if (near) near[r * n + c] = (unsigned char)is_near;
                total += is_near;
            }
        if (count) *count = total;
        rc = 0;
    }
    free(h), free(mean), free(rstd);
    return rc;
}
