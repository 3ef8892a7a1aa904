// Warp-level tensor-core instructions of sm_80 and up (mma.sync, ldmatrix): what the sm80
// main loop (src/cuda/mainloop/sm80_cp_async_mma.cuh) issues.
//
// Fragments (g = lane / 4, t = lane % 4), all registers 32-bit:
//   tf32 m16n8k8:   a[0] = A[g][t], a[1] = A[g+8][t], a[2] = A[g][t+4], a[3] = A[g+8][t+4];
//                   b[0] = B[k=t][n=g], b[1] = B[k=t+4][n=g]
//   16-bit m16n8k16: a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..],
//                   a[3] = A[g+8][2t+8..]; b[0] = B[k=2t..2t+1][n=g], b[1] = B[k=2t+8..][n=g]
//   accumulators:   d[2h + c] = D[g + 8h][2t + c]   (h, c in {0, 1})
// In both cases a fragment register holds 4 bytes of one row of a K-major operand, so one
// ldmatrix (8x8 16-bit matrices = 8 rows of 16 bytes) loads either type: a 16x32-byte
// slab of A, or 32 bytes of K for two n8 blocks of B.
#pragma once

#include <stdint.h>

// Four 8x8 16-bit matrices from shared memory: lanes 8i .. 8i+7 give the row addresses
// (16 bytes each) of matrix i; every thread receives register i = row (lane / 4), bytes
// 4 (lane % 4) .. +3 of matrix i. volatile: the reads must stay after the CTA barrier
// that publishes the copies.
__device__ __forceinline__ void lgh_ldmatrix_x4(uint32_t (&r)[4], uint32_t smem_addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr));
}

// d += a * b, tf32 inputs, float32 accumulators.
__device__ __forceinline__ void lgh_mma_m16n8k8_tf32(float *d, const uint32_t (&a)[4], const uint32_t (&b)[2])
{
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// d += a * b, bfloat16 inputs, float32 accumulators.
__device__ __forceinline__ void lgh_mma_m16n8k16_bf16(float *d, const uint32_t (&a)[4], const uint32_t (&b)[2])
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// d += a * b, float16 inputs, float32 accumulators.
__device__ __forceinline__ void lgh_mma_m16n8k16_f16(float *d, const uint32_t (&a)[4], const uint32_t (&b)[2])
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
