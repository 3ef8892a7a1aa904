// Shared-memory addresses, loads and stores. PTX names a shared-memory location by its
// 32-bit address in the shared window (the form mbarrier, TMA, cp.async, ldmatrix and
// wgmma descriptors take and the swizzle arithmetic works in); lgh_smem_addr turns a
// generic pointer into it. The loads and stores are volatile, with the stores' "memory"
// clobber: the loads must stay after the mbarrier waits that publish the data, the stores
// before the fence and arrive that publish them.
#pragma once

#include <stdint.h>

// The shared-window address of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t lgh_smem_addr(const void *p)
{
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

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
