/*
 * The CPU engine's one pass over y after the product: bias, per-(row, group) mean and
 * biased variance, normalisation, γ/β and the clamp, threaded over (row, group) pairs.
 * Reads the float32 product (in y itself for float32 data, or a float32 temporary for
 * bfloat16 / float16) and writes y in its dtype.
 */
#ifndef LGH_CPU_FUSED_PASS_H
#define LGH_CPU_FUSED_PASS_H

#include <stdint.h>

#include "lgh.h"

typedef struct lgh_cpu_pass {
    int64_t m, n, groups;
    const float *src; /* [m][n] product x·Wᵀ without the bias, row stride lds */
    int64_t lds;
    void *dst;        /* y [m][n] in dtype, row stride ldd; may be src (float32) */
    int64_t ldd;
    lgh_dtype_t dtype;
    const float *bias, *gamma, *beta; /* [n], float32 */
    float eps, lo, hi;
    float *mean, *rstd; /* [m][groups] or NULL (both or neither) */
    void *h;            /* [m][n] pre-norm product + bias in dtype, row stride ldh, or NULL */
    int64_t ldh;
} lgh_cpu_pass_t;

/* Runs the pass on up to `threads` threads. */
void lgh_cpu_fused_pass(const lgh_cpu_pass_t *p, int threads);

#endif
