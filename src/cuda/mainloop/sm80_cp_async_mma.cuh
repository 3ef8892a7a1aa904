// The sm80 GEMM main loop: acc[BM x BN] = x[m0:m0+BM, :] · W[n0:n0+BN, :]ᵀ for one CTA
// tile, on mma.sync fed by a cp.async multi-stage shared-memory pipeline. Used by the
// fused sm80 kernel (src/cuda/sm80/kernel_sm80.cuh); runs on sm_80, sm_86, sm_89 and sm_90.
//
// Tile shapes come from lgh_sm80_cfg: WARPS_M x WARPS_N warps, each owning a 64 x 64 (or
// WM x WN) block of the tile as MI x NI m16n8 accumulator fragments — the layout the fused
// epilogue (src/cuda/epilogue/fused_groupnorm.cuh) takes, one 16-row slab acc[i] at a time.
//
// Shared memory: STAGES slots, each an A tile (BM rows) and a B tile (BN rows) of KB_BYTES
// bytes of K per row (both operands are K-major, as x [M, K] and W [N, K] already are).
// The unit of everything is bytes, not elements: one mma k-step eats 32 bytes of K per
// row for every element type (8 tf32 or 16 bf16/fp16), and one ldmatrix.x4 loads it.
// Rows are split into 16-byte chunks whose position is XOR-swizzled with the row index,
// so that the 8 rows one ldmatrix phase reads (and the rows one cp.async phase writes)
// fall into 8 different 16-byte bank groups: no bank conflicts, no padding.
//
// Pipeline (one CTA barrier per K-block): the prologue issues K-blocks 0 .. STAGES-2; at
// K-block kb every thread waits for its own copies of kb, the CTA meets (so all copies
// of kb have landed and every warp is done reading slot kb-1), each warp issues K-block
// kb + STAGES - 1 into slot kb-1 (3xtf32: after loading its first k-step's fragments; see
// lgh_sm80_copy_at) and multiplies slot kb, loading the next k-step's fragments while it
// multiplies one, and last advances its copy addresses. Copies beyond K, M or N are
// zero-filled (cp.async src-size), so tails need no other masking.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "ptx/cp_async.cuh"
#include "ptx/mma_sm80.cuh"
#include "ptx/tf32.cuh"

// One tile configuration. BM = WARPS_M * WM, BN = WARPS_N * WN. SM90_ONLY: a configuration
// whose ring only fits Hopper's shared memory (228 KB per SM) at the occupancy it is meant
// for; its kernels are compiled for sm_90 alone (empty elsewhere) and the engine runs them
// only on compute capability 9.x.
template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int KB_BYTES_, int STAGES_, int MIN_BLOCKS_,
          bool SM90_ONLY_ = false>
struct lgh_sm80_cfg {
    static constexpr bool SM90_ONLY = SM90_ONLY_;
    static constexpr int BM = BM_, BN = BN_;
    static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
    static constexpr int WARPS = WARPS_M * WARPS_N;
    static constexpr int THREADS = 32 * WARPS;
    static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
    static constexpr int MI = WM / 16; // m16 slabs per warp
    static constexpr int NI = WN / 8;  // n8 blocks per warp
    static constexpr int KB_BYTES = KB_BYTES_;
    static constexpr int CHUNKS = KB_BYTES / 16; // 16-byte chunks per row of a slot
    static constexpr int K_STEPS = KB_BYTES / 32;
    static constexpr int STAGES = STAGES_;
    static constexpr int MIN_BLOCKS = MIN_BLOCKS_; // __launch_bounds__ minimum
    static constexpr int A_BYTES = BM * KB_BYTES, B_BYTES = BN * KB_BYTES;
    static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
    static constexpr int RING_BYTES = STAGES * STAGE_BYTES;
    // Rows one pass of the CTA's threads copies, and passes per slot.
    static constexpr int ROWS_PER_PASS = THREADS / CHUNKS;
    static constexpr int A_PASSES = BM / ROWS_PER_PASS, B_PASSES = BN / ROWS_PER_PASS;

    static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tiles are whole m16 slabs and n8 pairs");
    static_assert(CHUNKS == 2 || CHUNKS == 4 || CHUNKS == 8, "a slot row is 32, 64 or 128 bytes");
    static_assert(THREADS % CHUNKS == 0 && BM % ROWS_PER_PASS == 0 && BN % ROWS_PER_PASS == 0,
                  "every thread copies whole passes of rows");
    static_assert(ROWS_PER_PASS % 8 == 0, "passes keep the swizzle phase (8 rows)");
    static_assert(STAGES >= 2, "the pipeline needs two slots at least");
};

// Chunk c of row r sits at chunk position c ^ swizzle(r). With CHUNKS chunks per row,
// 8 / CHUNKS rows share one 128-byte line; the XOR spreads 8 consecutive rows over the 8
// bank groups. The value repeats every 8 rows, so it is the same for rows 16 apart
// (slabs, n8 pairs) and for rows a copy pass apart.
template <int CHUNKS>
__device__ __forceinline__ uint32_t lgh_sm80_swizzle(uint32_t row)
{
    return (row / (8 / CHUNKS)) & (CHUNKS - 1);
}

// tf32 operands. mma.sync ignores the low 13 mantissa bits of a float (truncation, as
// wgmma on TMA-loaded floats does); rounding to the nearest tf32 (lgh_tf32_round: one
// instruction per register on sm_90, two on sm_80/89) removes that bias. Simulated on the
// reference problem (relative error of y): truncating both operands 4.0e-4, rounding both
// 2.1e-4, rounding one 2.8e-4 — PyTorch's own TF32 figure. 1 (default) rounds the operand
// with fewer fragment registers per k-step (x's when equal), 2 both, 0 neither. The
// rounding is on the k-step's ldmatrix -> mma chain, which matters only where mma.sync is
// fast enough for that chain to be a limit (Hopper).
#ifndef LGH_SM80_TF32_ROUND
#define LGH_SM80_TF32_ROUND 1
#endif

// Where in a K-block its warp issues the copies of the K-block STAGES - 1 ahead:
//   -2: first, right after the barrier (the default, except for 3xtf32);
//   -1: right after the first k-step's fragment loads, whose latency then overlaps the
//       copies' issue (the default for 3xtf32);
//   s >= 0: after the products of k-step s (spills at 64 x 64 warp tiles: not shipped).
// Measured on the H100 (docs/PERF.md, sm80 v6): -2 leaves the copies no ldmatrix address
// register to wait for and keeps the 16-bit kernels of cfg4 below 255 registers (at -1
// they spill); 3xtf32 runs 2.6-3.7 % faster at -1. Defining the macro forces one place for all.
#ifdef LGH_SM80_COPY_AT
template <bool SPLIT3> constexpr int lgh_sm80_copy_at = LGH_SM80_COPY_AT;
#else
template <bool SPLIT3> constexpr int lgh_sm80_copy_at = SPLIT3 ? -1 : -2;
#endif

// When the copy addresses advance (lgh_sm80_loader): at the end of the K-block (true), or
// right after the copies, where ptxas puts the adds behind them (false: the place before
// sm80 v6). 3xtf32 measured 1-2 % slower with the late advance (H100 and H200), so it
// keeps the early one.
template <bool SPLIT3> constexpr bool lgh_sm80_advance_late = !SPLIT3;

// 3xtf32: 1 (default) computes the two small cross products in bfloat16, 0 as two more
// tf32 products (see lgh_sm80_op<float, true>).
#ifndef LGH_SM80_3XTF32_BF16
#define LGH_SM80_3XTF32_BF16 1
#endif

// Per element type: the k-step multiply of one warp on raw fragments from ldmatrix.
template <typename T, bool SPLIT3 = false> struct lgh_sm80_op;

// SPLIT3 = false: tf32. SPLIT3 = true: 3xtf32 — each operand split exactly into a high
// part (its top 19 bits: a tf32) and the remainder; acc += a_lo·b_hi + a_hi·b_lo (small
// products first) + a_hi·b_hi.
//   LGH_SM80_3XTF32_BF16 = 1: the two small products as one bf16 m16n8k16 mma per m16n8k8
//   block — its 16 k slots pair (a_lo, b_hi) and (a_hi, b_lo) of the block's 8 k — then
//   a_hi·b_hi as a tf32 mma: two tf32 products' time instead of three (bf16 mma.sync runs
//   twice the tf32 rate). The cross terms, about 2^-11 of a product, keep bf16's 8 bits:
//   simulated relative error of y on the reference problem 9.4e-7 (3e-7 for exact cross
//   terms, 2.7e-4 for tf32).
//   LGH_SM80_3XTF32_BF16 = 0: three tf32 mma; mma.sync keeps the top 11 bits of the
//   remainder (what it drops is below 2^-20 of the operand).
// Accumulation: the tensor core rounds its float32 accumulation toward zero, a bias of
// about half an ulp of the running sum per mma (the sm90 engine measured 3.3e-5 relative
// error on the reference problem for products accumulated straight into the
// accumulators, against 2.5e-7 with the fix). So the main loop gives 3xtf32 a fresh
// register tile per K-block (the mma's truncation is then relative to one K-block's
// products) and adds it to the accumulators with round-to-nearest float32 adds; the tile
// doubles the accumulator registers, so 3xtf32 kernels use 32 x 64 warp tiles.
template <bool SPLIT3> struct lgh_sm80_op<float, SPLIT3> {
    template <int MI, int NI>
    __device__ static __forceinline__ void step(float (&acc)[MI][4 * NI], uint32_t (&a)[MI][4], uint32_t (&b)[NI][2])
    {
        if constexpr (!SPLIT3) {
            constexpr bool round_a = LGH_SM80_TF32_ROUND == 2 || (LGH_SM80_TF32_ROUND == 1 && 4 * MI <= 2 * NI);
            constexpr bool round_b = LGH_SM80_TF32_ROUND == 2 || (LGH_SM80_TF32_ROUND == 1 && 4 * MI > 2 * NI);
            if (round_a) {
#pragma unroll
                for (int i = 0; i < MI; ++i)
#pragma unroll
                    for (int q = 0; q < 4; ++q) a[i][q] = lgh_tf32_round(__uint_as_float(a[i][q]));
            }
            if (round_b) {
#pragma unroll
                for (int j = 0; j < NI; ++j) {
                    b[j][0] = lgh_tf32_round(__uint_as_float(b[j][0]));
                    b[j][1] = lgh_tf32_round(__uint_as_float(b[j][1]));
                }
            }
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NI; ++j) lgh_mma_m16n8k8_tf32(&acc[i][4 * j], a[i], b[j]);
        } else {
            // b split once per k-step: hi in place, plus its (hi, lo) bf16 pairs (the bf16
            // mma's k slots 2t, 2t+1 hold k = t for b[j][0]) or its tf32 lo; a slab by slab.
            uint32_t bx[NI][2];
#pragma unroll
            for (int j = 0; j < NI; ++j)
#pragma unroll
                for (int q = 0; q < 2; ++q) {
                    const uint32_t hi = lgh_tf32_hi_bits(b[j][q]);
                    const float lo = lgh_tf32_lo(__uint_as_float(b[j][q]));
                    bx[j][q] = LGH_SM80_3XTF32_BF16 ? lgh_bf16x2(__uint_as_float(hi), lo) : __float_as_uint(lo);
                    b[j][q] = hi;
                }
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                // a: (lo, hi) pairs, so that slot 2t meets b's hi and slot 2t+1 b's lo.
                uint32_t ahi[4], ax[4];
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    ahi[q] = lgh_tf32_hi_bits(a[i][q]);
                    const float lo = lgh_tf32_lo(__uint_as_float(a[i][q]));
                    ax[q] = LGH_SM80_3XTF32_BF16 ? lgh_bf16x2(lo, __uint_as_float(ahi[q])) : __float_as_uint(lo);
                }
#pragma unroll
                for (int j = 0; j < NI; ++j) {
                    if (LGH_SM80_3XTF32_BF16) {
                        lgh_mma_m16n8k16_bf16(&acc[i][4 * j], ax, bx[j]);
                    } else {
                        lgh_mma_m16n8k8_tf32(&acc[i][4 * j], ax, b[j]);
                        lgh_mma_m16n8k8_tf32(&acc[i][4 * j], ahi, bx[j]);
                    }
                    lgh_mma_m16n8k8_tf32(&acc[i][4 * j], ahi, b[j]);
                }
            }
        }
    }
};

template <> struct lgh_sm80_op<__nv_bfloat16, false> {
    template <int MI, int NI>
    __device__ static __forceinline__ void step(float (&acc)[MI][4 * NI], uint32_t (&a)[MI][4], uint32_t (&b)[NI][2])
    {
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
            for (int j = 0; j < NI; ++j) lgh_mma_m16n8k16_bf16(&acc[i][4 * j], a[i], b[j]);
    }
};

template <> struct lgh_sm80_op<__half, false> {
    template <int MI, int NI>
    __device__ static __forceinline__ void step(float (&acc)[MI][4 * NI], uint32_t (&a)[MI][4], uint32_t (&b)[NI][2])
    {
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
            for (int j = 0; j < NI; ++j) lgh_mma_m16n8k16_f16(&acc[i][4 * j], a[i], b[j]);
    }
};

// The operand tiles of one CTA tile in global memory, as bytes.
struct lgh_sm80_operands {
    const char *a;     // x row m0, column 0
    const char *b;     // W row n0, column 0
    int64_t lda, ldb;  // row strides in bytes (multiples of 16)
    int rows_a, rows_b; // rows inside the matrices: min(BM, M - m0), min(BN, N - n0)
    int k_bytes;       // K * element size
    int k_blocks;      // ceil(k_bytes / KB_BYTES)
};

// This thread's share of the copies of every slot: CHUNKS threads cover one row, a pass
// of the CTA covers ROWS_PER_PASS rows, and a thread copies the same chunk column of
// rows ROWS_PER_PASS apart. Its source addresses advance by one K-block per load, so a
// load costs a 64-bit add and a copy per chunk. Rows outside the matrix point at its last
// row and copy nothing; past K the addresses run up to KB_BYTES beyond a row but copy
// nothing either (src-size 0 reads no byte).
//
// The addresses advance in a step of their own (advance()), which the main loop takes at
// the end of a K-block, after its products, not right after the copies: a cp.async reads
// its address register late (when the load/store unit takes it), so an add that
// overwrites the register right after the copy waits for that read (long scoreboard).
// With 16 copies in a row those waits were ~13 % of the warps' stall samples on the H100
// (docs/PERF.md, sm80 v6); a K-block later the copies have long read their registers.
template <typename C>
struct lgh_sm80_loader {
    uint64_t a[C::A_PASSES], b[C::B_PASSES]; // global addresses of the next K-block's chunks
    uint32_t a_valid, b_valid; // bit i: pass i's row is inside the matrix
    uint32_t dst;              // offset of its first chunk inside a slot's A tile
    int k_left;                // bytes of K from its chunk at the next K-block

    __device__ __forceinline__ void init(const lgh_sm80_operands &op)
    {
        const int row = threadIdx.x / C::CHUNKS;
        const int chunk = threadIdx.x % C::CHUNKS;
        a_valid = b_valid = 0;
#pragma unroll
        for (int i = 0; i < C::A_PASSES; ++i) {
            const int r = row + i * C::ROWS_PER_PASS;
            if (r < op.rows_a) a_valid |= 1u << i;
            a[i] = reinterpret_cast<uint64_t>(op.a) + (int64_t)min(r, op.rows_a - 1) * op.lda + chunk * 16;
        }
#pragma unroll
        for (int i = 0; i < C::B_PASSES; ++i) {
            const int r = row + i * C::ROWS_PER_PASS;
            if (r < op.rows_b) b_valid |= 1u << i;
            b[i] = reinterpret_cast<uint64_t>(op.b) + (int64_t)min(r, op.rows_b - 1) * op.ldb + chunk * 16;
        }
        dst = row * C::KB_BYTES + ((chunk ^ lgh_sm80_swizzle<C::CHUNKS>(row)) << 4);
        k_left = op.k_bytes - chunk * 16;
    }

    // Issues the copies of the next K-block into the slot at shared address slot_addr.
    // TAIL: the last K-block, whose chunks may be partly or wholly past K; before it every
    // chunk is whole, and a copy is all or nothing (cheaper: no source-size arithmetic).
    template <bool TAIL>
    __device__ __forceinline__ void load(uint32_t slot_addr) const
    {
        const uint32_t bytes = !TAIL || k_left >= 16 ? 16u : (k_left > 0 ? (uint32_t)k_left : 0u);
#pragma unroll
        for (int i = 0; i < C::A_PASSES; ++i)
            lgh_cp_async_16(slot_addr + dst + i * C::ROWS_PER_PASS * C::KB_BYTES, reinterpret_cast<const void *>(a[i]),
                            (a_valid >> i) & 1u ? bytes : 0u);
#pragma unroll
        for (int i = 0; i < C::B_PASSES; ++i)
            lgh_cp_async_16(slot_addr + C::A_BYTES + dst + i * C::ROWS_PER_PASS * C::KB_BYTES,
                            reinterpret_cast<const void *>(b[i]), (b_valid >> i) & 1u ? bytes : 0u);
    }

    // Moves on to the next K-block (after a load; see above for where).
    __device__ __forceinline__ void advance()
    {
#pragma unroll
        for (int i = 0; i < C::A_PASSES; ++i) a[i] += C::KB_BYTES;
#pragma unroll
        for (int i = 0; i < C::B_PASSES; ++i) b[i] += C::KB_BYTES;
        k_left -= C::KB_BYTES;
    }
};

// Zeroes the accumulators.
template <typename C>
__device__ __forceinline__ void lgh_sm80_zero(float (&acc)[C::MI][4 * C::NI])
{
#pragma unroll
    for (int i = 0; i < C::MI; ++i)
#pragma unroll
        for (int q = 0; q < 4 * C::NI; ++q) acc[i][q] = 0.f;
}

// Multiplies one whole CTA tile: acc (zeroed by the caller) += A_tile · B_tileᵀ. ring:
// shared address of the slots. Every thread of the CTA calls it. On return all copies
// have landed and the CTA has met, so the caller may reuse the ring's memory.
template <typename T, typename C, bool SPLIT3 = false>
__device__ __forceinline__ void lgh_sm80_mainloop(uint32_t ring, const lgh_sm80_operands &op,
                                                  float (&acc)[C::MI][4 * C::NI])
{
    lgh_sm80_loader<C> ld;
    ld.init(op);

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int wm = warp / C::WARPS_N, wn = warp % C::WARPS_N;
    // ldmatrix row addresses. A: lanes 0-15 rows 0-15 of the slab at the k-step's first
    // chunk, lanes 16-31 the same rows at its second chunk (registers a0..a3). B: lanes
    // 0-7 n rows 0-7 first chunk, 8-15 rows 0-7 second chunk, 16-23 rows 8-15 first
    // chunk, 24-31 rows 8-15 second chunk (b0, b1 of block 2p, then of block 2p+1).
    const uint32_t a_row = wm * C::WM + (lane & 15);
    const uint32_t a_half = lane >> 4;
    const uint32_t b_row = wn * C::WN + (lane & 7) + ((lane >> 4) << 3);
    const uint32_t b_half = (lane >> 3) & 1;
    const uint32_t a_off = a_row * C::KB_BYTES;
    const uint32_t b_off = C::A_BYTES + b_row * C::KB_BYTES;
    const uint32_t a_sw = a_half ^ lgh_sm80_swizzle<C::CHUNKS>(a_row);
    const uint32_t b_sw = b_half ^ lgh_sm80_swizzle<C::CHUNKS>(b_row);

#pragma unroll
    for (int s = 0; s < C::STAGES - 1; ++s) {
        if (s < op.k_blocks - 1) ld.template load<false>(ring + s * C::STAGE_BYTES);
        else if (s == op.k_blocks - 1) ld.template load<true>(ring + s * C::STAGE_BYTES);
        lgh_cp_async_commit();
        ld.advance();
    }

    // One k-step's fragments of the slot at shared address `base`.
    auto fragments = [&](uint32_t (&a)[C::MI][4], uint32_t (&b)[C::NI][2], uint32_t base, int s) {
        const uint32_t a_addr = base + a_off + (((uint32_t)(2 * s) ^ a_sw) << 4);
        const uint32_t b_addr = base + b_off + (((uint32_t)(2 * s) ^ b_sw) << 4);
#pragma unroll
        for (int i = 0; i < C::MI; ++i) lgh_ldmatrix_x4(a[i], a_addr + i * 16 * C::KB_BYTES);
#pragma unroll
        for (int p = 0; p < C::NI / 2; ++p) {
            uint32_t r[4];
            lgh_ldmatrix_x4(r, b_addr + p * 16 * C::KB_BYTES);
            b[2 * p][0] = r[0];
            b[2 * p][1] = r[1];
            b[2 * p + 1][0] = r[2];
            b[2 * p + 1][1] = r[3];
        }
    };

    int slot = 0;             // slot of K-block kb
    int fill = C::STAGES - 1; // slot of K-block kb + STAGES - 1
    for (int kb = 0; kb < op.k_blocks; ++kb) {
        lgh_cp_async_wait<C::STAGES - 2>();
        __syncthreads();
        // The next copies go where lgh_sm80_copy_at says (see above).
        constexpr int copy_at = lgh_sm80_copy_at<SPLIT3>;
        const int next = kb + C::STAGES - 1;
        auto copies = [&]() {
            if (next < op.k_blocks - 1) ld.template load<false>(ring + fill * C::STAGE_BYTES);
            else if (next == op.k_blocks - 1) ld.template load<true>(ring + fill * C::STAGE_BYTES);
            lgh_cp_async_commit();
            if (!lgh_sm80_advance_late<SPLIT3>) ld.advance();
        };
        if (copy_at == -2) copies();
        const uint32_t base = ring + slot * C::STAGE_BYTES;
        uint32_t a[2][C::MI][4], b[2][C::NI][2]; // by k-step parity
        fragments(a[0], b[0], base, 0);
        if (copy_at == -1) copies();

        // SPLIT3: the K-block's products into a fresh tile, then round-to-nearest adds (see
        // lgh_sm80_op<float, true>).
        float part[SPLIT3 ? C::MI : 1][SPLIT3 ? 4 * C::NI : 1];
        if constexpr (SPLIT3) lgh_sm80_zero<C>(part);
#pragma unroll
        for (int s = 0; s < C::K_STEPS; ++s) {
            if (s + 1 < C::K_STEPS) fragments(a[(s + 1) & 1], b[(s + 1) & 1], base, s + 1);
            if constexpr (SPLIT3) lgh_sm80_op<T, true>::template step<C::MI, C::NI>(part, a[s & 1], b[s & 1]);
            else lgh_sm80_op<T, false>::template step<C::MI, C::NI>(acc, a[s & 1], b[s & 1]);
            if (s == (copy_at < C::K_STEPS ? copy_at : C::K_STEPS - 1)) copies();
        }
        if constexpr (SPLIT3) {
#pragma unroll
            for (int i = 0; i < C::MI; ++i)
#pragma unroll
                for (int q = 0; q < 4 * C::NI; ++q) acc[i][q] += part[i][q];
        }
        if (lgh_sm80_advance_late<SPLIT3>) ld.advance(); // its copies were issued long ago
        slot = slot + 1 == C::STAGES ? 0 : slot + 1;
        fill = fill + 1 == C::STAGES ? 0 : fill + 1;
    }
    lgh_cp_async_wait<0>();
    __syncthreads();
}
