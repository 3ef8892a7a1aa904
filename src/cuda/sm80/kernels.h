// The sm80 engine's tile configurations and its compiled kernels.
//
// A configuration is a block tile, its warp layout, the bytes of K per row of a pipeline
// slot (64: BLOCK_K 16 for float32, 32 for 16-bit data) and the slot count, sized for
// sm_89 (RTX 4090: 100 KB of shared memory per SM): each portable one's shared memory
// (ring plus 1 KB of row statistics) lets two CTAs share an SM. Every warp owns a
// 64-column slice of the tile (WN = 64), so all configurations take the same group widths. cfg0 is the
// large tile for big problems (least L2 traffic per product), cfg1 the same warp tiles in
// CTAs half as wide (more CTAs, three slots, two CTAs per SM), cfg2 a small tile for
// problems with few tiles (small M or N), cfg3 the large tile with BLOCK_K 32 for Hopper,
// cfg4 cfg1's tile with BLOCK_K 32 for Hopper (the fastest there). The engine's speed
// factors are H100 timings (docs/PERF.md, sm80 section).
//
// Kernel tables, one per element type and math (kernels_<type>.cu, each compiled on its
// own so that a parallel build spreads the ptxas work), indexed [configuration][g]:
// g = 0 is the pre-norm kernel (bias only; the group-norm pass finishes), g = 1 + log2(GS)
// the fused kernel whose groups take GS channels of a warp's fragment (GS = 1 .. 64; 64
// also serves groups of several warp pieces and groups wider than the tile).
#pragma once

#include "mainloop/sm80_cp_async_mma.cuh"

//                              BM   BN  warps  K bytes  stages  min blocks
using lgh_sm80_cfg0 = lgh_sm80_cfg<128, 256, 2, 4, 64, 2, 1>; // 8 warps, 48 KB ring
using lgh_sm80_cfg1 = lgh_sm80_cfg<128, 128, 2, 2, 64, 3, 2>; // 4 warps, 48 KB ring
using lgh_sm80_cfg2 = lgh_sm80_cfg<64, 128, 2, 2, 64, 4, 3>;  // 4 warps of 32 x 64, 48 KB ring
// Hopper only (SM90_ONLY): BLOCK_K doubled (four k-steps per CTA barrier instead of two)
// and three slots, a 144 KB ring that sm_89's 100 KB per SM cannot hold.
using lgh_sm80_cfg3 = lgh_sm80_cfg<128, 256, 2, 4, 128, 3, 1, true>; // 8 warps, 144 KB ring
// cfg1's two CTAs per SM with cfg3's BLOCK_K 32 (Hopper: 2 x 97 KB of 228 KB).
using lgh_sm80_cfg4 = lgh_sm80_cfg<128, 128, 2, 2, 128, 3, 2, true>; // 4 warps, 96 KB ring

// 3xtf32 adds each K-block's products from a fresh register tile (the tensor core's
// accumulation rounds toward zero; see the main loop), which doubles the accumulator
// registers: its configurations use 32 x 64 warp tiles, in the same roles.
using lgh_sm80_x3cfg0 = lgh_sm80_cfg<64, 256, 2, 4, 64, 2, 1>;        // 8 warps, 40 KB ring
using lgh_sm80_x3cfg1 = lgh_sm80_cfg<128, 128, 4, 2, 64, 3, 1>;       // 8 warps, 48 KB ring
using lgh_sm80_x3cfg2 = lgh_sm80_cfg<64, 128, 2, 2, 64, 4, 2>;        // 4 warps, 48 KB ring
using lgh_sm80_x3cfg3 = lgh_sm80_cfg<128, 128, 4, 2, 128, 3, 1, true>; // 8 warps, BLOCK_K x2, 96 KB
using lgh_sm80_x3cfg4 = lgh_sm80_cfg<64, 128, 2, 2, 128, 3, 2, true>;  // 4 warps, BLOCK_K x2, 72 KB

#define LGH_SM80_CONFIGS 5
#define LGH_SM80_GS_COUNT 8 // pre-norm, then GS = 1, 2, 4, ..., 64

extern const void *const lgh_sm80_kernels_f32[LGH_SM80_CONFIGS][LGH_SM80_GS_COUNT];
extern const void *const lgh_sm80_kernels_f32x3[LGH_SM80_CONFIGS][LGH_SM80_GS_COUNT];
extern const void *const lgh_sm80_kernels_bf16[LGH_SM80_CONFIGS][LGH_SM80_GS_COUNT];
extern const void *const lgh_sm80_kernels_f16[LGH_SM80_CONFIGS][LGH_SM80_GS_COUNT];
