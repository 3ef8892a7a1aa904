// mma_sync_peak: the throughput ceiling of mma.sync on this GPU, with no memory traffic —
// what the sm80 engine's main loop could reach at best (docs/PERF.md, sm80 v4) — and the
// same multiplies with their operands fed from shared memory the way that main loop feeds
// them (docs/PERF.md, sm80 v9).
//
//   nvcc -O3 -std=c++17 -Isrc/cuda -gencode arch=compute_90,code=sm_90 -gencode arch=compute_89,code=sm_89 \
//        -o build/mma_sync_peak bench/micro/mma_sync_peak.cu && build/mma_sync_peak
//
// Each warp runs ITERS rounds of 32 independent m16n8k8 tf32 (or m16n8k16 bf16) mma on
// register operands (a 64 x 64 warp tile, as the engine's), for 1, 2 and 3 warps per SM
// sub-partition; prints TFLOP/s per case (2 * 16 * 8 * k per mma).
//
// version 2: "smem" cases. Every k-step's fragments come from shared memory through
// ldmatrix.x4 (the engine's swizzled slot layout and fragment order, 64 x 64 warp tiles,
// 4 warps = a 128 x 128 CTA tile, 2 CTAs per SM: the engine's cfg4 occupancy), and
// optionally ("+fill") each K-block also writes a slot's worth of shared memory (what
// cp.async writes: 256 rows x 128 bytes per CTA) and meets at a CTA barrier, as the
// engine's pipeline does. No global traffic: what is left is shared-memory bandwidth
// against the tensor pipe. Per k-step a warp reads 8 ldmatrix.x4 = 32 wavefronts of 128
// bytes for 32 mma; the fill adds 64 wavefronts per CTA and K-block.
//
// version 3: the fill's two parts apart — the shared-memory writes without the barrier
// ("fill, no barrier": bandwidth shared with ldmatrix), and the barrier without the writes
// ("barrier alone": warps of a CTA held in step) — to tell which one costs.
//
// version 4: "smem+fill+mbarrier": the fill without a CTA barrier, as a main loop could run
// on sm_80 — a ring of 3 slots whose handshakes are mbarriers: each warp writes its quarter
// of the slot two K-blocks ahead and arrives on that slot's `full`, waits for `full` of the
// slot it reads, and arrives on its `empty` when done; a slot is refilled once all four
// warps left it. The warps of a CTA drift up to a slot apart instead of meeting every
// K-block.
#include <cstdio>
#include <cstdint>
#include <type_traits>
#include <cuda_runtime.h>

#include "mainloop/sm80_cp_async_mma.cuh" // the slot swizzle
#include "ptx/mbarrier.cuh"              // the ring's slot handshake (init, arrive, wait: sm_80 too)
#include "ptx/mma_sm80.cuh"               // the engine's own mma and ldmatrix wrappers
#include "ptx/smem.cuh"

constexpr int ITERS = 4096;

// Makes the accumulators an output, so that the compiler keeps the multiplies.
__device__ __forceinline__ void keep_alive(const float (&acc)[4][8][4], float *out)
{
    float s = 0.f;
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 8; ++j)
            for (int q = 0; q < 4; ++q) s += acc[i][j][q];
    if (s == 1.2345f) out[threadIdx.x] = s;
}

// TFLOP/s of launch(), which runs `warps_per_sm` warps of ITERS rounds of 32 mma on every
// SM: one warm-up, then 5 launches between CUDA events.
template <typename Launch>
double tflops(Launch launch, int sms, int warps_per_sm, bool bf16)
{
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    launch();
    cudaEventRecord(e0);
    for (int r = 0; r < 5; ++r) launch();
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0.f;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    const double flop = 5.0 * sms * warps_per_sm * (double)ITERS * 32 * 2 * 16 * 8 * (bf16 ? 16 : 8);
    return flop / (ms * 1e-3) / 1e12;
}

// One k-step of a 64 x 64 warp tile: 4 x 8 independent mma (m16n8k16 bf16 or m16n8k8 tf32).
template <bool BF16>
__device__ __forceinline__ void mma_warp_tile(float (&acc)[4][8][4], const uint32_t (&a)[4][4], const uint32_t (&b)[8][2])
{
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            if (BF16) lgh_mma_m16n8k16_bf16(acc[i][j], a[i], b[j]);
            else lgh_mma_m16n8k8_tf32(acc[i][j], a[i], b[j]);
        }
}

template <bool BF16>
__global__ void peak(float *out, uint32_t seed)
{
    float acc[4][8][4] = {};
    uint32_t a[4][4], b[8][2];
    for (int i = 0; i < 4; ++i)
        for (int q = 0; q < 4; ++q) a[i][q] = seed * (i + 3 * q + 1) + threadIdx.x;
    for (int j = 0; j < 8; ++j) b[j][0] = seed ^ j, b[j][1] = seed + j;
    for (int it = 0; it < ITERS; ++it) mma_warp_tile<BF16>(acc, a, b);
    keep_alive(acc, out);
}

// The smem cases: a 128 x 128 CTA tile of 4 warps (2 x 2 of 64 x 64), one slot of 128
// bytes of K per row (4 k-steps), read over and over.
constexpr int SMEM_ROWS = 256;       // A's 128 rows, then B's 128
constexpr int SLOT_BYTES = SMEM_ROWS * 128;

// A warp's reads of one slot, the engine's way (lgh_sm80_mainloop): its 64 x 64 tile's A and
// B fragments by ldmatrix.x4 from the swizzled rows, 4 k-steps of multiplies.
struct slot_reader {
    uint32_t a_row_off, b_row_off, a_sw, b_sw;

    __device__ static slot_reader of(uint32_t warp, uint32_t lane)
    {
        const uint32_t a_row = (warp / 2) * 64 + (lane & 15), a_half = lane >> 4;
        const uint32_t b_row = 128 + (warp % 2) * 64 + (lane & 7) + ((lane >> 4) << 3), b_half = (lane >> 3) & 1;
        return {a_row * 128, b_row * 128, a_half ^ lgh_sm80_swizzle<8>(a_row), b_half ^ lgh_sm80_swizzle<8>(b_row)};
    }

    template <bool BF16> __device__ void multiply(float (&acc)[4][8][4], uint32_t slot) const
    {
        const uint32_t a_off = slot + a_row_off, b_off = slot + b_row_off;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            uint32_t a[4][4], b[8][2];
#pragma unroll
            for (int i = 0; i < 4; ++i) lgh_ldmatrix_x4(a[i], a_off + i * 16 * 128 + (((uint32_t)(2 * s) ^ a_sw) << 4));
#pragma unroll
            for (int p = 0; p < 4; ++p) {
                uint32_t q[4];
                lgh_ldmatrix_x4(q, b_off + p * 16 * 128 + (((uint32_t)(2 * s) ^ b_sw) << 4));
                b[2 * p][0] = q[0], b[2 * p][1] = q[1], b[2 * p + 1][0] = q[2], b[2 * p + 1][1] = q[3];
            }
            mma_warp_tile<BF16>(acc, a, b);
        }
    }
};

// A thread's share of a slot's fill, as cp.async writes it: 16 bytes of every 16th row
// (its warp's quarter of the slot); the swizzle repeats every 8 rows, so one offset and
// immediate steps.
struct slot_filler {
    uint32_t off;

    __device__ static slot_filler of(uint32_t thread)
    {
        const uint32_t row = thread / 8, chunk = thread % 8;
        return {row * 128 + ((chunk ^ lgh_sm80_swizzle<8>(row)) << 4)};
    }

    __device__ void fill(uint32_t slot, uint32_t it, uint32_t seed, uint32_t lane) const
    {
#pragma unroll
        for (int r = 0; r < SMEM_ROWS / 16; ++r) lgh_sts_b32x4(slot + off + r * 16 * 128, it, r, seed, lane);
    }
};

// What a K-block adds to the reads: nothing, the engine's slot fill and CTA barrier, the
// fill alone, or the barrier alone.
enum feed { READS, FILL_BARRIER, FILL_ONLY, BARRIER_ONLY, FEEDS };
const char *const kFeedName[FEEDS] = {"smem             ", "smem+fill+barrier", "smem+fill        ",
                                      "smem+barrier     "};

template <bool BF16, int FEED>
__global__ void __launch_bounds__(128, 2) smem_fed(float *out, uint32_t seed)
{
    extern __shared__ __align__(128) uint8_t smem[]; // slot, then the slot being written (fill)
    const uint32_t base = lgh_smem_addr(smem);
    for (int i = threadIdx.x; i < SLOT_BYTES / 4; i += blockDim.x)
        reinterpret_cast<uint32_t *>(smem)[i] = seed * (uint32_t)i;
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const slot_reader reader = slot_reader::of(threadIdx.x >> 5, lane);
    const slot_filler filler = slot_filler::of(threadIdx.x);
    float acc[4][8][4] = {};
    for (int it = 0; it < ITERS / 4; ++it) {
        if (FEED == FILL_BARRIER || FEED == FILL_ONLY) filler.fill(base + SLOT_BYTES, it, seed, lane);
        reader.multiply<BF16>(acc, base);
        if (FEED == FILL_BARRIER || FEED == BARRIER_ONLY) __syncthreads();
    }
    keep_alive(acc, out);
}

// version 4's ring: RING slots, then a `full` and an `empty` mbarrier per slot (4 arrivals
// each: lane 0 of every warp).
constexpr int RING = 3;
constexpr int RING_BYTES = RING * SLOT_BYTES + 2 * RING * 8;

template <bool BF16>
__global__ void __launch_bounds__(128, 2) smem_ring(float *out, uint32_t seed)
{
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t base = lgh_smem_addr(smem);
    uint64_t *full = reinterpret_cast<uint64_t *>(smem + RING * SLOT_BYTES), *empty = full + RING;
    for (int i = threadIdx.x; i < RING * SLOT_BYTES / 4; i += blockDim.x)
        reinterpret_cast<uint32_t *>(smem)[i] = seed * (uint32_t)i;
    if (threadIdx.x < 2 * RING) lgh_mbar_init(&full[threadIdx.x], 4); // full[], then empty[]
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const slot_reader reader = slot_reader::of(threadIdx.x >> 5, lane);
    const slot_filler filler = slot_filler::of(threadIdx.x);
    auto fill = [&](int slot, int it) {
        filler.fill(base + slot * SLOT_BYTES, it, seed, lane);
        __syncwarp();
        if (lane == 0) lgh_mbar_arrive(&full[slot]);
    };
    fill(0, 0);
    fill(1, 0);
    float acc[4][8][4] = {};
    for (int it = 0; it < ITERS / 4; ++it) {
        const int f = (it + 2) % RING; // read last at it - 1: refilled once every warp left it
        if (it >= 1) lgh_mbar_wait(&empty[f], (uint32_t)((it - 1) / RING) & 1u);
        fill(f, it);
        const int r = it % RING; // filled at it - 2 (slots 0 and 1: before the loop)
        lgh_mbar_wait(&full[r], (uint32_t)(it / RING) & 1u);
        reader.multiply<BF16>(acc, base + r * SLOT_BYTES);
        __syncwarp();
        if (lane == 0) lgh_mbar_arrive(&empty[r]);
    }
    keep_alive(acc, out);
}

// Calls f(bf16, feed) for every feed, each as a compile-time constant.
template <typename F, typename B> void template_for_feeds(F &&f, B bf16)
{
    f(bf16, std::integral_constant<int, READS>{});
    f(bf16, std::integral_constant<int, FILL_BARRIER>{});
    f(bf16, std::integral_constant<int, FILL_ONLY>{});
    f(bf16, std::integral_constant<int, BARRIER_ONLY>{});
}

int main()
{
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    float *out;
    cudaMalloc(&out, 4096 * sizeof(float));
    for (int bf16 = 0; bf16 < 2; ++bf16) {
        for (int warps : {4, 8, 12}) { // 166 registers a thread: 12 warps fill the register file
            const int threads = 32 * warps;
            const double t = tflops(
                [&] {
                    if (bf16) peak<true><<<sms, threads>>>(out, 7);
                    else peak<false><<<sms, threads>>>(out, 7);
                },
                sms, warps, bf16);
            printf("%s mma.sync, %2d warps per SM (%d per sub-partition): %.1f TFLOP/s\n", bf16 ? "bf16" : "tf32",
                   warps, warps / 4, t);
        }
    }
    // The smem cases: 2 CTAs of 4 warps per SM (2 warps per sub-partition).
    auto launch_fed = [&](auto bf16, auto feed) {
        constexpr bool B = decltype(bf16)::value;
        constexpr int F = decltype(feed)::value;
        cudaFuncSetAttribute(smem_fed<B, F>, cudaFuncAttributeMaxDynamicSharedMemorySize, 2 * SLOT_BYTES);
        const double t = tflops([&] { smem_fed<B, F><<<2 * sms, 128, 2 * SLOT_BYTES>>>(out, 7); }, sms, 2 * 4, B);
        printf("%s mma.sync, %s, 8 warps per SM (2 CTAs of 4): %.1f TFLOP/s\n", B ? "bf16" : "tf32", kFeedName[F], t);
    };
    using no = std::false_type;
    using yes = std::true_type;
    template_for_feeds(launch_fed, no{});
    template_for_feeds(launch_fed, yes{});
    auto launch_ring = [&](auto bf16) {
        constexpr bool B = decltype(bf16)::value;
        cudaFuncSetAttribute(smem_ring<B>, cudaFuncAttributeMaxDynamicSharedMemorySize, RING_BYTES);
        const double t = tflops([&] { smem_ring<B><<<2 * sms, 128, RING_BYTES>>>(out, 7); }, sms, 2 * 4, B);
        printf("%s mma.sync, smem+fill+mbarrier (ring of %d), 8 warps per SM (2 CTAs of 4): %.1f TFLOP/s\n",
               B ? "bf16" : "tf32", RING, t);
    };
    launch_ring(no{});
    launch_ring(yes{});
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        fprintf(stderr, "mma_sync_peak: %s\n", cudaGetErrorString(err));
        return 1;
    }
    return 0;
}
