// Asynchronous global -> shared copies (cp.async, sm_80 and up): the loads of the sm80
// main loop's multi-stage shared-memory pipeline (src/cuda/mainloop/sm80_cp_async_mma.cuh).
//
// Each thread issues 16-byte copies that bypass L1 (.cg), groups the copies of one pipeline
// stage with commit_group, and later waits until at most N of its groups are still in
// flight. A wait covers only the calling thread's copies: the CTA must still meet at a
// barrier before a warp reads what other threads copied.
#pragma once

#include <stdint.h>

#include "ptx/smem.cuh" // lgh_smem_addr: the destinations' form

// Copies src_bytes (0..16) bytes from global src to shared dst and fills the rest of the
// 16 bytes with zeros. dst and src are 16-byte aligned; with src_bytes == 0 nothing is
// read. The zero fill is what makes tails along K, M and N read no byte outside the
// matrices. The L2::256B hint lets L2 fetch the 256 bytes around src from memory at
// once: the next K-blocks of the same row (64 bytes each in the sm80 main loop) then come
// from L2 instead of waiting on memory, which a two-slot pipeline could not hide.
__device__ __forceinline__ void lgh_cp_async_16(uint32_t dst, const void *src, uint32_t src_bytes)
{
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
                 : "memory");
}

// Closes the thread's current group of copies (one pipeline stage). An empty group is
// legal and completes at once, which keeps the group count in step with the stages.
__device__ __forceinline__ void lgh_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most N of the thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void lgh_cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
