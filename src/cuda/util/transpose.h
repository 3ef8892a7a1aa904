/*
 * A float32 matrix transpose into packed storage, stream-ordered. The backward uses it to
 * give tensor-core products K-major operands: tf32 reads both operands K-major, and dW =
 * dhᵀ·x reduces over rows that neither dh nor x has contiguous.
 */
#ifndef LGH_CUDA_UTIL_TRANSPOSE_H
#define LGH_CUDA_UTIL_TRANSPOSE_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dst[c * rows + r] = src[r * lds + c] for r < rows, c < cols. */
cudaError_t lgh_transpose_f32(const float *src, int64_t rows, int64_t cols, int64_t lds, float *dst,
                              void *stream);

#ifdef __cplusplus
}
#endif

#endif
