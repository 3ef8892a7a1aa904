// Host time of the pieces of one lgh_forward call on a GPU context, in microseconds per
// call: a tiny problem (M=1, K=N=256, G=16, bfloat16) whose GPU work is a few
// microseconds, calls back to back, the stream synchronised once per batch.
//
//   nvcc -O2 -std=c++17 -gencode arch=compute_90,code=sm_90 -Iinclude bench/micro/host_calls.cu \
//        -Lbuild -llgh -Xlinker -rpath='$ORIGIN' -o build/host_calls && build/host_calls
//
// Rows: cudaPointerGetAttributes on a device pointer (lgh's memory-space check makes one
// per pointer: 9 per forward), an empty kernel launch, lgh_plan (argument checks, engine
// choice, workspace size), lgh_forward (AUTO: cuBLASLt's GEMM and lgh's norm pass for
// this problem), and lgh_forward forced onto each GPU engine.
#include <chrono>
#include <cstdio>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "lgh.h"

__global__ void empty_kernel() {}

template <typename F> static double us_per_call(F f, int n = 20000)
{
    for (int i = 0; i < 500; ++i) f();
    cudaDeviceSynchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) f();
    cudaDeviceSynchronize();
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::micro>(t1 - t0).count() / n;
}

int main()
{
    const int64_t m = 1, k = 256, n = 256, g = 16;
    void *x, *w, *b, *gam, *bet, *y;
    cudaMalloc(&x, m * k * 2);
    cudaMalloc(&w, n * k * 2);
    cudaMalloc(&b, n * 2);
    cudaMalloc(&gam, n * 2);
    cudaMalloc(&bet, n * 2);
    cudaMalloc(&y, m * n * 2);
    cudaMemset(x, 0, m * k * 2);
    cudaMemset(w, 0, n * k * 2);
    cudaMemset(b, 0, n * 2);
    cudaMemset(gam, 0, n * 2);
    cudaMemset(bet, 0, n * 2);
    lgh_context_t ctx;
    if (lgh_create(&ctx, 0) != LGH_STATUS_SUCCESS) {
        std::printf("lgh_create failed: %s\n", lgh_last_error(nullptr));
        return 1;
    }
    lgh_args_t a;
    lgh_args_init(&a, m, k, n, g);
    a.dtype = LGH_DTYPE_BFLOAT16;
    a.x = x, a.w = w, a.bias = b, a.gamma = gam, a.beta = bet, a.y = y;
    cudaStream_t s;
    cudaStreamCreate(&s);

    std::printf("host time per call (us), M=1 K=N=256 G=16 bfloat16\n");
    std::printf("%-44s %8.2f\n", "cudaPointerGetAttributes (device pointer)", us_per_call([&] {
                    cudaPointerAttributes at;
                    cudaPointerGetAttributes(&at, x);
                }));
    std::printf("%-44s %8.2f\n", "empty kernel launch", us_per_call([&] { empty_kernel<<<1, 32, 0, s>>>(); }));
    std::printf("%-44s %8.2f\n", "lgh_plan", us_per_call([&] {
                    size_t ws;
                    lgh_engine_t e;
                    lgh_plan(ctx, &a, &e, &ws);
                }));
    const lgh_engine_t engines[] = {LGH_ENGINE_AUTO, LGH_ENGINE_CUBLASLT, LGH_ENGINE_SM90, LGH_ENGINE_SM80};
    for (lgh_engine_t e : engines) {
        a.engine = e;
        if (lgh_forward(ctx, &a, nullptr, 0, s) != LGH_STATUS_SUCCESS) {
            std::printf("lgh_forward %-32s refused: %s\n", lgh_engine_name(e), lgh_last_error(ctx));
            continue;
        }
        char name[64];
        std::snprintf(name, sizeof name, "lgh_forward (%s)", lgh_engine_name(e));
        std::printf("%-44s %8.2f\n", name, us_per_call([&] { lgh_forward(ctx, &a, nullptr, 0, s); }));
    }
    lgh_destroy(ctx);
    return 0;
}
