/*
 * The one internal interface every engine implements (CPU engine, cuBLASLt, sm80, sm90).
 *
 * The core (src/core) validates the user's lgh_args_t into an lgh_problem_t, picks an
 * engine from the registry (registry.c; the choice is dispatch.c's) and calls it. An
 * engine never re-checks what the core has checked; it only answers whether it can
 * implement a valid problem (alignment, sizes its kernels take, device capability), how
 * much workspace it needs, and runs it. docs/ARCHITECTURE.md lists every place to change
 * to add an engine.
 *
 * Layering: this header is the whole of the core an engine may use — the ops it
 * implements and the services below. Engines never include the core's other headers
 * (context.h's layout of a context, the registry, the tuner), so the core can change
 * them without touching an engine; an engine that needs another fact of the context gets
 * a service here.
 */
#ifndef LGH_CORE_ENGINE_H
#define LGH_CORE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lgh.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lgh_context;

/* A validated problem: every field of args checked, leading dimensions resolved
 * (never 0), math resolved (never DEFAULT or ACCURATE; FP32/TF32/3XTF32 for float32 data,
 * TF32 recorded but meaningless for 16-bit data). */
typedef struct lgh_problem {
    lgh_args_t a;
    /* Float32 data asked LGH_MATH_ACCURATE: a.math is FP32 or 3XTF32, whichever the core
     * settled on for the engine that runs it (src/core/math_rule.h). */
    bool accurate;
    int64_t group_size; /* n / groups */
    size_t elem_bytes;  /* 4 or 2 */
    bool want_stats;    /* a.mean and a.rstd both non-NULL */
    bool want_h;        /* a.h non-NULL (a.ldh resolved) */
} lgh_problem_t;

/* A validated backward problem: the forward problem f (its y, mean, rstd and h unset)
 * and the backward's own pointers, leading dimensions resolved (never 0). */
typedef struct lgh_bwd_problem {
    lgh_problem_t f;
    const void *dy;
    int64_t lddy;
    const float *mean, *rstd; /* the forward's (float32 data only), or NULL: from h */
    const void *h; /* NULL: recompute x·Wᵀ + b */
    int64_t ldh;
    void *dx;
    int64_t lddx;
    void *dw;
    int64_t lddw;
    void *dbias, *dgamma, *dbeta;
} lgh_bwd_problem_t;

typedef struct lgh_engine_ops {
    lgh_engine_t id;
    const char *name;
    bool on_gpu;

    /* Built in and usable on ctx's device at all (CPU vs GPU, compute capability). */
    bool (*available)(const struct lgh_context *ctx);

    /* LGH_STATUS_SUCCESS if the engine runs p; otherwise LGH_STATUS_NOT_SUPPORTED and a
     * short reason in why ("ldx*4 is not a multiple of 16 bytes (TMA)"). Must not
     * touch device memory or allocate. */
    lgh_status_t (*can_implement)(struct lgh_context *ctx, const lgh_problem_t *p, char *why,
                                  size_t why_len);

    /* Bytes of workspace run() needs for p (device memory for GPU engines). */
    size_t (*workspace_size)(struct lgh_context *ctx, const lgh_problem_t *p);

    /* Runs p. ws has at least workspace_size() bytes (or is NULL when that is 0).
     * stream is a cudaStream_t for GPU engines, which are called with the context's
     * device current (the entry points wrap run and kernel_info in lgh_device_enter,
     * context.h). On failure call lgh_set_error() and
     * return its status. No host synchronisation; no allocation after the first call
     * for a shape (engine state lives in lgh_engine_state()). */
    lgh_status_t (*run)(struct lgh_context *ctx, const lgh_problem_t *p, void *ws, size_t ws_bytes,
                        void *stream);

    /* Fills up to capacity entries describing the engine's compiled kernels on ctx's
     * device; returns how many exist (may exceed capacity). May be NULL. */
    int (*kernel_info)(struct lgh_context *ctx, lgh_kernel_info_t *out, int capacity);

    /* Frees the engine's per-context state (see lgh_engine_state). May be NULL. */
    void (*destroy_state)(void *state);

    /* Tunable engines: the variants of the engine (a tile configuration and mode, say)
     * that can run p, as small non-negative ids in ids[0 .. capacity), the engine's own
     * first choice first; returns how many there are (may exceed capacity). lgh_tune
     * times each one and records the fastest with the engine; run() then gets it from
     * lgh_engine_variant(). NULL: the engine has one way to run a problem. */
    int (*variants)(struct lgh_context *ctx, const lgh_problem_t *p, int *ids, int capacity);

    /* The backward (lgh_backward), with the same contract as the forward's three; all
     * NULL for an engine without one (a forced engine then answers NOT_SUPPORTED). */
    lgh_status_t (*bwd_can_implement)(struct lgh_context *ctx, const lgh_bwd_problem_t *p,
                                      char *why, size_t why_len);
    size_t (*bwd_workspace_size)(struct lgh_context *ctx, const lgh_bwd_problem_t *p);
    lgh_status_t (*bwd_run)(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *ws,
                            size_t ws_bytes, void *stream);

    /* Threads (src/core/context.h): every member above is called with the context's lock
     * held, so an engine may create and change its per-context state freely, except that
     * run and bwd_run of a reentrant engine are called without it, possibly on several
     * threads at once for one context (each with a workspace of its own). Only an engine
     * of CPU contexts that keeps no per-context state may say true (the CPU engine). */
    bool reentrant;
} lgh_engine_ops_t;

/* --- services the core gives engines (src/core/context.c); the only way an engine
 *     reads or changes anything of a context --- */

/* Records a message for lgh_last_error() and returns status, so engines can write
 * `return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "cudaLaunchKernel: %s", ...);`.
 * Messages are per thread: call it on the thread that called the engine member, never
 * from inside an OpenMP region's worker threads. */
lgh_status_t lgh_set_error(struct lgh_context *ctx, lgh_status_t status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The variant (see lgh_engine_ops_t.variants) the core asks the running engine for: the
 * one being timed while tuning, the tuned one when the problem was tuned on this engine,
 * else -1 (the engine's own choice). Valid inside run(); an id the engine does not know,
 * or that cannot run p, must be treated as -1. Kept per calling thread. */
int lgh_engine_variant(const struct lgh_context *ctx);

/* The engine's per-context state slot (NULL until the engine stores something). The
 * context calls ops->destroy_state on it when destroyed. Guarded by the context's lock,
 * which the core holds around every engine member that may touch it (see reentrant). */
void **lgh_engine_state(struct lgh_context *ctx, lgh_engine_t engine);

/* Device facts the engines need (GPU contexts; zeros on the CPU). */
typedef struct lgh_device_props {
    int ordinal;        /* LGH_DEVICE_CPU for the CPU */
    int cc_major, cc_minor;
    int sm_count;
    size_t smem_per_block_optin; /* bytes */
    size_t l2_bytes;
    int cpu_threads;    /* threads the CPU engine may use */
} lgh_device_props_t;

const lgh_device_props_t *lgh_device_props(const struct lgh_context *ctx);

/* The engines in the build. Each engine folder defines one of these (a .cu file as
 * extern "C" const); registry.c's table lists them. */
extern const lgh_engine_ops_t lgh_engine_cpu;
#ifdef LGH_HAVE_CUDA
extern const lgh_engine_ops_t lgh_engine_cublaslt;
extern const lgh_engine_ops_t lgh_engine_sm90;
extern const lgh_engine_ops_t lgh_engine_sm80;
#endif

#ifdef __cplusplus
}
#endif

#endif /* LGH_CORE_ENGINE_H */
