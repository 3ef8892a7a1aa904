/*
 * Timing an engine on a problem (tune_time.h): each variant of a tunable engine (its
 * tile configurations and modes, see lgh_engine_ops_t.variants), on a workspace of the
 * context; CPU engines with the monotonic clock, GPU engines with CUDA events on the
 * caller's stream.
 *
 * Layering (docs/ARCHITECTURE.md): uses the context and the engine's ops only.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "tune_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "context.h"
#include "tune_file.h"

#ifdef LGH_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* Calls per engine: GPU calls are short, so more of them; the CPU engine is the only
 * candidate on a CPU context and slow at large sizes, so fewer. */
#define TUNE_GPU_WARMUP 3
#define TUNE_GPU_CALLS 10
#define TUNE_CPU_WARMUP 1
#define TUNE_CPU_CALLS 5
#define TUNE_MAX_VARIANTS 64 /* variants of one engine timed per problem */

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float median(float *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

static lgh_status_t time_cpu(struct lgh_context *ctx, const lgh_engine_ops_t *e,
                             const lgh_problem_t *p, void *ws, size_t ws_bytes, float *ms)
{
    float t[TUNE_CPU_CALLS];
    for (int i = 0; i < TUNE_CPU_WARMUP; ++i) {
        lgh_status_t s = e->run(ctx, p, ws, ws_bytes, NULL);
        if (s != LGH_STATUS_SUCCESS) return s;
    }
    for (int i = 0; i < TUNE_CPU_CALLS; ++i) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        lgh_status_t s = e->run(ctx, p, ws, ws_bytes, NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (s != LGH_STATUS_SUCCESS) return s;
        t[i] = (float)((double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) * 1e-6);
    }
    *ms = median(t, TUNE_CPU_CALLS);
    return LGH_STATUS_SUCCESS;
}

#ifdef LGH_HAVE_CUDA
static lgh_status_t cuda_failed(struct lgh_context *ctx, const char *what, cudaError_t e)
{
    return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "tuning: %s: %s", what, cudaGetErrorString(e));
}

/* Warm-up calls, then TUNE_GPU_CALLS calls on the caller's stream with an event
 * recorded before the first and after each one; one host synchronisation at the end. */
static lgh_status_t time_gpu(struct lgh_context *ctx, const lgh_engine_ops_t *e,
                             const lgh_problem_t *p, void *ws, size_t ws_bytes, void *stream,
                             float *ms)
{
    cudaStream_t st = (cudaStream_t)stream;
    cudaError_t ce;
    lgh_status_t s = LGH_STATUS_SUCCESS;
    cudaEvent_t ev[TUNE_GPU_CALLS + 1];
    int made = 0;
    for (; made < TUNE_GPU_CALLS + 1; ++made) {
        if ((ce = cudaEventCreate(&ev[made])) != cudaSuccess) {
            s = cuda_failed(ctx, "cudaEventCreate", ce);
            break;
        }
    }
    for (int i = 0; s == LGH_STATUS_SUCCESS && i < TUNE_GPU_WARMUP; ++i)
        s = e->run(ctx, p, ws, ws_bytes, stream);
    if (s == LGH_STATUS_SUCCESS && (ce = cudaEventRecord(ev[0], st)) != cudaSuccess)
        s = cuda_failed(ctx, "cudaEventRecord", ce);
    for (int i = 0; s == LGH_STATUS_SUCCESS && i < TUNE_GPU_CALLS; ++i) {
        s = e->run(ctx, p, ws, ws_bytes, stream);
        if (s == LGH_STATUS_SUCCESS && (ce = cudaEventRecord(ev[i + 1], st)) != cudaSuccess)
            s = cuda_failed(ctx, "cudaEventRecord", ce);
    }
    if (s == LGH_STATUS_SUCCESS && (ce = cudaEventSynchronize(ev[TUNE_GPU_CALLS])) != cudaSuccess)
        s = cuda_failed(ctx, "cudaEventSynchronize", ce);
    float t[TUNE_GPU_CALLS];
    for (int i = 0; s == LGH_STATUS_SUCCESS && i < TUNE_GPU_CALLS; ++i)
        if ((ce = cudaEventElapsedTime(&t[i], ev[i], ev[i + 1])) != cudaSuccess)
            s = cuda_failed(ctx, "cudaEventElapsedTime", ce);
    for (int i = 0; i < made; ++i) cudaEventDestroy(ev[i]);
    if (s == LGH_STATUS_SUCCESS) *ms = median(t, TUNE_GPU_CALLS);
    return s;
}
#endif

/* One timing of e as it runs now (the variant set by the caller), on a workspace of the
 * context held for the whole timing. */
static lgh_status_t time_engine(struct lgh_context *ctx, const lgh_engine_ops_t *e,
                                const lgh_problem_t *p, void *stream, float *ms)
{
    const size_t need = e->workspace_size(ctx, p);
    lgh_ws_lease_t lease;
    lgh_status_t s = lgh_workspace_acquire(ctx, need, stream, &lease);
    if (s != LGH_STATUS_SUCCESS) return s;
#ifdef LGH_HAVE_CUDA
    if (e->on_gpu)
        s = time_gpu(ctx, e, p, lease.ptr, need, stream, ms);
    else
#endif
        s = time_cpu(ctx, e, p, lease.ptr, need, ms);
    lgh_workspace_release(ctx, &lease);
    return s;
}

lgh_status_t lgh_tune_time_engine(struct lgh_context *ctx, const lgh_engine_ops_t *e,
                                  const lgh_problem_t *p, void *stream, float *ms, int *variant)
{
    *variant = -1;
    int ids[TUNE_MAX_VARIANTS];
    int n = e->variants ? e->variants(ctx, p, ids, TUNE_MAX_VARIANTS) : 0;
    if (n <= 0) return time_engine(ctx, e, p, stream, ms);
    if (n > TUNE_MAX_VARIANTS) n = TUNE_MAX_VARIANTS;
    lgh_status_t first = LGH_STATUS_SUCCESS;
    char failure[LGH_MESSAGE_BYTES] = "";
    for (int v = 0; v < n; ++v) {
        /* An id the cache file cannot hold could not be recorded: not timed. */
        if (ids[v] < 0 || ids[v] > LGH_TUNE_MAX_VARIANT) continue;
        float t = 0.0f;
        lgh_set_run_variant(ctx, ids[v]);
        const lgh_status_t s = time_engine(ctx, e, p, stream, &t);
        lgh_set_run_variant(ctx, -1);
        if (s != LGH_STATUS_SUCCESS) {
            if (first == LGH_STATUS_SUCCESS) {
                first = s;
                snprintf(failure, sizeof failure, "%s", lgh_last_error(ctx));
            }
            continue;
        }
        if (*variant < 0 || t < *ms) {
            *variant = ids[v];
            *ms = t;
        }
    }
    if (*variant >= 0) return LGH_STATUS_SUCCESS;
    if (first == LGH_STATUS_SUCCESS) return time_engine(ctx, e, p, stream, ms);
    return lgh_set_error(ctx, first, "%s", failure);
}
