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
// A cluster is CN CTAs along N times CM along M; the CTAs of a cluster row share the x
// tile and those of a cluster column the W tile (multicast, see the main loop). Groups
// wider than the tile (GS = 256 here and group size 512 or 1024) span the CN = 2 or 4 CTAs
// of a cluster row, which exchange their rows' partial (mean, M2) over 256 channels and
// each combine the CN partials in order (Chan), so all CTAs normalise with the same
// statistics. By default the cluster row is a software cluster (vcluster: consecutive
// CTAs of a cooperative launch, no cluster launch) exchanging through global memory
// (lgh_sm90_exchange_stats_global); with a hardware cluster each CTA writes its partials
// into the shared memory of every peer and arrives on that CTA's mbarrier
// (lgh_sm90_exchange_stats). Either way the exchange buffers alternate between two sets by
// tile parity; a CTA can only reuse a set after every peer has read it. Which clusters the
// engine forms, and why: docs/PERF.md, sm90 v3 and v5.
//
// Unit mode (subtiles > 1): a group wider than the cluster can take (more than 4 tiles, or
// a span that is not a power of two) is done by one CTA, tile after tile: its running
// statistics stay in registers, every tile but the last is stored pre-norm, and once the
// last tile completes the statistics, the CTA normalises it in registers and the earlier
// ones in place (lgh_epi_wide_fixup, shared with the sm80 engine's wide mode).
//
// RNA (float data, tf32): x rounded to nearest tf32 in registers instead of truncated by
// the tensor core (lgh_sm90_consume_tile_tf32_rna).
//
// Persistent schedule: grid = as many CTAs (clusters) as fit at once, each looping over
// cluster tiles. Tiles run in bands of 8 M-blocks, M fastest, so the CTAs running at the
// same time share W tiles and x rows through L2.
//
// Split K (splits > 1, small M): with too few tiles to fill the GPU, K is cut into S parts
// and a work unit is (tile, part); each unit stores its partial product in float32 (plain
// mode) into slice s of the workspace, and the group-norm pass (groupnorm_kernel.cu) sums
// the S slices in order, adds the bias and finishes the layer. Deterministic: no atomics.
//
// X3 (float data, math 3xtf32): the main loop of src/cuda/mainloop/sm90_3xtf32.cuh, with
// a 3-stage ring and two W_lo buffers; warps 1-3 of the producer warpgroup split W. No W
// multicast and no unit mode (the engine never asks them); everything else (schedule,
// cluster, epilogue) is the same.
#pragma once

#include <cuda.h>
#include <stdint.h>

#include "epilogue/fused_groupnorm.cuh"
#include "epilogue/straddle_geometry.h"
#include "mainloop/sm90_3xtf32.cuh"
#include "mainloop/sm90_tma_wgmma.cuh"
#include "mainloop/tile_order.h"
#include "ptx/barrier.cuh"
#include "ptx/cluster.cuh"
#include "ptx/flags.cuh"
#include "ptx/regs.cuh"

// Whether an instance can store the pre-norm h (see the epilogue).
#define LGH_SM90_STORES_H(X3, GS) (!((X3) && (GS) <= 8))

// Register split between the roles (overridable for experiments; 40 + 2 x 232 per
// 3 x 128 threads fits the 64K-register file).
#ifndef LGH_SM90_PRODUCER_REGS
#define LGH_SM90_PRODUCER_REGS 40
#endif
#ifndef LGH_SM90_CONSUMER_REGS
#define LGH_SM90_CONSUMER_REGS 232
#endif
// The 3xtf32 instances (X3): their consumers hold a 64-register partial tile and 32
// registers of x fragments besides the accumulators, and their producer warpgroup (TMA
// thread, W splitters) must fit what is left. setmaxnreg.inc waits for registers the CTA
// itself has released, so the split must fit the 168 x 384 registers the CTA starts with:
// 40 + 2 x 232 = 504 = 168 x 3 (32 + 2 x 240 hung). With software clusters the producer's
// tile loop spilled in 24 registers (the earlier 24 + 2 x 240 split), the consumers at
// 232 no longer do.
#ifndef LGH_SM90_X3_PRODUCER_REGS
#define LGH_SM90_X3_PRODUCER_REGS 40
#endif
#ifndef LGH_SM90_X3_CONSUMER_REGS
#define LGH_SM90_X3_CONSUMER_REGS 232
#endif
#define LGH_SM90_BAND 8          // M-blocks per band of the tile order (tile_order.h)
#define LGH_SM90_MAX_CLUSTER 4

// Warpgroup roles: threads 0 .. 127 are the producer warpgroup (thread 0 issues TMA, warps
// 1-3 split W in 3xtf32), 128 .. 383 the two consumer warpgroups (main loop and epilogue).
#define LGH_SM90_PRODUCER_THREADS 128
#define LGH_SM90_CONSUMER_THREADS (32 * LGH_SM90_CONSUMER_WARPS)
static_assert(LGH_SM90_PRODUCER_THREADS + LGH_SM90_CONSUMER_THREADS == LGH_SM90_THREADS, "warpgroup roles");
// Named barriers among the consumer threads only (id 0 is __syncthreads'): the epilogue's
// parameter bank of a tile, and the statistics exchange through global memory.
enum { LGH_SM90_BAR_EPI_PARAMS = 1, LGH_SM90_BAR_XCHG = 2 };

// Everything the kernel needs besides the two tensor maps (type-erased so that all
// instantiations share one signature).
struct lgh_sm90_params {
    const void *bias, *gamma, *beta;
    void *y;
    int64_t ldy;
    void *h;        // optional pre-norm output (x·Wᵀ + b in T), or NULL
    int64_t ldh;
    int plain;      // store the plain product x·Wᵀ into y as float32 (no norm): the backward's
                    // float32-accurate products (backward_sm90.cu), and split K's partial
                    // products (split > 1: K-split s writes y + s * split_stride); 2: plus the
                    // bias (the backward's recomputed h; NT only, not with split K)
    int splits;     // parts K is split into: a work unit is (cluster tile, part); 1 = all of K
    int split_blocks; // K-blocks of every part: ceil(k_blocks / splits) (the last parts' blocks past K
                      // read zeros); from the parameter bank, so the loops hold no register for it
    int64_t split_stride;
    float *mean, *rstd;
    int m, n, groups, group_size;
    float eps, lo, hi;
    int k_blocks;   // ceil(K / BK)
    int m_tiles;    // cluster tiles along M: ceil(M / (BM * cluster_m))
    int n_tiles;    // cluster tiles along N: ceil(N / (BN * cluster_n))
    int cluster_n;  // CTAs of a cluster along N (1, 2 or 4)
    int cluster_m;  // CTAs of a cluster along M (1 or 2; 2: W multicast, box 256/2 rows)
    int group_ctas; // CTAs a group spans (1, or cluster_n): statistics exchanged in the cluster
    int subtiles;   // N-tiles of one unit of work (> 1: a wide group done by one CTA, unit mode)
    int multicast;  // x tile multicast over a cluster row (the x map's box is 128/cluster_n rows)
    int release;    // CTAs a consumer warp releases each slot to (cluster size with multicast, else 1)
    int tiles;      // work units: m_tiles * n_tiles * splits
    int band;       // cluster tiles along M per band of the tile order (LGH_SM90_BAND M-blocks)
    // Software clusters (exchange through global memory; the default for groups spanning CTAs, see engine_sm90.cu): with
    // vcluster > 1 the launch has no hardware cluster and CTAs 2q .. 2q + vcluster - 1 act
    // as one cluster row of vcluster CTAs, exchanging statistics through xchg (float2
    // partials, [cluster][tile parity][rank][BM rows]) and xchg_flags (one counter per CTA,
    // zeroed before the launch). The launch is cooperative, so all CTAs are resident.
    int vcluster;
    int cluster_shift; // log2 of the CTAs of a cluster, hardware or software (CN x CM)
    int clusters;      // clusters in the grid
    float2 *xchg;
    unsigned *xchg_flags;
};

// Partial statistics exchanged inside a cluster, double-buffered by tile parity.
struct lgh_sm90_exchange {
    uint64_t bar[2];
    float2 part[2][LGH_SM90_MAX_CLUSTER][LGH_SM90_BM]; // (mean, M2) per source (rn), row
};

struct lgh_sm90_smem {
    lgh_sm90_ring ring;
    lgh_sm90_exchange xchg;
    lgh_epi_tile_params<LGH_SM90_BN> params[2]; // bias, γ, β of the tile, by tile parity
    float2 fin[LGH_SM90_BM];                    // unit mode: a group's final (mean, M2) per row
};

struct lgh_sm90_smem_x3 {
    lgh_sm90_ring3 ring;
    lgh_sm90_exchange xchg;
    lgh_epi_tile_params<LGH_SM90_BN> params[2];
};

// The plain products an instance computes (the kernel's OP, below).
enum { LGH_SM90_OP_NT = 0, LGH_SM90_OP_NN = 1, LGH_SM90_OP_TT = 2 };

// The 3xtf32 consumers' A fragment source: K-major (the layer's x), or MN-major (NN, TT).
template <bool MN> struct lgh_sm90_a_of { using type = lgh_sm90_a_kmajor; };
template <> struct lgh_sm90_a_of<true> { using type = lgh_sm90_a_mnmajor; };

template <bool X3> struct lgh_sm90_smem_of { using type = lgh_sm90_smem; };
template <> struct lgh_sm90_smem_of<true> { using type = lgh_sm90_smem_x3; };

// Dynamic shared memory a launch needs: the layout plus room to align it to 1024 bytes.
#define LGH_SM90_SMEM_BYTES ((int)sizeof(lgh_sm90_smem) + 1024)
#define LGH_SM90_SMEM_BYTES_X3 ((int)sizeof(lgh_sm90_smem_x3) + 1024)

// Work unit w -> its cluster tile (returned) and K-split; the split's K-blocks are
// [split * split_blocks, (split + 1) * split_blocks).
__device__ __forceinline__ int lgh_sm90_unit(const lgh_sm90_params &p, int w, int *split)
{
    const int ct = w / p.splits;
    *split = w - ct * p.splits;
    return ct;
}

// The CTA's cluster (index, count, rank in it), the same arithmetic for a hardware cluster
// and a software one: both are 1-D runs of 2^cluster_shift consecutive CTAs. From the
// parameter bank rather than %clusterid, so the 3xtf32 producer holds no extra register.
__device__ __forceinline__ int lgh_sm90_cluster_index(const lgh_sm90_params &p)
{
    return (int)(blockIdx.x >> p.cluster_shift);
}
__device__ __forceinline__ int lgh_sm90_cluster_count(const lgh_sm90_params &p) { return p.clusters; }
__device__ __forceinline__ uint32_t lgh_sm90_cluster_rank(const lgh_sm90_params &p)
{
    return blockIdx.x & ((1u << p.cluster_shift) - 1u);
}

// The end of a statistics exchange: (s0, s1), this CTA's partials of its two rows, become
// the combination of all cn CTAs' partials in rank order (Chan), the same on every CTA;
// load(q, a, b) fetches CTA q's (mean, M2) of the two rows.
template <typename Load>
__device__ __forceinline__ void lgh_sm90_combine_rows(lgh_stats &s0, lgh_stats &s1, int me, int cn, Load load)
{
    lgh_stats t0 = lgh_stats_empty(), t1 = lgh_stats_empty();
    for (int q = 0; q < cn; ++q) {
        lgh_stats r0 = s0, r1 = s1;
        if (q != me) {
            float2 a, b;
            load(q, a, b);
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

// The exchange of lgh_sm90_exchange_stats for software clusters, through global memory:
// every quad leader writes its two rows' partials; after a barrier of the consumer
// threads, one thread publishes this CTA's counter (iter + 1) and waits until every peer's
// counter reached it; after a second barrier all read the peers' partials from L2. No
// writer fences its own stores: the barrier orders them before the publishing thread's
// release store, and a release at GPU scope covers what its thread saw through a barrier
// (the pattern of CUTLASS's semaphores), so one fence per tile replaces 64. A CTA writes
// parity buffer p again two tiles later, after it saw every peer's counter pass the tile in
// between, i.e. after every peer read it.
__device__ __forceinline__ void lgh_sm90_exchange_stats_global(const lgh_sm90_params &p, lgh_stats &s0,
                                                               lgh_stats &s1, int row, int iter,
                                                               const lgh_sm90_cluster_pos &c, int cluster)
{
    const int cn = c.cn, me = c.rn;
    float2 *buf = p.xchg + ((int64_t)(cluster * 2 + (iter & 1)) * cn) * LGH_SM90_BM;
    if ((threadIdx.x & 3) == 0) {
        buf[me * LGH_SM90_BM + row] = make_float2(s0.mean, s0.m2);
        buf[me * LGH_SM90_BM + row + 8] = make_float2(s1.mean, s1.m2);
    }
    lgh_named_barrier_sync(LGH_SM90_BAR_XCHG, LGH_SM90_CONSUMER_THREADS);
    if (threadIdx.x == LGH_SM90_PRODUCER_THREADS) { // the first consumer thread
        unsigned *flags = p.xchg_flags + cluster * cn;
        const unsigned want = (unsigned)iter + 1u;
        lgh_st_release_gpu_u32(flags + me, want);
        for (int q = 0; q < cn; ++q) {
            if (q != me) lgh_wait_gpu_u32(flags + q, want);
        }
    }
    lgh_named_barrier_sync(LGH_SM90_BAR_XCHG, LGH_SM90_CONSUMER_THREADS);
    lgh_sm90_combine_rows(s0, s1, me, cn, [&](int q, float2 &a, float2 &b) {
        a = __ldcg(&buf[q * LGH_SM90_BM + row]);
        b = __ldcg(&buf[q * LGH_SM90_BM + row + 8]);
    });
}

// Cluster step of the epilogue: replaces the quad's partial statistics of its two rows
// (over this CTA's 256 channels) by the statistics over the channels of its cluster row.
__device__ __forceinline__ void lgh_sm90_exchange_stats(lgh_sm90_exchange *x, lgh_stats &s0, lgh_stats &s1,
                                                        int row, int iter, const lgh_sm90_cluster_pos &c)
{
    const int par = iter & 1;
    const int me = c.rn;
    if ((threadIdx.x & 3) == 0) {
        const uint32_t p0 = lgh_smem_addr(&x->part[par][me][row]);
        const uint32_t p1 = lgh_smem_addr(&x->part[par][me][row + 8]);
        const uint32_t bar = lgh_smem_addr(&x->bar[par]);
        for (int q = 0; q < c.cn; ++q) {
            if (q == me) continue;
            const uint32_t peer = (uint32_t)(c.rm * c.cn + q);
            lgh_cluster_store_f32x2(lgh_cluster_map(p0, peer), s0.mean, s0.m2);
            lgh_cluster_store_f32x2(lgh_cluster_map(p1, peer), s1.mean, s1.m2);
            lgh_mbar_arrive_remote_release(lgh_cluster_map(bar, peer));
        }
    }
    lgh_mbar_wait_cluster(&x->bar[par], (uint32_t)(iter >> 1) & 1u);
    lgh_sm90_combine_rows(s0, s1, me, c.cn, [&](int q, float2 &a, float2 &b) {
        a = x->part[par][q][row];
        b = x->part[par][q][row + 8];
    });
}

// Straddle mode: groups of any size below 512 channels, which may begin and end anywhere in
// the 256-column tiles, on one CTA per tile (no cluster), a cooperative launch. For each
// group piece in the tile the epilogue takes per-row statistics (lgh_epi_range_stats). A
// group wholly inside the tile is normalised at once. The pieces at the tile's edges belong
// to groups that continue into the neighbouring tiles (up to two on each side): the tile
// publishes their partials (mean, M2; the counts follow from the geometry) to p.xchg,
// [tile][left, right][BM rows], raises its flag in p.xchg_flags (zeroed before the launch),
// then waits for the flags of the tiles holding the other pieces and combines every piece
// of the group in tile order (Chan), the same on each of those tiles. Deadlock-free: a tile
// publishes before it waits, every CTA is resident, and N-neighbours lie at most 2 bands'
// heights apart in tile order, fewer than the grid's CTAs (the engine checks).
template <typename T>
__device__ __forceinline__ void lgh_sm90_straddle_epilogue(float (&acc)[LGH_SM90_ACC], const lgh_sm90_params &p,
                                                           const lgh_epi_tile_params<LGH_SM90_BN> *tp,
                                                           const lgh_epi_args<T> &a, int row, int tile_row, int mt,
                                                           int nt)
{
    constexpr int BN = LGH_SM90_BN, BM = LGH_SM90_BM;
    const int gs = p.group_size;
    const lgh_straddle_tile geo = lgh_straddle_of(nt, p.n, gs, BN);
    const int n0 = geo.n0, ncols = geo.ncols, g_first = geo.g_first, g_last = geo.g_last;
    const bool has_left = geo.has_left, has_right = geo.has_right;
    const int me = lgh_tile_index(mt, nt, p.m_tiles, p.n_tiles, p.band);
    float2 *buf = p.xchg; // [tile][side: 0 left edge, 1 right edge][BM rows] (mean, M2)
    for (int g = g_first; g <= g_last; ++g) {
        int lo, hi;
        lgh_straddle_piece(g, gs, BN, nt, &lo, &hi);
        hi = min(hi, ncols);
        const lgh_stats s0 = lgh_epi_range_stats<32>(acc, 0, lo, hi);
        const lgh_stats s1 = lgh_epi_range_stats<32>(acc, 1, lo, hi);
        const bool left = g == g_first && has_left, right = g == g_last && has_right;
        if (!left && !right) {
            lgh_epi_range_normalize<32>(acc, lo, hi, s0, s1, tp, a, row, g, true);
        } else if ((threadIdx.x & 3) == 0) { // an edge piece: published, not kept in registers
            for (int side = left ? 0 : 1; side <= (right ? 1 : 0); ++side) {
                buf[(2 * me + side) * BM + tile_row] = make_float2(s0.mean, s0.m2);
                buf[(2 * me + side) * BM + tile_row + 8] = make_float2(s1.mean, s1.m2);
            }
        }
    }
    if (!has_left && !has_right) return; // (uniform over the tile: no barrier is skipped by some only)

    // (no fence per writer: the barrier and the release store order the partials, as in
    // lgh_sm90_exchange_stats_global)
    lgh_named_barrier_sync(LGH_SM90_BAR_XCHG, LGH_SM90_CONSUMER_THREADS);
    if (threadIdx.x == LGH_SM90_PRODUCER_THREADS) { // the first consumer thread
        lgh_st_release_gpu_u32(p.xchg_flags + me, 1u);
        for (int u = geo.u_lo; u <= geo.u_hi; ++u) { // the tiles holding the edge groups' other pieces
            if (u == nt) continue;
            lgh_wait_gpu_u32(p.xchg_flags + lgh_tile_index(mt, u, p.m_tiles, p.n_tiles, p.band), 1u);
        }
    }
    lgh_named_barrier_sync(LGH_SM90_BAR_XCHG, LGH_SM90_CONSUMER_THREADS);
    // Group g's statistics over all its pieces in tile order, this tile's own included, all
    // read back as published (the counts from the geometry), so that every tile of the group
    // combines the same values in the same order. own_side: where this tile put its piece.
    auto whole = [&](int g, int own_side, lgh_stats &t0, lgh_stats &t1) {
        t0 = lgh_stats_empty();
        t1 = lgh_stats_empty();
        const int ua = lgh_straddle_first_tile(g, gs, BN), ub = lgh_straddle_last_tile(g, gs, BN);
        for (int u = ua; u <= ub; ++u) {
            const int t = u == nt ? me : lgh_tile_index(mt, u, p.m_tiles, p.n_tiles, p.band);
            const int side = u < nt ? 1 : u > nt ? 0 : own_side; // an earlier tile's right edge, a later one's left
            const float2 x0 = __ldcg(&buf[(2 * t + side) * BM + tile_row]);
            const float2 x1 = __ldcg(&buf[(2 * t + side) * BM + tile_row + 8]);
            int lo, hi;
            const float cnt = (float)lgh_straddle_piece(g, gs, BN, u, &lo, &hi);
            t0 = lgh_stats_combine(t0, lgh_stats{cnt, x0.x, x0.y});
            t1 = lgh_stats_combine(t1, lgh_stats{cnt, x1.x, x1.y});
        }
    };
    lgh_stats s0, s1;
    if (has_left) { // began in an earlier tile: its mean / rstd are written there
        whole(g_first, 0, s0, s1);
        int lo, hi;
        lgh_straddle_piece(g_first, gs, BN, nt, &lo, &hi);
        lgh_epi_range_normalize<32>(acc, 0, min(hi, ncols), s0, s1, tp, a, row, g_first, false);
    }
    if (has_right && !(has_left && g_last == g_first)) { // begins here
        whole(g_last, 1, s0, s1);
        lgh_epi_range_normalize<32>(acc, g_last * gs - n0, ncols, s0, s1, tp, a, row, g_last, true);
    }
}

// GS: channels of a group inside one CTA tile (the group size, or 256 for wider groups); 0:
// straddle mode, any group size below 512 (lgh_sm90_straddle_epilogue; not with X3).
// X3: 3xtf32 main loop (T = float only).
// RNA: float data in tf32 with x rounded to nearest tf32 in registers
// (lgh_sm90_consume_tile_tf32_rna; T = float only).
// X3V (with X3): the 3xtf32 main loop's version (sm90_3xtf32.cuh: 1 tf32 corrections,
// 2 bf16, 3 bf16 with W rounded to nearest); 0: the build's default (LGH_SM90_X3_VERSION).
// Instances of versions 1 and 3 serve the backward's dW product, whose short reduction
// leaves float32's own error small (backward_sm90.cu, LGH_SM90_DW_LOOP).
// OP (with X3, plain mode only; LGH_SM90_OP_*): which plain product. The layer's is NT,
// y = x·Wᵀ with both operands K-major. NN: d = a·b of a row-major a [M, K] and a row-major
// b [K, N] (no operand transposed first), computed as its transpose dᵀ = bᵀ·aᵀ: map_x is
// over b (the tile's A, MN-major: lgh_sm90_a_mnmajor, its rows are d's columns), map_w over
// a (K-major, as W), p.m = N, p.n = M, and the tile is stored transposed into d. TT: d =
// aᵀ·bᵀ of a row-major a [K, M] (MN-major, as NN's b) and b [N, K] (K-major), stored as is.
template <typename T, int GS, bool X3 = false, bool RNA = false, int X3V = 0, int OP = LGH_SM90_OP_NT>
__global__ void __launch_bounds__(LGH_SM90_THREADS, 1)
    lgh_sm90_kernel(const __grid_constant__ CUtensorMap map_x, const __grid_constant__ CUtensorMap map_w,
                    const lgh_sm90_params p)
{
    static_assert(OP == LGH_SM90_OP_NT || X3, "NN and TT plain products run on the 3xtf32 main loop");
    static_assert(GS != 0 || !X3, "straddle mode is not compiled into the 3xtf32 instances");
    constexpr bool A_MN = OP != LGH_SM90_OP_NT;     // the tile's A from an MN-major matrix
    constexpr bool STORE_T = OP == LGH_SM90_OP_NN;  // the tile stored transposed
    using smem_t = typename lgh_sm90_smem_of<X3>::type;
    extern __shared__ __align__(1024) uint8_t lgh_sm90_dyn_smem[];
    const uint32_t raw = lgh_smem_addr(lgh_sm90_dyn_smem);
    smem_t *sm = reinterpret_cast<smem_t *>(lgh_sm90_dyn_smem + ((1024u - (raw & 1023u)) & 1023u));

    // Each role works out its place in the cluster after the register split
    // (lgh_sm90_cluster_pos): values live across setmaxnreg were spilled.
    const uint32_t csize = lgh_cluster_size();
    const int wg = threadIdx.x / LGH_SM90_WG_THREADS;

    if (threadIdx.x == 0) {
        if constexpr (X3) lgh_sm90_ring3_init(&sm->ring, (uint32_t)p.release);
        else lgh_sm90_ring_init(&sm->ring, (uint32_t)p.release);
        if (p.group_ctas > 1 && p.vcluster <= 1) {
            // One arrival per quad leader (64 per CTA) from each peer of the cluster row.
            lgh_mbar_init(&sm->xchg.bar[0], 64 * (p.cluster_n - 1));
            lgh_mbar_init(&sm->xchg.bar[1], 64 * (p.cluster_n - 1));
        }
        lgh_mbar_fence_init();
        lgh_tma_prefetch_map(&map_x);
        lgh_tma_prefetch_map(&map_w);
    }
    // Peers multicast into this CTA's ring, arrive on its barriers and write its exchange
    // buffers: every barrier of the cluster must exist first.
    if (csize > 1) lgh_cluster_sync();
    else __syncthreads();

    const int tiles = p.tiles;
    // Unit mode is not compiled into the 3xtf32 instances (their consumers have no registers
    // to spare for the running statistics; the engine never asks it of them).
    const int subtiles = X3 ? 1 : p.subtiles;
    lgh_sm90_ring_pos pos = {0, 0u};
    lgh_sm90_cyc<LGH_SM90_X3_STAGES> pos3 = {0, 0u};
    lgh_sm90_cyc<LGH_SM90_X3_LO_BUFS> lpos = {0, 0u};

    if (wg == 0) {
        lgh_regs_release<X3 ? LGH_SM90_X3_PRODUCER_REGS : LGH_SM90_PRODUCER_REGS>();
        if (threadIdx.x == 0) {
            if constexpr (X3) {
                // A cluster here is one row of 1, 2 or 4 CTAs (cluster_m = 1), hardware or
                // software. u = CTA tile (cluster tile << cluster_shift | rank), stepping by the
                // grid: nothing but u stays live (this producer runs in 24 registers).
                const uint32_t mc = p.multicast ? csize : 1u;
                if (p.splits > 1) { // split K: one CTA per cluster, no multicast (a loop of its own, as below)
                    for (int u = (int)blockIdx.x; u < tiles; u += (int)gridDim.x) {
                        int mt, nt, split;
                        lgh_tile_coords(lgh_sm90_unit(p, u, &split), p.m_tiles, p.n_tiles, p.band, &mt, &nt);
                        const int kb0 = split * p.split_blocks;
                        lgh_sm90_x3_produce_tile<A_MN>(&sm->ring, pos3, &map_x, &map_w, mt * LGH_SM90_BM,
                                                     nt * LGH_SM90_BN, kb0, kb0 + p.split_blocks, 1u, 0u);
                    }
                } else {
                    for (int u = (int)blockIdx.x; (u >> p.cluster_shift) < tiles; u += (int)gridDim.x) {
                        int mt, nt;
                        lgh_tile_coords(u >> p.cluster_shift, p.m_tiles, p.n_tiles, p.band, &mt, &nt);
                        const uint32_t rank = (uint32_t)u & ((1u << p.cluster_shift) - 1u);
                        lgh_sm90_x3_produce_tile<A_MN>(&sm->ring, pos3, &map_x, &map_w, mt * LGH_SM90_BM,
                                                     ((nt << p.cluster_shift) + (int)rank) * LGH_SM90_BN, 0,
                                                     p.k_blocks, mc, rank);
                    }
                }
            } else {
                const lgh_sm90_slices sl = lgh_sm90_slices::of(
                    lgh_sm90_cluster_pos::make(p.cluster_n, p.cluster_m, p.multicast != 0, lgh_sm90_cluster_rank(p)));
                if (p.splits > 1) {
                    // Split K: no cluster (one CTA, sl is trivial), no sub-tiles. A loop of its
                    // own: with the K offset in the general loop, this 40-register thread spilled.
                    for (int w = (int)blockIdx.x; w < tiles; w += (int)gridDim.x) {
                        int mt, nt, split;
                        lgh_tile_coords(lgh_sm90_unit(p, w, &split), p.m_tiles, p.n_tiles, p.band, &mt, &nt);
                        const int kb0 = split * p.split_blocks;
                        lgh_sm90_produce_tile<T>(&sm->ring, pos, &map_x, &map_w, mt * LGH_SM90_BM, nt * LGH_SM90_BN,
                                                 kb0, kb0 + p.split_blocks, sl);
                    }
                } else {
                    for (int ct = lgh_sm90_cluster_index(p); ct < tiles; ct += lgh_sm90_cluster_count(p)) {
                        int mt, nt;
                        lgh_tile_coords(ct, p.m_tiles, p.n_tiles, p.band, &mt, &nt);
                        const int m0 = (mt * p.cluster_m + sl.rm()) * LGH_SM90_BM;
                        for (int j = 0; j < subtiles; ++j) {
                            const int n0 = ((nt * p.cluster_n + sl.rn()) * subtiles + j) * LGH_SM90_BN;
                            lgh_sm90_produce_tile<T>(&sm->ring, pos, &map_x, &map_w, m0, n0, 0, p.k_blocks, sl);
                        }
                    }
                }
            }
        } else if (X3 && threadIdx.x >= 32) {
            if constexpr (X3) {
                for (int u = (int)blockIdx.x; (u >> p.cluster_shift) < tiles; u += (int)gridDim.x)
                    lgh_sm90_x3_split_tile<X3V ? X3V : LGH_SM90_X3_VERSION>(&sm->ring, pos3, lpos, p.split_blocks,
                                                                         threadIdx.x - 32);
            }
        }
        __syncwarp();
    } else {
        lgh_regs_acquire<X3 ? LGH_SM90_X3_CONSUMER_REGS : LGH_SM90_CONSUMER_REGS>();
        const int cw = wg - 1; // consumer warpgroup: rows [64 cw, 64 cw + 64) of the tile (LGH_SM90_WG_ROWS)
        const int warp = (threadIdx.x / 32) & 3;
        const int lane = threadIdx.x & 31;
        const int tile_row = LGH_SM90_WG_ROWS * cw + 16 * warp + lane / 4; // and tile_row + 8
        const T *bias = static_cast<const T *>(p.bias);
        const T *gamma = static_cast<const T *>(p.gamma);
        const T *beta = static_cast<const T *>(p.beta);
        const int consumer_thread = threadIdx.x - LGH_SM90_PRODUCER_THREADS; // 0 .. 255: one column each

        float acc[LGH_SM90_ACC];
        int iter = 0; // sub-tiles done by this CTA
        // Where tile (ct, sub-tile j) lies. Recomputed after the main loop rather than kept
        // live across it (the X3 consumers have no registers to spare). With CM = 2, the
        // second CTA's rows can lie past M (TMA reads zeros there and the epilogue writes
        // nothing): it still multicasts its half of W.
        // (ct: the cluster tile, w / splits of the work unit w; w itself outside plain mode,
        // where splits is 1.)
        auto tile_origin = [&](int ct, int j, int *m0, int *unit_n0, lgh_sm90_cluster_pos *c) {
            *c = lgh_sm90_cluster_pos::make(p.cluster_n, p.cluster_m, p.multicast != 0, lgh_sm90_cluster_rank(p));
            int mt, nt;
            lgh_tile_coords(ct, p.m_tiles, p.n_tiles, p.band, &mt, &nt);
            *m0 = (mt * c->cm + c->rm) * LGH_SM90_BM;
            *unit_n0 = (nt * c->cn + c->rn) * subtiles * LGH_SM90_BN;
        };
        for (int w = lgh_sm90_cluster_index(p); w < tiles; w += lgh_sm90_cluster_count(p)) {
            // Only w, j and iter stay live across the main loop; the rest is recomputed from w
            // after it (the X3 consumers have no registers to spare).
            const int k_blocks = p.split_blocks;
            // Unit mode: the group's statistics so far, over its finished sub-tiles.
            lgh_stats run0 = lgh_stats_empty(), run1 = lgh_stats_empty();
            for (int j = 0; j < subtiles; ++j, ++iter) {
                int m0, unit_n0;
                lgh_sm90_cluster_pos c;
                // The tile's bias, γ, β: loads issued now, their latency hidden by the main loop
                // (after it for X3, whose main loop needs those registers).
                lgh_epi_param_loader<T> ld;
                if constexpr (!X3) {
                    // (in plain mode, w is not the tile and these loads go unused; they stay
                    // masked to columns < n)
                    tile_origin(w, j, &m0, &unit_n0, &c);
                    ld.load(bias, gamma, beta, unit_n0 + j * LGH_SM90_BN + consumer_thread, p.n);
                }

                // Plain mode (split K, small M): with one M-tile (M <= 128), a warpgroup whose 64
                // rows all lie past M skips the multiplies (M <= 64). Not in the layer's epilogue,
                // where both warpgroups meet at barriers, and not in X3, whose consumers spilled
                // with the second path (measured: ptxas -v, 100-120 bytes).
                if constexpr (!X3) {
                    if (p.plain && p.m_tiles == 1 && LGH_SM90_WG_ROWS * cw >= p.m) {
                        lgh_sm90_skip_tile(&sm->ring, pos, k_blocks, p.release);
                        continue;
                    }
                }
                if constexpr (X3)
                    lgh_sm90_x3_consume_tile<X3V ? X3V : LGH_SM90_X3_VERSION,
                                             typename lgh_sm90_a_of<A_MN>::type>(&sm->ring, pos3, lpos, acc, cw,
                                                                              k_blocks, p.release);
                else if constexpr (RNA) lgh_sm90_consume_tile_tf32_rna(&sm->ring, pos, acc, cw, k_blocks, p.release);
                else lgh_sm90_consume_tile<T>(&sm->ring, pos, acc, cw, k_blocks, p.release);
                if (A_MN || p.plain) { // every consumer thread takes this branch: no barrier is skipped by some only
                    int split;
                    tile_origin(lgh_sm90_unit(p, w, &split), j, &m0, &unit_n0, &c);
                    lgh_epi_args<float> pa = lgh_epi_args_of<float>(p);
                    pa.y += (int64_t)split * p.split_stride;
                    if constexpr (X3 && !A_MN && GS == LGH_SM90_BN) { // (the backward asks it of these only)
                        if (p.plain == 2)
                            lgh_epi_add_bias_global<32>(acc, static_cast<const float *>(p.bias),
                                                        unit_n0 + j * LGH_SM90_BN, p.n);
                    }
                    lgh_epi_store<32, float, STORE_T>(acc, pa, m0 + tile_row, unit_n0 + j * LGH_SM90_BN);
                    continue;
                }
                if constexpr (X3) {
                    tile_origin(w, j, &m0, &unit_n0, &c);
                    ld.load(bias, gamma, beta, unit_n0 + j * LGH_SM90_BN + consumer_thread, p.n);
                }
                const int row = m0 + tile_row;
                const int n0 = unit_n0 + j * LGH_SM90_BN;

                lgh_epi_tile_params<LGH_SM90_BN> *tp = &sm->params[iter & 1];
                ld.store(tp, consumer_thread);
                // Both consumer warpgroups; the copy of tile t-2 (same buffer) is no longer read,
                // since every consumer thread has passed this barrier for tile t-1 since.
                lgh_named_barrier_sync(LGH_SM90_BAR_EPI_PARAMS, LGH_SM90_CONSUMER_THREADS);

                // Read from the parameter bank here, not kept in registers across the main loop.
                const lgh_epi_args<T> a = lgh_epi_args_of<T>(p);

                lgh_epi_add_bias<32>(acc, tp);
                // The pre-norm, for the backward: stored like y, from the registers. Not compiled
                // into the 3xtf32 instances for groups of 8 or fewer channels, where it spilled
                // (their consumers have no registers to spare; the engine declines h there).
                if constexpr (LGH_SM90_STORES_H(X3, GS)) if (p.h != nullptr) {
                    lgh_epi_args<T> ha = a;
                    ha.y = static_cast<T *>(p.h);
                    ha.ldy = p.ldh;
                    lgh_epi_store<32>(acc, ha, row, n0);
                }
                if constexpr (GS == 0) { // straddle mode: groups of any size (one CTA per cluster)
                    int mt, nt;
                    lgh_tile_coords(w, p.m_tiles, p.n_tiles, p.band, &mt, &nt);
                    lgh_sm90_straddle_epilogue(acc, p, tp, a, row, tile_row, mt, nt);
                } else if constexpr (GS == LGH_SM90_BN) {
                    lgh_stats s0 = lgh_epi_group_stats<32, GS>(acc, 0, 0);
                    lgh_stats s1 = lgh_epi_group_stats<32, GS>(acc, 0, 1);
                    if (p.group_ctas > 1) {
                        if (p.vcluster > 1)
                            lgh_sm90_exchange_stats_global(p, s0, s1, tile_row, iter, c, lgh_sm90_cluster_index(p));
                        else lgh_sm90_exchange_stats(&sm->xchg, s0, s1, tile_row, iter, c);
                    }
                    if (subtiles > 1) {
                        run0 = lgh_stats_combine(run0, s0);
                        run1 = lgh_stats_combine(run1, s1);
                        if (j + 1 < subtiles) { // not the group's last sub-tile: store it pre-norm
                            lgh_epi_store<32>(acc, a, row, n0);
                            continue;
                        }
                        s0 = run0;
                        s1 = run1;
                    }
                    // A group spanning the cluster row: its statistics are written by its first CTA.
                    lgh_epi_group_normalize<32, GS>(acc, 0, s0, s1, tp, a, row, n0,
                                                    (p.group_ctas == 1 || c.rn == 0) && subtiles == 1);
                    if constexpr (!X3) { // unit mode (not in the X3 instances, whose shared memory has no fin)
                        if (subtiles > 1) {
                            lgh_epi_store<32>(acc, a, row, n0);
                            // The earlier sub-tiles, stored pre-norm, with the group's final
                            // statistics (the next unit writes fin only after the parameter barrier
                            // of its first sub-tile, which every thread reaches after this fixup).
                            if ((threadIdx.x & 3) == 0) {
                                sm->fin[tile_row] = make_float2(s0.mean, s0.m2);
                                sm->fin[tile_row + 8] = make_float2(s1.mean, s1.m2);
                            }
                            lgh_named_barrier_sync(LGH_SM90_BAR_EPI_PARAMS, LGH_SM90_CONSUMER_THREADS);
                            lgh_epi_wide_fixup<T>(a, gamma, beta, sm->fin, m0, LGH_SM90_BM, unit_n0,
                                                  (subtiles - 1) * LGH_SM90_BN, unit_n0 / p.group_size,
                                                  consumer_thread, LGH_SM90_CONSUMER_THREADS);
                            continue;
                        }
                    }
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
    }
    // No CTA may leave while a peer can still write into its shared memory or arrive on
    // its barriers.
    if (csize > 1) lgh_cluster_sync();
}
