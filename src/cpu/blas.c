/*
 * The CPU engine's BLAS (see blas.h): OpenBLAS's cblas_sgemm when the build found it,
 * the built-in blocked GEMM otherwise, and lgh_cpu_blas_name() to tell which.
 *
 * OpenBLAS runs its own thread pool, sized by OPENBLAS_NUM_THREADS or the core count;
 * lgh does not change it (that setting is process-wide and belongs to the application).
 * The engine's own threads only run after cblas_sgemm has returned, so the two pools
 * never compute at the same time.
 */
#include "cpu/blas.h"

#include <limits.h>
#include <stdio.h>

#include "lgh.h"
#include "cpu/gemm_blocked.h"

#ifdef LGH_HAVE_OPENBLAS
#include <cblas.h>

/* OpenBLAS's integer type is 32 or 64 bits wide depending on how it was built. */
#define BLAS_INT_MAX ((int64_t)(sizeof(blasint) == 4 ? INT_MAX : INT64_MAX))

bool lgh_cpu_sgemm_supports(int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                            char *why, size_t why_len)
{
    const int64_t lim = BLAS_INT_MAX;
    if (n > lim || k > lim || lda > lim || ldb > lim || ldc > lim) {
        snprintf(why, why_len,
                 "OpenBLAS takes sizes and leading dimensions up to %lld (N=%lld K=%lld "
                 "ldx=%lld ldw=%lld ldy=%lld)",
                 (long long)lim, (long long)n, (long long)k, (long long)lda, (long long)ldb,
                 (long long)ldc);
        return false;
    }
    return true;
}

size_t lgh_cpu_sgemm_scratch_bytes(int64_t m, int64_t n, int64_t k, int threads)
{
    (void)m, (void)n, (void)k, (void)threads;
    return 0;
}

void lgh_cpu_sgemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float *c, int64_t ldc, int threads,
                      void *scratch)
{
    (void)threads, (void)scratch;
    /* beta = 0: BLAS semantics say C is not read, so a NaN-filled y is fine. */
    for (int64_t i0 = 0; i0 < m; i0 += BLAS_INT_MAX) {
        const int64_t rows = m - i0 < BLAS_INT_MAX ? m - i0 : BLAS_INT_MAX;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)n,
                    (blasint)k, 1.0f, a + i0 * lda, (blasint)lda, b, (blasint)ldb, 0.0f,
                    c + i0 * ldc, (blasint)ldc);
    }
}

/* openblas_get_config() is OpenBLAS's own constant string, "OpenBLAS 0.3.21 DYNAMIC_ARCH
 * NO_AFFINITY Zen MAX_THREADS=64": version first, then the core it picked at load time. */
const char *lgh_cpu_blas_name(void) { return openblas_get_config(); }

#else /* built-in blocked GEMM */

bool lgh_cpu_sgemm_supports(int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                            char *why, size_t why_len)
{
    (void)n, (void)k, (void)lda, (void)ldb, (void)ldc, (void)why, (void)why_len;
    return true;
}

size_t lgh_cpu_sgemm_scratch_bytes(int64_t m, int64_t n, int64_t k, int threads)
{
    return lgh_gemm_blocked_scratch_bytes(m, n, k, threads);
}

void lgh_cpu_sgemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float *c, int64_t ldc, int threads,
                      void *scratch)
{
    lgh_gemm_blocked_nt(m, n, k, a, lda, b, ldb, c, ldc, threads, scratch);
}

const char *lgh_cpu_blas_name(void) { return "built-in blocked GEMM"; }

#endif
