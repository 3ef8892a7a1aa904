// The compiled sm90 kernels, one table per element type (and one for float data in 3xtf32
// math), indexed by log2 of the group's channels inside a CTA tile (1, 2, 4, ..., 256).
// Defined in kernels_<type>.cu; each file compiles on its own so a parallel build spreads
// the (long) ptxas work.
#pragma once

#define LGH_SM90_GS_COUNT 9 // 1 .. 256

extern const void *const lgh_sm90_kernels_f32[LGH_SM90_GS_COUNT]; // tf32, x rounded to nearest
extern const void *const lgh_sm90_kernels_bf16[LGH_SM90_GS_COUNT];
extern const void *const lgh_sm90_kernels_f16[LGH_SM90_GS_COUNT];
extern const void *const lgh_sm90_kernels_f32x3[LGH_SM90_GS_COUNT];

// 3xtf32 with groups of the tile width, by main-loop version (1 .. 3; sm90_3xtf32.cuh):
// run only as plain products, the backward's dW (backward_sm90.cu).
extern const void *const lgh_sm90_kernels_f32x3_version[4];

// The NN and TT plain products (kernel_sm90.cuh, OP), by main-loop version (1 .. 3): the
// backward's dx = dh·W without transposing W (NN), dW = dhᵀ·x from one transposed copy, xᵀ
// (TT: dh read across, dW stored as is).
extern const void *const lgh_sm90_kernels_f32x3_nn[4];
extern const void *const lgh_sm90_kernels_f32x3_tt[4];

// Straddle mode (kernel_sm90.cuh, GS = 0), indexed by family: tf32 (x rounded to nearest),
// bf16, f16.
extern const void *const lgh_sm90_kernels_straddle[3];
