// Warpgroup matrix multiply-accumulate (wgmma, sm_90a): shared-memory matrix descriptors,
// the ordering fences, and the m64n256 / 128 / 64 instructions the sm90 main loops issue
// (A from shared memory, or for the 3xtf32 loop tf32 A from registers).
//
// Used by src/cuda/mainloop/sm90_tma_wgmma.cuh and sm90_3xtf32.cuh. All four warps of a
// warpgroup (128 consecutive threads starting at a multiple of 128) execute every function
// here together.
// The accumulator fragment of a 64xN wgmma: thread t = 32*w + l of the warpgroup holds, for
// each n8 block j, d[4j + 2h + c] = D[16w + l/4 + 8h][8j + 2(l%4) + c] (h, c in {0, 1}) — the
// same layout as mma.sync's m16n8 accumulators, so one epilogue serves both.
#pragma once

#include <stdint.h>

#include "ptx/tf32.cuh" // lgh_tf32_round for the tf32 A operands in registers

// Descriptor of a K-major operand tile in shared memory written by TMA with 128-byte
// swizzle: rows of 128 bytes, 8-row swizzle atoms 1024 bytes apart (the stride byte
// offset); the leading byte offset is unused for this layout. The tile must start on a
// 1024-byte boundary; stepping along K inside the 128-byte row adds the byte offset to
// the start address (the hardware applies the swizzle to the final address).
__device__ __forceinline__ uint64_t lgh_wgmma_desc_k128b(uint32_t smem_addr)
{
    const uint64_t start = (smem_addr & 0x3FFFFu) >> 4;
    const uint64_t lbo = 1;            // ignored for swizzled K-major layouts
    const uint64_t sbo = 1024u >> 4;   // 8 rows x 128 bytes between core-matrix groups
    const uint64_t swizzle_128b = 1;   // layout type in bits 62-63
    return start | (lbo << 16) | (sbo << 32) | (swizzle_128b << 62);
}

// Before the first wgmma of a batch: orders earlier register / shared-memory accesses
// of the warpgroup before the asynchronous multiply reads them.
__device__ __forceinline__ void lgh_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

// Closes the wgmma operations issued so far into one group.
__device__ __forceinline__ void lgh_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

// Waits until at most N committed groups are still running.
template <int N>
__device__ __forceinline__ void lgh_wgmma_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Pins the accumulators at this point of the program: the compiler may not move reads or
// writes of d across it. Used right after lgh_wgmma_wait so that the epilogue reads the
// finished values, and before lgh_wgmma_fence.
template <int COUNT>
__device__ __forceinline__ void lgh_wgmma_pin(float (&d)[COUNT])
{
#pragma unroll
    for (int i = 0; i < COUNT; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// The accumulator operands every wrapper below passes: the asm list of registers %0 ..
// %N-1 (LGH_WGMMA_REGS<N>) and the matching read-write constraints on d[0 .. N)
// (LGH_WGMMA_ACC<N>), written once here instead of in each wrapper.
#define LGH_WGMMA_REGS32 \
    "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15," \
    "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
#define LGH_WGMMA_REGS64 LGH_WGMMA_REGS32 "," \
    "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47," \
    "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
#define LGH_WGMMA_REGS128 LGH_WGMMA_REGS64 "," \
    "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79," \
    "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95," \
    "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111," \
    "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127"
#define LGH_WGMMA_ACC8(d, i)                                                                       \
    "+f"(d[(i)]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]), "+f"(d[(i) + 5]), \
        "+f"(d[(i) + 6]), "+f"(d[(i) + 7])
#define LGH_WGMMA_ACC32(d) LGH_WGMMA_ACC8(d, 0), LGH_WGMMA_ACC8(d, 8), LGH_WGMMA_ACC8(d, 16), LGH_WGMMA_ACC8(d, 24)
#define LGH_WGMMA_ACC64(d) \
    LGH_WGMMA_ACC32(d), LGH_WGMMA_ACC8(d, 32), LGH_WGMMA_ACC8(d, 40), LGH_WGMMA_ACC8(d, 48), LGH_WGMMA_ACC8(d, 56)
#define LGH_WGMMA_ACC128(d) \
    LGH_WGMMA_ACC64(d), LGH_WGMMA_ACC8(d, 64), LGH_WGMMA_ACC8(d, 72), LGH_WGMMA_ACC8(d, 80), LGH_WGMMA_ACC8(d, 88), \
        LGH_WGMMA_ACC8(d, 96), LGH_WGMMA_ACC8(d, 104), LGH_WGMMA_ACC8(d, 112), LGH_WGMMA_ACC8(d, 120)

// D[64x256] (+)= A[64x8] * B[256x8]^T, tf32 operands (float32 bits, low 13 mantissa bits ignored),
// both K-major in shared memory (128B swizzle).
__device__ __forceinline__ void lgh_wgmma_m64n256k8_tf32(float (&d)[128], uint64_t desc_a, uint64_t desc_b,
                                           int accumulate)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k8.f32.tf32.tf32 "
        "{"
        LGH_WGMMA_REGS128
        "}, "
        "%128, %129, p, 1, 1;\n}\n"
        : LGH_WGMMA_ACC128(d)
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// D[64x256] (+)= A[64x16] * B[256x16]^T, bf16 operands, both K-major in shared memory.
__device__ __forceinline__ void lgh_wgmma_m64n256k16_bf16(float (&d)[128], uint64_t desc_a, uint64_t desc_b,
                                           int accumulate)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
        "{"
        LGH_WGMMA_REGS128
        "}, "
        "%128, %129, p, 1, 1, 0, 0;\n}\n"
        : LGH_WGMMA_ACC128(d)
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// D[64x256] (+)= A[64x16] * B[256x16]^T, fp16 operands, both K-major in shared memory.
__device__ __forceinline__ void lgh_wgmma_m64n256k16_f16(float (&d)[128], uint64_t desc_a, uint64_t desc_b,
                                           int accumulate)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 "
        "{"
        LGH_WGMMA_REGS128
        "}, "
        "%128, %129, p, 1, 1, 0, 0;\n}\n"
        : LGH_WGMMA_ACC128(d)
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// The 3xtf32 main loop's forms (src/cuda/mainloop/sm90_3xtf32.cuh). With A from registers
// ("_rs"), thread t = 32w + l of the warpgroup passes, for its rows r = 16w + l/4 and r + 8
// and q = l % 4: a0 = A[r][q], a1 = A[r+8][q], a2 = A[r][q+4], a3 = A[r+8][q+4] (tf32 bits in
// .b32 registers; tf32 A from registers must be K-major, as it is here).

// D[64x256] (+)= A[64x8] * B[256x8]^T, tf32; A from registers, B K-major in shared memory.
__device__ __forceinline__ void lgh_wgmma_m64n256k8_tf32_rs(float (&d)[128], uint32_t a0, uint32_t a1, uint32_t a2,
                                                            uint32_t a3, uint64_t desc_b, int accumulate)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k8.f32.tf32.tf32 "
        "{"
        LGH_WGMMA_REGS128
        "}, "
        "{%128, %129, %130, %131}, %132, p, 1, 1;\n}\n"
        : LGH_WGMMA_ACC128(d)
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc_b), "r"(accumulate));
}

// D[64x128] (+)= A[64x8] * B[128x8]^T, tf32; A from registers, B K-major in shared memory.
__device__ __forceinline__ void lgh_wgmma_m64n128k8_tf32_rs(float (&d)[64], uint32_t a0, uint32_t a1, uint32_t a2,
                                                            uint32_t a3, uint64_t desc_b, int accumulate)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 "
        "{"
        LGH_WGMMA_REGS64
        "}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1;\n}\n"
        : LGH_WGMMA_ACC64(d)
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc_b), "r"(accumulate));
}

// D[64x128] (+)= A[64x16] * B[128x16]^T, bf16; A from registers (a0 = A[r][2q, 2q+1],
// a1 = A[r+8][2q, 2q+1], a2 = A[r][2q+8, 2q+9], a3 = A[r+8][2q+8, 2q+9], lower k in the low
// half), B K-major in shared memory (128B swizzle).
__device__ __forceinline__ void lgh_wgmma_m64n128k16_bf16_rs(float (&d)[64], uint32_t a0, uint32_t a1, uint32_t a2,
                                                             uint32_t a3, uint64_t desc_b, int accumulate)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{"
        LGH_WGMMA_REGS64
        "}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
        : LGH_WGMMA_ACC64(d)
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc_b), "r"(accumulate));
}

// D[64x128] (+)= A[64x8] * B[128x8]^T, tf32, both K-major in shared memory (128B swizzle).
__device__ __forceinline__ void lgh_wgmma_m64n128k8_tf32(float (&d)[64], uint64_t desc_a, uint64_t desc_b,
                                                         int accumulate)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 "
        "{"
        LGH_WGMMA_REGS64
        "}, "
        "%64, %65, p, 1, 1;\n}\n"
        : LGH_WGMMA_ACC64(d)
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// D[64x64] (+)= A[64x8] * B[64x8]^T, tf32; A from registers, B K-major in shared memory.
__device__ __forceinline__ void lgh_wgmma_m64n64k8_tf32_rs(float (&d)[32], uint32_t a0, uint32_t a1, uint32_t a2,
                                                           uint32_t a3, uint64_t desc_b, int accumulate)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 "
        "{"
        LGH_WGMMA_REGS32
        "}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1;\n}\n"
        : LGH_WGMMA_ACC32(d)
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc_b), "r"(accumulate));
}

// D[64x64] (+)= A[64x8] * B[64x8]^T, tf32, both K-major in shared memory (128B swizzle).
__device__ __forceinline__ void lgh_wgmma_m64n64k8_tf32(float (&d)[32], uint64_t desc_a, uint64_t desc_b,
                                                        int accumulate)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 "
        "{"
        LGH_WGMMA_REGS32
        "}, "
        "%32, %33, p, 1, 1;\n}\n"
        : LGH_WGMMA_ACC32(d)
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}
