/*
 * The CPU engine's product, C = A · Bᵀ in float32, behind one interface whichever BLAS
 * the build has: OpenBLAS's cblas_sgemm (LGH_HAVE_OPENBLAS, set by src/cpu/CMakeLists.txt
 * when Debian's libopenblas-dev is found) or the built-in blocked GEMM (gemm_blocked.c).
 * lgh_cpu_blas_name() (public, include/lgh.h) says which one runs.
 */
#ifndef LGH_CPU_BLAS_H
#define LGH_CPU_BLAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether the BLAS takes these sizes (OpenBLAS's 32-bit ints bound n, k and the
 * leading dimensions; m is split as needed). Otherwise false and a reason in why. */
bool lgh_cpu_sgemm_supports(int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                            char *why, size_t why_len);

/* Bytes of scratch lgh_cpu_sgemm_nt needs (0 with OpenBLAS, which keeps its own). */
size_t lgh_cpu_sgemm_scratch_bytes(int64_t m, int64_t n, int64_t k, int threads);

/* C[m, n] = A[m, k] · B[n, k]ᵀ, row-major with leading dimensions; C is only written.
 * threads bounds the built-in GEMM's threads (OpenBLAS uses its own setting);
 * scratch is 64-byte aligned, lgh_cpu_sgemm_scratch_bytes() long. */
void lgh_cpu_sgemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float *c, int64_t ldc, int threads,
                      void *scratch);

#endif
