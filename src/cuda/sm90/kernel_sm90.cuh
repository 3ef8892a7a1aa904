// The fused sm90 kernel: y = hardtanh(groupnorm(x·Wᵀ + b)) in one persistent,
// warp-specialised launch. Included by the per-dtype instantiation files (kernels_*.cu);
// launched by engine_sm90.cu.
//
// CTA = 3 warpgroups. Warpgroup 0 is the producer: one thread streams x and W K-blocks
// with TMA into the shared-memory ring (src/cuda/mainloop/sm90_tma_wgmma.cuh); it keeps 40
// registers. Warpgroups 1 and 2 are the consumers: each owns 64 rows of the 128 x 256 CTA
// tile as 128 float accumulators per thread (232 registers), multiplies with wgmma, then
// runs the fused epilogue (src/cuda/epilogue/fused_groupnorm.cuh) on the registers and
// stores y once. A row of the tile lives in one quad of one warp, so statistics of a
// group inside the tile need only quad shuffles.
//
// The CTAs of a cluster along N share the x tile (multicast, see the main loop). Groups
// wider than the tile (GS = 256 here and group size 512 or 1024) span the cluster's 2 or 4
// CTAs: each CTA sends its rows' partial (mean, M2) over 256 channels into every other
// CTA's shared memory and arrives on that CTA's mbarrier; each then combines the C
// partials in rank order (Chan), so all CTAs normalise with the same statistics. The exchange buffers and barriers alternate between two sets by tile parity;
// a CTA can only reuse a set after every peer has arrived on the other one, which they do
// after reading it.
//
// Persistent schedule: grid = as many CTAs (clusters) as fit at once, each looping over
// cluster tiles. Tiles run in bands of 8 M-blocks, M fastest, so the CTAs running at the
// same time share W tiles and x rows through L2.
//
// X3 (float data, math 3xtf32): the main loop of src/cuda/mainloop/sm90_3xtf32.cuh, with
// a 3-stage ring and two W_lo buffers; warps 1-3 of the producer warpgroup split W.
// Everything else (schedule, cluster, epilogue) is the same.
#pragma once

#include <cuda.h>
#include <stdint.h>

#include "epilogue/fused_groupnorm.cuh"
#include "mainloop/sm90_3xtf32.cuh"
#include "mainloop/sm90_tma_wgmma.cuh"
#include "ptx/barrier.cuh"
#include "ptx/cluster.cuh"
#include "ptx/regs.cuh"

// Register split between the roles (overridable for experiments; 40 + 2 x 232 per
// 3 x 128 threads fits the 64K-register file).
#ifndef LGH_SM90_PRODUCER_REGS
#define LGH_SM90_PRODUCER_REGS 40
#endif
#ifndef LGH_SM90_CONSUMER_REGS
#define LGH_SM90_CONSUMER_REGS 232
#endif
// The 3xtf32 instances (X3): their consumers hold a 64-register partial tile and 32
// registers of x fragments besides the accumulators (232 spilled 8 bytes), and their
// producer warpgroup (TMA thread, W splitters) fits in 24. setmaxnreg.inc waits for
// registers the CTA itself has released, so the split must fit the 168 x 384 registers
// the CTA starts with: 24 + 2 x 240 = 504 = 168 x 3 (32 + 2 x 240 hung).
#ifndef LGH_SM90_X3_PRODUCER_REGS
#define LGH_SM90_X3_PRODUCER_REGS 24
#endif
#ifndef LGH_SM90_X3_CONSUMER_REGS
#define LGH_SM90_X3_CONSUMER_REGS 240
#endif
#define LGH_SM90_BAND 8          // M-blocks per band of the tile order
#define LGH_SM90_MAX_CLUSTER 4

// Everything the kernel needs besides the two tensor maps (type-erased so that all
// instantiations share one signature).
struct lgh_sm90_params {
    const void *bias, *gamma, *beta;
    void *y;
    int64_t ldy;
    float *mean, *rstd;
    int m, n, groups, group_size;
    float eps, lo, hi;
    int k_blocks; // ceil(K / BK)
    int m_blocks; // ceil(M / BM)
    int n_tiles;  // cluster tiles along N: ceil(N / (BN * cluster size))
    int group_ctas; // CTAs a group spans (1, 2 or 4; then equal to the cluster size)
    int multicast;  // x tile multicast over the cluster (the x map's box is 128/cluster rows)
};

// Partial statistics exchanged inside a cluster, double-buffered by tile parity.
struct lgh_sm90_exchange {
    uint64_t bar[2];
    float2 part[2][LGH_SM90_MAX_CLUSTER][LGH_SM90_BM]; // (mean, M2) per source rank, row
};

struct lgh_sm90_smem {
    lgh_sm90_ring ring;
    lgh_sm90_exchange xchg;
    lgh_epi_tile_params<LGH_SM90_BN> params[2]; // bias, γ, β of the tile, by tile parity
};

struct lgh_sm90_smem_x3 {
    lgh_sm90_ring3 ring;
    lgh_sm90_exchange xchg;
    lgh_epi_tile_params<LGH_SM90_BN> params[2];
};

template <bool X3> struct lgh_sm90_smem_of { using type = lgh_sm90_smem; };
template <> struct lgh_sm90_smem_of<true> { using type = lgh_sm90_smem_x3; };

// Dynamic shared memory a launch needs: the layout plus room to align it to 1024 bytes.
#define LGH_SM90_SMEM_BYTES ((int)sizeof(lgh_sm90_smem) + 1024)
#define LGH_SM90_SMEM_BYTES_X3 ((int)sizeof(lgh_sm90_smem_x3) + 1024)

// Cluster tile ct -> (M-block, cluster tile along N), in bands of LGH_SM90_BAND M-blocks.
__device__ __forceinline__ void lgh_sm90_tile_coords(int ct, int m_blocks, int n_tiles, int *mb, int *nt)
{
    const int band_tiles = LGH_SM90_BAND * n_tiles;
    const int band = ct / band_tiles;
    const int first = band * LGH_SM90_BAND;
    const int rows = min(LGH_SM90_BAND, m_blocks - first);
    const int in = ct - band * band_tiles;
    *mb = first + in % rows;
    *nt = in / rows;
}

// Cluster step of the epilogue: replaces the quad's partial statistics of its two rows
// (over this CTA's 256 channels) by the statistics over the cluster's channels.
__device__ __forceinline__ void lgh_sm90_exchange_stats(lgh_sm90_exchange *x, lgh_stats &s0, lgh_stats &s1,
                                                        int row, int iter, uint32_t csize, uint32_t rank)
{
    const int par = iter & 1;
    if ((threadIdx.x & 3) == 0) {
        const uint32_t p0 = lgh_smem_addr(&x->part[par][rank][row]);
        const uint32_t p1 = lgh_smem_addr(&x->part[par][rank][row + 8]);
        const uint32_t bar = lgh_smem_addr(&x->bar[par]);
        for (uint32_t q = 0; q < csize; ++q) {
            if (q == rank) continue;
            lgh_cluster_store_f32x2(lgh_cluster_map(p0, q), s0.mean, s0.m2);
            lgh_cluster_store_f32x2(lgh_cluster_map(p1, q), s1.mean, s1.m2);
            lgh_mbar_arrive_remote_release(lgh_cluster_map(bar, q));
        }
    }
    lgh_mbar_wait_cluster(&x->bar[par], (uint32_t)(iter >> 1) & 1u);
    lgh_stats t0 = lgh_stats_empty(), t1 = lgh_stats_empty();
    for (uint32_t q = 0; q < csize; ++q) {
        lgh_stats r0 = s0, r1 = s1;
        if (q != rank) {
            const float2 a = x->part[par][q][row];
            const float2 b = x->part[par][q][row + 8];
            r0.mean = a.x;
            r0.m2 = a.y;
            r1.mean = b.x;
            r1.m2 = b.y;
        }
        t0 = lgh_stats_combine(t0, r0);
        t1 = lgh_stats_combine(t1, r1);
    }
    s0 = t0;
    s1 = t1;
}

// GS: channels of a group inside one CTA tile (the group size, or 256 for wider groups).
// X3: 3xtf32 main loop (T = float only).
template <typename T, int GS, bool X3 = false>
__global__ void __launch_bounds__(LGH_SM90_THREADS, 1)
    lgh_sm90_kernel(const __grid_constant__ CUtensorMap map_x, const __grid_constant__ CUtensorMap map_w,
                    const lgh_sm90_params p)
{
    using smem_t = typename lgh_sm90_smem_of<X3>::type;
    extern __shared__ __align__(1024) uint8_t lgh_sm90_dyn_smem[];
    const uint32_t raw = lgh_smem_addr(lgh_sm90_dyn_smem);
    smem_t *sm = reinterpret_cast<smem_t *>(lgh_sm90_dyn_smem + ((1024u - (raw & 1023u)) & 1023u));

    const uint32_t csize = lgh_cluster_size();
    const uint32_t rank = lgh_cluster_rank();
    const int wg = threadIdx.x / 128;
    const uint32_t mc = p.multicast ? csize : 1u; // CTAs sharing each x tile

    if (threadIdx.x == 0) {
        if constexpr (X3) lgh_sm90_ring3_init(&sm->ring, mc);
        else lgh_sm90_ring_init(&sm->ring, mc);
        if (p.group_ctas > 1) {
            // One arrival per quad leader (64 per CTA) from each peer.
            lgh_mbar_init(&sm->xchg.bar[0], 64 * (csize - 1));
            lgh_mbar_init(&sm->xchg.bar[1], 64 * (csize - 1));
        }
        lgh_mbar_fence_init();
        lgh_tma_prefetch_map(&map_x);
        lgh_tma_prefetch_map(&map_w);
    }
    // Peers multicast into this CTA's ring, arrive on its barriers and write its exchange
    // buffers: every barrier of the cluster must exist first.
    if (csize > 1) lgh_cluster_sync();
    else __syncthreads();

    const int cluster_id = blockIdx.x / csize;
    const int clusters = gridDim.x / csize;
    const int tiles = p.m_blocks * p.n_tiles;
    lgh_sm90_ring_pos pos = {0, 0u};
    lgh_sm90_cyc<LGH_SM90_X3_STAGES> pos3 = {0, 0u};
    lgh_sm90_cyc<LGH_SM90_X3_LO_BUFS> lpos = {0, 0u};

    if (wg == 0) {
        lgh_regs_release<X3 ? LGH_SM90_X3_PRODUCER_REGS : LGH_SM90_PRODUCER_REGS>();
        if (threadIdx.x == 0) {
            for (int ct = cluster_id; ct < tiles; ct += clusters) {
                int mb, nt;
                lgh_sm90_tile_coords(ct, p.m_blocks, p.n_tiles, &mb, &nt);
                const int m0 = mb * LGH_SM90_BM, n0 = (nt * (int)csize + (int)rank) * LGH_SM90_BN;
                if constexpr (X3) {
                    lgh_sm90_x3_produce_tile(&sm->ring, pos3, &map_x, &map_w, m0, n0, p.k_blocks, mc, rank);
                } else {
                    lgh_sm90_produce_tile<T>(&sm->ring, pos, &map_x, &map_w, m0, n0, p.k_blocks, mc, rank);
                }
            }
        } else if (X3 && threadIdx.x >= 32) {
            if constexpr (X3) {
                for (int ct = cluster_id; ct < tiles; ct += clusters)
                    lgh_sm90_x3_split_tile(&sm->ring, pos3, lpos, p.k_blocks, threadIdx.x - 32);
            }
        }
        __syncwarp();
    } else {
        lgh_regs_acquire<X3 ? LGH_SM90_X3_CONSUMER_REGS : LGH_SM90_CONSUMER_REGS>();
        const int cw = wg - 1; // consumer warpgroup: rows [64 cw, 64 cw + 64) of the tile
        const int warp = (threadIdx.x / 32) & 3;
        const int lane = threadIdx.x & 31;
        const int tile_row = 64 * cw + 16 * warp + lane / 4; // and tile_row + 8
        const T *bias = static_cast<const T *>(p.bias);
        const T *gamma = static_cast<const T *>(p.gamma);
        const T *beta = static_cast<const T *>(p.beta);
        const int consumer_thread = threadIdx.x - 128; // 0 .. 255: one column each

        float acc[128];
        int iter = 0;
        for (int ct = cluster_id; ct < tiles; ct += clusters, ++iter) {
            int mb, nt;
            lgh_sm90_tile_coords(ct, p.m_blocks, p.n_tiles, &mb, &nt);
            const int m0 = mb * LGH_SM90_BM;
            const int n0 = (nt * (int)csize + (int)rank) * LGH_SM90_BN;
            // The tile's bias, γ, β: loads issued now, their latency hidden by the main loop
            // (after it for X3, whose main loop needs those registers).
            lgh_epi_param_loader<T> ld;
            if constexpr (!X3) ld.load(bias, gamma, beta, n0 + consumer_thread, p.n);

            if constexpr (X3) lgh_sm90_x3_consume_tile(&sm->ring, pos3, lpos, acc, cw, p.k_blocks, mc);
            else lgh_sm90_consume_tile<T>(&sm->ring, pos, acc, cw, p.k_blocks, mc);
            if constexpr (X3) ld.load(bias, gamma, beta, n0 + consumer_thread, p.n);

            lgh_epi_tile_params<LGH_SM90_BN> *tp = &sm->params[iter & 1];
            ld.store(tp, consumer_thread);
            // Both consumer warpgroups; the copy of tile t-2 (same buffer) is no longer read,
            // since every consumer thread has passed this barrier for tile t-1 since.
            lgh_named_barrier_sync(1, 256);

            // Read from the parameter bank here, not kept in registers across the main loop.
            lgh_epi_args<T> a;
            a.y = static_cast<T *>(p.y);
            a.ldy = p.ldy;
            a.mean = p.mean;
            a.rstd = p.rstd;
            a.m = p.m;
            a.n = p.n;
            a.groups = p.groups;
            a.group_size = p.group_size;
            a.eps = p.eps;
            a.lo = p.lo;
            a.hi = p.hi;

            const int row = m0 + tile_row;
            lgh_epi_add_bias<32>(acc, tp);
            if constexpr (GS == LGH_SM90_BN) {
                lgh_stats s0 = lgh_epi_group_stats<32, GS>(acc, 0, 0);
                lgh_stats s1 = lgh_epi_group_stats<32, GS>(acc, 0, 1);
                if (p.group_ctas > 1) lgh_sm90_exchange_stats(&sm->xchg, s0, s1, tile_row, iter, csize, rank);
                // A group spanning the cluster: its statistics are written by rank 0 alone.
                lgh_epi_group_normalize<32, GS>(acc, 0, s0, s1, tp, a, row, n0, p.group_ctas == 1 || rank == 0);
            } else {
#pragma unroll
                for (int u = 0; u < lgh_epi_shape<32, GS>::GROUPS; ++u) {
                    const lgh_stats s0 = lgh_epi_group_stats<32, GS>(acc, u, 0);
                    const lgh_stats s1 = lgh_epi_group_stats<32, GS>(acc, u, 1);
                    lgh_epi_group_normalize<32, GS>(acc, u, s0, s1, tp, a, row, n0, true);
                }
            }
            lgh_epi_store<32>(acc, a, row, n0);
        }
    }
    // No CTA may leave while a peer can still write into its shared memory or arrive on
    // its barriers.
    if (csize > 1) lgh_cluster_sync();
}
