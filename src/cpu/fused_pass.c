/*
 * The fused pass (see fused_pass.h). Each (row, group) is one unit of work, done whole
 * by one thread:
 *
 *   1. statistics: the group is read in chunks of CHUNK values (8 KiB, L1-resident);
 *      each chunk gets an exact two-pass (count, mean, M2) in double, and the chunks
 *      are merged with Chan's formula, so y is read once here even for groups far
 *      larger than the caches, and E[x²]−E[x]² never appears;
 *   2. output: y = clamp((v - mean) * (rstd * γ) + β, lo, hi) in float, where
 *      v = product + bias is recomputed (the same float addition as in step 1).
 *
 * Accumulations run in double (a float sum over 8192 values would cost the mean about
 * 1e-5 relative, visible after normalisation when |mean| >> std); the per-element
 * arithmetic stays in float, where it is exact to ~1 ulp.
 */
#include "cpu/fused_pass.h"

#include <math.h>
#include <stdbool.h>

#include "common/norm_output.h"
#include "cpu/convert.h"

enum { CHUNK = 2048, OUT_TILE = 256 };

/* Partial statistics of a run of values: count, mean, sum of squared deviations. */
typedef struct stats {
    double n, mean, m2;
} stats_t;

/* Chan et al.: merge two partial statistics (the host twin of cuda/epilogue/chan.cuh). */
static stats_t stats_combine(stats_t a, stats_t b)
{
    const double n = a.n + b.n;
    if (n == 0.0) return a;
    const double d = b.mean - a.mean;
    const double wb = b.n / n;
    return (stats_t){n, a.mean + d * wb, a.m2 + b.m2 + d * d * a.n * wb};
}

/* Exact two-pass statistics of v[j] + b[j], j < len (the chunk is in L1 for pass two). */
static stats_t chunk_stats(const float *v, const float *b, int64_t len)
{
    double sum = 0.0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : sum)
#endif
    for (int64_t j = 0; j < len; ++j) sum += (double)(v[j] + b[j]);
    const double mean = sum / (double)len;
    double m2 = 0.0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : m2)
#endif
    for (int64_t j = 0; j < len; ++j) {
        const double d = (double)(v[j] + b[j]) - mean;
        m2 += d * d;
    }
    return (stats_t){(double)len, mean, m2};
}

/* out[j] = clamp((v[j] + b[j] - mean) * (rstd * γ[j]) + β[j], lo, hi), j < len, in
 * float, with PyTorch's special values (common/norm_output.h: NaN propagates). */
static void normalise(const float *v, const float *b, const float *gamma, const float *beta,
                      int64_t len, float mean, float rstd, float lo, float hi, float *out)
{
    for (int64_t j = 0; j < len; ++j)
        out[j] = lgh_hardtanh(lgh_norm_affine(v[j] + b[j], mean, rstd, gamma[j], beta[j]), lo, hi);
}

static void one_group(const lgh_cpu_pass_t *p, int64_t row, int64_t g)
{
    const int64_t gs = p->n / p->groups;
    const int64_t c0 = g * gs;
    const float *v = p->src + row * p->lds + c0;
    const float *b = p->bias + c0;

    stats_t s = {0.0, 0.0, 0.0};
    for (int64_t j = 0; j < gs; j += CHUNK) {
        const int64_t len = gs - j < CHUNK ? gs - j : CHUNK;
        s = stats_combine(s, chunk_stats(v + j, b + j, len));
    }
    const double mean = s.mean;
    const double rstd = 1.0 / sqrt(s.m2 / s.n + (double)p->eps);
    if (p->mean) {
        p->mean[row * p->groups + g] = (float)mean;
        p->rstd[row * p->groups + g] = (float)rstd;
    }

    if (p->h) { /* the pre-norm, as the statistics saw it (before y may overwrite v) */
        if (p->dtype == LGH_DTYPE_FLOAT32) {
            float *h = (float *)p->h + row * p->ldh + c0;
            for (int64_t j = 0; j < gs; ++j) h[j] = v[j] + b[j];
        } else {
            uint16_t *h = (uint16_t *)p->h + row * p->ldh + c0;
            const bool bf = p->dtype == LGH_DTYPE_BFLOAT16;
            for (int64_t j = 0; j < gs; ++j)
                h[j] = bf ? lgh_float_to_bf16(v[j] + b[j]) : lgh_float_to_fp16(v[j] + b[j]);
        }
    }
    const float meanf = (float)mean, rstdf = (float)rstd;
    const float *gam = p->gamma + c0, *bet = p->beta + c0;
    if (p->dtype == LGH_DTYPE_FLOAT32) {
        float *y = (float *)p->dst + row * p->ldd + c0; /* may be v itself: same index */
        normalise(v, b, gam, bet, gs, meanf, rstdf, p->lo, p->hi, y);
        return;
    }
    uint16_t *y = (uint16_t *)p->dst + row * p->ldd + c0;
    float tile[OUT_TILE];
    for (int64_t j = 0; j < gs; j += OUT_TILE) {
        const int64_t len = gs - j < OUT_TILE ? gs - j : OUT_TILE;
        normalise(v + j, b + j, gam + j, bet + j, len, meanf, rstdf, p->lo, p->hi, tile);
        if (p->dtype == LGH_DTYPE_BFLOAT16)
            for (int64_t q = 0; q < len; ++q) y[j + q] = lgh_float_to_bf16(tile[q]);
        else
            for (int64_t q = 0; q < len; ++q) y[j + q] = lgh_float_to_fp16(tile[q]);
    }
}

void lgh_cpu_fused_pass(const lgh_cpu_pass_t *p, int threads)
{
    const int64_t items = p->m * p->groups;
    /* About 32 Ki elements of y per thread before another thread pays off. */
    int64_t useful = p->m * p->n / 32768;
    if (useful < 1) useful = 1;
    if (useful > items) useful = items;
    const int nt = threads < 1 ? 1 : useful < threads ? (int)useful : threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
    for (int64_t t = 0; t < items; ++t) one_group(p, t / p->groups, t % p->groups);
    (void)nt;
}
