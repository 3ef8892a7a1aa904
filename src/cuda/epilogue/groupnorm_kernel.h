/*
 * The group-norm finishing pass: one CUDA kernel launch that, for every (row, group) of
 * y, reduces the group's statistics, normalises, applies γ/β and clamps, in place (or
 * from a separate pre-norm input, src).
 *
 *     y[r, c] = clamp( (y[r, c] + bias[c] - mean[r, g]) * rstd[r, g] * γ[c] + β[c] ; lo, hi )
 *
 * With a float32 source of several slices (split K's partial products of x·Wᵀ), the
 * pre-norm value is  Σ_s src[s][r, c] + bias[c], summed in slice order (deterministic).
 *
 * C-callable: the cuBLASLt engine runs it after the vendor GEMM, and any engine that
 * leaves pre-norm values in y (a group wider than a cluster) can finish with it.
 * Groups that fit (up to 16K float32 or 32K 16-bit elements on the vector path, 4K on
 * the scalar path) are read once and written once from registers; wider groups are
 * read twice (statistics, then normalisation). Statistics are float32 (count, mean, M2)
 * pairs combined with Chan's formula (chan.cuh).
 *
 * No allocation and no host synchronisation: graph-capturable.
 */
#ifndef LGH_CUDA_GROUPNORM_KERNEL_H
#define LGH_CUDA_GROUPNORM_KERNEL_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "lgh.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lgh_groupnorm_args {
    void *y;             /* [m, n] row-major, dtype: the output */
    int64_t ldy;         /* >= n, elements */
    const void *src;     /* [m, n] dtype, the pre-norm input at leading dim lds; NULL: y
                            itself (the pass runs in place) */
    int64_t lds;
    int src_f32;         /* src holds float32 values: a pre-norm kept in float32 (beyond
                            float16's range), or split K's partial products */
    int splits;          /* with src_f32: src holds this many float32 slices, split_stride
                            elements apart, summed in order (split K); 0 or 1: one */
    int64_t split_stride;
    int64_t m, n, groups;
    lgh_dtype_t dtype;   /* of y, bias, gamma, beta */
    const void *bias;    /* [n] added before the statistics (with src_f32 only); NULL when
                            the source already has it */
    const void *gamma;   /* [n] */
    const void *beta;    /* [n] */
    float eps, lo, hi;
    float *mean;         /* optional [m, groups] float32 outputs; both or neither */
    float *rstd;
} lgh_groupnorm_args_t;

/* The pass over y of a problem whose y already holds x·Wᵀ + b (bias NULL): what the
 * cublaslt engine and the sm80 engine's pre-norm tiles finish with. */
lgh_groupnorm_args_t lgh_groupnorm_args_in_place(const lgh_args_t *a);

/* Launches the pass on `stream` (a cudaStream_t; NULL = legacy default stream) on the
 * current device. Arguments are assumed valid (the core checked them). Returns the
 * launch's cudaError_t (cudaSuccess, or the error cudaGetLastError reports). */
cudaError_t lgh_groupnorm_launch(const lgh_groupnorm_args_t *a, void *stream);

/* Which kernel variant lgh_groupnorm_launch picks for *a: its index for
 * lgh_groupnorm_kernel_info, and the threads per block it launches with. */
int lgh_groupnorm_variant(const lgh_groupnorm_args_t *a, int *threads_per_block);

/* Number of compiled kernel variants (every source (same dtype, float32) x dtype x
 * vector/scalar x tier). */
int lgh_groupnorm_kernel_count(void);

/* Facts of variant `index` on the current device: name, registers, static shared
 * memory, local (spill) bytes, threads per block as launched (the largest block for
 * tiers whose block size follows the group size) and resident blocks per SM at that
 * block size. out->engine is left as is. */
cudaError_t lgh_groupnorm_kernel_info(int index, lgh_kernel_info_t *out);

#ifdef __cplusplus
}
#endif

#endif /* LGH_CUDA_GROUPNORM_KERNEL_H */
