// Shared-memory barriers (mbarrier; sm_90, init / arrive / wait also sm_80): the
// full/empty handshakes of the TMA ring and the cross-CTA statistics exchange of a cluster.
//
// An mbarrier is a 64-bit word in shared memory with an expected arrival count and, for
// TMA, an expected transaction byte count. A phase completes when both reach zero; waiters
// test the parity of the phase they wait for. A freshly initialised barrier is in phase 0,
// so waiting for parity 1 ("the phase before") returns at once: the producer uses that to
// see every slot of a new ring as empty.
#pragma once

#include <stdint.h>

#include "ptx/smem.cuh" // lgh_smem_addr

__device__ __forceinline__ void lgh_mbar_init(uint64_t *bar, uint32_t arrivals)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(lgh_smem_addr(bar)), "r"(arrivals)
                 : "memory");
}

// Makes the initialisations visible to the async proxy (TMA) and to the other CTAs of the
// cluster; follow it with a CTA or cluster barrier.
__device__ __forceinline__ void lgh_mbar_fence_init()
{
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival that also announces `bytes` of TMA traffic to come on this phase.
__device__ __forceinline__ void lgh_mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(lgh_smem_addr(bar)),
                 "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void lgh_mbar_arrive(uint64_t *bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(lgh_smem_addr(bar)) : "memory");
}

// Arrival on a barrier of a CTA of the cluster (its shared::cluster address, from
// lgh_cluster_map), with the default CTA-scope release: enough to hand a ring slot back
// (the reads were this CTA's own wgmma, already waited for), and cheap.
__device__ __forceinline__ void lgh_mbar_arrive_cluster(uint32_t cluster_addr)
{
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(cluster_addr) : "memory");
}

// Arrival on a barrier of another CTA of the cluster, releasing this thread's earlier
// writes (e.g. st.shared::cluster into that CTA) at cluster scope. A cluster-scope release
// is a fence: use it once per exchange, not per K-block (it made the main loop 2x slower).
__device__ __forceinline__ void lgh_mbar_arrive_remote_release(uint32_t cluster_addr)
{
    asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(cluster_addr)
                 : "memory");
}

// Spins until the phase with the given parity has completed (CTA-scope acquire). Below
// sm_90 (kernels that also build for Ampere and Ada, e.g. bench/micro/mma_sync_peak.cu)
// there is no try_wait, which lets the hardware suspend the thread for a while: test_wait
// only tests, so the loop spins.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define LGH_MBAR_WAIT_OP "mbarrier.test_wait"
#else
#define LGH_MBAR_WAIT_OP "mbarrier.try_wait"
#endif
__device__ __forceinline__ void lgh_mbar_wait(uint64_t *bar, uint32_t parity)
{
    const uint32_t addr = lgh_smem_addr(bar);
    asm volatile(
        "{\n.reg .pred done;\n"
        "LGH_MBAR_WAIT_%=:\n" LGH_MBAR_WAIT_OP
        ".parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra LGH_MBAR_WAIT_%=;\n}\n" ::"r"(addr),
        "r"(parity)
        : "memory");
}

// As lgh_mbar_wait, acquiring at cluster scope: the writes other CTAs released with
// lgh_mbar_arrive_remote_release are visible afterwards.
__device__ __forceinline__ void lgh_mbar_wait_cluster(uint64_t *bar, uint32_t parity)
{
    const uint32_t addr = lgh_smem_addr(bar);
    asm volatile(
        "{\n.reg .pred done;\n"
        "LGH_MBAR_WAITC_%=:\n"
        "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra LGH_MBAR_WAITC_%=;\n}\n" ::"r"(addr),
        "r"(parity)
        : "memory");
}
