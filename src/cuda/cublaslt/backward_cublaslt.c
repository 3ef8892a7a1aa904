/*
 * The cublaslt engine's backward (backward_cublaslt.h; formulas: include/lgh.h).
 *
 *   1. h: the forward's saved pre-norm, or recomputed into the workspace by the forward's
 *      own cuBLASLt plan (GEMM + bias epilogue: the same h the forward normalised), or by
 *      the engine's own products (lgh_bwd_products_t.recompute_h: sm90's 3xtf32);
 *   2. lgh_norm_bwd_launch: dh, dβ, dγ, db (epilogue/norm_backward.cu);
 *   3. cuBLASLt: dx = dh·W (LGH_LT_DGRAD) and dW = dhᵀ·x (LGH_LT_WGRAD), in the forward's
 *      math mode: tf32 tensor cores for tf32; exact float32 for fp32 and 3xtf32 (cuBLAS
 *      has no float32-accurate tensor-core mode on Hopper); 16-bit tensor cores with
 *      float32 accumulation for bf16 / fp16 (dh rounded to the data's dtype first, as
 *      PyTorch does).
 *
 * Workspace (device, 256-byte aligned pieces):
 *   [h: m·n elements, when recomputed][row sums: 2·m·G floats][statistics of h: 2·m·G
 *   floats, when the forward's are not used][partials: 3·chunks·n floats]
 *   [dh: m·n elements, when dx, dW or db is wanted][tf32 dW: dhᵀ float32][bias copy]
 *   [cuBLASLt: 32 MiB]
 * No allocation and no synchronisation after the plans exist: graph-capturable.
 */
#include "cublaslt/backward_cublaslt.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "cublaslt/lt_plan.h"
#include "epilogue/norm_backward.h"
#include "util/transpose.h"

#define WS_ALIGN ((size_t)256)

typedef struct bwd_layout {
    size_t h, row_sums, stats, partials, dh, dht, bias, vendor, scratch, total;
} bwd_layout_t;

static bool place(size_t *end, uint64_t bytes, size_t *at)
{
    if (bytes > SIZE_MAX - WS_ALIGN) return false;
    const size_t b = ((size_t)bytes + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
    *at = *end;
    return !__builtin_add_overflow(*end, b, end);
}

static bool wants_dh(const lgh_bwd_problem_t *p) { return p->dx || p->dw || p->dbias; }

/* tf32 dW from a transposed copy of dh (LGH_LT_WGRAD_DHT): cuBLASLt's tf32 kernels for
 * the WGRAD layout (both operands reduced along their strided dimension) measured 1.7x its
 * forward's time on the reference problem (0.567 vs 0.325 ms, H100); with one operand
 * K-major it runs as DGRAD does, and the transpose costs ~0.025 ms. 16-bit tensor cores
 * read transposed operands themselves, and fp32 runs on SIMT units. */
static bool wgrad_kmajor(const lgh_bwd_problem_t *p)
{
    return p->dw && p->f.a.dtype == LGH_DTYPE_FLOAT32 && p->f.a.math == LGH_MATH_TF32;
}

static bool make_layout(const lgh_bwd_problem_t *p, size_t scratch, bwd_layout_t *l)
{
    const lgh_args_t *a = &p->f.a;
    const uint64_t eb = p->f.elem_bytes;
    const uint64_t mn = (uint64_t)a->m * (uint64_t)a->n; /* the core checked the products fit */
    size_t end = 0;
    *l = (bwd_layout_t){0};
    if (!p->h && !place(&end, mn * eb, &l->h)) return false;
    if (!place(&end, 2ull * (uint64_t)a->m * (uint64_t)a->groups * 4u, &l->row_sums)) return false;
    if (!p->mean && !place(&end, 2ull * (uint64_t)a->m * (uint64_t)a->groups * 4u, &l->stats)) return false;
    if (!place(&end, 3ull * (uint64_t)lgh_norm_bwd_chunks(a->m) * (uint64_t)a->n * 4u, &l->partials))
        return false;
    if (wants_dh(p) && !place(&end, mn * eb, &l->dh)) return false;
    if (wgrad_kmajor(p) && !place(&end, mn * 4u, &l->dht)) return false;
    if (!place(&end, (uint64_t)a->n * eb, &l->bias)) return false;
    if (!place(&end, LGH_LT_VENDOR_WORKSPACE, &l->vendor)) return false;
    if (scratch && !place(&end, scratch, &l->scratch)) return false;
    return !__builtin_add_overflow(end, WS_ALIGN - 1, &l->total);
}

lgh_status_t lgh_cublaslt_bwd_can_implement(struct lgh_context *ctx, const lgh_bwd_problem_t *p,
                                            char *why, size_t why_len)
{
    (void)ctx;
    bwd_layout_t l;
    if (lgh_norm_bwd_chunks(p->f.a.m) > 65535) {
        snprintf(why, why_len, "M=%lld: the norm backward's grid takes at most %lld rows",
                 (long long)p->f.a.m, 65535LL * LGH_BWD_CHUNK_ROWS);
        return LGH_STATUS_NOT_SUPPORTED;
    }
    if (!make_layout(p, 0, &l)) {
        snprintf(why, why_len, "the backward's workspace overflows size_t");
        return LGH_STATUS_NOT_SUPPORTED;
    }
    return LGH_STATUS_SUCCESS;
}

size_t lgh_gpu_bwd_workspace_size(struct lgh_context *ctx, const lgh_bwd_problem_t *p,
                                  const lgh_bwd_products_t *prod)
{
    bwd_layout_t l;
    const size_t scratch = prod ? prod->scratch_bytes(ctx, p) : 0;
    return make_layout(p, scratch, &l) ? l.total : 0;
}

size_t lgh_cublaslt_bwd_workspace_size(struct lgh_context *ctx, const lgh_bwd_problem_t *p)
{
    return lgh_gpu_bwd_workspace_size(ctx, p, NULL);
}

static lgh_status_t lt_fail(struct lgh_context *ctx, const char *what, cublasStatus_t s,
                            const lgh_bwd_problem_t *p)
{
    const lgh_args_t *a = &p->f.a;
    return lgh_set_error(ctx, LGH_STATUS_CUBLAS_ERROR,
                         "cublaslt backward: %s failed: %s (%s) for M=%lld N=%lld K=%lld %s math %s",
                         what, cublasLtGetStatusName(s), cublasLtGetStatusString(s), (long long)a->m,
                         (long long)a->n, (long long)a->k, lgh_dtype_name(a->dtype),
                         lgh_math_name(a->math));
}

/* One product of a plan: D = A·B (no bias, beta 0). */
static lgh_status_t product(struct lgh_context *ctx, lgh_lt_cache_t *cache, const lgh_bwd_problem_t *p,
                            int op, const void *A, int64_t lda, const void *B, int64_t ldb, void *D,
                            int64_t ldd, void *vendor, cudaStream_t stream)
{
    lgh_lt_key_t key;
    lgh_lt_key_backward(&p->f, op, A, lda, B, ldb, D, ldd, &key);
    lgh_lt_plan_t *plan = NULL;
    lgh_status_t st = lgh_lt_plan_get(ctx, cache, &key, NULL, &plan);
    if (st != LGH_STATUS_SUCCESS) return st;
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t s = cublasLtMatmul(cache->handle, plan->op, &alpha, A, plan->a, B, plan->b, &beta,
                                      D, plan->d, D, plan->d, &plan->algo, vendor,
                                      LGH_LT_VENDOR_WORKSPACE, stream);
    if (s != CUBLAS_STATUS_SUCCESS)
        return lt_fail(ctx, op == LGH_LT_DGRAD ? "cublasLtMatmul (dx = dh·W)" : "cublasLtMatmul (dW = dhᵀ·x)",
                       s, p);
    return LGH_STATUS_SUCCESS;
}

lgh_status_t lgh_cublaslt_bwd_run(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *ws,
                                  size_t ws_bytes, void *stream)
{
    return lgh_gpu_bwd_run(ctx, p, ws, ws_bytes, stream, NULL);
}

lgh_status_t lgh_gpu_bwd_run(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *ws,
                             size_t ws_bytes, void *stream_, const lgh_bwd_products_t *prod)
{
    const lgh_args_t *a = &p->f.a;
    cudaStream_t stream = (cudaStream_t)stream_;
    bwd_layout_t l;
    if (!make_layout(p, prod ? prod->scratch_bytes(ctx, p) : 0, &l) || !ws || ws_bytes < l.total) {
        return lgh_set_error(ctx, LGH_STATUS_WORKSPACE_TOO_SMALL,
                             "cublaslt backward: workspace of %zu bytes, needs %zu", ws ? ws_bytes : 0,
                             l.total);
    }
    lgh_lt_cache_t *cache = NULL;
    lgh_status_t st = lgh_lt_context_cache(ctx, &cache);
    if (st != LGH_STATUS_SUCCESS) return st;
    char *base = (char *)(((uintptr_t)ws + WS_ALIGN - 1) & ~(uintptr_t)(WS_ALIGN - 1));
    void *vendor = base + l.vendor;

    /* 1. h */
    const void *h = p->h;
    int64_t ldh = p->ldh;
    if (!h && prod && prod->recompute_h) {
        st = prod->recompute_h(ctx, p, base + l.h, a->n, stream);
        if (st == LGH_STATUS_SUCCESS) {
            h = base + l.h;
            ldh = a->n;
        } else if (st != LGH_STATUS_NOT_SUPPORTED) {
            return st;
        }
    }
    if (!h) {
        const void *bias = a->bias;
        if (((uintptr_t)bias & 15u) != 0) {
            cudaError_t e = cudaMemcpyAsync(base + l.bias, bias, (size_t)a->n * p->f.elem_bytes,
                                            cudaMemcpyDeviceToDevice, stream);
            if (e != cudaSuccess)
                return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "cublaslt backward: bias copy: %s",
                                     cudaGetErrorString(e));
            bias = base + l.bias;
        }
        lgh_problem_t q = p->f;
        q.a.y = base + l.h;
        q.a.ldy = a->n;
        lgh_lt_key_t key;
        lgh_lt_key_of(&q, bias, &key);
        lgh_lt_plan_t *plan = NULL;
        st = lgh_lt_plan_get(ctx, cache, &key, bias, &plan);
        if (st != LGH_STATUS_SUCCESS) return st;
        cublasStatus_t s =
            cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        if (s == CUBLAS_STATUS_SUCCESS) {
            const float alpha = 1.0f, beta = 0.0f;
            s = cublasLtMatmul(cache->handle, plan->op, &alpha, a->w, plan->a, a->x, plan->b, &beta,
                               q.a.y, plan->d, q.a.y, plan->d, &plan->algo, vendor,
                               LGH_LT_VENDOR_WORKSPACE, stream);
        }
        if (s != CUBLAS_STATUS_SUCCESS) return lt_fail(ctx, "cublasLtMatmul (recomputing h)", s, p);
        h = q.a.y;
        ldh = a->n;
    }

    /* 2. the norm backward */
    lgh_norm_bwd_args_t nb;
    memset(&nb, 0, sizeof nb);
    nb.m = a->m, nb.n = a->n, nb.groups = a->groups, nb.dtype = a->dtype;
    nb.h = h, nb.ldh = ldh, nb.dy = p->dy, nb.lddy = p->lddy;
    nb.mean = p->mean, nb.rstd = p->rstd;
    nb.gamma = a->gamma, nb.beta = a->beta, nb.eps = a->eps, nb.lo = a->lo, nb.hi = a->hi;
    nb.stats = p->mean ? NULL : (float *)(base + l.stats);
    nb.row_sums = (float *)(base + l.row_sums);
    nb.partials = (float *)(base + l.partials);
    nb.dh = wants_dh(p) ? base + l.dh : NULL;
    nb.dbias = p->dbias, nb.dgamma = p->dgamma, nb.dbeta = p->dbeta;
    cudaError_t e = lgh_norm_bwd_launch(&nb, stream);
    if (e != cudaSuccess) {
        return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR,
                             "cublaslt backward: launching the norm backward (M=%lld N=%lld groups=%lld "
                             "%s) failed: %s",
                             (long long)a->m, (long long)a->n, (long long)a->groups,
                             lgh_dtype_name(a->dtype), cudaGetErrorString(e));
    }

    /* 3. the products */
    if (prod && (p->dx || p->dw)) return prod->run(ctx, p, nb.dh, base + l.scratch, stream);
    if (p->dx) {
        st = product(ctx, cache, p, LGH_LT_DGRAD, a->w, a->ldw, nb.dh, a->n, p->dx, p->lddx, vendor, stream);
        if (st != LGH_STATUS_SUCCESS) return st;
    }
    if (wgrad_kmajor(p)) { /* dW[n, k] = dht[n, m]·x[m, k] */
        float *dht = (float *)(base + l.dht);
        cudaError_t te = lgh_transpose_f32((const float *)nb.dh, a->m, a->n, a->n, dht, stream);
        if (te != cudaSuccess)
            return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "cublaslt backward: transposing dh: %s",
                                 cudaGetErrorString(te));
        st = product(ctx, cache, p, LGH_LT_WGRAD_DHT, a->x, a->ldx, dht, a->m, p->dw, p->lddw, vendor, stream);
        if (st != LGH_STATUS_SUCCESS) return st;
    } else if (p->dw) {
        st = product(ctx, cache, p, LGH_LT_WGRAD, a->x, a->ldx, nb.dh, a->n, p->dw, p->lddw, vendor, stream);
        if (st != LGH_STATUS_SUCCESS) return st;
    }
    return LGH_STATUS_SUCCESS;
}
