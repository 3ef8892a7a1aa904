/*
 * The built-in blocked GEMM (see gemm_blocked.h), the classic packed-panel scheme:
 *
 *   for each NC-column panel of B, for each KC-deep slice:
 *       pack B[panel, slice] into NR-column strips        (threads share the strips)
 *       for each task = (MC-row block of A, group of NC_TASK columns), in parallel:
 *           pack the A block into MR-row strips             (per-thread buffer)
 *           for each NR strip, for each MR strip: micro-kernel MR x NR over KC
 *
 * The packed B strip (KC x NR floats, 16 KiB) stays in L1 while the A block (MC x KC,
 * 96 KiB) streams from L2. Packing pads short strips with zeros, so the micro-kernel
 * always runs full MR x NR and stores only the valid corner. The first KC slice stores
 * into C, later ones add, so C is never read before it is written.
 */
#include "cpu/gemm_blocked.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

enum {
    MR = 6,         /* micro-tile rows: 6 x 16 floats = 12 AVX2 accumulators */
    NR = 16,        /* micro-tile columns */
    KC = 256,       /* depth of a packed slice */
    MC = 96,        /* rows of an A block (multiple of MR) */
    NC = 4096,      /* columns of a packed B panel (multiple of NR) */
    NC_TASK = 256,  /* columns one task covers (multiple of NR) */
};

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

size_t lgh_gemm_blocked_scratch_bytes(int64_t m, int64_t n, int64_t k, int threads)
{
    const int64_t kc = min64(KC, k);
    const int64_t nc = min64(NC, round_up(n, NR));
    const int64_t mc = min64(MC, round_up(m, MR));
    if (threads < 1) threads = 1;
    return (size_t)(kc * nc + (int64_t)threads * mc * kc) * sizeof(float);
}

/* B rows [j0, j0+nr) (nr <= NR) x columns [p0, p0+kc) into one strip [kc][NR]. */
static void pack_b_strip(const float *b, int64_t ldb, int64_t j0, int64_t nr, int64_t p0,
                         int64_t kc, float *dst)
{
    for (int64_t j = 0; j < NR; ++j) {
        if (j < nr) {
            const float *src = b + (j0 + j) * ldb + p0;
            for (int64_t p = 0; p < kc; ++p) dst[p * NR + j] = src[p];
        } else {
            for (int64_t p = 0; p < kc; ++p) dst[p * NR + j] = 0.0f;
        }
    }
}

/* A rows [i0, i0+mc) x columns [p0, p0+kc) into MR-row strips, each [kc][MR]. */
static void pack_a_block(const float *a, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
                         int64_t kc, float *dst)
{
    for (int64_t s = 0; s < mc; s += MR) {
        float *strip = dst + s * kc;
        for (int64_t i = 0; i < MR; ++i) {
            if (s + i < mc) {
                const float *src = a + (i0 + s + i) * lda + p0;
                for (int64_t p = 0; p < kc; ++p) strip[p * MR + i] = src[p];
            } else {
                for (int64_t p = 0; p < kc; ++p) strip[p * MR + i] = 0.0f;
            }
        }
    }
}

/* Eight floats as one value (GNU C vector extension): with AVX2 one ymm register, on the
 * baseline ISA two xmm. aligned(4): loads from packed strips need no alignment. */
typedef float vf8 __attribute__((vector_size(32), aligned(4)));

/* C[mr x nr corner] (=|+=) packed A strip · packed B strip over kc. The 6 x 16
 * accumulators are 12 vf8 values, which the AVX2+FMA clone keeps in registers: per k,
 * two loads of B, six broadcasts of A, twelve FMAs. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
/* (Not under ThreadSanitizer: it instruments the clones' ifunc resolver, which the dynamic
 * loader runs before TSan's runtime is up, and the library crashes as it loads.) */
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
static void micro_kernel(int64_t kc, const float *restrict ap, const float *restrict bp,
                         float *restrict c, int64_t ldc, int64_t mr, int64_t nr, int accumulate)
{
    vf8 acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = (vf8){0};
    for (int64_t p = 0; p < kc; ++p) {
        const vf8 b0 = *(const vf8 *)(bp + p * NR);
        const vf8 b1 = *(const vf8 *)(bp + p * NR + 8);
        const float *a = ap + p * MR;
        for (int i = 0; i < MR; ++i) {
            const float s = a[i];
            const vf8 ai = {s, s, s, s, s, s, s, s};
            acc[i][0] += ai * b0;
            acc[i][1] += ai * b1;
        }
    }
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; ++i) {
            vf8 *ci = (vf8 *)(c + i * ldc);
            if (accumulate) {
                ci[0] += acc[i][0];
                ci[1] += acc[i][1];
            } else {
                ci[0] = acc[i][0];
                ci[1] = acc[i][1];
            }
        }
        return;
    }
    float tile[MR][NR];
    memcpy(tile, acc, sizeof tile);
    for (int64_t i = 0; i < mr; ++i) {
        float *ci = c + i * ldc;
        for (int64_t j = 0; j < nr; ++j) ci[j] = accumulate ? ci[j] + tile[i][j] : tile[i][j];
    }
}

void lgh_gemm_blocked_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const float *b, int64_t ldb, float *c, int64_t ldc, int threads,
                         void *scratch)
{
    if (threads < 1) threads = 1;
    const int64_t kc_max = min64(KC, k);
    const int64_t nc_max = min64(NC, round_up(n, NR));
    float *bpack = scratch;
    float *apack_all = bpack + kc_max * nc_max; /* one MC x KC block per thread */
    /* Small products are not worth waking threads for. */
    if ((double)m * (double)n * (double)k < 4.0e6) threads = 1;

#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
#ifdef _OPENMP
        const int64_t mc_max = min64(MC, round_up(m, MR));
        float *apack = apack_all + (int64_t)omp_get_thread_num() * mc_max * kc_max;
#else
        float *apack = apack_all;
#endif
        for (int64_t j0 = 0; j0 < n; j0 += NC) {
            const int64_t nc = min64(NC, n - j0);
            const int64_t strips = (nc + NR - 1) / NR;
            const int64_t col_tasks = (nc + NC_TASK - 1) / NC_TASK;
            const int64_t row_tasks = (m + MC - 1) / MC;
            for (int64_t p0 = 0; p0 < k; p0 += KC) {
                const int64_t kc = min64(KC, k - p0);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
                for (int64_t s = 0; s < strips; ++s)
                    pack_b_strip(b, ldb, j0 + s * NR, min64(NR, nc - s * NR), p0, kc,
                                 bpack + s * kc * NR);
                /* (implicit barrier: every strip is packed before any task reads it) */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
                for (int64_t t = 0; t < row_tasks * col_tasks; ++t) {
                    const int64_t i0 = (t / col_tasks) * MC;
                    const int64_t mc = min64(MC, m - i0);
                    const int64_t jt = (t % col_tasks) * NC_TASK;
                    const int64_t jt_end = min64(jt + NC_TASK, nc);
                    pack_a_block(a, lda, i0, mc, p0, kc, apack);
                    for (int64_t jr = jt; jr < jt_end; jr += NR) {
                        const float *bs = bpack + (jr / NR) * kc * NR;
                        for (int64_t ir = 0; ir < mc; ir += MR) {
                            micro_kernel(kc, apack + ir * kc, bs, c + (i0 + ir) * ldc + j0 + jr,
                                         ldc, min64(MR, mc - ir), min64(NR, jt_end - jr), p0 > 0);
                        }
                    }
                }
                /* (implicit barrier: the next slice repacks B only after all tasks end) */
            }
        }
    }
}
