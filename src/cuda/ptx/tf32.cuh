// float32 -> tf32 / bf16 conversions for tensor-core operands: the tf32 rounding of a
// register operand and the exact hi + lo split of the 3xtf32 modes. One copy for both
// fused engines (src/cuda/mainloop/sm80_cp_async_mma.cuh, sm90_tma_wgmma.cuh,
// sm90_3xtf32.cuh).
//
// The tensor cores read a float32 operand as tf32 by ignoring its low 13 mantissa bits
// (truncation, a bias toward zero); the hi part of a split is that truncation, so a raw
// float32 tile in shared memory already is its own hi part.
#pragma once

#include <stdint.h>

// float -> tf32 bits, rounded to nearest, for an operand passed in registers. sm_90 has a
// one-instruction conversion (cvt.rn.tf32.f32, ties to even: F2FP.TF32); sm_80 and sm_89
// only cvt.rna (ties away: a compare and an add, and a mask where the bits are used as a
// float). The rounding sits on the main loops' ldmatrix -> round -> mma chain, so its
// instruction count is time on Hopper (docs/PERF.md, sm80 v6). The two modes differ only
// on exact ties. The result's low 13 bits are zero wherever they are read as a float; where
// they only feed a tensor core (which ignores them) ptxas may leave them unmasked.
__device__ __forceinline__ uint32_t lgh_tf32_round(float v)
{
    uint32_t r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm("cvt.rn.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
#else
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
#endif
    return r;
}

// The hi part of a split: the float's bits with the low 13 mantissa bits cleared.
__device__ __forceinline__ uint32_t lgh_tf32_hi_bits(uint32_t f) { return f & 0xffffe000u; }

// The lo part: v minus its hi part (exact in float32).
__device__ __forceinline__ float lgh_tf32_lo(float v) { return v - __uint_as_float(lgh_tf32_hi_bits(__float_as_uint(v))); }

// The lo part rounded to tf32 (so that the tensor core's truncation of it changes nothing).
__device__ __forceinline__ uint32_t lgh_tf32_lo_bits(float v) { return lgh_tf32_round(lgh_tf32_lo(v)); }

// Two floats as one bf16x2 register (round to nearest even), lo in the low half (the
// lower k index of an mma fragment).
__device__ __forceinline__ uint32_t lgh_bf16x2(float lo, float hi)
{
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
