// Thread-block clusters and distributed shared memory (sm_90): the cluster size, the
// cluster-wide barrier, and stores into another CTA's shared memory.
//
// The sm90 kernel covers a group wider than one CTA tile with a cluster along N; its CTAs
// exchange partial statistics by writing into each other's shared memory and arriving on
// the receiver's mbarrier (ptx/mbarrier.cuh).
#pragma once

#include <stdint.h>

__device__ __forceinline__ uint32_t lgh_cluster_size()
{
    uint32_t n;
    asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(n));
    return n;
}

// Every thread of every CTA of the cluster arrives (releasing its earlier writes) and
// waits for all the others (acquiring theirs).
__device__ __forceinline__ void lgh_cluster_sync()
{
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// The shared::cluster address of the same shared-memory location in CTA `rank`.
__device__ __forceinline__ uint32_t lgh_cluster_map(uint32_t smem_addr, uint32_t rank)
{
    uint32_t r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(smem_addr), "r"(rank));
    return r;
}

__device__ __forceinline__ void lgh_cluster_store_f32x2(uint32_t cluster_addr, float a, float b)
{
    asm volatile("st.shared::cluster.v2.f32 [%0], {%1, %2};\n" ::"r"(cluster_addr), "f"(a), "f"(b)
                 : "memory");
}
