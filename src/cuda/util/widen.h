/*
 * float16 -> float32 conversion of a vector, stream-ordered (the cublaslt engine's bias
 * for a product written in float32).
 */
#ifndef LGH_CUDA_UTIL_WIDEN_H
#define LGH_CUDA_UTIL_WIDEN_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dst[i] = (float)src[i] for i < n; src holds IEEE float16 values. */
cudaError_t lgh_widen_f16(const void *src, float *dst, int64_t n, void *stream);

#ifdef __cplusplus
}
#endif

#endif
