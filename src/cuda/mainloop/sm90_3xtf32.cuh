// The sm90 GEMM main loop in 3xtf32: float32 accuracy on tf32 tensor cores, for the
// persistent warp-specialised kernel in src/cuda/sm90/kernel_sm90.cuh (its X3 instances).
//
// version 1: three tf32 products per K-block (below). version 2 (the default,
// LGH_SM90_X3_VERSION): the two correction products in bf16, 27% faster at 1.0e-6 error
// instead of 3e-7 (docs/PERF.md, "3xtf32 v2"); see "bf16 corrections" at
// lgh_sm90_x3_load_a_bf16. version 3: the splitters also round W to nearest
// tf32 in place: error 1.04e-6 -> 6.7e-7, 8% slower (docs/PERF.md, "3xtf32 v3"). The
// backward's dW runs version 1 (kernel_sm90.cuh, X3V; backward_sm90.cu).
// The text below describes version 1; versions 2 and 3 keep its ring, splitters and flush.
//
// Each operand is split as a = hi + lo, hi = a with its low 13 mantissa bits cleared (tf32
// truncated) and lo = a - hi (exact in float32) rounded to tf32; then
//     x·Wᵀ ≈ x_lo·W_hiᵀ + x_hi·W_loᵀ + x_hi·W_hiᵀ        (x_lo·W_loᵀ, ~2^-21 relative, dropped)
// small products first (see Accumulation below). tf32 wgmma reads a float32
// operand and ignores its low 13 bits, so the raw W tile that TMA lands in shared memory
// already is W_hi (the tf32 mode's error, 3.9e-4 on the reference problem, matches
// truncated operands, not rounded ones: those would give 1.9e-4). What has to be made:
//  - W_lo, in shared memory (wgmma reads B only from there): warps 1-3 of the producer
//    warpgroup (the "splitters", 96 threads that otherwise idle) turn each W slot into a
//    W_lo buffer of the same swizzled layout, then fence.proxy.async and arrive on the
//    buffer's `lo_full` barrier; consumer warps release it on `lo_empty` once their
//    multiplies have read it. Two W_lo buffers, so the split of K-block k+1 runs while the
//    consumers multiply K-block k.
//  - x_hi and x_lo, in registers: wgmma takes tf32 A from registers, so each consumer
//    thread loads its A fragment of the x slot (16 floats per K-block, conflict-free
//    scalar loads of the 128B-swizzled rows) and splits it there; all three products take
//    A from registers (from shared memory, the two x_hi products read 64 KB more per
//    K-block and ran ~1% slower). x never goes back to shared memory.
// Shared memory: 3 ring stages of x (16 KB) + W (32 KB) and 2 W_lo buffers (32 KB): 208 KB.
// Three products per K-block amortise the TMA traffic three times better than the tf32
// loop does, so 3 stages hide the load latency as well as its 4 do.
//
// Accumulation. The tensor core rounds its float32 accumulation toward zero (measured:
// accumulating the 12 products of every K-block straight into the accumulators gave
// 3.3e-5 relative error on the reference problem, against 2.5e-7 below — a bias of about
// half an ulp of the running sum per add). So each K-block's products go into a fresh
// register tile of PN columns (scale-d 0 on its first wgmma), which is then added to the
// accumulators with ordinary round-to-nearest float32 adds: 256/PN parts per K-block
// (m64n128k8: two), each 12 wgmmas as one group that the warpgroup waits for; the other
// consumer warpgroup's group keeps the tensor cores busy meanwhile.

#pragma once

#include <stdint.h>

#include "mainloop/sm90_tma_wgmma.cuh"
#include "ptx/barrier.cuh"
#include "ptx/cluster.cuh"
#include "ptx/mbarrier.cuh"
#include "ptx/smem.cuh"
#include "ptx/tf32.cuh"
#include "ptx/tma.cuh"
#include "ptx/wgmma.cuh"

// The version the kernel's instances run by default (1, 2 or 3 as described above; build
// option LGH_SM90_X3_VERSION); the backward's dW product picks its own (kernel_sm90.cuh,
// X3V). Measured and removed (docs/PERF.md, 3xtf32): accumulating straight into acc (no
// flush: 10% faster, 130x less accurate), x_hi from shared memory by descriptor (~1%
// slower than from registers), 64-column flush parts (equal to 128 within noise; the bf16
// corrections take 128), unrolled splitters (spilled in the producer's registers).
#ifndef LGH_SM90_X3_VERSION
#define LGH_SM90_X3_VERSION 2
#endif
#define LGH_SM90_X3_PART_N 128 // columns of a flushed part: the tile's 256 in two

#define LGH_SM90_X3_STAGES 3
#define LGH_SM90_X3_LO_BUFS 2
#define LGH_SM90_X3_SPLITTERS 96 // warps 1-3 of the producer warpgroup

// Ring of x and W slots plus the W_lo buffers; at the 1024-byte-aligned start of dynamic
// shared memory (every buffer is a multiple of 1024 bytes, as 128B swizzle needs).
struct lgh_sm90_ring3 {
    uint8_t a[LGH_SM90_X3_STAGES][LGH_SM90_A_BYTES];
    uint8_t b[LGH_SM90_X3_STAGES][LGH_SM90_B_BYTES];
    uint8_t lo[LGH_SM90_X3_LO_BUFS][LGH_SM90_B_BYTES];
    uint64_t full[LGH_SM90_X3_STAGES];
    uint64_t empty[LGH_SM90_X3_STAGES];
    uint64_t lo_full[LGH_SM90_X3_LO_BUFS];
    uint64_t lo_empty[LGH_SM90_X3_LO_BUFS];
};

// One thread; call lgh_mbar_fence_init and a CTA or cluster barrier after.
__device__ __forceinline__ void lgh_sm90_ring3_init(lgh_sm90_ring3 *r, uint32_t release)
{
    for (int s = 0; s < LGH_SM90_X3_STAGES; ++s) {
        lgh_mbar_init(&r->full[s], 1);
        lgh_mbar_init(&r->empty[s], LGH_SM90_CONSUMER_WARPS * release);
    }
    for (int j = 0; j < LGH_SM90_X3_LO_BUFS; ++j) {
        lgh_mbar_init(&r->lo_full[j], LGH_SM90_X3_SPLITTERS);
        lgh_mbar_init(&r->lo_empty[j], LGH_SM90_CONSUMER_WARPS);
    }
}

// Producer (one thread): as lgh_sm90_produce_tile (K-blocks kb_begin .. kb_end - 1), on the
// 3-stage ring, with x multicast over the mc CTAs of the cluster (one cluster row: the
// 3xtf32 instances have no W multicast). Kept apart from lgh_sm90_load_kblock: this
// producer runs in 40 registers, and the general slice logic spilled there.
// A_MN (the NN and TT plain products, kernel_sm90.cuh): map_x is over a row-major [K, M]
// matrix, the tile's A is its K-block rows x 128 columns from m0, landed as four 32 x 32
// boxes (lgh_sm90_a_mnmajor); no multicast (the engine asks none).
template <bool A_MN = false>
__device__ __forceinline__ void lgh_sm90_x3_produce_tile(lgh_sm90_ring3 *r, lgh_sm90_cyc<LGH_SM90_X3_STAGES> &pos,
                                                         const void *map_x, const void *map_w, int m0, int n0,
                                                         int kb_begin, int kb_end, uint32_t mc, uint32_t rank)
{
    constexpr int BK = lgh_sm90_mma<float>::BK;
    const int slice_rows = LGH_SM90_BM / (int)mc;
    const uint16_t all = (uint16_t)((1u << mc) - 1u);
    for (int kb = kb_begin; kb < kb_end; ++kb) {
        lgh_mbar_wait(&r->empty[pos.slot], pos.parity ^ 1u);
        lgh_mbar_arrive_expect_tx(&r->full[pos.slot], LGH_SM90_A_BYTES + LGH_SM90_B_BYTES);
        if constexpr (A_MN) {
#pragma unroll
            for (int b = 0; b < LGH_SM90_BM / 32; ++b)
                lgh_tma_load_2d(r->a[pos.slot] + b * 4096, map_x, &r->full[pos.slot], m0 + 32 * b, kb * BK);
        } else if (mc == 1) {
            lgh_tma_load_2d(r->a[pos.slot], map_x, &r->full[pos.slot], kb * BK, m0);
        } else {
            lgh_tma_load_2d_multicast(r->a[pos.slot] + rank * slice_rows * 128, map_x, &r->full[pos.slot],
                                      kb * BK, m0 + (int)rank * slice_rows, all);
        }
        lgh_tma_load_2d(r->b[pos.slot], map_w, &r->full[pos.slot], kb * BK, n0);
        pos.advance();
    }
}

// Splitter thread t (0 .. 95): W_lo for the K-blocks of one tile, in main-loop version V:
// the bf16 corrections' [bf16(W) | bf16(W_lo)] (2, 3: with W rounded to nearest tf32 in
// the slot), or version 1's tf32 W_lo. The loads wait on the
// slot's `full` barrier like the consumers; the slot cannot be refilled before the
// consumers release it, which they do only after lo_full, so these reads come first.
template <int V = LGH_SM90_X3_VERSION>
__device__ __forceinline__ void lgh_sm90_x3_split_tile(lgh_sm90_ring3 *r, lgh_sm90_cyc<LGH_SM90_X3_STAGES> &pos,
                                                       lgh_sm90_cyc<LGH_SM90_X3_LO_BUFS> &lpos, int k_blocks, int t)
{
    constexpr int CHUNKS = LGH_SM90_B_BYTES / 16; // (the tf32-corrections split)
    (void)CHUNKS;
    constexpr bool BF16 = V >= 2, W_RN = V == 3;
    for (int kb = 0; kb < k_blocks; ++kb) {
        lgh_mbar_wait(&r->full[pos.slot], pos.parity);
        lgh_mbar_wait(&r->lo_empty[lpos.slot], lpos.parity ^ 1u);
        const uint32_t src = lgh_smem_addr(r->b[pos.slot]);
        const uint32_t dst = lgh_smem_addr(r->lo[lpos.slot]);
        if constexpr (BF16) {
        // Item i: W row n = i % 256, 8-column group g = i / 256 (so a warp's items are 32
        // rows of one group: conflict-free chunk reads and writes under the swizzle).
#pragma unroll 1
        for (int i = t; i < 4 * LGH_SM90_BN; i += LGH_SM90_X3_SPLITTERS) {
            const uint32_t n = (uint32_t)i % LGH_SM90_BN, g = (uint32_t)i / LGH_SM90_BN, sw = n & 7u;
            float v[8];
            lgh_lds_f32x4(src + n * 128 + (((2 * g) ^ sw) << 4), &v[0]);
            lgh_lds_f32x4(src + n * 128 + (((2 * g + 1) ^ sw) << 4), &v[4]);
            uint32_t hi[4], lo[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) { // k order v0 v4 v1 v5 v2 v6 v3 v7 (lgh_sm90_x3_load_a_bf16)
                hi[j] = lgh_bf16x2(v[j], v[j + 4]);
                if constexpr (W_RN) {
                    // W_hi = W rounded to nearest tf32, written back over the slot below (the
                    // tf32 product then reads it exactly); W_lo = W - W_hi, at most half an ulp.
                    const float h0 = __uint_as_float(lgh_tf32_round(v[j]) & 0xffffe000u);
                    const float h1 = __uint_as_float(lgh_tf32_round(v[j + 4]) & 0xffffe000u);
                    lo[j] = lgh_bf16x2(v[j] - h0, v[j + 4] - h1);
                    v[j] = h0;
                    v[j + 4] = h1;
                } else {
                    lo[j] = lgh_bf16x2(lgh_tf32_lo(v[j]), lgh_tf32_lo(v[j + 4]));
                }
            }
            if constexpr (W_RN) {
                lgh_sts_b32x4(src + n * 128 + (((2 * g) ^ sw) << 4), __float_as_uint(v[0]), __float_as_uint(v[1]),
                              __float_as_uint(v[2]), __float_as_uint(v[3]));
                lgh_sts_b32x4(src + n * 128 + (((2 * g + 1) ^ sw) << 4), __float_as_uint(v[4]),
                              __float_as_uint(v[5]), __float_as_uint(v[6]), __float_as_uint(v[7]));
            }
            lgh_sts_b32x4(dst + n * 128 + ((g ^ sw) << 4), hi[0], hi[1], hi[2], hi[3]);
            lgh_sts_b32x4(dst + n * 128 + (((4 + g) ^ sw) << 4), lo[0], lo[1], lo[2], lo[3]);
        }
        } else {
#pragma unroll 1
        for (int i = t; i < CHUNKS; i += LGH_SM90_X3_SPLITTERS) {
            float v[4];
            lgh_lds_f32x4(src + 16 * i, v);
            lgh_sts_b32x4(dst + 16 * i, lgh_tf32_lo_bits(v[0]), lgh_tf32_lo_bits(v[1]), lgh_tf32_lo_bits(v[2]),
                          lgh_tf32_lo_bits(v[3]));
        }
        }
        lgh_fence_proxy_async_smem();
        lgh_mbar_arrive(&r->lo_full[lpos.slot]);
        pos.advance();
        lpos.advance();
    }
}

// Hands a consumed ring slot back (lgh_sm90_release_slot) and the W_lo buffer to the
// splitters. After the slot's wgmmas completed.
__device__ __forceinline__ void lgh_sm90_x3_release(lgh_sm90_ring3 *r, int slot, int lslot, uint32_t release)
{
    __syncwarp();
    if ((threadIdx.x & 31) == 0) lgh_mbar_arrive(&r->lo_empty[lslot]);
    lgh_sm90_release_slot(&r->empty[slot], release);
}

// Where a consumer thread's A fragments come from: the x slot of the ring, in one of two
// layouts. step(s, v) loads k-step s (of 4) of the thread's tf32 A fragment as floats, in
// the register order wgmma's "_rs" forms take: v = A[r][q], A[r+8][q], A[r][q+4],
// A[r+8][q+4] of that k-step, r = 64 wg + 16 warp + lane/4 (the tile row), q = lane % 4.
//
// K-major (the layer, x·Wᵀ): the slot holds the tile's 128 rows of 32 floats, as TMA
// writes a row-major x (lgh_sm90_a_frag_addr).
struct lgh_sm90_a_kmajor {
    uint32_t row_addr, sw;
    __device__ __forceinline__ static lgh_sm90_a_kmajor at(uint32_t slot, int wg)
    {
        const int warp = (threadIdx.x / 32) & 3, lane = threadIdx.x & 31;
        return {slot + (uint32_t)(wg * 64 * 128 + (16 * warp + (lane >> 2)) * 128 + 4 * (lane & 3)),
                (uint32_t)lane >> 2};
    }
    __device__ __forceinline__ lgh_sm90_a_kmajor moved(uint32_t by) const { return {row_addr + by, sw}; }
    __device__ __forceinline__ void step(int s, float (&v)[4]) const
    {
#pragma unroll
        for (int e = 0; e < 4; ++e) v[e] = lgh_sm90_load_a_elem(row_addr, sw, s, e);
    }
};

// MN-major (the plain products whose A operand is stored [K, M] row-major, kernel_sm90.cuh's
// NN and TT): the tile's A is that matrix's 32 x 128 block read across, landed by four TMA boxes of 32 rows (the
// K-block's k) x 32 floats (tile rows), 4 KB each, 128B-swizzled: element (r, k) at
//     (r / 32) 4096 + 128 k + (((r % 32) / 4) ^ (k % 8)) 16 + 4 (r % 4).
// A warp's loads of one element: 8 tile rows r (lanes / 4) fill 2 chunks of a 128-byte row,
// and the 4 columns q sit in 4 rows whose chunk pairs overlap two by two (2-way bank
// conflicts). So lanes with odd q issue their column-q+4 load where the others issue column
// q's, and back (then every instruction's 32 lanes hit 32 banks), and swap the two values
// in registers after. k-step s is 8 rows (1024 bytes) on from k-step 0, with the same
// swizzle: the thread's 4 addresses are 2 bases, + 1024 s, and each ^ 32 for row r + 8.
struct lgh_sm90_a_mnmajor {
    uint32_t base0, base1; // the thread's first / second load of a k-step (row r), slot included
    bool odd;              // q odd: those loads hold columns q + 4 and q
    __device__ __forceinline__ static lgh_sm90_a_mnmajor at(uint32_t slot, int wg)
    {
        const uint32_t warp = (threadIdx.x / 32) & 3, lane = threadIdx.x & 31;
        const uint32_t q = lane & 3, lr = lane >> 2, o = q & 1;
        const uint32_t box = slot + (2 * (uint32_t)wg + (warp >> 1)) * 4096 + (lr & 3) * 4;
        auto at_h = [&](uint32_t h) { // column q + 4h of k-step 0, row r
            const uint32_t chunk = (4 * ((warp & 1) ^ h)) | ((lr >> 2) ^ q);
            return box + (q + 4 * h) * 128 + (chunk << 4);
        };
        return {at_h(o), at_h(o ^ 1), o != 0};
    }
    __device__ __forceinline__ lgh_sm90_a_mnmajor moved(uint32_t by) const { return {base0 + by, base1 + by, odd}; }
    __device__ __forceinline__ void step(int s, float (&v)[4]) const
    {
        const float a0 = lgh_lds_f32(base0 + 1024 * s), a1 = lgh_lds_f32((base0 ^ 32u) + 1024 * s);
        const float b0 = lgh_lds_f32(base1 + 1024 * s), b1 = lgh_lds_f32((base1 ^ 32u) + 1024 * s);
        v[0] = odd ? b0 : a0;
        v[1] = odd ? b1 : a1;
        v[2] = odd ? a0 : b0;
        v[3] = odd ? a1 : b1;
    }
};

// The thread's A fragments of one K-block (4 k-steps of 8): for k-step s, registers
// 4s .. 4s+3 hold the 4 elements of src.step(s), as tf32 hi and lo bits.
template <typename ASrc>
__device__ __forceinline__ void lgh_sm90_x3_load_a(const ASrc &src, uint32_t (&hi)[16], uint32_t (&lo)[16])
{
#pragma unroll
    for (int s = 0; s < 4; ++s) {
        float v[4];
        src.step(s, v);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            hi[4 * s + e] = lgh_tf32_hi_bits(__float_as_uint(v[e]));
            lo[4 * s + e] = lgh_tf32_lo_bits(v[e]);
        }
    }
}

// bf16 corrections: the A operands of one K-block. hi: x rounded to nearest tf32, for the
// tf32 product, in lgh_sm90_x3_load_a's order. xl, xh: x - hi and hi in bf16, the A operand
// of the K = 64 bf16 product [x - hi | hi] . [bf16(W) | bf16(W_lo)] (two k16 steps each).
// The bf16 k order is a permutation of the K-block's columns: bf16 k position 2q + j of an
// 8-column group holds column 4j + q, so that the pairs come from the tf32 fragments the
// thread already has (its columns are q and q + 4 of each group); the splitters store W's
// columns in the same order.
template <typename ASrc>
__device__ __forceinline__ void lgh_sm90_x3_load_a_bf16(const ASrc &src, uint32_t (&hi)[16], uint32_t (&xl)[8],
                                                        uint32_t (&xh)[8])
{
#pragma unroll
    for (int s = 0; s < 4; ++s) {
        float v[4], h[4];
        src.step(s, v);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            hi[4 * s + e] = lgh_tf32_round(v[e]);
            h[e] = __uint_as_float(hi[4 * s + e]);
        }
        // k-step s of 8 columns is half s % 2 of bf16 k16 step s / 2: registers a0, a1 (rows
        // r, r + 8) of the first half, a2, a3 of the second.
        const int b = 4 * (s >> 1) + 2 * (s & 1);
        xl[b] = lgh_bf16x2(v[0] - h[0], v[2] - h[2]);
        xl[b + 1] = lgh_bf16x2(v[1] - h[1], v[3] - h[3]);
        xh[b] = lgh_bf16x2(h[0], h[2]);
        xh[b + 1] = lgh_bf16x2(h[1], h[3]);
    }
}

// Consumer warpgroup `wg` (0 or 1): acc = its 64 rows of the tile times W's 256 rows, in
// 3xtf32, main-loop version V (2, 3: the corrections in bf16; 1: three tf32 products), A
// from ASrc (lgh_sm90_a_kmajor or lgh_sm90_a_mnmajor). On return every wgmma has completed
// and every slot and W_lo buffer it read has been released.
template <int V = LGH_SM90_X3_VERSION, typename ASrc = lgh_sm90_a_kmajor>
__device__ __forceinline__ void lgh_sm90_x3_consume_tile(lgh_sm90_ring3 *r, lgh_sm90_cyc<LGH_SM90_X3_STAGES> &pos,
                                                         lgh_sm90_cyc<LGH_SM90_X3_LO_BUFS> &lpos, float (&acc)[LGH_SM90_ACC],
                                                         int wg, int k_blocks, uint32_t release)
{
    constexpr int STEP_BYTES = 8 * 4; // one k-step of 8 floats inside the 128-byte row
    constexpr int PN = LGH_SM90_X3_PART_N, PREGS = PN / 2;
    const ASrc a_src = ASrc::at(0u, wg); // (offsets within a slot)
    constexpr bool BF16 = V >= 2; // (version 3 differs from 2 in the splitters only)
#pragma unroll
    for (int i = 0; i < 128; ++i) acc[i] = 0.0f;
    float t[PREGS];
    for (int kb = 0; kb < k_blocks; ++kb) {
        lgh_mbar_wait(&r->full[pos.slot], pos.parity);
        uint32_t hi[16], lo[16], xl[8], xh[8]; // (lo for tf32 corrections, xl and xh for bf16)
        const ASrc a_slot = a_src.moved(lgh_smem_addr(r->a[pos.slot]));
        if constexpr (BF16) lgh_sm90_x3_load_a_bf16(a_slot, hi, xl, xh);
        else lgh_sm90_x3_load_a(a_slot, hi, lo);
        const uint32_t b_addr = lgh_smem_addr(r->b[pos.slot]);
        const uint32_t l_addr = lgh_smem_addr(r->lo[lpos.slot]);
        lgh_mbar_wait(&r->lo_full[lpos.slot], lpos.parity);
#pragma unroll
        for (int q = 0; q < 256 / PN; ++q) {
            const uint32_t bq = b_addr + q * PN * 128; // PN rows of W, 128 bytes each
            const uint32_t lq = l_addr + q * PN * 128;
            lgh_wgmma_fence();
            if constexpr (BF16) {
                // The corrections (x - hi) . W and hi . W_lo: one K = 64 bf16 product, 32-byte k16 steps.
#pragma unroll
                for (int s = 0; s < 2; ++s) {
                    lgh_wgmma_m64n128k16_bf16_rs(t, xl[4 * s], xl[4 * s + 1], xl[4 * s + 2], xl[4 * s + 3],
                                                 lgh_wgmma_desc_k128b(lq + 32 * s), s != 0);
                }
#pragma unroll
                for (int s = 0; s < 2; ++s) {
                    lgh_wgmma_m64n128k16_bf16_rs(t, xh[4 * s], xh[4 * s + 1], xh[4 * s + 2], xh[4 * s + 3],
                                                 lgh_wgmma_desc_k128b(lq + 64 + 32 * s), 1);
                }
            } else { // x_lo . W_hi and x_hi . W_lo in tf32
#pragma unroll
                for (int s = 0; s < 4; ++s) {
                    lgh_wgmma_m64n128k8_tf32_rs(t, lo[4 * s], lo[4 * s + 1], lo[4 * s + 2], lo[4 * s + 3],
                                                lgh_wgmma_desc_k128b(bq + s * STEP_BYTES), s != 0);
                }
#pragma unroll
                for (int s = 0; s < 4; ++s) {
                    lgh_wgmma_m64n128k8_tf32_rs(t, hi[4 * s], hi[4 * s + 1], hi[4 * s + 2], hi[4 * s + 3],
                                                lgh_wgmma_desc_k128b(lq + s * STEP_BYTES), 1);
                }
            }
            // x_hi . W_hi
#pragma unroll
            for (int s = 0; s < 4; ++s) {
                lgh_wgmma_m64n128k8_tf32_rs(t, hi[4 * s], hi[4 * s + 1], hi[4 * s + 2], hi[4 * s + 3],
                                            lgh_wgmma_desc_k128b(bq + s * STEP_BYTES), 1);
            }
            lgh_wgmma_commit();
            lgh_wgmma_wait<0>();
            lgh_wgmma_pin(t);
#pragma unroll
            for (int i = 0; i < PREGS; ++i) acc[PREGS * q + i] += t[i];
        }
        lgh_sm90_x3_release(r, pos.slot, lpos.slot, release);
        pos.advance();
        lpos.advance();
    }
    lgh_wgmma_pin(acc);
}
