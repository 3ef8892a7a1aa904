/*
 * The norm part of the layer's backward on the GPU (formulas: include/lgh.h, "backward"):
 * kernels that turn dy, the saved pre-norm h and the forward's mean / rstd into dh (the
 * gradient of h) and the column sums dβ, dγ, db. The products dx = dh·W and dW = dhᵀ·x
 * are the caller's (cuBLASLt or a fused engine).
 *
 * One pass, when the forward's statistics are given, h, dy, dh, γ and β are 16-byte
 * aligned, the leading dimensions and the group size are multiples of 16 bytes' worth of
 * elements and a group has at most 2048 channels (the common case):
 *   1. one team of warps per (chunk of LGH_BWD_CHUNK_ROWS rows, group) reads h and dy
 *      once: per row, mean_group(dz·γ) and mean_group(dz·γ·x̂), then dh, and the chunk's
 *      partial column sums of dz, dz·x̂ and dh (float32) into the partials buffer;
 * otherwise three passes:
 *   1. row sums: one warp per (row, group): the two means above, and first, when the
 *      forward's statistics are not given, the group's mean and rstd (two passes over
 *      h, as the forward's norm pass);
 *   2. elementwise: one thread per column over a chunk of rows: dh (stored in the
 *      data's dtype, float32 for float32 data) and the chunk's partial column sums;
 * and in both cases
 *   3. column sums: one thread per output and column adds the chunks' partials in chunk
 *      order, compensated (Kahan).
 * Every sum runs in a fixed order (no atomics), so dβ, dγ and db are bitwise the same on
 * every run. z, the clamp mask and x̂ use the forward's formula (common/norm_output.h).
 *
 * No allocation, no host synchronisation: graph-capturable.
 */
#ifndef LGH_CUDA_NORM_BACKWARD_H
#define LGH_CUDA_NORM_BACKWARD_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "lgh.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows whose column sums one thread accumulates before writing a partial. */
#define LGH_BWD_CHUNK_ROWS 16

typedef struct lgh_norm_bwd_args {
    int64_t m, n, groups;
    lgh_dtype_t dtype;        /* of h, dy, γ, β, dh and the outputs */
    const void *h;            /* [m, n] pre-norm, leading dim ldh */
    int64_t ldh;
    const void *dy;           /* [m, n], leading dim lddy */
    int64_t lddy;
    const float *mean, *rstd; /* [m, groups], the forward's, or NULL: computed from h */
    const void *gamma, *beta; /* [n] */
    float eps, lo, hi;
    float *row_sums;          /* workspace: 2 * m * groups floats */
    float *stats;             /* workspace: 2 * m * groups floats (mean, rstd of h) when mean is NULL */
    float *partials;          /* workspace: 3 * chunks * n floats (lgh_norm_bwd_chunks) */
    void *dh;                 /* [m, n] packed, or NULL when neither product nor db is wanted */
    void *dbias, *dgamma, *dbeta; /* [n] each, or NULL */
} lgh_norm_bwd_args_t;

/* Number of row chunks for m rows. */
int64_t lgh_norm_bwd_chunks(int64_t m);

/* Launches the three kernels on stream (a cudaStream_t) on the current device. */
cudaError_t lgh_norm_bwd_launch(const lgh_norm_bwd_args_t *a, void *stream);

#ifdef __cplusplus
}
#endif

#endif
