// The sm90 engine's backward. For float32 data in 3xtf32 it computes both products
// float32-accurate on the tensor cores, with the fused kernel's 3xtf32 main loop
// (lgh_sm90_plain_product) — cuBLAS has no such mode on Hopper; the norm backward is the
// cublaslt engine's (epilogue/norm_backward.cu). Every other mode runs the cublaslt
// engine's backward unchanged.
//
//   dx[m, k] = dh[m, n]·W[n, k]    reduces over n: dh is n-contiguous, W is not
//   dW[n, k] = dh[m, n]ᵀ·x[m, k]   reduces over m: neither is
// tf32 wgmma reads its shared-memory operands K-major only, but the 3xtf32 main loop takes
// its A operand from registers, which can be loaded from any layout (kernel_sm90.cuh, OP):
// the NN kernel multiplies a K-major a by a row-major b as is (computing dᵀ, stored
// transposed), the TT kernel reads a row-major a across. So dx runs with no copy (NN), and
// dW from one transposed copy, xᵀ (TT: dh read across, dW stored as is).
//
// version 1: the operands transposed (util/transpose.cu: Wᵀ for dx, dhᵀ and xᵀ for dW), then
// the layer's kernel in plain mode.
// version 2: dW's main loop selectable (LGH_SM90_DW_LOOP=1|2|3, sm90_3xtf32.cuh's versions),
// version 1 by default. dW reduces over only M rows, where float32's own error is small
// (PyTorch fp32 5.9e-7 at the reference problem), below the bf16 corrections' floor
// (version 2: 9.4e-7; version 3, W rounded to nearest: 6.1e-7); version 1's tf32
// corrections: 2.5e-7 (docs/PERF.md, "Training", dW's accuracy). dx (reduction over N)
// keeps the forward's faster loop: there float32's own error is the larger.
// version 3: NN products: no Wᵀ (0.17 ms and K·N·4 bytes of workspace at the reference
// problem) and no xᵀ. LGH_SM90_BWD_TRANSPOSE=1 runs version 2's transposes, for measuring.
// version 4: dW as a TT product from xᵀ instead of an NN product from dhᵀ: a copy of the
// same size, but dW stored as is (NN's transposed store of the 8192 x 8192 dW cost ~40 us).
#include <stdint.h>
#include <stdio.h>

#include <cuda_runtime_api.h>

#include "core/engine.h"
#include "cublaslt/backward_cublaslt.h"
#include "engine_util.h"
#include "sm90/kernel_sm90.cuh"
#include "sm90/plain_product.h"
#include "util/transpose.h"


namespace {

constexpr size_t kAlign = 256;

size_t aligned(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

bool accurate(const lgh_bwd_problem_t *p)
{
    return p->f.a.dtype == LGH_DTYPE_FLOAT32 && p->f.a.math == LGH_MATH_3XTF32;
}

// Whether TMA can read x and W as they are: 16-byte aligned, row strides multiples of 16 bytes.
bool tma_reads_x_and_w(const lgh_args_t *a)
{
    return (uintptr_t)a->w % 16 == 0 && lgh_ld_16b_multiple(a->ldw, 4) && (uintptr_t)a->x % 16 == 0 &&
           lgh_ld_16b_multiple(a->ldx, 4);
}

// Whether the products run in the direct forms (dx NN, dW TT): unless asked otherwise, where
// TMA can read W and x as they are; else on transposed copies, which the transpose kernel
// makes TMA-ready.
bool use_direct(struct lgh_context *ctx, const lgh_bwd_problem_t *p)
{
    return lgh_sm90_bwd_direct(ctx) && tma_reads_x_and_w(&p->f.a);
}

size_t scratch_bytes(struct lgh_context *ctx, const lgh_bwd_problem_t *p)
{
    const lgh_args_t *a = &p->f.a;
    const bool direct = use_direct(ctx, p);
    size_t s = 0;
    if (p->dx && !direct) s += aligned((size_t)a->k * (size_t)a->n * 4);          // Wᵀ
    if (p->dw && !direct) s += aligned((size_t)a->n * (size_t)a->m * 4);            // dhᵀ
    if (p->dw) s += aligned((size_t)a->k * (size_t)a->m * 4);                       // xᵀ
    return s;
}

// The transposed copy of src [rows, cols] into the next piece of the scratch (*at, advanced
// past it, as scratch_bytes counts it): *dst = srcᵀ [cols, rows], packed.
lgh_status_t transposed(struct lgh_context *ctx, char **at, const float *src, int64_t rows, int64_t cols, int64_t ld,
                        float **dst, const char *what, void *stream)
{
    *dst = reinterpret_cast<float *>(*at);
    *at += aligned((size_t)rows * (size_t)cols * 4);
    const cudaError_t e = lgh_transpose_f32(src, rows, cols, ld, *dst, stream);
    if (e != cudaSuccess)
        return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "sm90 backward: transposing %s: %s", what,
                             cudaGetErrorString(e));
    return LGH_STATUS_SUCCESS;
}

lgh_status_t products(struct lgh_context *ctx, const lgh_bwd_problem_t *p, const void *dh_, void *scratch,
                      void *stream)
{
    const lgh_args_t *a = &p->f.a;
    const float *dh = static_cast<const float *>(dh_);
    const float *w = static_cast<const float *>(a->w), *x = static_cast<const float *>(a->x);
    const bool direct = use_direct(ctx, p);
    char *at = static_cast<char *>(scratch);
    lgh_status_t st;
    if (p->dx) { // dx[m, k] = dh[m, n]·W[n, k]
        lgh_sm90_product q = {};
        q.m = a->m, q.n = a->k, q.k = a->n;
        q.a = dh, q.lda = a->n;
        q.d = static_cast<float *>(p->dx), q.ldd = p->lddx;
        if (direct) { // NN: W as it is
            q.b = w, q.ldb = a->ldw, q.b_kn = true;
        } else { // W transposed first
            float *wt;
            if ((st = transposed(ctx, &at, w, a->n, a->k, a->ldw, &wt, "W", stream)) != LGH_STATUS_SUCCESS) return st;
            q.b = wt, q.ldb = a->n;
        }
        if ((st = lgh_sm90_plain_product(ctx, q, stream)) != LGH_STATUS_SUCCESS) return st;
    }
    if (p->dw) { // dW[n, k] = dh[m, n]ᵀ·x[m, k]; b is xᵀ[k, m] either way
        lgh_sm90_product q = {};
        q.m = a->n, q.n = a->k, q.k = a->m;
        q.d = static_cast<float *>(p->dw), q.ldd = p->lddw;
        q.for_dw = true;
        if (direct) { // TT: dh read across
            q.a = dh, q.lda = a->n, q.a_t = true;
        } else { // dh transposed first
            float *dht;
            if ((st = transposed(ctx, &at, dh, a->m, a->n, a->n, &dht, "dh", stream)) != LGH_STATUS_SUCCESS) return st;
            q.a = dht, q.lda = a->m;
        }
        float *xt;
        if ((st = transposed(ctx, &at, x, a->m, a->k, a->ldx, &xt, "x", stream)) != LGH_STATUS_SUCCESS) return st;
        q.b = xt, q.ldb = a->m;
        if ((st = lgh_sm90_plain_product(ctx, q, stream)) != LGH_STATUS_SUCCESS) return st;
    }
    return LGH_STATUS_SUCCESS;
}

// h = x·Wᵀ + b for a backward without a saved h, on the forward's own 3xtf32 main loop with
// the bias added as its epilogue adds it (cuBLASLt, the fallback, has no float32-accurate
// tensor-core mode: exact float32 there took 2.7 ms at the reference problem). Declines,
// without a message, where TMA cannot read x and W as they are or the bias is not float
// data the kernel can read (then cuBLASLt recomputes h).
lgh_status_t recompute_h(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *h, int64_t ldh, void *stream)
{
    const lgh_args_t *a = &p->f.a;
    if (!tma_reads_x_and_w(a) || (uintptr_t)h % 8 != 0 || ldh % 2 != 0 || a->bias == nullptr ||
        (uintptr_t)a->bias % 4 != 0)
        return LGH_STATUS_NOT_SUPPORTED;
    lgh_sm90_product q = {};
    q.m = a->m, q.n = a->n, q.k = a->k;
    q.a = static_cast<const float *>(a->x), q.lda = a->ldx;
    q.b = static_cast<const float *>(a->w), q.ldb = a->ldw;
    q.bias = static_cast<const float *>(a->bias);
    q.d = static_cast<float *>(h), q.ldd = ldh;
    return lgh_sm90_plain_product(ctx, q, stream);
}

const lgh_bwd_products_t kProducts = {scratch_bytes, products, recompute_h};

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
    if ((p->dx || p->dw) && !use_direct(ctx, p) && a->k % LGH_SM90_BN != 0) {
        snprintf(why, len, "3xtf32 products on transposed copies (x or W not 16-byte aligned with row strides of "
                           "16-byte multiples, or LGH_SM90_BWD_TRANSPOSE=1): K=%lld is not a multiple of %d",
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
