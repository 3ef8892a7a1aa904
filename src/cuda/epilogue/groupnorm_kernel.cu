// The group-norm finishing pass (interface and contract: groupnorm_kernel.h).
//
// A "segment" is one (row, group): gs = n / groups contiguous elements of one row of y.
// A team of threads owns a segment; each thread holds up to ITEMS units of it (norm_io.cuh)
// in registers, unit u = lane + i * team, so a team's loads are contiguous and
// coalesced. Three tiers, picked by the segment's width in units:
//   warp   team of 1..32 lanes (a power of two), ITEMS = 4, 256-thread blocks holding
//          256 / team segments; statistics through shuffles only. Groups up to 128 units
//          (512 float32 / 1024 16-bit elements on the vector path) - the reference
//          problem's 512-wide groups are one warp each, 16 floats per thread. ~58
//          registers (4 blocks per SM); capping at 48 or fewer spills.
//   block  team = the whole block (64..512 threads), ITEMS = 8; statistics through
//          shuffles and 33 entries of shared memory. Groups up to 4096 units (16K float32,
//          32K 16-bit elements on the vector path; 4K elements on the scalar path). More
//          units per thread or 1024 threads would spill (the γ/β loads of all units are
//          hoisted together).
//   wide   1024 threads per segment, read twice: statistics chunk by chunk (Chan-combined),
//          then normalisation. Any width.
// A float32 source (a pre-norm kept in float32, or split-K slices summed in order with the
// bias) comes in units of 4 floats on the vector path (16-byte loads; its stores of y are
// 4 elements of the output dtype), one element on the scalar path.
// Each tier reads its segment, reduces, then each thread writes only what it read, so the
// pass is in place with no extra memory. Grids are grid-stride loops so any m * groups fits.
#include "epilogue/groupnorm_kernel.h"

#include <stdio.h>
#include <string.h>

#include "epilogue/norm_reduce.cuh"
#include "kernel_facts.h"

namespace {

struct norm_params {
    void *y;
    const void *src; // read from here (y itself for the in-place pass)
    int64_t ldy, lds, m, groups, gs;
    const void *gamma, *beta;
    float eps, lo, hi;
    float *mean, *rstd;
    // A float32 source (F32_SRC variants): slices summed in order, bias (or NULL) added.
    const void *bias;
    int64_t slice;
    int slices;
};

// The IO of a variant: T in and out, or (F32_SRC) a float32 source normalised into T.
template <typename T, bool VECTOR, bool F32_SRC> struct lgh_norm_io_pick {
    using type = lgh_norm_io<T, VECTOR>;
    using src = T;
};
template <typename T> struct lgh_norm_io_pick<T, false, true> {
    using type = lgh_norm_io_f32_src<T>;
    using src = float;
};
template <typename T> struct lgh_norm_io_pick<T, true, true> {
    using type = lgh_norm_io_f32_src_vec<T>;
    using src = float;
};

// One unit of the source at column col: a plain load, or (F32_SRC) the sum of the slices in
// order plus the bias.
template <typename T, typename IO, bool F32_SRC, typename S>
__device__ __forceinline__ typename IO::U lgh_load_src(const norm_params &p, const S *at, int64_t col)
{
    if constexpr (F32_SRC) {
        typename IO::U v = IO::load(at);
        for (int s = 1; s < p.slices; ++s) IO::add(v, IO::load(at + s * p.slice));
        if (p.bias != nullptr) IO::add_param(v, static_cast<const T *>(p.bias) + col);
        return v;
    } else {
        (void)p;
        (void)col;
        return IO::load(at);
    }
}

constexpr int kWarpItems = 4;
constexpr int kWarpThreads = 256;
constexpr int kBlockItems = 8;
constexpr int kBlockMaxThreads = 512; // 8 units x 512 threads: 64-80 registers, no spills
// (the explicit min-blocks 1 in its __launch_bounds__ keeps ptxas for sm_89 from capping
// the scalar float variant at 64 registers with a 4-byte spill)
constexpr int kBlockMinThreads = 64;
constexpr int kWideItems = 4;
constexpr int kMaxThreads = 1024;
constexpr int64_t kMaxGrid = int64_t(1) << 24;

__device__ __forceinline__ float lgh_rstd(const lgh_stats &s, float eps)
{
    const float var = s.n > 0.f ? s.m2 / s.n : 0.f;
    return 1.0f / sqrtf(var + eps);
}

// (min-blocks 2, at most 128 registers: without it ptxas capped the vector float32-source
// variants at 64 registers and spilled, and at 3 blocks (85) they spilled too; the other
// variants keep their 44-64)
template <typename T, bool VECTOR, bool F32_SRC = false>
__global__ void __launch_bounds__(kWarpThreads, 2) lgh_norm_warp(norm_params p, int team)
{
    using IO = typename lgh_norm_io_pick<T, VECTOR, F32_SRC>::type;
    using S = typename lgh_norm_io_pick<T, VECTOR, F32_SRC>::src;
    constexpr int N = IO::N;
    const int units = (int)(p.gs / N); // <= kWarpItems * 32 on this tier
    const int64_t nseg = p.m * p.groups;
    const int per_block = (int)blockDim.x / team;
    const int lane = (int)(threadIdx.x & (unsigned)(team - 1));
    const int step = team * N;
    const int64_t first = (int64_t)blockIdx.x * per_block + threadIdx.x / team;
    // The warp's first segment decides the trip count, so whole warps run the shuffles.
    const int64_t warp_first = (int64_t)blockIdx.x * per_block + (threadIdx.x & ~31u) / team;
    const int64_t stride = (int64_t)gridDim.x * per_block;

    for (int64_t it = 0; warp_first + it < nseg; it += stride) {
        const int64_t seg = first + it;
        const bool live = seg < nseg;
        const int64_t row = live ? seg / p.groups : 0;
        const int64_t col0 = (live ? seg - row * p.groups : 0) * p.gs + (int64_t)lane * N;
        T *ys = static_cast<T *>(p.y) + row * p.ldy + col0;
        const S *xs = static_cast<const S *>(p.src) + row * p.lds + col0;

        typename IO::U v[kWarpItems];
#pragma unroll
        for (int i = 0; i < kWarpItems; ++i) {
            if (live && lane + i * team < units) v[i] = lgh_load_src<T, IO, F32_SRC>(p, xs + i * step, col0 + i * step);
        }
        lgh_stats s = lgh_norm_thread_stats<IO, kWarpItems>(v, live, lane, team, units);
        s = lgh_norm_team_reduce(s, team);
        const float rstd = lgh_rstd(s, p.eps);
        if (live && lane == 0 && p.mean) {
            p.mean[seg] = s.mean;
            p.rstd[seg] = rstd;
        }
        const T *gamma = static_cast<const T *>(p.gamma) + col0;
        const T *beta = static_cast<const T *>(p.beta) + col0;
#pragma unroll
        for (int i = 0; i < kWarpItems; ++i) {
            if (live && lane + i * team < units) {
                IO::store(ys + i * step, lgh_norm_apply<T, IO>(v[i], gamma + i * step,
                                                               beta + i * step, s.mean, rstd,
                                                               p.lo, p.hi));
            }
        }
    }
}

template <typename T, bool VECTOR, bool F32_SRC = false>
__global__ void __launch_bounds__(kBlockMaxThreads, 1) lgh_norm_block(norm_params p)
{
    using IO = typename lgh_norm_io_pick<T, VECTOR, F32_SRC>::type;
    using S = typename lgh_norm_io_pick<T, VECTOR, F32_SRC>::src;
    constexpr int N = IO::N;
    __shared__ lgh_stats sh[33];
    const int units = (int)(p.gs / N); // <= kBlockItems * kBlockMaxThreads on this tier
    const int64_t nseg = p.m * p.groups;
    const int lane = (int)threadIdx.x;
    const int team = (int)blockDim.x;
    const int step = team * N;

    for (int64_t seg = blockIdx.x; seg < nseg; seg += gridDim.x) {
        const int64_t row = seg / p.groups;
        const int64_t col0 = (seg - row * p.groups) * p.gs + (int64_t)lane * N;
        T *ys = static_cast<T *>(p.y) + row * p.ldy + col0;
        const S *xs = static_cast<const S *>(p.src) + row * p.lds + col0;

        typename IO::U v[kBlockItems];
#pragma unroll
        for (int i = 0; i < kBlockItems; ++i) {
            if (lane + i * team < units) v[i] = lgh_load_src<T, IO, F32_SRC>(p, xs + i * step, col0 + i * step);
        }
        lgh_stats s = lgh_norm_thread_stats<IO, kBlockItems>(v, true, lane, team, units);
        s = lgh_norm_block_reduce(s, sh);
        const float rstd = lgh_rstd(s, p.eps);
        if (lane == 0 && p.mean) {
            p.mean[seg] = s.mean;
            p.rstd[seg] = rstd;
        }
        const T *gamma = static_cast<const T *>(p.gamma) + col0;
        const T *beta = static_cast<const T *>(p.beta) + col0;
#pragma unroll
        for (int i = 0; i < kBlockItems; ++i) {
            if (lane + i * team < units) {
                IO::store(ys + i * step, lgh_norm_apply<T, IO>(v[i], gamma + i * step,
                                                               beta + i * step, s.mean, rstd,
                                                               p.lo, p.hi));
            }
        }
    }
}

template <typename T, bool VECTOR, bool F32_SRC = false>
__global__ void __launch_bounds__(kMaxThreads) lgh_norm_wide(norm_params p)
{
    using IO = typename lgh_norm_io_pick<T, VECTOR, F32_SRC>::type;
    using S = typename lgh_norm_io_pick<T, VECTOR, F32_SRC>::src;
    constexpr int N = IO::N;
    __shared__ lgh_stats sh[33];
    const int64_t units = p.gs / N;
    const int64_t nseg = p.m * p.groups;
    const int64_t lane = threadIdx.x;
    const int64_t team = blockDim.x;
    // 1024 threads leave 64 registers a thread: the vector float32-source variant (four
    // floats per unit, slices summed) spilled with 4 and with 2 units a thread
    constexpr int ITEMS = VECTOR && F32_SRC ? 1 : kWideItems;
    const int64_t chunk = team * ITEMS;

    for (int64_t seg = blockIdx.x; seg < nseg; seg += gridDim.x) {
        const int64_t row = seg / p.groups;
        const int64_t col0 = (seg - row * p.groups) * p.gs;
        T *ys = static_cast<T *>(p.y) + row * p.ldy + col0;
        const S *xs = static_cast<const S *>(p.src) + row * p.lds + col0;

        // First read: per-chunk stats, merged into the thread's running stats.
        lgh_stats s = lgh_stats_empty();
        for (int64_t base = 0; base < units; base += chunk) {
            typename IO::U v[ITEMS];
#pragma unroll
            for (int i = 0; i < ITEMS; ++i) {
                const int64_t u = base + lane + i * team;
                if (u < units) v[i] = lgh_load_src<T, IO, F32_SRC>(p, xs + u * N, col0 + u * N);
            }
            s = lgh_stats_combine(
                s, lgh_norm_thread_stats<IO, ITEMS>(v, true, base + lane, team, units));
        }
        s = lgh_norm_block_reduce(s, sh);
        const float rstd = lgh_rstd(s, p.eps);
        if (lane == 0 && p.mean) {
            p.mean[seg] = s.mean;
            p.rstd[seg] = rstd;
        }
        // Second read: normalise and write.
        const T *gamma = static_cast<const T *>(p.gamma) + col0;
        const T *beta = static_cast<const T *>(p.beta) + col0;
        for (int64_t base = 0; base < units; base += chunk) {
            typename IO::U v[ITEMS];
#pragma unroll
            for (int i = 0; i < ITEMS; ++i) {
                const int64_t u = base + lane + i * team;
                if (u < units) v[i] = lgh_load_src<T, IO, F32_SRC>(p, xs + u * N, col0 + u * N);
            }
#pragma unroll
            for (int i = 0; i < ITEMS; ++i) {
                const int64_t u = base + lane + i * team;
                if (u < units) {
                    IO::store(ys + u * N, lgh_norm_apply<T, IO>(v[i], gamma + u * N,
                                                                beta + u * N, s.mean, rstd,
                                                                p.lo, p.hi));
                }
            }
        }
    }
}

enum tier { TIER_WARP = 0, TIER_BLOCK = 1, TIER_WIDE = 2, TIER_COUNT = 3 };
constexpr int kDtypes = 3;
constexpr int kSameVariants = kDtypes * 2 * TIER_COUNT;
// After those: a float32 source into float32 / bf16 / fp16, scalar and vector, one per
// tier, indexed alike.
constexpr int kVariants = 2 * kSameVariants;

// Variant index: ((dtype * 2 + vector) * TIER_COUNT + tier).
template <typename T, bool V, bool F = false> const void *tier_fn(int tier)
{
    if (tier == TIER_WARP) return reinterpret_cast<const void *>(&lgh_norm_warp<T, V, F>);
    if (tier == TIER_BLOCK) return reinterpret_cast<const void *>(&lgh_norm_block<T, V, F>);
    return reinterpret_cast<const void *>(&lgh_norm_wide<T, V, F>);
}

const void *variant_fn(int index)
{
    const bool f32_src = index >= kSameVariants;
    const int i = index % kSameVariants;
    const int tier = i % TIER_COUNT;
    const int vec = (i / TIER_COUNT) % 2;
    const int dtype = i / (TIER_COUNT * 2);
    if (f32_src) {
        switch (dtype * 2 + vec) {
        case 0: return tier_fn<float, false, true>(tier);
        case 1: return tier_fn<float, true, true>(tier);
        case 2: return tier_fn<__nv_bfloat16, false, true>(tier);
        case 3: return tier_fn<__nv_bfloat16, true, true>(tier);
        case 4: return tier_fn<__half, false, true>(tier);
        default: return tier_fn<__half, true, true>(tier);
        }
    }
    switch (dtype * 2 + vec) {
    case 0: return tier_fn<float, false>(tier);
    case 1: return tier_fn<float, true>(tier);
    case 2: return tier_fn<__nv_bfloat16, false>(tier);
    case 3: return tier_fn<__nv_bfloat16, true>(tier);
    case 4: return tier_fn<__half, false>(tier);
    default: return tier_fn<__half, true>(tier);
    }
}

const char *const kDtypeNames[kDtypes] = {"f32", "bf16", "f16"};
const char *const kTierNames[TIER_COUNT] = {"warp", "block", "wide"};

int64_t next_pow2(int64_t v)
{
    int64_t p = 1;
    while (p < v) p <<= 1;
    return p;
}

bool aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

// The launch shape for *a: variant index, threads per block, team size, blocks.
struct launch_shape {
    int variant, threads, team;
    int64_t blocks;
};

launch_shape pick(const lgh_groupnorm_args_t *a)
{
    const int64_t elem = a->dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
    const int64_t gs = a->n / a->groups;
    // (a single float32 slice with no bias into float32 is an ordinary float32 source)
    const bool f32_src = a->src_f32 && (a->dtype != LGH_DTYPE_FLOAT32 || a->splits > 1 || a->bias != nullptr);
    // Units of 16 bytes of T, or (float32 source) of 4 elements: 16 bytes of the source,
    // 4 * elem bytes of y, γ, β and the bias.
    const int64_t vec_n = f32_src ? 4 : 16 / elem;
    const uintptr_t out_align = (uintptr_t)(vec_n * elem);
    const auto aligned = [out_align](const void *ptr) { return ((uintptr_t)ptr & (out_align - 1)) == 0; };
    // Row strides that are multiples of the unit, asked as ld % vec_n in elements: a one-row
    // y may have an ld near INT64_MAX (the argument checks bound (rows - 1) * ld * elem),
    // where ld * elem would overflow int64.
    const bool vec = aligned(a->y) && aligned(a->gamma) && aligned(a->beta) && a->ldy % vec_n == 0 &&
                     gs % vec_n == 0 && (!a->src || (aligned16(a->src) && a->lds % vec_n == 0)) &&
                     (!f32_src || ((!a->bias || aligned(a->bias)) &&
                                   (a->splits <= 1 || a->split_stride % vec_n == 0)));
    const int64_t units = vec ? gs / vec_n : gs;
    const int64_t nseg = a->m * a->groups;
    launch_shape s;
    int tier;
    if (units <= (int64_t)kWarpItems * 32) {
        tier = TIER_WARP;
        s.team = (int)next_pow2((units + kWarpItems - 1) / kWarpItems);
        s.threads = kWarpThreads;
        const int64_t per_block = kWarpThreads / s.team;
        s.blocks = (nseg + per_block - 1) / per_block;
    } else if (units <= (int64_t)kBlockItems * kBlockMaxThreads) {
        tier = TIER_BLOCK;
        const int64_t t = next_pow2((units + kBlockItems - 1) / kBlockItems);
        s.threads = (int)(t < kBlockMinThreads ? kBlockMinThreads : t);
        s.team = s.threads;
        s.blocks = nseg;
    } else {
        tier = TIER_WIDE;
        s.threads = kMaxThreads;
        s.team = s.threads;
        s.blocks = nseg;
    }
    if (s.blocks > kMaxGrid) s.blocks = kMaxGrid;
    const int dt = a->dtype == LGH_DTYPE_FLOAT32 ? 0 : a->dtype == LGH_DTYPE_BFLOAT16 ? 1 : 2;
    s.variant = (f32_src ? kSameVariants : 0) + (dt * 2 + (vec ? 1 : 0)) * TIER_COUNT + tier;
    return s;
}

} // namespace

extern "C" int lgh_groupnorm_variant(const lgh_groupnorm_args_t *a, int *threads_per_block)
{
    const launch_shape s = pick(a);
    if (threads_per_block) *threads_per_block = s.threads;
    return s.variant;
}

extern "C" lgh_groupnorm_args_t lgh_groupnorm_args_in_place(const lgh_args_t *a)
{
    lgh_groupnorm_args_t g;
    memset(&g, 0, sizeof g);
    g.y = a->y;
    g.ldy = a->ldy;
    g.m = a->m;
    g.n = a->n;
    g.groups = a->groups;
    g.dtype = a->dtype;
    g.bias = nullptr; // y already has it
    g.gamma = a->gamma;
    g.beta = a->beta;
    g.eps = a->eps;
    g.lo = a->lo;
    g.hi = a->hi;
    g.mean = a->mean;
    g.rstd = a->rstd;
    return g;
}

extern "C" cudaError_t lgh_groupnorm_launch(const lgh_groupnorm_args_t *a, void *stream)
{
    const launch_shape s = pick(a);
    norm_params p;
    p.y = a->y;
    p.ldy = a->ldy;
    p.src = a->src ? a->src : a->y;
    p.lds = a->src ? a->lds : a->ldy;
    p.m = a->m;
    p.groups = a->groups;
    p.gs = a->n / a->groups;
    p.gamma = a->gamma;
    p.beta = a->beta;
    p.eps = a->eps;
    p.lo = a->lo;
    p.hi = a->hi;
    p.mean = a->mean;
    p.rstd = a->rstd;
    p.bias = a->src_f32 ? a->bias : nullptr;
    p.slice = a->split_stride;
    p.slices = a->src_f32 && a->splits > 1 ? a->splits : 1;
    int team = s.team;
    void *warp_args[] = {&p, &team};
    void *block_args[] = {&p};
    const bool warp_tier = s.variant % TIER_COUNT == TIER_WARP;
    cudaError_t e = cudaLaunchKernel(variant_fn(s.variant), dim3((unsigned)s.blocks),
                                     dim3((unsigned)s.threads), warp_tier ? warp_args : block_args,
                                     0, static_cast<cudaStream_t>(stream));
    if (e != cudaSuccess) {
        cudaGetLastError(); // a launch error is not sticky: clear it for the caller's next call
        return e;
    }
    return cudaSuccess;
}

extern "C" int lgh_groupnorm_kernel_count(void) { return kVariants; }

extern "C" cudaError_t lgh_groupnorm_kernel_info(int index, lgh_kernel_info_t *out)
{
    if (index < 0 || index >= kVariants || !out) return cudaErrorInvalidValue;
    const int i = index % kSameVariants;
    const int tier = i % TIER_COUNT;
    const int vec = (i / TIER_COUNT) % 2;
    const int dtype = i / (TIER_COUNT * 2);
    if (index >= kSameVariants) {
        snprintf(out->name, sizeof out->name, "lgh_norm_%s<f32->%s,%s>", kTierNames[tier], kDtypeNames[dtype],
                 vec ? "vec4" : "scalar");
    } else {
        snprintf(out->name, sizeof out->name, "lgh_norm_%s<%s,%s>", kTierNames[tier], kDtypeNames[dtype],
                 vec ? "vec16" : "scalar");
    }
    const int threads = tier == TIER_WARP ? kWarpThreads : tier == TIER_BLOCK ? kBlockMaxThreads : kMaxThreads;
    return lgh_kernel_facts(variant_fn(index), threads, 0, out); // no dynamic shared memory
}
