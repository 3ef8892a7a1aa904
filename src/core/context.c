/* Context life cycle, error messages, device facts, the context-owned workspace. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <sched.h>
#include "context.h"
#include "tune.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef LGH_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif


/* Message of the last failing lgh_create on this thread (no context exists to hold it). */
static _Thread_local char create_message[LGH_MESSAGE_BYTES];

lgh_status_t lgh_set_error(struct lgh_context *ctx, lgh_status_t status, const char *fmt, ...)
{
    char *dst = ctx ? ctx->message : create_message;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, LGH_MESSAGE_BYTES, fmt, ap);
    va_end(ap);
    return status;
}

const char *lgh_last_error(lgh_context_t ctx) { return ctx ? ctx->message : create_message; }

void **lgh_engine_state(struct lgh_context *ctx, lgh_engine_t engine)
{
    return &ctx->engine_state[engine];
}

const lgh_device_props_t *lgh_device_props(const struct lgh_context *ctx) { return &ctx->props; }

int lgh_engine_variant(const struct lgh_context *ctx) { return ctx->run_variant; }

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
    ctx->run_variant = -1;
    const char *env = getenv("LGH_ENGINE");
    if (env && *env && lgh_engine_from_name(env, &ctx->env_engine) != LGH_STATUS_SUCCESS) {
        free(ctx);
        return lgh_set_error(NULL, LGH_STATUS_INVALID_VALUE,
                             "LGH_ENGINE=%s is not an engine (auto, cpu, cublaslt, sm80, sm90)", env);
    }
    *out = ctx;
    return LGH_STATUS_SUCCESS;
}

lgh_status_t lgh_destroy(lgh_context_t ctx)
{
    if (!ctx) return LGH_STATUS_SUCCESS;
    for (int id = 0; id < LGH_ENGINE_COUNT; ++id) {
        const lgh_engine_ops_t *e = lgh_find_engine((lgh_engine_t)id);
        if (ctx->engine_state[id] && e && e->destroy_state) e->destroy_state(ctx->engine_state[id]);
    }
    if (ctx->workspace) {
#ifdef LGH_HAVE_CUDA
        if (ctx->props.ordinal != LGH_DEVICE_CPU) {
            int prev = 0;
            cudaGetDevice(&prev);
            cudaSetDevice(ctx->props.ordinal);
            cudaFree(ctx->workspace);
            cudaSetDevice(prev);
        } else
#endif
            free(ctx->workspace);
    }
    lgh_tune_free(ctx->tune);
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

lgh_status_t lgh_context_workspace(struct lgh_context *ctx, size_t bytes, void **ws)
{
    *ws = NULL;
    if (bytes == 0) return LGH_STATUS_SUCCESS;
    if (ctx->workspace_bytes >= bytes) {
        *ws = ctx->workspace;
        return LGH_STATUS_SUCCESS;
    }
    /* Growing: happens on the first call for a larger shape only. */
#ifdef LGH_HAVE_CUDA
    if (ctx->props.ordinal != LGH_DEVICE_CPU) {
        if (ctx->workspace) cudaFree(ctx->workspace); /* synchronises: first call only */
        ctx->workspace = NULL;
        ctx->workspace_bytes = 0;
        cudaError_t e = cudaMalloc(&ctx->workspace, bytes);
        if (e != cudaSuccess) {
            ctx->workspace = NULL;
            return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED,
                                 "could not allocate %zu bytes of workspace on device %d: %s", bytes,
                                 ctx->props.ordinal, cudaGetErrorString(e));
        }
    } else
#endif
    {
        free(ctx->workspace);
        ctx->workspace_bytes = 0;
        ctx->workspace = malloc(bytes);
        if (!ctx->workspace) {
            return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED,
                                 "could not allocate %zu bytes of host workspace", bytes);
        }
    }
    ctx->workspace_bytes = bytes;
    *ws = ctx->workspace;
    return LGH_STATUS_SUCCESS;
}
