// Float32 transpose (transpose.h): 32x32 tiles through shared memory (padded against bank
// conflicts), 256 threads per tile; loads and stores both coalesced.
#include "util/transpose.h"

namespace {

__global__ void __launch_bounds__(256) lgh_transpose_f32_kernel(const float *src, int64_t rows, int64_t cols,
                                                                int64_t lds, float *dst)
{
    __shared__ float tile[32][33];
    const int64_t c0 = (int64_t)blockIdx.x * 32, r0 = (int64_t)blockIdx.y * 32;
    for (int i = threadIdx.y; i < 32; i += 8) {
        const int64_t r = r0 + i, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[i][threadIdx.x] = src[r * lds + c];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += 8) {
        const int64_t c = c0 + i, r = r0 + threadIdx.x;
        if (r < rows && c < cols) dst[c * rows + r] = tile[threadIdx.x][i];
    }
}

} // namespace

extern "C" cudaError_t lgh_transpose_f32(const float *src, int64_t rows, int64_t cols, int64_t lds, float *dst,
                                         void *stream)
{
    // Grid: x over column tiles (up to 2^31 - 1), y over row tiles (up to 65535).
    const int64_t row_tiles = (rows + 31) / 32;
    if (row_tiles > 65535) return cudaErrorInvalidValue;
    const dim3 grid((unsigned)((cols + 31) / 32), (unsigned)row_tiles);
    lgh_transpose_f32_kernel<<<grid, dim3(32, 8), 0, static_cast<cudaStream_t>(stream)>>>(src, rows, cols, lds,
                                                                                         dst);
    return cudaGetLastError();
}
