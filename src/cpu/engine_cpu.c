/*
 * The CPU engine (lgh_engine_cpu, LGH_ENGINE_CPU): runs on CPU contexts only.
 *
 *   float32:  sgemm writes x·Wᵀ straight into y (ldc = ldy), then the fused pass
 *             (fused_pass.c) rewrites y in place: bias, group statistics, normalise,
 *             γ/β, clamp. No M x N temporary.
 *   bfloat16 / float16: x, W, b, γ, β are widened to float32 in the workspace
 *             (widen.c), sgemm writes a float32 product into the workspace, and the
 *             fused pass rounds its result into y.
 *
 * Every math mode computes float32 products (fp32 is the most accurate; there is no
 * tf32 on the CPU). The sgemm (OpenBLAS's threads, or the built-in GEMM's) has returned
 * before the engine's own threads start, so the pools never compete for the cores; the
 * engine's threads are bounded by the context's cpu_threads.
 */
#include <stdint.h>
#include <stdio.h>

#include "core/engine.h"
#include "cpu/backward_cpu.h"
#include "cpu/blas.h"
#include "cpu/fused_pass.h"
#include "cpu/widen.h"

enum { ALIGN = 64 };

/* Where each piece lives in the workspace, as byte offsets from its 64-byte aligned
 * start; total includes the slack to align a caller's pointer. */
typedef struct layout {
    size_t x, w, y, bias, gamma, beta, scratch, total;
} layout_t;

/* Appends `bytes` (rounded up to ALIGN) at *end; false on overflow. */
static bool place(size_t *end, int64_t count, size_t elem, size_t *at)
{
    size_t bytes;
    if (count < 0 || __builtin_mul_overflow((size_t)count, elem, &bytes)) return false;
    if (__builtin_add_overflow(bytes, (size_t)ALIGN - 1, &bytes)) return false;
    bytes &= ~(size_t)(ALIGN - 1);
    *at = *end;
    return !__builtin_add_overflow(*end, bytes, end);
}

static bool make_layout(const struct lgh_context *ctx, const lgh_problem_t *p, layout_t *l)
{
    const lgh_args_t *a = &p->a;
    const int threads = lgh_device_props(ctx)->cpu_threads;
    size_t end = 0;
    *l = (layout_t){0};
    if (a->dtype != LGH_DTYPE_FLOAT32) {
        int64_t mk, nk, mn;
        if (__builtin_mul_overflow(a->m, a->k, &mk) || __builtin_mul_overflow(a->n, a->k, &nk) ||
            __builtin_mul_overflow(a->m, a->n, &mn))
            return false;
        if (!place(&end, mk, sizeof(float), &l->x) || !place(&end, nk, sizeof(float), &l->w) ||
            !place(&end, mn, sizeof(float), &l->y) || !place(&end, a->n, sizeof(float), &l->bias) ||
            !place(&end, a->n, sizeof(float), &l->gamma) ||
            !place(&end, a->n, sizeof(float), &l->beta))
            return false;
    }
    const size_t scratch = lgh_cpu_sgemm_scratch_bytes(a->m, a->n, a->k, threads);
    if (!place(&end, (int64_t)scratch, 1, &l->scratch)) return false;
    if (end == 0) return true; /* float32 with OpenBLAS: no workspace at all */
    return !__builtin_add_overflow(end, (size_t)ALIGN, &l->total);
}

static bool available(const struct lgh_context *ctx)
{
    return lgh_device_props(ctx)->ordinal == LGH_DEVICE_CPU;
}

static lgh_status_t can_implement(struct lgh_context *ctx, const lgh_problem_t *p, char *why,
                                  size_t why_len)
{
    const lgh_args_t *a = &p->a;
    const bool f32 = a->dtype == LGH_DTYPE_FLOAT32;
    if (!lgh_cpu_sgemm_supports(a->n, a->k, f32 ? a->ldx : a->k, f32 ? a->ldw : a->k,
                                f32 ? a->ldy : a->n, why, why_len))
        return LGH_STATUS_NOT_SUPPORTED;
    layout_t l;
    if (!make_layout(ctx, p, &l)) {
        snprintf(why, why_len, "the float32 copies of a %s problem of M=%lld K=%lld N=%lld "
                 "overflow the address space", lgh_dtype_name(a->dtype), (long long)a->m,
                 (long long)a->k, (long long)a->n);
        return LGH_STATUS_NOT_SUPPORTED;
    }
    return LGH_STATUS_SUCCESS;
}

static size_t workspace_size(struct lgh_context *ctx, const lgh_problem_t *p)
{
    layout_t l;
    return make_layout(ctx, p, &l) ? l.total : 0;
}

static lgh_status_t run(struct lgh_context *ctx, const lgh_problem_t *p, void *ws, size_t ws_bytes,
                        void *stream)
{
    (void)stream;
    const lgh_args_t *a = &p->a;
    const int cpu_threads = lgh_device_props(ctx)->cpu_threads;
    const int threads = cpu_threads > 0 ? cpu_threads : 1;
    layout_t l;
    if (!make_layout(ctx, p, &l))
        return lgh_set_error(ctx, LGH_STATUS_INTERNAL_ERROR,
                             "cpu engine: workspace size overflows");
    if (l.total > 0 && (!ws || ws_bytes < l.total)) {
        return lgh_set_error(ctx, LGH_STATUS_WORKSPACE_TOO_SMALL,
                             "cpu engine: workspace of %zu bytes, needs %zu", ws ? ws_bytes : 0,
                             l.total);
    }
    char *base = ws ? (char *)(((uintptr_t)ws + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1)) : NULL;
    void *scratch = base ? base + l.scratch : NULL;

    lgh_cpu_pass_t pass = {
        .m = a->m, .n = a->n, .groups = a->groups,
        .dst = a->y, .ldd = a->ldy, .dtype = a->dtype,
        .eps = a->eps, .lo = a->lo, .hi = a->hi,
        .mean = p->want_stats ? a->mean : NULL, .rstd = p->want_stats ? a->rstd : NULL,
        .h = p->want_h ? a->h : NULL, .ldh = a->ldh,
    };
    if (a->dtype == LGH_DTYPE_FLOAT32) {
        lgh_cpu_sgemm_nt(a->m, a->n, a->k, a->x, a->ldx, a->w, a->ldw, a->y, a->ldy, threads,
                         scratch);
        pass.src = a->y;
        pass.lds = a->ldy;
        pass.bias = a->bias;
        pass.gamma = a->gamma;
        pass.beta = a->beta;
    } else {
        float *xf = (float *)(base + l.x), *wf = (float *)(base + l.w);
        float *yf = (float *)(base + l.y);
        float *bf = (float *)(base + l.bias), *gf = (float *)(base + l.gamma);
        float *betaf = (float *)(base + l.beta);
        lgh_cpu_widen(a->x, a->m, a->k, a->ldx, a->dtype, xf, threads);
        lgh_cpu_widen(a->w, a->n, a->k, a->ldw, a->dtype, wf, threads);
        lgh_cpu_widen(a->bias, 1, a->n, a->n, a->dtype, bf, 1);
        lgh_cpu_widen(a->gamma, 1, a->n, a->n, a->dtype, gf, 1);
        lgh_cpu_widen(a->beta, 1, a->n, a->n, a->dtype, betaf, 1);
        lgh_cpu_sgemm_nt(a->m, a->n, a->k, xf, a->k, wf, a->k, yf, a->n, threads, scratch);
        pass.src = yf;
        pass.lds = a->n;
        pass.bias = bf;
        pass.gamma = gf;
        pass.beta = betaf;
    }
    lgh_cpu_fused_pass(&pass, threads);
    return LGH_STATUS_SUCCESS;
}

const lgh_engine_ops_t lgh_engine_cpu = {
    .id = LGH_ENGINE_CPU,
    .name = "cpu",
    .on_gpu = false,
    .available = available,
    .can_implement = can_implement,
    .workspace_size = workspace_size,
    .run = run,
    .kernel_info = NULL,
    .destroy_state = NULL,
    .bwd_can_implement = lgh_cpu_bwd_can_implement,
    .bwd_workspace_size = lgh_cpu_bwd_workspace_size,
    .bwd_run = lgh_cpu_bwd_run,
    .reentrant = true, /* no per-context state: calls on one context run side by side */
};
