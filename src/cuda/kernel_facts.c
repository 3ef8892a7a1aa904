/* Kernel facts for lgh_kernel_info (see kernel_facts.h). */
#include "kernel_facts.h"

cudaError_t lgh_kernel_facts(const void *fn, int threads, size_t dynamic_smem, lgh_kernel_info_t *out)
{
    out->threads_per_block = threads;
    struct cudaFuncAttributes fa;
    cudaError_t e = cudaFuncGetAttributes(&fa, fn);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return e;
    }
    out->registers = fa.numRegs;
    out->shared_bytes = (int)(fa.sharedSizeBytes + dynamic_smem);
    out->local_bytes = (int)fa.localSizeBytes;
    int blocks = 0;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fn, threads, dynamic_smem);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return e;
    }
    out->blocks_per_sm = blocks;
    return cudaSuccess;
}
