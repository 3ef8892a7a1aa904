// mma_sync_peak: the throughput ceiling of mma.sync on this GPU, with no memory traffic —
// what the sm80 engine's main loop could reach at best (docs/PERF.md, sm80 v4).
//
//   nvcc -O3 -std=c++17 -Isrc/cuda -gencode arch=compute_90,code=sm_90 -gencode arch=compute_89,code=sm_89 \
//        -o build/mma_sync_peak bench/micro/mma_sync_peak.cu && build/mma_sync_peak
//
// Each warp runs ITERS rounds of 32 independent m16n8k8 tf32 (or m16n8k16 bf16) mma on
// register operands (a 64 x 64 warp tile, as the engine's), for 1, 2 and 3 warps per SM
// sub-partition; prints TFLOP/s per case (2 * 16 * 8 * k per mma).
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>

#include "ptx/mma_sm80.cuh" // the engine's own mma wrappers

constexpr int ITERS = 4096;

template <bool BF16>
__global__ void peak(float *out, uint32_t seed)
{
    float acc[4][8][4] = {};
    uint32_t a[4][4], b[8][2];
    for (int i = 0; i < 4; ++i)
        for (int q = 0; q < 4; ++q) a[i][q] = seed * (i + 3 * q + 1) + threadIdx.x;
    for (int j = 0; j < 8; ++j) b[j][0] = seed ^ j, b[j][1] = seed + j;
    for (int it = 0; it < ITERS; ++it) {
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                if (BF16) lgh_mma_m16n8k16_bf16(acc[i][j], a[i], b[j]);
                else lgh_mma_m16n8k8_tf32(acc[i][j], a[i], b[j]);
            }
    }
    float s = 0.f;
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 8; ++j)
            for (int q = 0; q < 4; ++q) s += acc[i][j][q];
    if (s == 1.2345f) out[threadIdx.x] = s; // keeps the work alive
}

int main()
{
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    float *out;
    cudaMalloc(&out, 4096 * sizeof(float));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int bf16 = 0; bf16 < 2; ++bf16) {
        for (int warps : {4, 8, 12}) { // 166 registers a thread: 12 warps fill the register file
            const int threads = 32 * warps;
            auto run = [&] {
                if (bf16) peak<true><<<sms, threads>>>(out, 7);
                else peak<false><<<sms, threads>>>(out, 7);
            };
            run();
            cudaEventRecord(e0);
            for (int r = 0; r < 5; ++r) run();
            cudaEventRecord(e1);
            cudaEventSynchronize(e1);
            float ms = 0.f;
            cudaEventElapsedTime(&ms, e0, e1);
            const double flop = 5.0 * sms * warps * (double)ITERS * 32 * 2 * 16 * 8 * (bf16 ? 16 : 8);
            printf("%s mma.sync, %2d warps per SM (%d per sub-partition): %.1f TFLOP/s\n", bf16 ? "bf16" : "tf32",
                   warps, warps / 4, flop / (ms * 1e-3) / 1e12);
        }
    }
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        fprintf(stderr, "mma_sync_peak: %s\n", cudaGetErrorString(err));
        return 1;
    }
    return 0;
}
