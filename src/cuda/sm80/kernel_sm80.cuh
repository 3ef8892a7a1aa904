// The fused sm80 kernel: y = hardtanh(groupnorm(x·Wᵀ + b)) on mma.sync, for Ampere and Ada
// (and Hopper). Included by the per-dtype instantiation files (kernels_*.cu); launched by
// engine_sm80.cu.
//
// One CTA per tile, no clusters (sm_80/89 have none). The main loop
// (src/cuda/mainloop/sm80_cp_async_mma.cuh) leaves each warp a WM x WN block of the tile in
// mma.sync accumulator fragments; the fused epilogue (src/cuda/epilogue/fused_groupnorm.cuh)
// runs on them in registers. How a group meets the tile (GS, the template parameter, is the
// group's width inside one warp's fragment):
//   - group inside a warp's fragment (group size <= WN, a power of two): quad shuffles only;
//   - group of several warp pieces inside the tile (WN < group size <= BN): each warp's
//     piece statistics (mean, M2 over WN channels) go through shared memory and every
//     thread combines its group's pieces (Chan) in the same order;
//   - group wider than the tile ("wide", group size = nsub * BN): the CTA owns BM rows of
//     one whole group and runs nsub BN-wide subtiles one after the other. Subtiles before
//     the last are stored pre-norm (bias added) while their statistics are folded into a
//     per-row running (mean, M2) in shared memory; the last subtile is normalised in
//     registers, and the CTA then normalises the earlier subtiles of its rows in place
//     (they were just written, so they come back from L2).
//   - GS = 0: "pre-norm" tiles only (bias added, no statistics); the engine finishes with
//     the group-norm pass (epilogue/groupnorm_kernel.h). For group sizes that are not
//     powers of two, or wide groups with too few CTAs to fill the GPU.
//
// Shared memory: the main loop's ring, then BM float2 running statistics (wide only).
// After the main loop the ring is free, and the tile's bias/γ/β and the warps' piece
// statistics live in its first bytes until the next subtile's prologue.
#pragma once

#include <stdint.h>

#include "epilogue/fused_groupnorm.cuh"
#include "mainloop/sm80_cp_async_mma.cuh"
#include "mainloop/tile_order.h"

#define LGH_SM80_BAND 8 // M-blocks per band of the tile order (tile_order.h)

// Everything the kernel needs (type-erased so that all instantiations share a signature).
struct lgh_sm80_params {
    const void *x, *w;
    int64_t ldx_bytes, ldw_bytes; // multiples of 16
    const void *bias, *gamma, *beta;
    void *y;
    int64_t ldy; // elements, even
    float *mean, *rstd;
    int m, n, k_bytes, k_blocks;
    int groups, group_size;
    float eps, lo, hi;
    int m_blocks; // ceil(M / BM)
    int n_tiles;  // CTA tiles along N: ceil(N / BN), or the number of groups when wide
    int tile_n;   // channels of a CTA tile: BN, or the group size when wide
    int nsub;     // BN-wide subtiles of a CTA tile: 1, or group size / BN when wide
    int gpieces;  // WN-wide warp pieces per group when WN < group size <= BN, else 0
};

// Dynamic shared memory of a configuration: the ring and the running statistics.
template <typename C>
struct lgh_sm80_smem_size {
    static constexpr int PARAMS_BYTES = C::WARPS_N * (int)sizeof(lgh_epi_tile_params<C::WN>);
    static constexpr int XCHG_BYTES = C::WARPS_N * C::BM * (int)sizeof(float2);
    static constexpr int BYTES = C::RING_BYTES + C::BM * (int)sizeof(float2);
    static_assert(PARAMS_BYTES + XCHG_BYTES <= C::RING_BYTES, "epilogue scratch fits in the ring");
};

// Statistics of tile row r over `count` warp pieces starting at `first` (WN channels
// each), after the `prev_n` channels of earlier subtiles folded into run[r] when prev_n > 0.
template <typename C>
__device__ __forceinline__ lgh_stats lgh_sm80_row_stats(const float2 *xchg, const float2 *run, int r, int first,
                                                        int count, float prev_n)
{
    lgh_stats t = lgh_stats_empty();
    if (prev_n > 0.f) {
        const float2 q = run[r];
        t = {prev_n, q.x, q.y};
    }
    for (int w = first; w < first + count; ++w) {
        const float2 q = xchg[w * C::BM + r];
        t = lgh_stats_combine(t, lgh_stats{float(C::WN), q.x, q.y});
    }
    return t;
}

// GS: the group's channels inside one warp's WN-wide fragment (a power of two <= WN; WN
// for groups of WN channels or more), or 0 for pre-norm tiles. SPLIT3: 3xtf32 (float).
template <typename T, typename C, int GS, bool SPLIT3>
__device__ __forceinline__ void lgh_sm80_cta(const lgh_sm80_params &p)
{
    constexpr int BM = C::BM, BN = C::BN, WN = C::WN, MI = C::MI, NI = C::NI;
    constexpr int PARAM_PASSES = (BN + C::THREADS - 1) / C::THREADS; // columns of bias, γ, β per thread
    static_assert(BN % C::THREADS == 0 || C::THREADS % BN == 0, "threads stage the tile's columns evenly");
    static_assert(GS == 0 || GS <= WN, "GS is a group's width inside one warp fragment");
    using SZ = lgh_sm80_smem_size<C>;

    extern __shared__ __align__(128) uint8_t lgh_sm80_smem[];
    const uint32_t ring = lgh_smem_addr(lgh_sm80_smem);
    lgh_epi_tile_params<WN> *params = reinterpret_cast<lgh_epi_tile_params<WN> *>(lgh_sm80_smem);
    float2 *xchg = reinterpret_cast<float2 *>(lgh_sm80_smem + SZ::PARAMS_BYTES); // [WARPS_N][BM]
    float2 *run = reinterpret_cast<float2 *>(lgh_sm80_smem + C::RING_BYTES);     // [BM]

    int mb, nt;
    lgh_tile_coords(blockIdx.x, p.m_blocks, p.n_tiles, LGH_SM80_BAND, &mb, &nt);
    const int m0 = mb * BM;
    const int tile_n0 = nt * p.tile_n;

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int wm = warp / C::WARPS_N, wn = warp % C::WARPS_N;
    const int rbase = wm * C::WM + (lane >> 2); // tile row of slab 0, row half 0
    const bool quad_leader = (lane & 3) == 0;

    const T *bias = static_cast<const T *>(p.bias);
    const T *gamma = static_cast<const T *>(p.gamma);
    const T *beta = static_cast<const T *>(p.beta);

    const lgh_epi_args<T> a = lgh_epi_args_of<T>(p);

    for (int sub = 0; sub < p.nsub; ++sub) {
        const int n0 = tile_n0 + sub * BN;
        // The previous subtile's epilogue read its parameters and pieces from the ring.
        if (sub > 0) __syncthreads();

        // The subtile's bias, γ, β: loads issued now, their latency hidden by the main loop.
        lgh_epi_param_loader<T> pl[PARAM_PASSES];
#pragma unroll
        for (int r = 0; r < PARAM_PASSES; ++r) {
            const int c = (int)threadIdx.x + r * C::THREADS;
            if (c < BN) pl[r].load(bias, gamma, beta, n0 + c, p.n);
        }

        lgh_sm80_operands op;
        op.a = static_cast<const char *>(p.x) + (int64_t)m0 * p.ldx_bytes;
        op.b = static_cast<const char *>(p.w) + (int64_t)n0 * p.ldw_bytes;
        op.lda = p.ldx_bytes;
        op.ldb = p.ldw_bytes;
        op.rows_a = min(BM, p.m - m0);
        op.rows_b = max(0, min(BN, p.n - n0));
        op.k_bytes = p.k_bytes;
        op.k_blocks = p.k_blocks;

        float acc[MI][4 * NI];
        lgh_sm80_zero<C>(acc);
        lgh_sm80_mainloop<T, C, SPLIT3>(ring, op, acc);

#pragma unroll
        for (int r = 0; r < PARAM_PASSES; ++r) {
            const int c = (int)threadIdx.x + r * C::THREADS;
            if (c < BN) pl[r].store(&params[c / WN], c % WN);
        }
        __syncthreads();

        lgh_epi_tile_params<WN> *tp = &params[wn];
        const int col0 = n0 + wn * WN;
#pragma unroll
        for (int i = 0; i < MI; ++i) lgh_epi_add_bias<NI, WN>(acc[i], tp);

        if constexpr (GS == 0) {
#pragma unroll
            for (int i = 0; i < MI; ++i) lgh_epi_store<NI>(acc[i], a, m0 + rbase + 16 * i, col0);
        } else if (GS < WN || (p.gpieces == 0 && p.nsub == 1)) {
            // Each group inside one warp's fragment.
#pragma unroll
            for (int i = 0; i < MI; ++i) {
#pragma unroll
                for (int u = 0; u < lgh_epi_shape<NI, GS>::GROUPS; ++u) {
                    const lgh_stats s0 = lgh_epi_group_stats<NI, GS>(acc[i], u, 0);
                    const lgh_stats s1 = lgh_epi_group_stats<NI, GS>(acc[i], u, 1);
                    lgh_epi_group_normalize<NI, GS>(acc[i], u, s0, s1, tp, a, m0 + rbase + 16 * i, col0, true);
                }
                lgh_epi_store<NI>(acc[i], a, m0 + rbase + 16 * i, col0);
            }
        } else {
            // Groups of several warp pieces: piece statistics through shared memory.
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                const lgh_stats s0 = lgh_epi_group_stats<NI, WN>(acc[i], 0, 0);
                const lgh_stats s1 = lgh_epi_group_stats<NI, WN>(acc[i], 0, 1);
                if (quad_leader) {
                    xchg[wn * BM + rbase + 16 * i] = make_float2(s0.mean, s0.m2);
                    xchg[wn * BM + rbase + 16 * i + 8] = make_float2(s1.mean, s1.m2);
                }
            }
            __syncthreads();

            const bool wide = p.nsub > 1;
            const int first = wide ? 0 : (wn / p.gpieces) * p.gpieces;
            const int count = wide ? C::WARPS_N : p.gpieces;
            const float prev_n = (float)(sub * BN);
            if (wide && sub + 1 < p.nsub) {
                // An earlier subtile of a wide group: store pre-norm, fold the statistics.
#pragma unroll
                for (int i = 0; i < MI; ++i) lgh_epi_store<NI>(acc[i], a, m0 + rbase + 16 * i, col0);
                if (wn == 0 && quad_leader) {
                    // The only thread that reads or writes these rows of run in this subtile.
#pragma unroll
                    for (int i = 0; i < MI; ++i)
#pragma unroll
                        for (int h = 0; h < 2; ++h) {
                            const int r = rbase + 16 * i + 8 * h;
                            const lgh_stats t = lgh_sm80_row_stats<C>(xchg, run, r, first, count, prev_n);
                            run[r] = make_float2(t.mean, t.m2);
                        }
                }
                continue;
            }
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                const int r = rbase + 16 * i;
                const lgh_stats s0 = lgh_sm80_row_stats<C>(xchg, run, r, first, count, prev_n);
                const lgh_stats s1 = lgh_sm80_row_stats<C>(xchg, run, r + 8, first, count, prev_n);
                lgh_epi_group_normalize<NI, WN>(acc[i], 0, s0, s1, tp, a, m0 + r, col0, true);
                lgh_epi_store<NI>(acc[i], a, m0 + r, col0);
            }
            if (wide) {
                // Final statistics of the CTA's rows for the earlier subtiles: every thread
                // has read run (above) before its writer replaces it.
                __syncthreads();
                if (wn == 0 && quad_leader) {
#pragma unroll
                    for (int i = 0; i < MI; ++i)
#pragma unroll
                        for (int h = 0; h < 2; ++h) {
                            const int r = rbase + 16 * i + 8 * h;
                            const lgh_stats t = lgh_sm80_row_stats<C>(xchg, run, r, first, count, prev_n);
                            run[r] = make_float2(t.mean, t.m2);
                        }
                }
                __syncthreads();
                lgh_epi_wide_fixup<T>(a, gamma, beta, run, m0, BM, tile_n0, (p.nsub - 1) * BN, nt, threadIdx.x,
                                      C::THREADS);
            }
        }
    }
}

// The kernel. Configurations marked SM90_ONLY compile to an empty kernel below sm_90 (the
// engine never launches them there).
template <typename T, typename C, int GS, bool SPLIT3>
__global__ void __launch_bounds__(C::THREADS, C::MIN_BLOCKS) lgh_sm80_kernel(const lgh_sm80_params p)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    if constexpr (!C::SM90_ONLY) lgh_sm80_cta<T, C, GS, SPLIT3>(p);
#else
    lgh_sm80_cta<T, C, GS, SPLIT3>(p);
#endif
}
