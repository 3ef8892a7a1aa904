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
// In a cluster of C CTAs along N (same x rows, different W rows), the x tile can be shared
// (mc = C; mc = 1 turns it off): each CTA loads 128/C of its rows and multicasts them to
// all C CTAs, cutting the L2 -> SM
// traffic per CTA from 48 KB to (16/C + 32) KB per K-block. A slot is then written by
// every CTA of the cluster, so a producer may refill it only when the consumers of all C
// CTAs have released it: each consumer warp arrives on the `empty` barrier of every CTA of
// the cluster, and `empty` expects 8 * C arrivals.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "ptx/cluster.cuh"
#include "ptx/mbarrier.cuh"
#include "ptx/tma.cuh"
#include "ptx/wgmma.cuh"

#define LGH_SM90_BM 128
#define LGH_SM90_BN 256
#define LGH_SM90_STAGES 4
#define LGH_SM90_CONSUMER_WARPS 8
#define LGH_SM90_THREADS 384 // producer warpgroup + 2 consumer warpgroups

// Per element type: K-block depth (one 128-byte swizzle row) and the wgmma that eats it.
template <typename T> struct lgh_sm90_mma;

template <> struct lgh_sm90_mma<float> {
    static constexpr int BK = 32;     // 32 x 4 bytes = 128 bytes
    static constexpr int K_STEP = 8;  // m64n256k8 tf32
    __device__ static void mma(float (&d)[128], uint64_t a, uint64_t b, int acc)
    {
        lgh_wgmma_m64n256k8_tf32(d, a, b, acc);
    }
};

template <> struct lgh_sm90_mma<__nv_bfloat16> {
    static constexpr int BK = 64;
    static constexpr int K_STEP = 16;
    __device__ static void mma(float (&d)[128], uint64_t a, uint64_t b, int acc)
    {
        lgh_wgmma_m64n256k16_bf16(d, a, b, acc);
    }
};

template <> struct lgh_sm90_mma<__half> {
    static constexpr int BK = 64;
    static constexpr int K_STEP = 16;
    __device__ static void mma(float (&d)[128], uint64_t a, uint64_t b, int acc)
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

// Position in the ring; advances the same way on the producer and consumer sides.
struct lgh_sm90_ring_pos {
    int slot;
    uint32_t parity;
    __device__ void advance()
    {
        if (++slot == LGH_SM90_STAGES) {
            slot = 0;
            parity ^= 1u;
        }
    }
};

// One thread: initialises the barriers for x multicast over mc CTAs (call
// lgh_mbar_fence_init and a CTA or cluster barrier after).
__device__ __forceinline__ void lgh_sm90_ring_init(lgh_sm90_ring *r, uint32_t mc)
{
    for (int s = 0; s < LGH_SM90_STAGES; ++s) {
        lgh_mbar_init(&r->full[s], 1);
        lgh_mbar_init(&r->empty[s], LGH_SM90_CONSUMER_WARPS * mc);
    }
}

// Producer (one thread): issues the K-blocks of one tile. With multicast (mc > 1) the x
// map's box is 128/mc rows: this CTA's slice of the x tile, sent to the mc CTAs.
template <typename T>
__device__ __forceinline__ void lgh_sm90_produce_tile(lgh_sm90_ring *r, lgh_sm90_ring_pos &pos,
                                                      const void *map_x, const void *map_w, int m0,
                                                      int n0, int k_blocks, uint32_t mc, uint32_t rank)
{
    constexpr int BK = lgh_sm90_mma<T>::BK;
    const int slice_rows = LGH_SM90_BM / (int)mc;
    const uint16_t all = (uint16_t)((1u << mc) - 1u);
    for (int kb = 0; kb < k_blocks; ++kb) {
        lgh_mbar_wait(&r->empty[pos.slot], pos.parity ^ 1u);
        lgh_mbar_arrive_expect_tx(&r->full[pos.slot], LGH_SM90_A_BYTES + LGH_SM90_B_BYTES);
        if (mc == 1) {
            lgh_tma_load_2d(r->a[pos.slot], map_x, &r->full[pos.slot], kb * BK, m0);
        } else {
            lgh_tma_load_2d_multicast(r->a[pos.slot] + rank * slice_rows * 128, map_x, &r->full[pos.slot],
                                      kb * BK, m0 + (int)rank * slice_rows, all);
        }
        lgh_tma_load_2d(r->b[pos.slot], map_w, &r->full[pos.slot], kb * BK, n0);
        pos.advance();
    }
}

// Consumer warpgroup `wg` (0 or 1): acc = its 64 rows of the tile times W's 256 rows.
// On return every wgmma has completed and every slot it read has been released.
// Each warp releases a slot on every CTA that multicasts into it (see the top of this
// file): lane q arrives on CTA q's barrier.
__device__ __forceinline__ void lgh_sm90_release_slot(lgh_sm90_ring *r, int slot, uint32_t mc)
{
    __syncwarp();
    const uint32_t lane = threadIdx.x & 31;
    if (mc == 1) {
        if (lane == 0) lgh_mbar_arrive(&r->empty[slot]);
    } else if (lane < mc) {
        lgh_mbar_arrive_cluster(lgh_cluster_map(lgh_smem_addr(&r->empty[slot]), lane));
    }
}

template <typename T>
__device__ __forceinline__ void lgh_sm90_consume_tile(lgh_sm90_ring *r, lgh_sm90_ring_pos &pos,
                                                      float (&acc)[128], int wg, int k_blocks, uint32_t mc)
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
        if (prev_slot >= 0) lgh_sm90_release_slot(r, prev_slot, mc);
        prev_slot = pos.slot;
        pos.advance();
    }
    lgh_wgmma_wait<0>();
    lgh_wgmma_pin(acc);
    if (prev_slot >= 0) lgh_sm90_release_slot(r, prev_slot, mc);
}
