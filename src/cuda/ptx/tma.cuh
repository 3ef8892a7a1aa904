// Tensor memory accelerator (TMA, sm_90): 2-D tile loads from global into shared memory,
// completing on an mbarrier, described by a CUtensorMap made on the host
// (src/cuda/sm90/tensor_map.c) and passed to the kernel as a __grid_constant__ parameter.
//
// Elements of a box outside the tensor's bounds are written as zeros and still count
// toward the barrier's transaction bytes, so a tile at the M, N or K edge needs no
// special case in the main loop.
#pragma once

#include <stdint.h>

#include "ptx/mbarrier.cuh"

// Starts fetching the tensor map descriptor into the constant cache (once per CTA).
__device__ __forceinline__ void lgh_tma_prefetch_map(const void *map)
{
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// Loads the box whose first element is (c0 along the contiguous dimension, c1 along rows)
// into dst (1024-byte aligned for 128B swizzle); completion is signalled on bar.
__device__ __forceinline__ void lgh_tma_load_2d(void *dst, const void *map, uint64_t *bar, int c0, int c1)
{
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(lgh_smem_addr(dst)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(lgh_smem_addr(bar)), "r"(c0), "r"(c1)
        : "memory");
}

// As lgh_tma_load_2d, but the box is written to the same shared-memory offset in every
// CTA of the cluster whose bit is set in cta_mask, and completes on the barrier at bar's
// offset in each of them.
__device__ __forceinline__ void lgh_tma_load_2d_multicast(void *dst, const void *map, uint64_t *bar, int c0,
                                                          int c1, uint16_t cta_mask)
{
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%3, %4}], [%2], %5;\n" ::"r"(lgh_smem_addr(dst)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(lgh_smem_addr(bar)), "r"(c0), "r"(c1), "h"(cta_mask)
        : "memory");
}
