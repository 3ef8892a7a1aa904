// The sm90 engine's backward. For float32 data in 3xtf32 it computes both products
// float32-accurate on the tensor cores, with the fused kernel's 3xtf32 main loop
// (lgh_sm90_plain_product) — cuBLAS has no such mode on Hopper; the norm backward is the
// cublaslt engine's (epilogue/norm_backward.cu). Every other mode runs the cublaslt
// engine's backward unchanged.
//
// tf32 wgmma reads both operands K-major from shared memory, and neither product has its
// reduction dimension contiguous in both operands:
//   dx[m, k] = dh[m, n]·W[n, k]    reduces over n: dh is n-contiguous, W is not  -> Wᵀ [k, n]
//   dW[n, k] = dh[m, n]ᵀ·x[m, k]   reduces over m: neither is                     -> dhᵀ, xᵀ
// so the operands are transposed into the workspace first (one read and one write each;
// Wᵀ costs as much memory as W).
//
// version 1: the operands transposed (util/transpose.cu), then the layer's kernel in plain mode.
// version 2: dW's main loop selectable (LGH_SM90_DW_LOOP=1|2|3, sm90_3xtf32.cuh's versions;
// default: the forward's, 2). dW reduces over only M rows, where float32's own error is
// small (PyTorch fp32 5.9e-7 at the reference problem), below the bf16 corrections' floor
// (version 2: 9.4e-7; version 3, W rounded to nearest: 6.1e-7, measured). Version 1's tf32
// corrections (3.0e-7 in the forward) are the candidate default for dW, at ~35% more time
// on that product; not yet measured there (docs/PERF.md, "Training", dW's accuracy). dx
// (reduction over N) keeps the fast loop: there float32's error is larger than either.
#include <stdint.h>
#include <stdio.h>

#include <cuda_runtime_api.h>

#include "core/engine.h"
#include "cublaslt/backward_cublaslt.h"
#include "sm90/kernel_sm90.cuh"
#include "util/transpose.h"

lgh_status_t lgh_sm90_plain_product(struct lgh_context *ctx, const float *a, int64_t m, int64_t k, int64_t lda,
                                    const float *b, int64_t n, int64_t ldb, float *d, int64_t ldd,
                                    bool for_dw, void *stream);

namespace {

constexpr size_t kAlign = 256;

size_t aligned(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

bool accurate(const lgh_bwd_problem_t *p)
{
    return p->f.a.dtype == LGH_DTYPE_FLOAT32 && p->f.a.math == LGH_MATH_3XTF32;
}

size_t scratch_bytes(struct lgh_context *, const lgh_bwd_problem_t *p)
{
    const lgh_args_t *a = &p->f.a;
    size_t s = 0;
    if (p->dx) s += aligned((size_t)a->k * (size_t)a->n * 4);                   // Wᵀ
    if (p->dw) s += aligned((size_t)a->n * (size_t)a->m * 4) + aligned((size_t)a->k * (size_t)a->m * 4); // dhᵀ, xᵀ
    return s;
}

lgh_status_t products(struct lgh_context *ctx, const lgh_bwd_problem_t *p, const void *dh_, void *scratch,
                      void *stream)
{
    const lgh_args_t *a = &p->f.a;
    const float *dh = static_cast<const float *>(dh_);
    char *at = static_cast<char *>(scratch);
    cudaError_t e;
    if (p->dx) { // dx[m, k] = dh[m, n]·(Wᵀ[k, n])ᵀ
        float *wt = reinterpret_cast<float *>(at);
        at += aligned((size_t)a->k * (size_t)a->n * 4);
        if ((e = lgh_transpose_f32(static_cast<const float *>(a->w), a->n, a->k, a->ldw, wt, stream)) != cudaSuccess)
            return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "sm90 backward: transposing W: %s", cudaGetErrorString(e));
        lgh_status_t st = lgh_sm90_plain_product(ctx, dh, a->m, a->n, a->n, wt, a->k, a->n,
                                                 static_cast<float *>(p->dx), p->lddx, false, stream);
        if (st != LGH_STATUS_SUCCESS) return st;
    }
    if (p->dw) { // dW[n, k] = dhᵀ[n, m]·(xᵀ[k, m])ᵀ
        float *dht = reinterpret_cast<float *>(at);
        at += aligned((size_t)a->n * (size_t)a->m * 4);
        float *xt = reinterpret_cast<float *>(at);
        if ((e = lgh_transpose_f32(dh, a->m, a->n, a->n, dht, stream)) != cudaSuccess ||
            (e = lgh_transpose_f32(static_cast<const float *>(a->x), a->m, a->k, a->ldx, xt, stream)) != cudaSuccess)
            return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "sm90 backward: transposing dh or x: %s",
                                 cudaGetErrorString(e));
        lgh_status_t st = lgh_sm90_plain_product(ctx, dht, a->n, a->m, a->m, xt, a->k, a->m,
                                                 static_cast<float *>(p->dw), p->lddw, true, stream);
        if (st != LGH_STATUS_SUCCESS) return st;
    }
    return LGH_STATUS_SUCCESS;
}

const lgh_bwd_products_t kProducts = {scratch_bytes, products};

} // namespace

extern "C" lgh_status_t lgh_sm90_bwd_can_implement(struct lgh_context *ctx, const lgh_bwd_problem_t *p, char *why,
                                                   size_t len)
{
    if (!accurate(p)) return lgh_cublaslt_bwd_can_implement(ctx, p, why, len);
    const lgh_args_t *a = &p->f.a;
    const lgh_device_props_t *d = lgh_device_props(ctx);
    if (d->cc_major != 9) {
        snprintf(why, len, "the sm90 kernel needs compute capability 9.0");
        return LGH_STATUS_NOT_SUPPORTED;
    }
    if ((p->dx || p->dw) && a->k % LGH_SM90_BN != 0) {
        snprintf(why, len, "3xtf32 products: K=%lld is not a multiple of %d (the kernel's tile width)",
                 (long long)a->k, LGH_SM90_BN);
        return LGH_STATUS_NOT_SUPPORTED;
    }
    if ((p->dx || p->dw) && a->n % 4 != 0) {
        snprintf(why, len, "3xtf32 products: N=%lld is not a multiple of 4 (TMA row strides)", (long long)a->n);
        return LGH_STATUS_NOT_SUPPORTED;
    }
    if (p->dw && a->m % 4 != 0) {
        snprintf(why, len, "3xtf32 dW: M=%lld is not a multiple of 4 (TMA row strides)", (long long)a->m);
        return LGH_STATUS_NOT_SUPPORTED;
    }
    if (((p->dx && ((uintptr_t)p->dx % 8 != 0 || p->lddx % 2 != 0)) ||
         (p->dw && ((uintptr_t)p->dw % 8 != 0 || p->lddw % 2 != 0)))) {
        snprintf(why, len, "3xtf32 products store dx and dW in pairs: 8-byte aligned, even leading dimensions");
        return LGH_STATUS_NOT_SUPPORTED;
    }
    return lgh_cublaslt_bwd_can_implement(ctx, p, why, len);
}

extern "C" size_t lgh_sm90_bwd_workspace_size(struct lgh_context *ctx, const lgh_bwd_problem_t *p)
{
    return lgh_gpu_bwd_workspace_size(ctx, p, accurate(p) ? &kProducts : nullptr);
}

extern "C" lgh_status_t lgh_sm90_bwd_run(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *ws, size_t bytes,
                                         void *stream)
{
    return lgh_gpu_bwd_run(ctx, p, ws, bytes, stream, accurate(p) ? &kProducts : nullptr);
}
