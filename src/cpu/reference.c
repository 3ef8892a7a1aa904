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
