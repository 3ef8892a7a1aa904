// The sm90 GEMM main loop: acc[BM x BN] = x[m0:m0+BM, :] · W[n0:n0+BN, :]ᵀ, one CTA tile at
// a time, for the persistent warp-specialised kernel in src/cuda/sm90/kernel_sm90.cuh.
//
// One producer thread streams K-blocks of x and W with TMA (128B swizzle) into a ring of
// STAGES shared-memory slots; each slot has a `full` mbarrier (TMA bytes landed) and an
// `empty` mbarrier (all consumer warps done reading). Two consumer warpgroups each multiply
// a 64 x 256 half of the tile with wgmma, reading both operands from shared memory
// (K-major, as x [M, K] and W [N, K] already are), keeping one K-block of wgmma in flight
// while the next slot fills. The ring position (slot, parity) runs on across tiles, so the
// producer prefetches the next tile while the consumers run the epilogue.
//
// Clusters share operand tiles by TMA multicast. A cluster is CN x CM CTAs: CN along N
// (same x rows, different W rows) and CM along M (same W rows, different x rows). The CN
// CTAs of a cluster row each load 128/CN rows of the x tile and multicast them to the
// row; the CM CTAs of a cluster column each load 256/CM rows of the W tile and multicast
// them to the column. That cuts the L2 -> SM traffic per CTA and K-block from 48 KB
// (float32) to 16/CN + 32/CM KB. A slot is then written by several CTAs, so a producer may
// refill it only when the consumers of every CTA it writes into have released it: each
// consumer warp arrives on the `empty` barrier of every CTA of the cluster (lane q on CTA
// q's), and `empty` expects 8 x (cluster size) arrivals.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "ptx/cluster.cuh"
#include "ptx/mbarrier.cuh"
#include "ptx/smem.cuh"
#include "ptx/tma.cuh"
#include "ptx/wgmma.cuh"

#define LGH_SM90_BM 128
#define LGH_SM90_BN 256
#define LGH_SM90_STAGES 4
#define LGH_SM90_CONSUMER_WARPS 8
#define LGH_SM90_THREADS 384 // producer warpgroup + 2 consumer warpgroups
#define LGH_SM90_WG_THREADS 128 // threads of a warpgroup (wgmma's unit)
#define LGH_SM90_WG_ROWS 64     // tile rows one consumer warpgroup computes (wgmma's M)
// float32 accumulators per consumer thread: its warpgroup's 64 x 256 slab of the tile
#define LGH_SM90_ACC (LGH_SM90_WG_ROWS * LGH_SM90_BN / LGH_SM90_WG_THREADS)
static_assert(LGH_SM90_BM == (LGH_SM90_CONSUMER_WARPS / 4) * LGH_SM90_WG_ROWS, "one 64-row slab per consumer warpgroup");

// Per element type: K-block depth (one 128-byte swizzle row) and the wgmma that eats it.
template <typename T> struct lgh_sm90_mma;

template <> struct lgh_sm90_mma<float> {
    static constexpr int BK = 32;     // 32 x 4 bytes = 128 bytes
    static constexpr int K_STEP = 8;  // m64n256k8 tf32
    __device__ static void mma(float (&d)[LGH_SM90_ACC], uint64_t a, uint64_t b, int acc)
    {
        lgh_wgmma_m64n256k8_tf32(d, a, b, acc);
    }
};

template <> struct lgh_sm90_mma<__nv_bfloat16> {
    static constexpr int BK = 64;
    static constexpr int K_STEP = 16;
    __device__ static void mma(float (&d)[LGH_SM90_ACC], uint64_t a, uint64_t b, int acc)
    {
        lgh_wgmma_m64n256k16_bf16(d, a, b, acc);
    }
};

template <> struct lgh_sm90_mma<__half> {
    static constexpr int BK = 64;
    static constexpr int K_STEP = 16;
    __device__ static void mma(float (&d)[LGH_SM90_ACC], uint64_t a, uint64_t b, int acc)
    {
        lgh_wgmma_m64n256k16_f16(d, a, b, acc);
    }
};

// Bytes of one slot: an x tile (BM rows) and a W tile (BN rows) of 128 bytes each.
#define LGH_SM90_A_BYTES (LGH_SM90_BM * 128)
#define LGH_SM90_B_BYTES (LGH_SM90_BN * 128)

// The ring and its barriers. Lives at the 1024-byte-aligned start of dynamic shared memory.
struct lgh_sm90_ring {
    uint8_t a[LGH_SM90_STAGES][LGH_SM90_A_BYTES];
    uint8_t b[LGH_SM90_STAGES][LGH_SM90_B_BYTES];
    uint64_t full[LGH_SM90_STAGES];
    uint64_t empty[LGH_SM90_STAGES];
};

// Position in a cyclic buffer of N entries (slot, and the parity of its barrier phase);
// advances the same way on the producer and consumer sides.
template <int N>
struct lgh_sm90_cyc {
    int slot;
    uint32_t parity;
    __device__ void advance()
    {
        if (++slot == N) {
            slot = 0;
            parity ^= 1u;
        }
    }
};

// Position in the ring.
using lgh_sm90_ring_pos = lgh_sm90_cyc<LGH_SM90_STAGES>;

// Where this CTA sits in its cluster and whom it multicasts to (see the top of this file).
// Cluster rank r = rm * cn + rn.
struct lgh_sm90_cluster_pos {
    int cn, cm;       // CTAs along N and along M
    int rn, rm;       // this CTA's place
    bool x_mc, w_mc;  // x shared over the cluster row, W over the cluster column
    uint16_t x_mask;  // the CTAs of this CTA's cluster row
    uint16_t w_mask;  // the CTAs of this CTA's cluster column
    uint32_t release; // CTAs whose `empty` barriers a consumer warp arrives on (1: its own)

    __device__ static lgh_sm90_cluster_pos make(int cn, int cm, bool x_mc, uint32_t rank)
    {
        lgh_sm90_cluster_pos c;
        c.cn = cn;
        c.cm = cm;
        c.rn = (int)rank % cn;
        c.rm = (int)rank / cn;
        c.x_mc = x_mc && cn > 1;
        c.w_mc = cm > 1;
        c.x_mask = (uint16_t)(((1u << cn) - 1u) << (c.rm * cn));
        c.w_mask = 0;
        for (int i = 0; i < cm; ++i) c.w_mask |= (uint16_t)(1u << (i * cn + c.rn));
        c.release = c.x_mc || c.w_mc ? (uint32_t)(cn * cm) : 1u;
        return c;
    }
};

// What the producer needs of lgh_sm90_cluster_pos, packed into one register (the 3xtf32
// producer runs in 24): bits 0-3 the x multicast mask, 4-7 the W mask (0: no multicast),
// 8-15 and 16-23 the first row of this CTA's slice of the x and W tiles, 24-25 rn, 26 rm.
struct lgh_sm90_slices {
    uint32_t bits;

    __device__ static lgh_sm90_slices of(const lgh_sm90_cluster_pos &c)
    {
        const uint32_t xm = c.x_mc ? (uint32_t)c.x_mask : 0u, wm = c.w_mc ? (uint32_t)c.w_mask : 0u;
        const uint32_t xr = c.x_mc ? (uint32_t)(c.rn * (LGH_SM90_BM / c.cn)) : 0u;
        const uint32_t wr = c.w_mc ? (uint32_t)(c.rm * (LGH_SM90_BN / c.cm)) : 0u;
        return {xm | wm << 4 | xr << 8 | wr << 16 | (uint32_t)c.rn << 24 | (uint32_t)c.rm << 26};
    }
    __device__ uint16_t x_mask() const { return (uint16_t)(bits & 15u); }
    __device__ uint16_t w_mask() const { return (uint16_t)((bits >> 4) & 15u); }
    __device__ int x_row() const { return (int)((bits >> 8) & 255u); }
    __device__ int w_row() const { return (int)((bits >> 16) & 255u); }
    __device__ int rn() const { return (int)((bits >> 24) & 3u); }
    __device__ int rm() const { return (int)((bits >> 26) & 1u); }
};

// One thread: initialises the barriers (call lgh_mbar_fence_init and a CTA or cluster
// barrier after).
__device__ __forceinline__ void lgh_sm90_ring_init(lgh_sm90_ring *r, uint32_t release)
{
    for (int s = 0; s < LGH_SM90_STAGES; ++s) {
        lgh_mbar_init(&r->full[s], 1);
        lgh_mbar_init(&r->empty[s], LGH_SM90_CONSUMER_WARPS * release);
    }
}

// Producer (one thread): the TMA loads of one K-block (column k0) of the x tile at row m0
// and the W tile at row n0 into slot (a, b), completing on `full`. With multicast, the x
// map's box is 128/cn rows and the W map's 256/cm: this CTA's slices, sent to its cluster
// row and column.
__device__ __forceinline__ void lgh_sm90_load_kblock(uint8_t *a, uint8_t *b, uint64_t *full, const void *map_x,
                                                     const void *map_w, int k0, int m0, int n0,
                                                     const lgh_sm90_slices &c)
{
    lgh_mbar_arrive_expect_tx(full, LGH_SM90_A_BYTES + LGH_SM90_B_BYTES);
    if (c.x_mask() != 0) {
        lgh_tma_load_2d_multicast(a + c.x_row() * 128, map_x, full, k0, m0 + c.x_row(), c.x_mask());
    } else {
        lgh_tma_load_2d(a, map_x, full, k0, m0);
    }
    if (c.w_mask() != 0) {
        lgh_tma_load_2d_multicast(b + c.w_row() * 128, map_w, full, k0, n0 + c.w_row(), c.w_mask());
    } else {
        lgh_tma_load_2d(b, map_w, full, k0, n0);
    }
}

// Producer (one thread): issues K-blocks kb_begin .. kb_end - 1 of one tile (all of K, or
// one split's share of it).
template <typename T>
__device__ __forceinline__ void lgh_sm90_produce_tile(lgh_sm90_ring *r, lgh_sm90_ring_pos &pos,
                                                      const void *map_x, const void *map_w, int m0,
                                                      int n0, int kb_begin, int kb_end, const lgh_sm90_slices &c)
{
    constexpr int BK = lgh_sm90_mma<T>::BK;
    for (int kb = kb_begin; kb < kb_end; ++kb) {
        lgh_mbar_wait(&r->empty[pos.slot], pos.parity ^ 1u);
        lgh_sm90_load_kblock(r->a[pos.slot], r->b[pos.slot], &r->full[pos.slot], map_x, map_w, kb * BK, m0, n0, c);
        pos.advance();
    }
}

// A consumer warp hands a slot back to every CTA that may write into it (lane q arrives
// on CTA q's barrier), after the slot's wgmmas completed.
__device__ __forceinline__ void lgh_sm90_release_slot(uint64_t *empty, uint32_t release)
{
    __syncwarp();
    const uint32_t lane = threadIdx.x & 31;
    if (release == 1) {
        if (lane == 0) lgh_mbar_arrive(empty);
    } else if (lane < release) {
        lgh_mbar_arrive_cluster(lgh_cluster_map(lgh_smem_addr(empty), lane));
    }
}

// Consumer warpgroup `wg` (0 or 1): acc = its 64 rows of the tile times W's 256 rows.
// On return every wgmma has completed and every slot it read has been released.
template <typename T>
__device__ __forceinline__ void lgh_sm90_consume_tile(lgh_sm90_ring *r, lgh_sm90_ring_pos &pos,
                                                      float (&acc)[LGH_SM90_ACC], int wg, int k_blocks, uint32_t release)
{
    constexpr int K_STEPS = lgh_sm90_mma<T>::BK / lgh_sm90_mma<T>::K_STEP;
    constexpr int STEP_BYTES = lgh_sm90_mma<T>::K_STEP * (int)sizeof(T); // 32
    const uint32_t a_base = lgh_smem_addr(r->a[0]) + wg * (64 * 128);
    const uint32_t b_base = lgh_smem_addr(r->b[0]);
    int prev_slot = -1;
    for (int kb = 0; kb < k_blocks; ++kb) {
        lgh_mbar_wait(&r->full[pos.slot], pos.parity);
        const uint32_t a_addr = a_base + pos.slot * LGH_SM90_A_BYTES;
        const uint32_t b_addr = b_base + pos.slot * LGH_SM90_B_BYTES;
        lgh_wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < K_STEPS; ++ks) {
            lgh_sm90_mma<T>::mma(acc, lgh_wgmma_desc_k128b(a_addr + ks * STEP_BYTES),
                                 lgh_wgmma_desc_k128b(b_addr + ks * STEP_BYTES), (kb | ks) != 0);
        }
        lgh_wgmma_commit();
        // The previous K-block's multiplies are done once at most this one is in flight:
        // its slot can be refilled.
        lgh_wgmma_wait<1>();
        if (prev_slot >= 0) lgh_sm90_release_slot(&r->empty[prev_slot], release);
        prev_slot = pos.slot;
        pos.advance();
    }
    lgh_wgmma_wait<0>();
    lgh_wgmma_pin(acc);
    if (prev_slot >= 0) lgh_sm90_release_slot(&r->empty[prev_slot], release);
}

// Consumer warpgroup whose 64 rows all lie past M (small M, the tile's second half): the
// K-blocks of one tile pass without multiplies (the slots still have to be waited for and
// released in turn). acc is left as it was; the epilogue stores no row past M.
__device__ __forceinline__ void lgh_sm90_skip_tile(lgh_sm90_ring *r, lgh_sm90_ring_pos &pos, int k_blocks,
                                                   uint32_t release)
{
    for (int kb = 0; kb < k_blocks; ++kb) {
        lgh_mbar_wait(&r->full[pos.slot], pos.parity);
        lgh_sm90_release_slot(&r->empty[pos.slot], release);
        pos.advance();
    }
}

// Address of element e (0..3) of k-step s (0..3) of a thread's tf32 A fragment in a
// 128B-swizzled x slot (the register order wgmma's "_rs" forms take: A[r][q], A[r+8][q],
// A[r][q+4], A[r+8][q+4] of k-step s, with r = 16 warp + lane/4 and q = lane % 4).
// row_addr: the slot + row r's offset + 4 q bytes; sw = lane / 4 = r % 8 for both rows,
// since row r's 16-byte chunk c sits at chunk c ^ (r % 8). A warp's 32 loads of one
// element hit 32 different banks.
__device__ __forceinline__ uint32_t lgh_sm90_a_frag_addr(uint32_t row_addr, uint32_t sw, int s, int e)
{
    const uint32_t chunk = (uint32_t)(2 * s + (e >> 1));
    return row_addr + (uint32_t)(e & 1) * 1024u + ((chunk ^ sw) << 4);
}

// Element e of k-step s of the thread's tf32 A fragment, as a float (lgh_sm90_a_frag_addr).
// The tf32 and 3xtf32 consumers load their fragments with it and convert them.
__device__ __forceinline__ float lgh_sm90_load_a_elem(uint32_t row_addr, uint32_t sw, int s, int e)
{
    return lgh_lds_f32(lgh_sm90_a_frag_addr(row_addr, sw, s, e));
}

// The float32 consumer with A rounded: as lgh_sm90_consume_tile<float>, but x comes from
// shared memory into registers, rounded to nearest tf32 (lgh_tf32_round), and the multiply takes A
// from registers. The tensor core truncates a float32 operand read from shared memory; the
// rounded x halves that error's bias (W still truncates). A register fragment must stay
// untouched until its wgmmas complete, and one K-block stays in flight, so the fragments
// alternate between two register sets (the loop runs two K-blocks per turn).
__device__ __forceinline__ void lgh_sm90_consume_tile_tf32_rna(lgh_sm90_ring *r, lgh_sm90_ring_pos &pos,
                                                               float (&acc)[LGH_SM90_ACC], int wg, int k_blocks,
                                                               uint32_t release)
{
    constexpr int STEP_BYTES = 8 * 4; // one k-step of 8 floats inside the 128-byte row
    const int warp = (threadIdx.x / 32) & 3;
    const int lane = threadIdx.x & 31;
    const uint32_t sw = (uint32_t)lane >> 2;
    const uint32_t a_off = (uint32_t)(wg * 64 * 128 + (16 * warp + (lane >> 2)) * 128 + 4 * (lane & 3));
    const uint32_t a_base = lgh_smem_addr(r->a[0]) + a_off;
    const uint32_t b_base = lgh_smem_addr(r->b[0]);
    int prev_slot = -1;
    uint32_t a0[16], a1[16];
    auto step = [&](int kb, uint32_t (&a)[16]) {
        lgh_mbar_wait(&r->full[pos.slot], pos.parity);
        const uint32_t row_addr = a_base + pos.slot * LGH_SM90_A_BYTES;
#pragma unroll
        for (int s = 0; s < 4; ++s)
#pragma unroll
            for (int e = 0; e < 4; ++e) a[4 * s + e] = lgh_tf32_round(lgh_sm90_load_a_elem(row_addr, sw, s, e));
        const uint32_t b_addr = b_base + pos.slot * LGH_SM90_B_BYTES;
        lgh_wgmma_fence();
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            lgh_wgmma_m64n256k8_tf32_rs(acc, a[4 * s], a[4 * s + 1], a[4 * s + 2], a[4 * s + 3],
                                        lgh_wgmma_desc_k128b(b_addr + s * STEP_BYTES), (kb | s) != 0);
        }
        lgh_wgmma_commit();
        lgh_wgmma_wait<1>(); // the previous K-block (the other register set) is done
        if (prev_slot >= 0) lgh_sm90_release_slot(&r->empty[prev_slot], release);
        prev_slot = pos.slot;
        pos.advance();
    };
    int kb = 0;
    for (; kb + 1 < k_blocks; kb += 2) {
        step(kb, a0);
        step(kb + 1, a1);
    }
    if (kb < k_blocks) step(kb, a0);
    lgh_wgmma_wait<0>();
    lgh_wgmma_pin(acc);
    if (prev_slot >= 0) lgh_sm90_release_slot(&r->empty[prev_slot], release);
}
