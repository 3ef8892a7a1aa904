// The sm90 kernel as a plain float32-accurate GEMM (3xtf32, no norm), for the engine's
// backward (backward_sm90.cu); implemented in engine_sm90.cu. C++ only.
#pragma once

#include <stdint.h>

#include "core/engine.h"

// d[m, n] = op(a)·op(b) (+ bias[n]), row-major float32:
//   a: [m, k] (lda), or with a_t stored [k, m], read across (the kernel's TT form);
//   b: [n, k] (ldb), or with b_kn stored [k, n] (the NN form: dᵀ = bᵀ·aᵀ, stored transposed);
//   neither: the layer's own form (NT); a_t and b_kn together: NOT_SUPPORTED.
// Operands as the forward's x and W (TMA: 16-byte aligned, row strides multiples of 16
// bytes); d 8-byte aligned with an even ldd. bias (NT only; NULL: none) is added with the
// layer epilogue's float32 adds, so x·Wᵀ + b comes out bitwise as the layer's kernel has it.
// for_dw: on the backward's dW main loop (LGH_SM90_DW_LOOP, default version 1), else the
// forward's (version 2).
struct lgh_sm90_product {
    int64_t m, n, k;
    const float *a;
    int64_t lda;
    bool a_t;
    const float *b;
    int64_t ldb;
    bool b_kn;
    const float *bias;
    float *d;
    int64_t ldd;
    bool for_dw;
};

lgh_status_t lgh_sm90_plain_product(struct lgh_context *ctx, const lgh_sm90_product &q, void *stream);

// Whether the backward's products may run in the NN / TT forms (no transposed copy of W or
// x): unless LGH_SM90_BWD_TRANSPOSE=1 asks the transposing way, for measuring.
bool lgh_sm90_bwd_direct(struct lgh_context *ctx);
