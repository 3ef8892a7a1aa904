// Shared-memory loads and stores by 32-bit shared address (the form lgh_smem_addr gives and
// the swizzle arithmetic works in). volatile, with the stores' "memory" clobber: the loads
// must stay after the mbarrier waits that publish the data, the stores before the fence
// and arrive that publish them.
#pragma once

#include <stdint.h>

__device__ __forceinline__ float lgh_lds_f32(uint32_t addr)
{
    float v;
    asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(addr));
    return v;
}

// 16 bytes (addr 16-byte aligned) into v[0..3].
__device__ __forceinline__ void lgh_lds_f32x4(uint32_t addr, float *v)
{
    asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];\n" : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3]) : "r"(addr));
}

// 16 bytes (addr 16-byte aligned).
__device__ __forceinline__ void lgh_sts_b32x4(uint32_t addr, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}
