// Named CTA barriers (bar.sync with an id and a thread count): synchronise a subset of
// the CTA's warps — in the sm90 kernel, the two consumer warpgroups without the producer.
#pragma once

// All `threads` threads (a multiple of 32) that use barrier `id` (1..15; 0 is
// __syncthreads) wait for each other; shared-memory writes before it are visible after.
__device__ __forceinline__ void lgh_named_barrier_sync(int id, int threads)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
