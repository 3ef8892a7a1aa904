// Named CTA barriers (bar.sync with an id and a thread count): synchronise a subset of
// the CTA's warps — in the sm90 kernel, the two consumer warpgroups without the producer —
// and the proxy fence that hands ordinary shared-memory writes to wgmma or TMA.
#pragma once

// All `threads` threads (a multiple of 32) that use barrier `id` (1..15; 0 is
// __syncthreads) wait for each other; shared-memory writes before it are visible after.
__device__ __forceinline__ void lgh_named_barrier_sync(int id, int threads)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Orders this thread's earlier ordinary shared-memory writes before later accesses by the
// async proxy (wgmma operand reads, TMA): each writing thread issues it before the barrier
// arrival that hands the data to the reader.
__device__ __forceinline__ void lgh_fence_proxy_async_smem()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
