/*
 * Widening bfloat16 / float16 matrices to float32 for the CPU engine: the engine turns
 * 16-bit x and W into packed float32 copies in its workspace and multiplies those with
 * sgemm. Exact (every bfloat16 and float16 value is a float32 value), threaded.
 */
#ifndef LGH_CPU_WIDEN_H
#define LGH_CPU_WIDEN_H

#include <stdint.h>

#include "lgh.h"

/* dst[rows][cols] (packed) = src[rows][cols] with row stride ld, src in dtype
 * (LGH_DTYPE_BFLOAT16 or LGH_DTYPE_FLOAT16). Up to `threads` threads. */
void lgh_cpu_widen(const void *src, int64_t rows, int64_t cols, int64_t ld, lgh_dtype_t dtype,
                   float *dst, int threads);

#endif
