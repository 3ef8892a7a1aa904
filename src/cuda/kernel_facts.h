/* What the binary and the current device say of one compiled kernel, for lgh_kernel_info:
 * shared by the GPU engines, which add the name and the engine. */
#ifndef LGH_CUDA_KERNEL_FACTS_H
#define LGH_CUDA_KERNEL_FACTS_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#include "lgh.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills registers, shared_bytes (static + dynamic_smem), local_bytes (spills and stack),
 * threads_per_block and blocks_per_sm (theoretical occupancy on the current device, as
 * launched with `threads` and `dynamic_smem`) of kernel fn; leaves the other fields. The
 * kernel's dynamic shared-memory limit must already allow dynamic_smem. On a CUDA error
 * the error is cleared and returned, and the fields not read stay as they were. */
cudaError_t lgh_kernel_facts(const void *fn, int threads, size_t dynamic_smem, lgh_kernel_info_t *out);

#ifdef __cplusplus
}
#endif

#endif
