/* Argument checks. Each refusal names the argument and its value in the message. */
#include "check.h"

#include <math.h>
#include <stdio.h>

#include "context.h"
#include "math_rule.h"

#ifdef LGH_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* a * b into *out, false on int64 overflow (a, b >= 0). */
static bool mul_ok(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* Elements a matrix of `rows` rows of `cols` at leading dimension `ld` spans, in bytes. */
static bool span_bytes_ok(int64_t rows, int64_t ld, int64_t cols, size_t elem, int64_t *bytes)
{
    int64_t e;
    if (!mul_ok(rows - 1, ld, &e)) return false;
    if (__builtin_add_overflow(e, cols, &e)) return false;
    return mul_ok(e, (int64_t)elem, bytes);
}

/* The forward's checks; need_y false for the forward part of a backward call (its y,
 * mean, rstd and h are not used and not checked). */
static lgh_status_t check_forward(struct lgh_context *ctx, const lgh_args_t *args, lgh_problem_t *p,
                                  bool need_y)
{
    if (!ctx) return LGH_STATUS_NULL_POINTER;
    if (!args) return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER, "args is NULL");
    const lgh_args_t *a = args;

    if (a->m <= 0 || a->k <= 0 || a->n <= 0 || a->groups <= 0) {
        return lgh_set_error(ctx, LGH_STATUS_INVALID_SIZE,
                             "sizes must be >= 1: got M=%lld K=%lld N=%lld groups=%lld",
                             (long long)a->m, (long long)a->k, (long long)a->n,
                             (long long)a->groups);
    }
    if (a->n % a->groups != 0) {
        return lgh_set_error(ctx, LGH_STATUS_GROUPS_MISMATCH,
                             "N=%lld is not a multiple of groups=%lld", (long long)a->n,
                             (long long)a->groups);
    }
    const lgh_status_t dm = lgh_check_dtype_math(ctx, a->dtype, a->math);
    if (dm != LGH_STATUS_SUCCESS) return dm;
    if (a->engine < LGH_ENGINE_AUTO || a->engine >= LGH_ENGINE_COUNT) {
        return lgh_set_error(ctx, LGH_STATUS_INVALID_VALUE, "engine %d is not an lgh_engine_t",
                             (int)a->engine);
    }
    if (!(a->eps > 0.0f) || isinf(a->eps)) {
        return lgh_set_error(ctx, LGH_STATUS_INVALID_EPS, "eps=%g: must be finite and > 0",
                             (double)a->eps);
    }
    if (isnan(a->lo) || isnan(a->hi) || a->lo > a->hi) {
        return lgh_set_error(ctx, LGH_STATUS_INVALID_CLAMP,
                             "clamp lo=%g hi=%g: need lo <= hi and neither NaN", (double)a->lo,
                             (double)a->hi);
    }
    static const char *const names[] = {"x", "w", "bias", "gamma", "beta", "y"};
    const void *ptrs[] = {a->x, a->w, a->bias, a->gamma, a->beta, a->y};
    for (int i = 0; i < (need_y ? 6 : 5); ++i) {
        if (!ptrs[i]) return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER, "%s is NULL", names[i]);
    }
    if (need_y && (a->mean == NULL) != (a->rstd == NULL)) {
        return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER,
                             "mean and rstd are optional together: %s is NULL but %s is not",
                             a->mean ? "rstd" : "mean", a->mean ? "mean" : "rstd");
    }

    *p = (lgh_problem_t){0};
    p->a = *a;
    p->a.ldx = a->ldx ? a->ldx : a->k;
    p->a.ldw = a->ldw ? a->ldw : a->k;
    p->a.ldy = need_y && a->ldy ? a->ldy : a->n; /* a backward ignores y and its ldy */
    if (p->a.ldx < a->k || p->a.ldw < a->k || p->a.ldy < a->n) {
        const char *which = p->a.ldx < a->k ? "ldx" : p->a.ldw < a->k ? "ldw" : "ldy";
        int64_t got = p->a.ldx < a->k ? p->a.ldx : p->a.ldw < a->k ? p->a.ldw : p->a.ldy;
        int64_t need = p->a.ldx < a->k || p->a.ldw < a->k ? a->k : a->n;
        return lgh_set_error(ctx, LGH_STATUS_INVALID_LEADING_DIM,
                             "%s=%lld is smaller than its row (%lld elements); 0 means packed",
                             which, (long long)got, (long long)need);
    }
    if (!need_y) {
        p->a.y = NULL, p->a.ldy = a->n;
        p->a.mean = p->a.rstd = NULL;
        p->a.h = NULL;
    }
    p->a.ldh = p->a.h ? (a->ldh ? a->ldh : a->n) : 0;
    if (p->a.h && p->a.ldh < a->n) {
        return lgh_set_error(ctx, LGH_STATUS_INVALID_LEADING_DIM,
                             "ldh=%lld is smaller than its row (%lld elements); 0 means packed",
                             (long long)p->a.ldh, (long long)a->n);
    }
    p->elem_bytes = a->dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
    p->group_size = a->n / a->groups;
    p->want_stats = p->a.mean != NULL;
    p->want_h = p->a.h != NULL;
    /* Engines see concrete modes only: ACCURATE becomes the device rule's FP32 or 3XTF32
     * here, and the engine choice may still settle it per engine (dispatch.c). */
    p->accurate = a->dtype == LGH_DTYPE_FLOAT32 && a->math == LGH_MATH_ACCURATE;
    p->a.math = lgh_math_for_device(&ctx->props, a->dtype, a->math);

    int64_t bytes, flops;
    if (!span_bytes_ok(a->m, p->a.ldx, a->k, p->elem_bytes, &bytes) ||
        !span_bytes_ok(a->n, p->a.ldw, a->k, p->elem_bytes, &bytes) ||
        !span_bytes_ok(a->m, p->a.ldy, a->n, p->elem_bytes, &bytes) || !mul_ok(a->m, a->n, &flops) ||
        !mul_ok(flops, a->k, &flops) || !mul_ok(flops, 2, &flops) ||
        !mul_ok(a->m, a->groups, &bytes) || !mul_ok(bytes, 4, &bytes) ||
        (p->want_h && !span_bytes_ok(a->m, p->a.ldh, a->n, p->elem_bytes, &bytes))) {
        return lgh_set_error(ctx, LGH_STATUS_SIZE_OVERFLOW,
                             "M=%lld K=%lld N=%lld with ldx=%lld ldw=%lld ldy=%lld overflow 64-bit "
                             "sizes",
                             (long long)a->m, (long long)a->k, (long long)a->n,
                             (long long)p->a.ldx, (long long)p->a.ldw, (long long)p->a.ldy);
    }
    return LGH_STATUS_SUCCESS;
}

lgh_status_t lgh_check_dtype_math(struct lgh_context *ctx, lgh_dtype_t dtype, lgh_math_t math)
{
    if (dtype != LGH_DTYPE_FLOAT32 && dtype != LGH_DTYPE_BFLOAT16 && dtype != LGH_DTYPE_FLOAT16) {
        return lgh_set_error(ctx, LGH_STATUS_INVALID_VALUE, "dtype %d is not an lgh_dtype_t", (int)dtype);
    }
    if (math < LGH_MATH_DEFAULT || math > LGH_MATH_ACCURATE) {
        return lgh_set_error(ctx, LGH_STATUS_INVALID_VALUE, "math %d is not an lgh_math_t", (int)math);
    }
    return LGH_STATUS_SUCCESS;
}

lgh_status_t lgh_check_args(struct lgh_context *ctx, const lgh_args_t *args, lgh_problem_t *p)
{
    return check_forward(ctx, args, p, true);
}

/* A leading dimension: 0 means `row`; below `row` is refused. */
static lgh_status_t resolve_ld(struct lgh_context *ctx, const char *name, int64_t given, int64_t row,
                               int64_t *out)
{
    *out = given ? given : row;
    if (*out < row) {
        return lgh_set_error(ctx, LGH_STATUS_INVALID_LEADING_DIM,
                             "%s=%lld is smaller than its row (%lld elements); 0 means packed", name,
                             (long long)*out, (long long)row);
    }
    return LGH_STATUS_SUCCESS;
}

lgh_status_t lgh_check_backward(struct lgh_context *ctx, const lgh_backward_args_t *args,
                                lgh_bwd_problem_t *p)
{
    if (!ctx) return LGH_STATUS_NULL_POINTER;
    if (!args) return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER, "args is NULL");
    *p = (lgh_bwd_problem_t){0};
    lgh_status_t s = check_forward(ctx, &args->fwd, &p->f, false);
    if (s != LGH_STATUS_SUCCESS) return s;
    const lgh_args_t *a = &p->f.a;
    if (!args->dy) return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER, "dy is NULL");
    if ((args->mean == NULL) != (args->rstd == NULL)) {
        return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER,
                             "mean and rstd are optional together: %s is NULL but %s is not",
                             args->mean ? "rstd" : "mean", args->mean ? "mean" : "rstd");
    }
    if (!args->dx && !args->dw && !args->dbias && !args->dgamma && !args->dbeta) {
        return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER,
                             "no gradient asked for: dx, dw, dbias, dgamma and dbeta are all NULL");
    }
    p->dy = args->dy;
    /* The forward's statistics serve float32 data with the forward's own h only (lgh.h:
     * a 16-bit h is rounded, a recomputed one may round differently). */
    if (a->dtype == LGH_DTYPE_FLOAT32 && args->h) p->mean = args->mean, p->rstd = args->rstd;
    p->h = args->h;
    p->dx = args->dx, p->dw = args->dw;
    p->dbias = args->dbias, p->dgamma = args->dgamma, p->dbeta = args->dbeta;
    if ((s = resolve_ld(ctx, "lddy", args->lddy, a->n, &p->lddy)) != LGH_STATUS_SUCCESS ||
        (s = resolve_ld(ctx, "ldh", args->h ? args->ldh : 0, a->n, &p->ldh)) != LGH_STATUS_SUCCESS ||
        (s = resolve_ld(ctx, "lddx", args->dx ? args->lddx : 0, a->k, &p->lddx)) != LGH_STATUS_SUCCESS ||
        (s = resolve_ld(ctx, "lddw", args->dw ? args->lddw : 0, a->k, &p->lddw)) != LGH_STATUS_SUCCESS)
        return s;
    int64_t bytes;
    const size_t eb = p->f.elem_bytes;
    if (!span_bytes_ok(a->m, p->lddy, a->n, eb, &bytes) ||
        !span_bytes_ok(a->m, p->ldh, a->n, eb, &bytes) ||
        !span_bytes_ok(a->m, p->lddx, a->k, eb, &bytes) ||
        !span_bytes_ok(a->n, p->lddw, a->k, eb, &bytes)) {
        return lgh_set_error(ctx, LGH_STATUS_SIZE_OVERFLOW,
                             "M=%lld K=%lld N=%lld with lddy=%lld ldh=%lld lddx=%lld lddw=%lld "
                             "overflow 64-bit sizes",
                             (long long)a->m, (long long)a->k, (long long)a->n, (long long)p->lddy,
                             (long long)p->ldh, (long long)p->lddx, (long long)p->lddw);
    }
    return LGH_STATUS_SUCCESS;
}

#ifdef LGH_HAVE_CUDA
/* Where ptr lives, as the CUDA runtime sees it. Plain malloc'ed memory reads as
 * cudaMemoryTypeUnregistered; without a usable driver everything counts as host memory. */
static enum cudaMemoryType memory_type(const void *ptr, int *device)
{
    struct cudaPointerAttributes attr;
    *device = -1;
    if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-free error so later calls are unaffected */
        return cudaMemoryTypeUnregistered;
    }
    *device = attr.device;
    return attr.type;
}
#endif

/* Every non-NULL pointer of ptrs[count] in the context's memory space. */
static lgh_status_t check_spaces(struct lgh_context *ctx, const char *const *names,
                                 const void *const *ptrs, int count)
{
#ifdef LGH_HAVE_CUDA
    const int dev = ctx->props.ordinal;
    for (int i = 0; i < count; ++i) {
        if (!ptrs[i]) continue;
        int on = -1;
        enum cudaMemoryType t = memory_type(ptrs[i], &on);
        if (t == cudaMemoryTypeManaged) continue; /* reachable from both sides */
        if (dev == LGH_DEVICE_CPU && t == cudaMemoryTypeDevice) {
            return lgh_set_error(ctx, LGH_STATUS_WRONG_MEMORY_SPACE,
                                 "%s is CUDA device memory, but the context is on the CPU",
                                 names[i]);
        }
        if (dev != LGH_DEVICE_CPU && t != cudaMemoryTypeDevice) {
            return lgh_set_error(ctx, LGH_STATUS_WRONG_MEMORY_SPACE,
                                 "%s is host memory, but the context is on CUDA device %d",
                                 names[i], dev);
        }
        if (dev != LGH_DEVICE_CPU && on != dev) {
            return lgh_set_error(ctx, LGH_STATUS_WRONG_MEMORY_SPACE,
                                 "%s is memory of CUDA device %d, but the context is on device %d",
                                 names[i], on, dev);
        }
    }
#else
    (void)ctx;
    (void)names;
    (void)ptrs;
    (void)count;
#endif
    return LGH_STATUS_SUCCESS;
}

lgh_status_t lgh_check_memory(struct lgh_context *ctx, const lgh_problem_t *p)
{
    const lgh_args_t *a = &p->a;
    static const char *const names[] = {"x", "w", "bias", "gamma", "beta", "y", "mean", "rstd", "h"};
    const void *const ptrs[] = {a->x, a->w, a->bias, a->gamma, a->beta, a->y, a->mean, a->rstd, a->h};
    return check_spaces(ctx, names, ptrs, 9);
}

lgh_status_t lgh_check_backward_memory(struct lgh_context *ctx, const lgh_bwd_problem_t *p)
{
    const lgh_args_t *a = &p->f.a;
    static const char *const names[] = {"x", "w", "bias", "gamma", "beta", "dy", "mean", "rstd",
                                        "h", "dx", "dw", "dbias", "dgamma", "dbeta"};
    const void *const ptrs[] = {a->x, a->w, a->bias, a->gamma, a->beta, p->dy, p->mean, p->rstd,
                                p->h, p->dx, p->dw, p->dbias, p->dgamma, p->dbeta};
    return check_spaces(ctx, names, ptrs, 14);
}
