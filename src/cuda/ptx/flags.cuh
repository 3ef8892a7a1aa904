// Counters in global memory that CTAs of one launch signal each other with (sm_70 and up):
// a release store and an acquire load at GPU scope. The sm90 kernel's software clusters
// exchange partial statistics through global memory this way
// (lgh_sm90_exchange_stats_global): a CTA writes its partials, publishes its counter with
// the release store, and reads a peer's partials only after the acquire load saw that
// peer's counter reach the tile, so the partials written before the release are visible.
#pragma once

#include <stdint.h>

// *flag = v, ordering before it the writes this thread made, or saw through an earlier
// barrier, for any thread of the GPU whose acquire load reads v.
__device__ __forceinline__ void lgh_st_release_gpu_u32(unsigned *flag, unsigned v)
{
    asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(flag), "r"(v) : "memory");
}

// *flag, ordering this thread's later reads after it: what the writer released with the
// store of the value read is visible afterwards. volatile and "memory": a spin on it is
// re-read every time and no read moves above it.
__device__ __forceinline__ unsigned lgh_ld_acquire_gpu_u32(const unsigned *flag)
{
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(flag) : "memory");
    return v;
}

// Spins until *flag has reached want (counted modulo 2^32: want - *flag, as a signed
// difference, is no longer positive), with acquire loads: what the writer released with
// that value or a later one is visible afterwards.
__device__ __forceinline__ void lgh_wait_gpu_u32(const unsigned *flag, unsigned want)
{
    while ((int)(lgh_ld_acquire_gpu_u32(flag) - want) < 0) {
    }
}
