/*
 * The cublaslt engine: cuBLASLt GEMM with its bias epilogue writes x · Wᵀ + b straight
 * into y, then one lgh kernel (epilogue/groupnorm_kernel.cu) reduces each (row, group),
 * normalises, applies γ/β and clamps y in place. Runs on any CUDA device the build has
 * kernels for (compute capability 8.0 and up); the fallback for problems the fused
 * engines do not take.
 *
 * Math modes for float32 data: tf32 → CUBLAS_COMPUTE_32F_FAST_TF32; fp32 →
 * CUBLAS_COMPUTE_32F; 3xtf32 also runs as CUBLAS_COMPUTE_32F here (float32 accuracy, as
 * asked, at fp32 SIMT speed). bfloat16 / float16 data: CUBLAS_COMPUTE_32F (tensor cores,
 * float32 accumulation) with 16-bit A, B, C, D and bias.
 *
 * Workspace (device, from the caller or the context), 256-byte aligned inside:
 *   [bias copy: n elements, rounded to 256 bytes][cuBLASLt workspace: 32 MiB]
 * The bias copy is used only when b is not 16-byte aligned (cuBLASLt's bias epilogue
 * wants aligned vectors); it is one stream-ordered device-to-device copy.
 *
 * Per-context state (*lgh_engine_state(ctx, LGH_ENGINE_CUBLASLT)): the cuBLASLt handle and
 * the plan cache (lt_plan.h). After the first call for a shape nothing is allocated and
 * nothing synchronises, so calls can be captured in a CUDA graph.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "core/engine.h"
#include "cublaslt/backward_cublaslt.h"
#include "cublaslt/lt_plan.h"
#include "epilogue/groupnorm_kernel.h"
#include "util/widen.h"

#define WS_ALIGN ((size_t)256)

static size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

static size_t bias_slot_bytes(const lgh_problem_t *p)
{
    return round_up((size_t)p->a.n * p->elem_bytes, WS_ALIGN);
}

static bool available(const struct lgh_context *ctx)
{
    /* The norm kernel is built for sm_80 and up (top CMakeLists.txt). */
    const lgh_device_props_t *d = lgh_device_props(ctx);
    return d->ordinal != LGH_DEVICE_CPU && d->cc_major >= 8;
}

static lgh_status_t can_implement(struct lgh_context *ctx, const lgh_problem_t *p, char *why,
                                  size_t why_len)
{
    (void)ctx;
    (void)p;
    (void)why;
    (void)why_len;
    return LGH_STATUS_SUCCESS; /* any valid problem: the vendor GEMM takes any shape */
}

/* float16 data: the product is written in float32, a chunk of rows at a time, and the norm
 * pass rounds only the normalised (bounded) output to float16, so pre-norm values beyond
 * float16's range (65504) give the right output instead of Inf. A chunk holds at most
 * this many bytes, so the workspace stays bounded whatever M is. With h asked for, h is
 * the saved pre-norm in the data's dtype and the old path runs (it is what is kept). */
#define PRENORM_CHUNK_BYTES ((size_t)32 << 20)

static bool prenorm_f32(const lgh_problem_t *p) { return p->a.dtype == LGH_DTYPE_FLOAT16 && !p->want_h; }

static int64_t chunk_rows(const lgh_problem_t *p)
{
    int64_t r = (int64_t)(PRENORM_CHUNK_BYTES / ((size_t)p->a.n * 4u));
    if (r < 1) r = 1;
    return r < p->a.m ? r : p->a.m;
}

/* [bias copy][float32 bias, chunk of the float32 product: prenorm_f32 only][cuBLASLt] */
static size_t prenorm_bytes(const lgh_problem_t *p)
{
    if (!prenorm_f32(p)) return 0;
    return round_up((size_t)p->a.n * 4u, WS_ALIGN) +
           round_up((size_t)chunk_rows(p) * (size_t)p->a.n * 4u, WS_ALIGN);
}

static size_t workspace_size(struct lgh_context *ctx, const lgh_problem_t *p)
{
    (void)ctx;
    return (WS_ALIGN - 1) + bias_slot_bytes(p) + prenorm_bytes(p) + LGH_LT_VENDOR_WORKSPACE;
}

/* The float16 forward through a float32 product, chunk after chunk of rows. */
static lgh_status_t run_prenorm_f32(struct lgh_context *ctx, const lgh_problem_t *p, lgh_lt_cache_t *cache,
                                    char *base, cudaStream_t stream)
{
    const lgh_args_t *a = &p->a;
    float *bias32 = (float *)(base + bias_slot_bytes(p));
    float *chunk = (float *)((char *)bias32 + round_up((size_t)a->n * 4u, WS_ALIGN));
    char *vendor = base + bias_slot_bytes(p) + prenorm_bytes(p);
    cudaError_t e = lgh_widen_f16(a->bias, bias32, a->n, stream);
    if (e != cudaSuccess)
        return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "cublaslt: widening the bias: %s", cudaGetErrorString(e));
    const int64_t rows_max = chunk_rows(p);
    for (int64_t r0 = 0; r0 < a->m; r0 += rows_max) {
        const int64_t rows = a->m - r0 < rows_max ? a->m - r0 : rows_max;
        lgh_problem_t q = *p;
        q.a.m = rows;
        q.a.x = (const uint16_t *)a->x + r0 * a->ldx;
        q.a.y = chunk;
        q.a.ldy = a->n;
        lgh_lt_key_t key;
        lgh_lt_key_of(&q, bias32, &key);
        key.d_f32 = 1;
        lgh_lt_plan_t *plan = NULL;
        lgh_status_t st = lgh_lt_plan_get(ctx, cache, &key, bias32, &plan);
        if (st != LGH_STATUS_SUCCESS && r0 == 0) return LGH_STATUS_NOT_SUPPORTED; /* run_here: float16 product */
        if (st != LGH_STATUS_SUCCESS) return st;
        const void *bias_ptr = bias32;
        cublasStatus_t s =
            cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof bias_ptr);
        if (s == CUBLAS_STATUS_SUCCESS) {
            const float alpha = 1.0f, beta = 0.0f;
            s = cublasLtMatmul(cache->handle, plan->op, &alpha, a->w, plan->a, q.a.x, plan->b, &beta, chunk, plan->d,
                               chunk, plan->d, &plan->algo, vendor, LGH_LT_VENDOR_WORKSPACE, stream);
        }
        if (s != CUBLAS_STATUS_SUCCESS) {
            return lgh_set_error(ctx, LGH_STATUS_CUBLAS_ERROR,
                                 "cublasLtMatmul (float32 product of float16 data) failed: %s (%s) for M=%lld "
                                 "N=%lld K=%lld",
                                 cublasLtGetStatusName(s), cublasLtGetStatusString(s), (long long)rows,
                                 (long long)a->n, (long long)a->k);
        }
        lgh_groupnorm_args_t n = lgh_groupnorm_args_in_place(a);
        n.m = rows;
        n.y = (uint16_t *)a->y + r0 * a->ldy;
        n.src = chunk, n.lds = a->n, n.src_f32 = 1;
        if (n.mean) n.mean += r0 * a->groups, n.rstd += r0 * a->groups;
        e = lgh_groupnorm_launch(&n, stream);
        if (e != cudaSuccess) {
            return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "cublaslt: launching the group-norm kernel failed: %s",
                                 cudaGetErrorString(e));
        }
    }
    return LGH_STATUS_SUCCESS;
}


static lgh_status_t run_here(struct lgh_context *ctx, const lgh_problem_t *p, void *ws,
                             size_t ws_bytes, cudaStream_t stream)
{
    const lgh_args_t *a = &p->a;
    if (!ws || ws_bytes < workspace_size(ctx, p)) {
        return lgh_set_error(ctx, LGH_STATUS_WORKSPACE_TOO_SMALL,
                             "cublaslt: workspace of %zu bytes, needs %zu", ws ? ws_bytes : 0,
                             workspace_size(ctx, p));
    }
    lgh_lt_cache_t *cache = NULL;
    lgh_status_t st = lgh_lt_context_cache(ctx, &cache);
    if (st != LGH_STATUS_SUCCESS) return st;

    char *base = (char *)(((uintptr_t)ws + WS_ALIGN - 1) & ~(uintptr_t)(WS_ALIGN - 1));
    if (prenorm_f32(p)) {
        /* NOT_SUPPORTED: cuBLASLt has no float32-output algorithm for these operands (before
         * anything ran); the float16 product below still gives every output that float16 holds. */
        st = run_prenorm_f32(ctx, p, cache, base, stream);
        if (st != LGH_STATUS_NOT_SUPPORTED) return st;
    }
    char *bias_slot = base;
    char *vendor = base + bias_slot_bytes(p);

    const void *bias = a->bias;
    if (((uintptr_t)bias & 15u) != 0) {
        cudaError_t e = cudaMemcpyAsync(bias_slot, bias, (size_t)a->n * p->elem_bytes,
                                        cudaMemcpyDeviceToDevice, stream);
        if (e != cudaSuccess) {
            return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR,
                                 "cublaslt: copying the unaligned bias (%zu bytes) failed: %s",
                                 (size_t)a->n * p->elem_bytes, cudaGetErrorString(e));
        }
        bias = bias_slot;
    }

    /* With the pre-norm h asked for, the GEMM writes h and the norm pass reads it from
     * there into y; otherwise the GEMM writes y and the pass runs in place. */
    lgh_problem_t gemm = *p;
    if (p->want_h) gemm.a.y = a->h, gemm.a.ldy = a->ldh;
    void *d = gemm.a.y;
    lgh_lt_key_t key;
    lgh_lt_key_of(&gemm, bias, &key);
    lgh_lt_plan_t *plan = NULL;
    st = lgh_lt_plan_get(ctx, cache, &key, bias, &plan);
    if (st != LGH_STATUS_SUCCESS) return st;

    cublasStatus_t s =
        cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    if (s == CUBLAS_STATUS_SUCCESS) {
        const float alpha = 1.0f, beta = 0.0f;
        s = cublasLtMatmul(cache->handle, plan->op, &alpha, a->w, plan->a, a->x, plan->b, &beta,
                           d, plan->d, d, plan->d, &plan->algo, vendor,
                           LGH_LT_VENDOR_WORKSPACE, stream);
    }
    if (s != CUBLAS_STATUS_SUCCESS) {
        return lgh_set_error(ctx, LGH_STATUS_CUBLAS_ERROR,
                             "cublasLtMatmul failed: %s (%s) for M=%lld N=%lld K=%lld %s math %s",
                             cublasLtGetStatusName(s), cublasLtGetStatusString(s),
                             (long long)a->m, (long long)a->n, (long long)a->k,
                             lgh_dtype_name(a->dtype), lgh_math_name(a->math));
    }

    lgh_groupnorm_args_t n = lgh_groupnorm_args_in_place(a); /* the GEMM added the bias */
    if (p->want_h) n.src = a->h, n.lds = a->ldh;
    cudaError_t e = lgh_groupnorm_launch(&n, stream);
    if (e != cudaSuccess) {
        return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR,
                             "cublaslt: launching the group-norm kernel (M=%lld N=%lld groups=%lld "
                             "%s) failed: %s",
                             (long long)a->m, (long long)a->n, (long long)a->groups,
                             lgh_dtype_name(a->dtype), cudaGetErrorString(e));
    }
    return LGH_STATUS_SUCCESS;
}

/* Called with the context's device current (lgh_device_enter in the entry points). */
static lgh_status_t run(struct lgh_context *ctx, const lgh_problem_t *p, void *ws, size_t ws_bytes,
                        void *stream)
{
    return run_here(ctx, p, ws, ws_bytes, (cudaStream_t)stream);
}

static int kernel_info(struct lgh_context *ctx, lgh_kernel_info_t *out, int capacity)
{
    (void)ctx;
    const int count = lgh_groupnorm_kernel_count();
    for (int i = 0; i < count && i < capacity; ++i) {
        memset(&out[i], 0, sizeof out[i]);
        if (lgh_groupnorm_kernel_info(i, &out[i]) != cudaSuccess) {
            /* keep the entry, named, with zeros: the facts could not be read */
            out[i].registers = out[i].shared_bytes = out[i].local_bytes = 0;
        }
        out[i].engine = LGH_ENGINE_CUBLASLT;
    }
    return count;
}

static void destroy_state(void *state) { lgh_lt_cache_destroy((lgh_lt_cache_t *)state); }

const lgh_engine_ops_t lgh_engine_cublaslt = {
    .id = LGH_ENGINE_CUBLASLT,
    .name = "cublaslt",
    .on_gpu = true,
    .available = available,
    .can_implement = can_implement,
    .workspace_size = workspace_size,
    .run = run,
    .kernel_info = kernel_info,
    .destroy_state = destroy_state,
    .bwd_can_implement = lgh_cublaslt_bwd_can_implement,
    .bwd_workspace_size = lgh_cublaslt_bwd_workspace_size,
    .bwd_run = lgh_cublaslt_bwd_run,
};
