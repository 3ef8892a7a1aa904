/* The context: what an lgh_context_t owns. Internal to src/core.
 *
 * Layering (docs/ARCHITECTURE.md): above the registry, below check.c, the tuner and
 * dispatch. context.c uses the registry only (to free each engine's state); the tuner
 * hangs its table here with its own destructor, so nothing here calls up into it.
 * Engines must not include this header: what they may use of a context is engine.h's
 * services (lgh_device_props, lgh_engine_state, lgh_set_error, lgh_engine_variant).
 *
 * ---- Threads ---------------------------------------------------------------------------
 *
 * A context may be used by several host threads at once (include/lgh.h). What it owns is
 * guarded by one mutex, `lock`:
 *
 *   - the engines' per-context state (cuBLASLt handle and plan cache, kernel facts, launch
 *     fallbacks), which engines create and change inside their members;
 *   - the tuning table and its file (tune.c);
 *   - the workspace table below, and the fault-injection counter.
 *
 * The entry points (dispatch.c, tune.c) take the lock after the argument checks, which
 * touch nothing of the context. Every engine member is called with the lock held, except
 * run / bwd_run of an engine whose ops say `reentrant` (the CPU engine: it keeps no
 * per-context state and computes for a long time), which runs after the lock is dropped,
 * on a workspace leased to that call alone. GPU engines run under the lock: their run only
 * enqueues work, so the lock is held for microseconds once a problem's plans exist.
 * lgh_tune holds the lock while it times (it synchronises anyway), except around the
 * caller's progress callback.
 *
 * What is not behind the lock: `props`, `description`, `env_engine`, `serial` and `fault`'s
 * setting are written once by lgh_create; the variant of the run in progress and the error
 * messages are per thread (context.c: thread-local storage keyed by the context's serial,
 * so a message never leaks to another context that reuses a destroyed one's address).
 *
 * ---- Workspaces --------------------------------------------------------------------------
 *
 * A call given no workspace uses one the context owns. Kernels run after the call returns,
 * so serialising the calls is not enough on a GPU: two streams must never share a
 * workspace. GPU contexts therefore keep one workspace per stream, in a table keyed by the
 * stream handle (cudaStreamLegacy counts as NULL, the legacy default stream;
 * cudaStreamPerThread is told apart per calling thread, since it names another stream on
 * each). Work on one stream runs in the order it was enqueued, and a call enqueues all of
 * its work under the lock, so the stream's own workspace is free for the next call's
 * kernels by the time they start. A stream's workspace only grows (the first call of a
 * larger problem on that stream), with cudaFree of the old block, which waits for the
 * device. The table holds up to LGH_WS_STREAM_SLOTS streams; past that the workspace of
 * the stream used longest ago is freed (cudaFree again) and its slot reused.
 *
 * Graph capture: a call captured on a stream uses (and records in the graph) that
 * stream's workspace. When the stream has none yet, or one too small, it is allocated
 * during the capture with the thread's capture mode switched to relaxed around cudaMalloc:
 * the allocation is the context's, outside the graph (it stays the stream's workspace
 * until a larger uncaptured call or the stream limit replaces it; include/lgh.h tells
 * users). A block replaced during a capture is not freed (the graph being captured may
 * already use it) but kept on `retired` until lgh_destroy. So capture works on a stream
 * lgh has never seen, and after one call for the problem on any stream (which builds the
 * engine's plans) a captured call allocates at most its stream's workspace.
 *
 * CPU contexts have no streams: their workspaces are leased. A call takes an idle one
 * (the smallest that is large enough, else the largest idle one, grown; else a new one),
 * marks it busy, runs without the lock and gives it back. With T threads calling at once
 * a context ends up with T workspaces; no allocation happens once each has grown to the
 * largest problem.
 *
 * ---- Fault injection (tests only) ----------------------------------------------------------
 *
 * LGH_FAULT_INJECT=alloc:N, read once by lgh_create (and then never again), makes the N-th
 * workspace allocation of that context (N >= 1, counting every real allocation of any of
 * its workspaces, host or device, in the order they happen) fail exactly as an
 * out-of-memory would: the status is LGH_STATUS_ALLOC_FAILED, the message says the
 * failure was injected, and the call writes nothing. Later allocations succeed. Any other
 * value makes lgh_create fail with LGH_STATUS_INVALID_VALUE, so a typo cannot silently
 * test nothing. Nothing else reads the variable; it is not part of the public API
 * (include/lgh.h does not mention it) and costs one integer compare per allocation.
 */
#ifndef LGH_CORE_CONTEXT_H
#define LGH_CORE_CONTEXT_H

#include <pthread.h>
#include <stdint.h>

#include "engine.h"

#define LGH_MESSAGE_BYTES 512
#define LGH_WS_STREAM_SLOTS 32 /* per-stream workspaces kept by a GPU context */

/* One workspace: GPU contexts, one per stream; CPU contexts, one per concurrent call. */
typedef struct lgh_ws_slot {
    void *stream;       /* GPU: the stream handle it belongs to */
    uintptr_t thread;   /* GPU, cudaStreamPerThread: the calling thread; else 0 */
    void *ptr;          /* NULL until allocated */
    size_t bytes;
    int busy;           /* CPU: leased to a call in progress */
    uint64_t last_use;  /* GPU: `ws_clock` at its last call (eviction order) */
} lgh_ws_slot_t;

struct lgh_context {
    /* Set by lgh_create, read-only after. */
    lgh_device_props_t props;
    char description[256];
    lgh_engine_t env_engine; /* from LGH_ENGINE at creation; AUTO when unset */
    uint64_t serial;         /* unique per lgh_create in the process; keys the messages */
    long fault_alloc_at;     /* LGH_FAULT_INJECT=alloc:N: N; 0 when not set */

    pthread_mutex_t lock; /* guards everything below */
    void *engine_state[LGH_ENGINE_COUNT];
    struct lgh_tune_cache *tune; /* tuned engine choices (tune.c); NULL until first needed */
    /* Frees `tune`; set by the tuner with it, so that lgh_destroy frees the table without
     * the context depending on the tuner, which sits above it (docs/ARCHITECTURE.md). */
    void (*tune_free)(struct lgh_tune_cache *tune);
    lgh_ws_slot_t *ws;           /* the workspace table (see above) */
    int ws_count, ws_capacity;
    uint64_t ws_clock;
    void **retired; /* GPU blocks replaced during a capture; freed by lgh_destroy */
    int retired_count, retired_capacity;
    long alloc_count; /* workspace allocations so far (fault injection) */
};

/* A workspace handed to one call (lgh_workspace_acquire). */
typedef struct lgh_ws_lease {
    void *ptr;
    int slot; /* index in ctx->ws, or -1 when nothing was leased */
} lgh_ws_lease_t;

/* With ctx->lock held: a workspace of at least `bytes` for a call on `stream` (GPU) or a
 * leased one (CPU), allocated or grown as needed (see above). bytes == 0 gives NULL and
 * leases nothing. On failure sets the message and returns ALLOC_FAILED (out of memory,
 * injected or not) or CUDA_ERROR; nothing is leased then. */
lgh_status_t lgh_workspace_acquire(struct lgh_context *ctx, size_t bytes, void *stream,
                                   lgh_ws_lease_t *lease);
/* With ctx->lock held: ends a lease (CPU: the workspace is idle again). A lease with
 * slot -1 is fine. */
void lgh_workspace_release(struct lgh_context *ctx, lgh_ws_lease_t *lease);

void lgh_context_lock(struct lgh_context *ctx);
void lgh_context_unlock(struct lgh_context *ctx);

/* Empties the calling thread's message for ctx (a call that succeeded). */
void lgh_clear_error(const struct lgh_context *ctx);

/* The variant (lgh_engine_variant) of the engine calls the calling thread makes until the
 * next lgh_set_run_variant; -1 clears it. Per thread, so calls on other threads (or other
 * contexts) never see it. */
void lgh_set_run_variant(const struct lgh_context *ctx, int variant);

/* Makes the context's device current for a stretch of calls and puts the previous one
 * back after: the entry points wrap every engine call in it (run, kernel_info, the tuning
 * timer), so an engine may launch, allocate and query on the current device. A no-op for
 * CPU contexts. */
typedef struct lgh_device_scope {
    int previous;
    int switched;
} lgh_device_scope_t;
lgh_status_t lgh_device_enter(struct lgh_context *ctx, lgh_device_scope_t *scope);
void lgh_device_leave(const lgh_device_scope_t *scope);

#endif
