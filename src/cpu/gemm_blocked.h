/*
 * The built-in GEMM: the CPU engine's product when lgh is built without OpenBLAS
 * (src/cpu/blas.c chooses). Plain C, cache-blocked with packed panels, threaded with
 * OpenMP when the build has it; the micro-kernel is compiled for AVX2+FMA and for the
 * baseline ISA and picked at load time, so one build runs on any x86-64.
 */
#ifndef LGH_CPU_GEMM_BLOCKED_H
#define LGH_CPU_GEMM_BLOCKED_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of scratch lgh_gemm_blocked_nt needs for this size on `threads` threads. */
size_t lgh_gemm_blocked_scratch_bytes(int64_t m, int64_t n, int64_t k, int threads);

/* C[m, n] = A[m, k] · B[n, k]ᵀ, float32, row-major with leading dimensions lda, ldb,
 * ldc. C is only written (its old contents, NaN included, never matter). scratch:
 * lgh_gemm_blocked_scratch_bytes() bytes, 64-byte aligned. */
void lgh_gemm_blocked_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const float *b, int64_t ldb, float *c, int64_t ldc, int threads,
                         void *scratch);

#endif
