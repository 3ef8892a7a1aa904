/*
 * Engine choice and the public entry points that run an engine: lgh_plan, lgh_forward,
 * lgh_kernel_info, lgh_backward_plan, lgh_backward.
 *
 * Layering (docs/ARCHITECTURE.md): the top of the core. It uses the registry (the
 * engines), the context (locks, workspaces, messages), check.c and the tuner's narrow
 * interface (tune.h: the tuned choice for a problem, tuning on lgh_forward); nothing in
 * src/core calls back into this file.
 *
 * LGH_ENGINE_AUTO runs the engine lgh_tune measured fastest for the problem (tune.c)
 * when there is one and it can still run it; otherwise, among those available that can
 * implement the problem, the one auto_rank() prefers; ties go to the registry's table
 * order. Whichever engine runs (chosen or named), it runs its tuned variant when the
 * problem was tuned on that engine.
 *
 * LGH_MATH_ACCURATE (math_rule.h): check.c resolves it to the device rule's FP32 or
 * 3XTF32, which AUTO ranks engines by when the problem is not tuned; a forced engine, the
 * tuned engine or the one AUTO picks then runs its own float32-accurate mode
 * (lgh_math_settle), so what runs and what lgh_plan_math reports is always concrete.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "context.h"
#include "math_rule.h"
#include "registry.h"
#include "tune.h"

/* AUTO's preference (lower first) among engines that can run p on ctx's device. An
 * engine goes ahead of the vendor path only where it measured faster side by side
 * (H100, K = N = 8192, G = 16; docs/PERF.md):
 *   - 3xtf32: sm90 1.32 ms, sm80 1.67 ms, cublaslt (runs it as fp32) 2.71 ms at M = 1024.
 *     Small batches (lgh run, CUDA events; sm90 splitting K): M = 8 .. 128 sm90 0.125 -
 *     0.139 ms, cublaslt 0.170 - 0.358; M = 1: cublaslt 0.119 (cuBLAS's fp32 GEMV reads W
 *     at memory speed, exact order), sm90 0.125. So sm90 first except for one row.
 *   - tf32: sm90 (split K) first up to 16 rows: M = 1 sm90 0.105 ms, cublaslt 0.119; M =
 *     8 0.105 / 0.107; M = 32 level (0.107); from M = 64 cublaslt (0.104 - 0.107 against
 *     0.110 - 0.117 up to 128; M = 1024: cublaslt 0.385, sm90 0.409).
 *   - bf16 (fp16 alike): cublaslt first at every M measured: M = 1 .. 128 cublaslt 0.056 -
 *     0.059 ms, sm90 0.061 - 0.072.
 *   - fp32 math (exact-order SIMT) runs on cublaslt only.
 * The fused engines move ahead of cublaslt for a mode once they measure faster; lgh_tune
 * measures any shape on the user's own GPU and overrides this. */
static int auto_rank(const struct lgh_context *ctx, lgh_engine_t id, const lgh_problem_t *p)
{
    (void)ctx;
    const bool accurate = p->a.dtype == LGH_DTYPE_FLOAT32 && p->a.math == LGH_MATH_3XTF32;
    const bool tf32 = p->a.dtype == LGH_DTYPE_FLOAT32 && p->a.math == LGH_MATH_TF32;
    const bool sm90_first = (accurate && p->a.m > 1) || (tf32 && p->a.m <= 16);
    switch (id) {
    case LGH_ENGINE_SM90: return sm90_first ? 0 : 20;
    case LGH_ENGINE_SM80: return accurate && p->a.m > 1 ? 5 : 30;
    case LGH_ENGINE_CUBLASLT: return 10;
    case LGH_ENGINE_CPU: return 40;
    default: return 100;
    }
}

/* The engine a caller forced (argument or LGH_ENGINE), if it is built in and can run on
 * ctx's device; what each picker then asks of it (forward or backward) is its own. */
static lgh_status_t forced_engine(struct lgh_context *ctx, lgh_engine_t want, const lgh_engine_ops_t **out)
{
    const lgh_engine_ops_t *e = lgh_find_engine(want);
    if (!e) {
        return lgh_set_error(ctx, LGH_STATUS_ENGINE_UNAVAILABLE, "engine %s is not built into this lgh",
                             lgh_engine_name(want));
    }
    if (!e->available(ctx)) {
        return lgh_set_error(ctx, LGH_STATUS_ENGINE_UNAVAILABLE,
                             "engine %s cannot run on this context's device (%s)", e->name, ctx->description);
    }
    *out = e;
    return LGH_STATUS_SUCCESS;
}

/* Picks the engine for a checked problem and settles its math for that engine (a
 * float32-accurate request); tuned: the engine lgh_tune recorded for it, or
 * LGH_ENGINE_AUTO. */
static lgh_status_t pick_engine(struct lgh_context *ctx, lgh_problem_t *p, lgh_engine_t tuned_id,
                                const lgh_engine_ops_t **out)
{
    char why[256] = "";
    lgh_engine_t want = p->a.engine != LGH_ENGINE_AUTO ? p->a.engine : ctx->env_engine;
    if (want != LGH_ENGINE_AUTO) {
        const lgh_engine_ops_t *e = NULL;
        const lgh_status_t s = forced_engine(ctx, want, &e);
        if (s != LGH_STATUS_SUCCESS) return s;
        lgh_math_settle(p, e->id);
        if (e->can_implement(ctx, p, why, sizeof why) != LGH_STATUS_SUCCESS) {
            return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED, "engine %s cannot run this problem: %s",
                                 e->name, why);
        }
        *out = e;
        return LGH_STATUS_SUCCESS;
    }
    /* A measured choice (lgh_tune, or the cache file) goes first, if it can still run p
     * in the mode it was timed in. */
    const lgh_engine_ops_t *tuned = lgh_find_engine(tuned_id);
    if (tuned && tuned->available(ctx)) {
        lgh_problem_t q = *p;
        lgh_math_settle(&q, tuned->id);
        if (tuned->can_implement(ctx, &q, why, sizeof why) == LGH_STATUS_SUCCESS) {
            *p = q;
            *out = tuned;
            return LGH_STATUS_SUCCESS;
        }
    }
    const lgh_engine_ops_t *best = NULL;
    int best_rank = 0;
    for (int i = 0; i < lgh_engine_count(); ++i) {
        const lgh_engine_ops_t *e = lgh_engine_at(i);
        if (!e->available(ctx) || e->can_implement(ctx, p, why, sizeof why) != LGH_STATUS_SUCCESS)
            continue;
        int rank = auto_rank(ctx, e->id, p);
        if (!best || rank < best_rank) {
            best = e;
            best_rank = rank;
        }
    }
    if (best) {
        lgh_math_settle(p, best->id);
        *out = best;
        return LGH_STATUS_SUCCESS;
    }
    return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED, "no engine can run this problem on %s",
                         ctx->description);
}

/* The engine for a checked problem (p's math settled for it), and (variant, may be NULL)
 * the variant it runs: the tuned one when p was tuned on that engine, else -1. One lookup
 * of the tuning table, keyed by the problem as asked. */
static lgh_status_t choose_engine(struct lgh_context *ctx, lgh_problem_t *p,
                                  const lgh_engine_ops_t **out, int *variant)
{
    int tuned_variant;
    const lgh_engine_t tuned_id = lgh_tune_lookup(ctx, p, &tuned_variant);
    const lgh_status_t s = pick_engine(ctx, p, tuned_id, out);
    if (variant) *variant = s == LGH_STATUS_SUCCESS && (*out)->id == tuned_id ? tuned_variant : -1;
    return s;
}

/* The math a checked problem reports: its concrete mode for float32 data, DEFAULT for
 * 16-bit data (which ignores it). */
static lgh_math_t reported_math(const lgh_problem_t *p)
{
    return p->a.dtype == LGH_DTYPE_FLOAT32 ? p->a.math : LGH_MATH_DEFAULT;
}

/* lgh_plan and lgh_plan_math: the engine lgh_forward would run, its workspace, its math. */
static lgh_status_t plan(lgh_context_t ctx, const lgh_args_t *args, lgh_engine_t *engine,
                         size_t *workspace_bytes, lgh_math_t *math)
{
    lgh_problem_t p;
    lgh_status_t s = lgh_check_args(ctx, args, &p);
    if (s != LGH_STATUS_SUCCESS) return s;
    /* Engines answer can_implement from facts of the current device (occupancy). */
    lgh_device_scope_t scope;
    s = lgh_device_enter(ctx, &scope);
    if (s != LGH_STATUS_SUCCESS) return s;
    const lgh_engine_ops_t *e = NULL;
    lgh_context_lock(ctx);
    s = choose_engine(ctx, &p, &e, NULL);
    if (s == LGH_STATUS_SUCCESS) {
        if (engine) *engine = e->id;
        if (workspace_bytes) *workspace_bytes = e->workspace_size(ctx, &p);
        if (math) *math = reported_math(&p);
        lgh_clear_error(ctx);
    }
    lgh_context_unlock(ctx);
    lgh_device_leave(&scope);
    return s;
}

lgh_status_t lgh_plan(lgh_context_t ctx, const lgh_args_t *args, lgh_engine_t *engine,
                      size_t *workspace_bytes)
{
    return plan(ctx, args, engine, workspace_bytes, NULL);
}

lgh_status_t lgh_plan_math(lgh_context_t ctx, const lgh_args_t *args, lgh_math_t *math)
{
    if (!ctx) return LGH_STATUS_NULL_POINTER;
    if (!math) return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER, "lgh_plan_math: math is NULL");
    return plan(ctx, args, NULL, NULL, math);
}

lgh_status_t lgh_resolve_math(lgh_context_t ctx, lgh_dtype_t dtype, lgh_math_t math,
                              lgh_math_t *resolved)
{
    if (!ctx) return LGH_STATUS_NULL_POINTER;
    if (!resolved)
        return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER, "lgh_resolve_math: resolved is NULL");
    const lgh_status_t s = lgh_check_dtype_math(ctx, dtype, math);
    if (s != LGH_STATUS_SUCCESS) return s;
    *resolved = dtype == LGH_DTYPE_FLOAT32 ? lgh_math_for_device(&ctx->props, dtype, math)
                                           : LGH_MATH_DEFAULT;
    lgh_clear_error(ctx);
    return LGH_STATUS_SUCCESS;
}

/* Whether a caller's workspace of `bytes` is enough for every engine that can run p.
 * Tuning on lgh_forward times them all on the call's own y (and mean, rstd, h), so it
 * must not start when the engine it then picks could still refuse the workspace: a
 * refused call writes nothing. */
static bool workspace_fits_every_engine(struct lgh_context *ctx, const lgh_problem_t *p,
                                        size_t bytes)
{
    char why[256];
    for (int i = 0; i < lgh_engine_count(); ++i) {
        const lgh_engine_ops_t *e = lgh_engine_at(i);
        lgh_problem_t q = *p; /* each engine is timed in its own accurate mode (tune.c) */
        lgh_math_settle(&q, e->id);
        if (e->available(ctx) && e->can_implement(ctx, &q, why, sizeof why) == LGH_STATUS_SUCCESS &&
            e->workspace_size(ctx, &q) > bytes)
            return false;
    }
    return true;
}

/* The engine's run (forward or backward) on a workspace from the caller or leased from the
 * context, with ctx's lock held; a reentrant engine runs with it dropped (context.h). The
 * lease ends when the run returns: GPU work enqueued on it stays ordered on its stream. */
typedef lgh_status_t (*run_fn)(const lgh_engine_ops_t *e, struct lgh_context *ctx, const void *p,
                               void *ws, size_t bytes, void *stream);

static lgh_status_t run_fwd(const lgh_engine_ops_t *e, struct lgh_context *ctx, const void *p,
                            void *ws, size_t bytes, void *stream)
{
    return e->run(ctx, (const lgh_problem_t *)p, ws, bytes, stream);
}

static lgh_status_t run_bwd(const lgh_engine_ops_t *e, struct lgh_context *ctx, const void *p,
                            void *ws, size_t bytes, void *stream)
{
    return e->bwd_run(ctx, (const lgh_bwd_problem_t *)p, ws, bytes, stream);
}

static lgh_status_t run_engine(struct lgh_context *ctx, const lgh_engine_ops_t *e, run_fn fn,
                               const void *p, int variant, size_t need, void *workspace,
                               size_t workspace_bytes, void *stream, const char *what)
{
    lgh_ws_lease_t lease = {NULL, -1};
    void *ws = workspace;
    lgh_status_t s;
    if (workspace == NULL) {
        s = lgh_workspace_acquire(ctx, need, stream, &lease);
        if (s != LGH_STATUS_SUCCESS) return s;
        ws = lease.ptr;
    } else if (workspace_bytes < need) {
        return lgh_set_error(ctx, LGH_STATUS_WORKSPACE_TOO_SMALL,
                             "workspace of %zu bytes given, engine %s needs %zu%s", workspace_bytes,
                             e->name, need, what);
    }
    lgh_set_run_variant(ctx, variant);
    if (e->reentrant) {
        lgh_context_unlock(ctx);
        s = fn(e, ctx, p, ws, need, stream);
        lgh_context_lock(ctx);
    } else {
        s = fn(e, ctx, p, ws, need, stream);
    }
    lgh_set_run_variant(ctx, -1);
    lgh_workspace_release(ctx, &lease);
    if (s == LGH_STATUS_SUCCESS) lgh_clear_error(ctx);
    return s;
}

/* After the checks: the engine choice, the workspace and the run, with the context's
 * device current (context.h: lgh_device_enter) and its lock held. */
static lgh_status_t forward_on_device(struct lgh_context *ctx, const lgh_problem_t *p, void *workspace,
                                      size_t workspace_bytes, void *stream)
{
    lgh_status_t s;
    /* LGH_TUNE=1: the first AUTO call of an untuned problem measures the engines first
     * (not a call whose own workspace is too small for one of them: it runs untuned, or
     * is refused before anything is written). */
    const lgh_engine_t want = p->a.engine != LGH_ENGINE_AUTO ? p->a.engine : ctx->env_engine;
    if (want == LGH_ENGINE_AUTO && lgh_tune_on_forward(ctx) &&
        lgh_tune_lookup(ctx, p, NULL) == LGH_ENGINE_AUTO &&
        (workspace == NULL || workspace_fits_every_engine(ctx, p, workspace_bytes))) {
        s = lgh_tune_problem(ctx, p, stream, NULL, NULL, NULL, NULL, 0, NULL);
        if (s != LGH_STATUS_SUCCESS) return s;
    }
    const lgh_engine_ops_t *e = NULL;
    int variant;
    lgh_problem_t q = *p; /* its math settled for the engine that runs it */
    s = choose_engine(ctx, &q, &e, &variant);
    if (s != LGH_STATUS_SUCCESS) return s;

    return run_engine(ctx, e, run_fwd, &q, variant, e->workspace_size(ctx, &q), workspace,
                      workspace_bytes, stream, "");
}

lgh_status_t lgh_forward(lgh_context_t ctx, const lgh_args_t *args, void *workspace,
                         size_t workspace_bytes, void *stream)
{
    lgh_problem_t p;
    lgh_status_t s = lgh_check_args(ctx, args, &p);
    if (s != LGH_STATUS_SUCCESS) return s;
    s = lgh_check_memory(ctx, &p);
    if (s != LGH_STATUS_SUCCESS) return s;
    lgh_device_scope_t scope;
    s = lgh_device_enter(ctx, &scope);
    if (s != LGH_STATUS_SUCCESS) return s;
    lgh_context_lock(ctx);
    s = forward_on_device(ctx, &p, workspace, workspace_bytes, stream);
    lgh_context_unlock(ctx);
    lgh_device_leave(&scope);
    return s;
}

lgh_status_t lgh_kernel_info(lgh_context_t ctx, lgh_kernel_info_t *out, int capacity, int *count)
{
    if (!ctx || !count) return LGH_STATUS_NULL_POINTER;
    if (capacity > 0 && !out) return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER, "out is NULL");
    lgh_device_scope_t scope;
    lgh_status_t s = lgh_device_enter(ctx, &scope);
    if (s != LGH_STATUS_SUCCESS) return s;
    int total = 0;
    lgh_context_lock(ctx);
    for (int i = 0; i < lgh_engine_count(); ++i) {
        const lgh_engine_ops_t *e = lgh_engine_at(i);
        if (!e->kernel_info || !e->available(ctx)) continue;
        int room = capacity > total ? capacity - total : 0;
        total += e->kernel_info(ctx, room ? out + total : NULL, room);
    }
    lgh_context_unlock(ctx);
    lgh_device_leave(&scope);
    *count = total;
    return LGH_STATUS_SUCCESS;
}

/* ---- backward ------------------------------------------------------------------------- */

/* AUTO's preference for the backward (lower first). Both GPU engines run the same norm
 * backward kernels; they differ in the products: sm90 computes 3xtf32 products with its
 * own fused kernel (cuBLAS has no float32-accurate tensor-core mode on Hopper), cublaslt
 * with cuBLASLt in every other mode. */
static int bwd_auto_rank(lgh_engine_t id, const lgh_bwd_problem_t *p)
{
    const bool accurate = p->f.a.dtype == LGH_DTYPE_FLOAT32 && p->f.a.math == LGH_MATH_3XTF32;
    switch (id) {
    case LGH_ENGINE_SM90: return accurate ? 0 : 20;
    case LGH_ENGINE_CUBLASLT: return 10;
    case LGH_ENGINE_CPU: return 40;
    default: return 100;
    }
}

/* As pick_engine, for the backward (not tuned): p's math settled for the engine. */
static lgh_status_t bwd_pick_engine(struct lgh_context *ctx, lgh_bwd_problem_t *p,
                                    const lgh_engine_ops_t **out)
{
    char why[256] = "";
    lgh_engine_t want = p->f.a.engine != LGH_ENGINE_AUTO ? p->f.a.engine : ctx->env_engine;
    if (want != LGH_ENGINE_AUTO) {
        const lgh_engine_ops_t *e = NULL;
        const lgh_status_t s = forced_engine(ctx, want, &e);
        if (s != LGH_STATUS_SUCCESS) return s;
        lgh_math_settle(&p->f, e->id);
        if (!e->bwd_run) {
            return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED, "engine %s has no backward",
                                 e->name);
        }
        if (e->bwd_can_implement(ctx, p, why, sizeof why) != LGH_STATUS_SUCCESS) {
            return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED,
                                 "engine %s cannot run this backward: %s", e->name, why);
        }
        *out = e;
        return LGH_STATUS_SUCCESS;
    }
    const lgh_engine_ops_t *best = NULL;
    int best_rank = 0;
    for (int i = 0; i < lgh_engine_count(); ++i) {
        const lgh_engine_ops_t *e = lgh_engine_at(i);
        if (!e->bwd_run || !e->available(ctx) ||
            e->bwd_can_implement(ctx, p, why, sizeof why) != LGH_STATUS_SUCCESS)
            continue;
        const int rank = bwd_auto_rank(e->id, p);
        if (!best || rank < best_rank) {
            best = e;
            best_rank = rank;
        }
    }
    if (best) {
        lgh_math_settle(&p->f, best->id);
        *out = best;
        return LGH_STATUS_SUCCESS;
    }
    return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED,
                         "no engine can run this backward on %s", ctx->description);
}

static lgh_status_t backward_plan(lgh_context_t ctx, const lgh_backward_args_t *args,
                                  lgh_engine_t *engine, size_t *workspace_bytes, lgh_math_t *math)
{
    lgh_bwd_problem_t p;
    lgh_status_t s = lgh_check_backward(ctx, args, &p);
    if (s != LGH_STATUS_SUCCESS) return s;
    lgh_device_scope_t scope;
    s = lgh_device_enter(ctx, &scope);
    if (s != LGH_STATUS_SUCCESS) return s;
    const lgh_engine_ops_t *e = NULL;
    lgh_context_lock(ctx);
    s = bwd_pick_engine(ctx, &p, &e);
    if (s == LGH_STATUS_SUCCESS) {
        if (engine) *engine = e->id;
        if (workspace_bytes) *workspace_bytes = e->bwd_workspace_size(ctx, &p);
        if (math) *math = reported_math(&p.f);
        lgh_clear_error(ctx);
    }
    lgh_context_unlock(ctx);
    lgh_device_leave(&scope);
    return s;
}

lgh_status_t lgh_backward_plan(lgh_context_t ctx, const lgh_backward_args_t *args,
                               lgh_engine_t *engine, size_t *workspace_bytes)
{
    return backward_plan(ctx, args, engine, workspace_bytes, NULL);
}

lgh_status_t lgh_backward_plan_math(lgh_context_t ctx, const lgh_backward_args_t *args,
                                    lgh_math_t *math)
{
    if (!ctx) return LGH_STATUS_NULL_POINTER;
    if (!math)
        return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER, "lgh_backward_plan_math: math is NULL");
    return backward_plan(ctx, args, NULL, NULL, math);
}

lgh_status_t lgh_backward(lgh_context_t ctx, const lgh_backward_args_t *args, void *workspace,
                          size_t workspace_bytes, void *stream)
{
    lgh_bwd_problem_t p;
    lgh_status_t s = lgh_check_backward(ctx, args, &p);
    if (s != LGH_STATUS_SUCCESS) return s;
    s = lgh_check_backward_memory(ctx, &p);
    if (s != LGH_STATUS_SUCCESS) return s;
    lgh_device_scope_t scope;
    s = lgh_device_enter(ctx, &scope);
    if (s != LGH_STATUS_SUCCESS) return s;
    const lgh_engine_ops_t *e = NULL;
    lgh_context_lock(ctx);
    s = bwd_pick_engine(ctx, &p, &e);
    if (s == LGH_STATUS_SUCCESS)
        s = run_engine(ctx, e, run_bwd, &p, -1, e->bwd_workspace_size(ctx, &p), workspace,
                       workspace_bytes, stream, " for the backward");
    lgh_context_unlock(ctx);
    lgh_device_leave(&scope);
    return s;
}
