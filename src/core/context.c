/* Context life cycle, error messages, device facts, the context-owned workspaces
 * (context.h says how threads share a context and its workspaces), and the services
 * engine.h promises engines.
 *
 * Layering (docs/ARCHITECTURE.md): uses the registry alone among core files, to free the
 * engines' per-context state; the tuning table is freed through ctx->tune_free. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <sched.h>
#include "context.h"
#include "registry.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef LGH_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif


/* ---- messages and the run's variant, per thread ------------------------------------------
 *
 * Each thread keeps the message of its last failing call on each of the last
 * MESSAGE_SLOTS contexts it used, keyed by the context's serial (never reused, unlike its
 * address); serial 0 holds lgh_create's, which has no context. A thread that fails on more
 * contexts than that loses the oldest message (lgh_last_error then gives ""). */
enum { MESSAGE_SLOTS = 8 };

typedef struct message_slot {
    uint64_t serial; /* 0 and text "" when unused (or lgh_create's) */
    uint64_t used;   /* per-thread clock of its last write */
    char text[LGH_MESSAGE_BYTES];
} message_slot_t;

static _Thread_local message_slot_t thread_messages[MESSAGE_SLOTS + 1]; /* [0]: lgh_create */
static _Thread_local uint64_t thread_message_clock;
static _Thread_local uint64_t thread_variant_serial; /* lgh_set_run_variant's context */
static _Thread_local int thread_variant = -1;

static _Atomic uint64_t next_serial = 1;

/* The calling thread's slot for ctx (NULL: lgh_create's); with make, one is taken (the
 * least recently written) when ctx has none. */
static message_slot_t *message_slot(const struct lgh_context *ctx, int make)
{
    if (!ctx) return &thread_messages[0];
    message_slot_t *oldest = &thread_messages[1];
    for (int i = 1; i <= MESSAGE_SLOTS; ++i) {
        message_slot_t *m = &thread_messages[i];
        if (m->serial == ctx->serial) return m;
        if (m->used < oldest->used) oldest = m;
    }
    if (!make) return NULL;
    oldest->serial = ctx->serial;
    oldest->text[0] = '\0';
    return oldest;
}

lgh_status_t lgh_set_error(struct lgh_context *ctx, lgh_status_t status, const char *fmt, ...)
{
    message_slot_t *m = message_slot(ctx, 1);
    m->used = ++thread_message_clock;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->text, LGH_MESSAGE_BYTES, fmt, ap);
    va_end(ap);
    return status;
}

void lgh_clear_error(const struct lgh_context *ctx)
{
    message_slot_t *m = message_slot(ctx, 0);
    if (m) m->text[0] = '\0';
}

const char *lgh_last_error(lgh_context_t ctx)
{
    const message_slot_t *m = message_slot(ctx, 0);
    return m ? m->text : "";
}

void lgh_set_run_variant(const struct lgh_context *ctx, int variant)
{
    thread_variant_serial = ctx->serial;
    thread_variant = variant;
}

int lgh_engine_variant(const struct lgh_context *ctx)
{
    return ctx && thread_variant_serial == ctx->serial ? thread_variant : -1;
}

void lgh_context_lock(struct lgh_context *ctx) { pthread_mutex_lock(&ctx->lock); }
void lgh_context_unlock(struct lgh_context *ctx) { pthread_mutex_unlock(&ctx->lock); }

void **lgh_engine_state(struct lgh_context *ctx, lgh_engine_t engine)
{
    return &ctx->engine_state[engine];
}

const lgh_device_props_t *lgh_device_props(const struct lgh_context *ctx) { return &ctx->props; }

int lgh_context_device(lgh_context_t ctx) { return ctx ? ctx->props.ordinal : LGH_DEVICE_CPU; }

const char *lgh_device_description(lgh_context_t ctx) { return ctx ? ctx->description : ""; }

int lgh_version(void) { return LGH_VERSION; }

/* Cores this process may run on (respects taskset and container CPU sets). */
static int cpu_thread_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static lgh_status_t init_cpu(struct lgh_context *ctx)
{
    ctx->props.ordinal = LGH_DEVICE_CPU;
    ctx->props.cpu_threads = cpu_thread_count();
    snprintf(ctx->description, sizeof ctx->description, "CPU, %d threads, %s",
             ctx->props.cpu_threads, lgh_cpu_blas_name());
    return LGH_STATUS_SUCCESS;
}

static lgh_status_t init_gpu(struct lgh_context *ctx, int device)
{
#ifdef LGH_HAVE_CUDA
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        return lgh_set_error(NULL, LGH_STATUS_NO_DEVICE, "no CUDA device usable: %s",
                             cudaGetErrorString(e));
    }
    if (device < 0 || device >= count) {
        return lgh_set_error(NULL, LGH_STATUS_NO_DEVICE,
                             "CUDA device %d does not exist (%d device%s present)", device, count,
                             count == 1 ? "" : "s");
    }
    struct cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
        return lgh_set_error(NULL, LGH_STATUS_CUDA_ERROR, "cudaGetDeviceProperties(%d): %s", device,
                             cudaGetErrorString(e));
    }
    ctx->props.ordinal = device;
    ctx->props.cc_major = prop.major;
    ctx->props.cc_minor = prop.minor;
    ctx->props.sm_count = prop.multiProcessorCount;
    ctx->props.smem_per_block_optin = prop.sharedMemPerBlockOptin;
    ctx->props.l2_bytes = (size_t)prop.l2CacheSize;
    ctx->props.cpu_threads = cpu_thread_count();
    snprintf(ctx->description, sizeof ctx->description, "%.160s, sm_%d%d, %d SMs, %.0f MiB", prop.name,
             prop.major, prop.minor, prop.multiProcessorCount,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0));
    return LGH_STATUS_SUCCESS;
#else
    (void)ctx;
    return lgh_set_error(NULL, LGH_STATUS_NO_DEVICE,
                         "CUDA device %d requested, but lgh was built without CUDA", device);
#endif
}

/* LGH_FAULT_INJECT (context.h): "alloc:N" with 1 <= N <= LONG_MAX; unset or empty: 0. */
static int parse_fault(const char *env, long *alloc_at)
{
    *alloc_at = 0;
    if (!env || !*env) return 1;
    if (strncmp(env, "alloc:", 6) != 0) return 0;
    const char *digits = env + 6;
    if (*digits < '1' || *digits > '9') return 0;
    char *end;
    errno = 0;
    const long n = strtol(digits, &end, 10);
    if (*end || errno || n < 1) return 0;
    *alloc_at = n;
    return 1;
}

lgh_status_t lgh_create(lgh_context_t *out, int device)
{
    if (!out) return lgh_set_error(NULL, LGH_STATUS_NULL_POINTER, "lgh_create: ctx is NULL");
    *out = NULL;
    if (device < LGH_DEVICE_CPU) {
        return lgh_set_error(NULL, LGH_STATUS_INVALID_VALUE,
                             "device %d: use a CUDA ordinal >= 0 or LGH_DEVICE_CPU (-1)", device);
    }
    struct lgh_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return lgh_set_error(NULL, LGH_STATUS_ALLOC_FAILED, "lgh_create: out of host memory");

    lgh_status_t s = device == LGH_DEVICE_CPU ? init_cpu(ctx) : init_gpu(ctx, device);
    if (s != LGH_STATUS_SUCCESS) {
        free(ctx);
        return s;
    }

    ctx->env_engine = LGH_ENGINE_AUTO;
    const char *env = getenv("LGH_ENGINE");
    if (env && *env && lgh_engine_from_name(env, &ctx->env_engine) != LGH_STATUS_SUCCESS) {
        free(ctx);
        return lgh_set_error(NULL, LGH_STATUS_INVALID_VALUE,
                             "LGH_ENGINE=%s is not an engine (auto, cpu, cublaslt, sm80, sm90)", env);
    }
    env = getenv("LGH_FAULT_INJECT");
    if (!parse_fault(env, &ctx->fault_alloc_at)) {
        free(ctx);
        return lgh_set_error(NULL, LGH_STATUS_INVALID_VALUE,
                             "LGH_FAULT_INJECT=%.100s: expected alloc:N (N >= 1), the N-th "
                             "workspace allocation of the context fails",
                             env);
    }
    const int e = pthread_mutex_init(&ctx->lock, NULL);
    if (e != 0) {
        free(ctx);
        return lgh_set_error(NULL, e == ENOMEM ? LGH_STATUS_ALLOC_FAILED : LGH_STATUS_INTERNAL_ERROR,
                             "lgh_create: cannot create the context's mutex (error %d)", e);
    }
    ctx->serial = atomic_fetch_add(&next_serial, 1);
    *out = ctx;
    return LGH_STATUS_SUCCESS;
}

/* ---- workspaces (context.h) ------------------------------------------------------------ */

static int on_gpu(const struct lgh_context *ctx) { return ctx->props.ordinal != LGH_DEVICE_CPU; }

/* Frees a block of ctx's memory space. GPU: with the context's device current (the entry
 * points or lgh_destroy make it so); cudaFree waits for the device. */
static void free_block(const struct lgh_context *ctx, void *ptr)
{
    if (!ptr) return;
#ifdef LGH_HAVE_CUDA
    if (on_gpu(ctx)) {
        if (cudaFree(ptr) != cudaSuccess) cudaGetLastError(); /* ours: not for a later check */
        return;
    }
#endif
    (void)ctx;
    free(ptr);
}

lgh_status_t lgh_destroy(lgh_context_t ctx)
{
    if (!ctx) return LGH_STATUS_SUCCESS;
    for (int id = 0; id < LGH_ENGINE_COUNT; ++id) {
        const lgh_engine_ops_t *e = lgh_find_engine((lgh_engine_t)id);
        if (ctx->engine_state[id] && e && e->destroy_state) e->destroy_state(ctx->engine_state[id]);
    }
#ifdef LGH_HAVE_CUDA
    int prev = 0;
    if (on_gpu(ctx)) {
        cudaGetDevice(&prev);
        cudaSetDevice(ctx->props.ordinal);
    }
#endif
    for (int i = 0; i < ctx->ws_count; ++i) free_block(ctx, ctx->ws[i].ptr);
    for (int i = 0; i < ctx->retired_count; ++i) free_block(ctx, ctx->retired[i]);
#ifdef LGH_HAVE_CUDA
    if (on_gpu(ctx)) cudaSetDevice(prev);
#endif
    free(ctx->ws);
    free(ctx->retired);
    if (ctx->tune) ctx->tune_free(ctx->tune);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
    return LGH_STATUS_SUCCESS;
}

lgh_status_t lgh_device_enter(struct lgh_context *ctx, lgh_device_scope_t *scope)
{
    scope->previous = 0;
    scope->switched = 0;
#ifdef LGH_HAVE_CUDA
    if (ctx->props.ordinal == LGH_DEVICE_CPU) return LGH_STATUS_SUCCESS;
    cudaError_t e = cudaGetDevice(&scope->previous);
    if (e == cudaSuccess && scope->previous != ctx->props.ordinal) {
        e = cudaSetDevice(ctx->props.ordinal);
        scope->switched = e == cudaSuccess;
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "cannot make device %d current: %s",
                             ctx->props.ordinal, cudaGetErrorString(e));
    }
#else
    (void)ctx;
#endif
    return LGH_STATUS_SUCCESS;
}

void lgh_device_leave(const lgh_device_scope_t *scope)
{
#ifdef LGH_HAVE_CUDA
    if (scope->switched) cudaSetDevice(scope->previous);
#else
    (void)scope;
#endif
}

/* The stream a call's work goes to, as the table's key: cudaStreamLegacy is the NULL
 * stream, cudaStreamPerThread a different stream on every thread. */
static void stream_key(const struct lgh_context *ctx, void *stream, void **key, uintptr_t *thread)
{
    *key = stream;
    *thread = 0;
#ifdef LGH_HAVE_CUDA
    if (stream == (void *)cudaStreamLegacy) *key = NULL;
    if (stream == (void *)cudaStreamPerThread) *thread = (uintptr_t)pthread_self();
#endif
    (void)ctx;
}

/* Whether work enqueued on `stream` now is being captured into a graph (or that cannot be
 * told: then a block is kept rather than freed). */
static int capturing(const struct lgh_context *ctx, void *stream)
{
#ifdef LGH_HAVE_CUDA
    if (on_gpu(ctx)) {
        enum cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
        const cudaError_t e = cudaStreamIsCapturing((cudaStream_t)stream, &st);
        if (e != cudaSuccess) {
            cudaGetLastError();
            return 1;
        }
        return st != cudaStreamCaptureStatusNone;
    }
#endif
    (void)ctx, (void)stream;
    return 0;
}

/* Keeps a block a capture may use until lgh_destroy; 0 when even the list cannot grow. */
static int retire(struct lgh_context *ctx, void *ptr)
{
    if (ctx->retired_count == ctx->retired_capacity) {
        const int cap = ctx->retired_capacity ? 2 * ctx->retired_capacity : 4;
        void **grown = realloc(ctx->retired, (size_t)cap * sizeof *grown);
        if (!grown) return 0;
        ctx->retired = grown;
        ctx->retired_capacity = cap;
    }
    ctx->retired[ctx->retired_count++] = ptr;
    return 1;
}

/* A new slot at the end of the table (empty, not busy); -1 when the table cannot grow. */
static int add_slot(struct lgh_context *ctx)
{
    if (ctx->ws_count == ctx->ws_capacity) {
        const int cap = ctx->ws_capacity ? 2 * ctx->ws_capacity : 4;
        lgh_ws_slot_t *grown = realloc(ctx->ws, (size_t)cap * sizeof *grown);
        if (!grown) return -1;
        ctx->ws = grown;
        ctx->ws_capacity = cap;
    }
    ctx->ws[ctx->ws_count] = (lgh_ws_slot_t){0};
    return ctx->ws_count++;
}

/* Allocates `bytes` for slot i, replacing its block (freed, or retired while capturing). */
static lgh_status_t grow_slot(struct lgh_context *ctx, int i, size_t bytes, void *stream)
{
    lgh_ws_slot_t *w = &ctx->ws[i];
    const int gpu = on_gpu(ctx);
    if (w->ptr) {
        /* Growing happens on the first call of a larger problem (on this stream) only. */
        if (gpu && capturing(ctx, stream)) {
            if (!retire(ctx, w->ptr))
                return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED,
                                     "could not grow the workspace during a graph capture: out of "
                                     "host memory for its bookkeeping");
        } else {
            free_block(ctx, w->ptr);
        }
        w->ptr = NULL;
        w->bytes = 0;
    }
    const long n = ++ctx->alloc_count;
    const int injected = ctx->fault_alloc_at > 0 && n == ctx->fault_alloc_at;
    const char *note = injected ? " (fault injected by LGH_FAULT_INJECT)" : "";
#ifdef LGH_HAVE_CUDA
    if (gpu) {
        cudaError_t e = cudaErrorMemoryAllocation;
        if (!injected) {
            /* Relaxed: allowed while this thread captures; the block is the context's,
             * outside any graph (context.h). */
            enum cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
            const cudaError_t me = cudaThreadExchangeStreamCaptureMode(&mode);
            e = cudaMalloc(&w->ptr, bytes);
            if (me == cudaSuccess) cudaThreadExchangeStreamCaptureMode(&mode);
            if (e != cudaSuccess) {
                w->ptr = NULL;
                cudaGetLastError(); /* not sticky: later launches must not see it */
            }
        }
        if (e != cudaSuccess) {
            return lgh_set_error(ctx, e == cudaErrorMemoryAllocation ? LGH_STATUS_ALLOC_FAILED
                                                                     : LGH_STATUS_CUDA_ERROR,
                                 "could not allocate %zu bytes of workspace on device %d: %s%s",
                                 bytes, ctx->props.ordinal, cudaGetErrorString(e), note);
        }
    } else
#endif
    {
        w->ptr = injected ? NULL : malloc(bytes);
        if (!w->ptr) {
            return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED,
                                 "could not allocate %zu bytes of host workspace%s", bytes, note);
        }
    }
    w->bytes = bytes;
    return LGH_STATUS_SUCCESS;
}

/* GPU: the slot of the call's stream, made when it has none (taking the least recently
 * used stream's when the table is full and this call is not being captured). */
static lgh_status_t stream_slot(struct lgh_context *ctx, void *stream, int *out)
{
    void *key;
    uintptr_t thread;
    stream_key(ctx, stream, &key, &thread);
    int lru = -1;
    for (int i = 0; i < ctx->ws_count; ++i) {
        if (ctx->ws[i].stream == key && ctx->ws[i].thread == thread) {
            *out = i;
            return LGH_STATUS_SUCCESS;
        }
        if (lru < 0 || ctx->ws[i].last_use < ctx->ws[lru].last_use) lru = i;
    }
    int i;
    if (ctx->ws_count >= LGH_WS_STREAM_SLOTS && !capturing(ctx, stream)) {
        i = lru;
        free_block(ctx, ctx->ws[i].ptr);
        ctx->ws[i] = (lgh_ws_slot_t){0};
    } else if ((i = add_slot(ctx)) < 0) {
        return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED,
                             "could not record a workspace for a new stream: out of host memory");
    }
    ctx->ws[i].stream = key;
    ctx->ws[i].thread = thread;
    *out = i;
    return LGH_STATUS_SUCCESS;
}

/* CPU: an idle slot for a call: the smallest that holds `bytes`, else the largest idle
 * one (to grow), else a new one. */
static lgh_status_t idle_slot(struct lgh_context *ctx, size_t bytes, int *out)
{
    int fit = -1, largest = -1;
    for (int i = 0; i < ctx->ws_count; ++i) {
        const lgh_ws_slot_t *w = &ctx->ws[i];
        if (w->busy) continue;
        if (w->bytes >= bytes && (fit < 0 || w->bytes < ctx->ws[fit].bytes)) fit = i;
        if (largest < 0 || w->bytes > ctx->ws[largest].bytes) largest = i;
    }
    int i = fit >= 0 ? fit : largest;
    if (i < 0 && (i = add_slot(ctx)) < 0)
        return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED,
                             "could not record another workspace: out of host memory");
    *out = i;
    return LGH_STATUS_SUCCESS;
}

lgh_status_t lgh_workspace_acquire(struct lgh_context *ctx, size_t bytes, void *stream,
                                   lgh_ws_lease_t *lease)
{
    lease->ptr = NULL;
    lease->slot = -1;
    if (bytes == 0) return LGH_STATUS_SUCCESS;
    int i = -1;
    lgh_status_t s = on_gpu(ctx) ? stream_slot(ctx, stream, &i) : idle_slot(ctx, bytes, &i);
    if (s != LGH_STATUS_SUCCESS) return s;
    if (ctx->ws[i].bytes < bytes && (s = grow_slot(ctx, i, bytes, stream)) != LGH_STATUS_SUCCESS)
        return s;
    lgh_ws_slot_t *w = &ctx->ws[i];
    w->last_use = ++ctx->ws_clock;
    if (!on_gpu(ctx)) w->busy = 1;
    lease->ptr = w->ptr;
    lease->slot = i;
    return LGH_STATUS_SUCCESS;
}

void lgh_workspace_release(struct lgh_context *ctx, lgh_ws_lease_t *lease)
{
    if (lease->slot >= 0 && lease->slot < ctx->ws_count) ctx->ws[lease->slot].busy = 0;
    lease->ptr = NULL;
    lease->slot = -1;
}
