// float16 -> float32 (widen.h).
#include "util/widen.h"

#include <cuda_fp16.h>

namespace {

__global__ void __launch_bounds__(256) lgh_widen_f16_kernel(const __half *src, float *dst, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __half2float(src[i]);
}

} // namespace

extern "C" cudaError_t lgh_widen_f16(const void *src, float *dst, int64_t n, void *stream)
{
    int64_t blocks = (n + 255) / 256;
    if (blocks > 4096) blocks = 4096;
    if (blocks < 1) blocks = 1;
    lgh_widen_f16_kernel<<<(unsigned)blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const __half *>(src), dst, n);
    return cudaGetLastError();
}
