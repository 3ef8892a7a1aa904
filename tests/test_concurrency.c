/*
 * test_concurrency: contexts used by many threads at once (include/lgh.h, "Threads").
 *
 *   test_concurrency [--tier cpu|gpu] [--threads T] [--rounds R] [--verbose]
 *
 * Every thread owns a set of jobs: problems of several shapes, dtypes and math modes, with
 * inputs of its own (seeded by thread and problem), each a forward (y, and mean / rstd / h
 * where the problem saves them) and a backward from what that forward saved. The expected
 * outputs come from running every job serially, one after the other, on one context, before
 * any thread starts. Then T threads run their jobs R rounds each, and every output must
 * be bitwise identical to the serial run's, in three phases:
 *
 *   shared   all threads on one fresh context (its workspaces grow while they race);
 *   own      each thread on a context of its own, created and destroyed every round;
 *   mixed    jobs alternate between the shared context and the thread's own, and in
 *            between the threads call the rest of the API on the shared context:
 *            lgh_plan, lgh_backward_plan, lgh_tune_cached, lgh_kernel_info, a refused call
 *            whose message must name this thread's own arguments (messages are per
 *            thread), and, on thread 0, lgh_tune of a problem of its own.
 *
 * After each successful call lgh_last_error must be "" on that thread, whatever the other
 * threads' calls on the same context failed with meanwhile.
 *
 * --tier cpu (default): the CPU engine. Run it under ThreadSanitizer too (a
 * -DLGH_SANITIZE=thread build; tests/CMakeLists.txt says how).
 *
 * --tier gpu: device 0; each thread enqueues on a stream of its own (the last two on
 * cudaStreamPerThread, which is a different stream on each thread), so the kernels of
 * different threads overlap on the device and a workspace shared by two streams would
 * show as wrong outputs. Then two checks of the per-stream workspaces: a forward and
 * backward captured into a CUDA graph (global capture mode) on a stream lgh has never
 * seen, replayed twice; and 40 streams one after the other, more than the context keeps
 * workspaces for. Without a CUDA device the tier prints "GPU tier: skipped (no CUDA
 * device)" and exits 77.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgh.h"
#include "support/tst.h"

static int g_verbose;
static int g_gpu;
static pthread_mutex_t g_print = PTHREAD_MUTEX_INITIALIZER;

/* ---- problems ---------------------------------------------------------------------------- */

enum { G_DX = 1, G_DW = 2, G_DB = 4, G_DG = 8, G_DBE = 16, G_ALL = 31 };

typedef struct spec {
    const char *name;
    int64_t m, k, n, groups;
    int64_t ldx, ldy; /* 0: packed */
    lgh_dtype_t dt;
    lgh_math_t math;
    lgh_engine_t engine;
    int stats, save_h; /* what the forward saves (and the backward then uses) */
    unsigned grads;    /* G_* of the backward; 0: forward only */
} spec_t;

/* Small enough for ThreadSanitizer; each needs a workspace on the CPU engine (16-bit data
 * and every backward; float32 without OpenBLAS for the blocked GEMM's packing). */
static const spec_t cpu_specs[] = {
    {"f32 33x70x96 g3, h+stats", 33, 70, 96, 3, 0, 0, LGH_DTYPE_FLOAT32, LGH_MATH_TF32,
     LGH_ENGINE_AUTO, 1, 1, G_ALL},
    {"bf16 40x64x96 g4, padded, recompute", 40, 64, 96, 4, 69, 99, LGH_DTYPE_BFLOAT16,
     LGH_MATH_DEFAULT, LGH_ENGINE_AUTO, 1, 0, G_DX | G_DW},
    {"f16 17x100x48 g6, h", 17, 100, 48, 6, 0, 0, LGH_DTYPE_FLOAT16, LGH_MATH_DEFAULT,
     LGH_ENGINE_CPU, 0, 1, G_DB | G_DG | G_DBE},
    {"f32 3xtf32 64x128x128 g8", 64, 128, 128, 8, 0, 0, LGH_DTYPE_FLOAT32, LGH_MATH_3XTF32,
     LGH_ENGINE_AUTO, 0, 0, G_ALL},
    {"f32 1x9x4 g1", 1, 9, 4, 1, 0, 0, LGH_DTYPE_FLOAT32, LGH_MATH_FP32, LGH_ENGINE_AUTO, 1, 0,
     G_DW | G_DBE},
};

/* On an H100 these reach every engine: cublaslt (tf32, bf16, fp32 math, forced), sm90
 * (3xtf32 with groups of 512 channels: a software cluster whose statistics go through the
 * workspace; split K at small M with long K, forced), sm80 (forced). */
static const spec_t gpu_specs[] = {
    {"f32 tf32 256x512x1024 g16, h+stats", 256, 512, 1024, 16, 0, 0, LGH_DTYPE_FLOAT32,
     LGH_MATH_TF32, LGH_ENGINE_AUTO, 1, 1, G_ALL},
    {"f32 3xtf32 128x256x1024 g2 (groups of 512), h+stats", 128, 256, 1024, 2, 0, 0,
     LGH_DTYPE_FLOAT32, LGH_MATH_3XTF32, LGH_ENGINE_AUTO, 1, 1, G_ALL},
    {"bf16 64x512x512 g8, h", 64, 512, 512, 8, 0, 0, LGH_DTYPE_BFLOAT16, LGH_MATH_DEFAULT,
     LGH_ENGINE_AUTO, 1, 1, G_DX | G_DW | G_DB},
    {"f16 300x1000x512 g8, cublaslt, padded, recompute", 300, 1000, 512, 8, 1008, 520,
     LGH_DTYPE_FLOAT16, LGH_MATH_DEFAULT, LGH_ENGINE_CUBLASLT, 1, 0, G_DG | G_DBE | G_DB},
    {"f32 tf32 200x256x256 g4, sm80, forward", 200, 256, 256, 4, 0, 0, LGH_DTYPE_FLOAT32,
     LGH_MATH_TF32, LGH_ENGINE_SM80, 1, 0, 0},
    {"f32 fp32 33x70x96 g3", 33, 70, 96, 3, 0, 0, LGH_DTYPE_FLOAT32, LGH_MATH_FP32,
     LGH_ENGINE_AUTO, 0, 0, G_ALL},
    {"f32 3xtf32 48x2048x1024 g4, sm90 split K, stats", 48, 2048, 1024, 4, 0, 0, LGH_DTYPE_FLOAT32,
     LGH_MATH_3XTF32, LGH_ENGINE_SM90, 1, 0, 0},
    {"bf16 16x4096x512 g2, sm90 split K", 16, 4096, 512, 2, 0, 0, LGH_DTYPE_BFLOAT16, LGH_MATH_DEFAULT,
     LGH_ENGINE_SM90, 0, 0, 0},
};

enum { IN_X, IN_W, IN_B, IN_G, IN_BE, IN_DY, IN_COUNT };
enum { OUT_Y, OUT_MEAN, OUT_RSTD, OUT_H, OUT_DX, OUT_DW, OUT_DB, OUT_DG, OUT_DBE, OUT_COUNT };
static const char *const out_names[OUT_COUNT] = {"y", "mean", "rstd", "h", "dx",
                                                 "dW", "db", "dgamma", "dbeta"};

typedef struct job {
    const spec_t *s;
    int skip;                     /* the serial run was refused: the engine is not here */
    tst_buf_t in[IN_COUNT];
    tst_buf_t out[OUT_COUNT];     /* bytes 0: not an output of this job */
    unsigned char *expect[OUT_COUNT];
} job_t;

static int64_t span(int64_t rows, int64_t cols, int64_t ld) { return (rows - 1) * ld + cols; }

static int job_make(job_t *j, const spec_t *s, uint64_t stream_id, char *msg, size_t len)
{
    memset(j, 0, sizeof *j);
    j->s = s;
    const lgh_dtype_t dt = s->dt;
    const size_t e = tst_elem_bytes(dt);
    const int64_t ldx = s->ldx ? s->ldx : s->k, ldy = s->ldy ? s->ldy : s->n;
    const int64_t in_elems[IN_COUNT] = {span(s->m, s->k, ldx), s->n * s->k, s->n, s->n, s->n,
                                        s->m * s->n};
    for (int i = 0; i < IN_COUNT; ++i)
        if (tst_buf_alloc(&j->in[i], (size_t)in_elems[i] * e, g_gpu, msg, len)) return -1;
    const int64_t mg = s->m * s->groups;
    const int64_t out_elems[OUT_COUNT] = {
        span(s->m, s->n, ldy),
        s->stats ? mg : 0,
        s->stats ? mg : 0,
        s->save_h ? s->m * s->n : 0,
        s->grads & G_DX ? s->m * s->k : 0,
        s->grads & G_DW ? s->n * s->k : 0,
        s->grads & G_DB ? s->n : 0,
        s->grads & G_DG ? s->n : 0,
        s->grads & G_DBE ? s->n : 0,
    };
    for (int i = 0; i < OUT_COUNT; ++i) {
        const size_t elem = i == OUT_MEAN || i == OUT_RSTD ? 4 : e;
        if (!out_elems[i]) continue;
        if (tst_buf_alloc(&j->out[i], (size_t)out_elems[i] * elem, g_gpu, msg, len)) return -1;
        if (!(j->expect[i] = malloc(j->out[i].bytes))) {
            snprintf(msg, len, "out of host memory");
            return -1;
        }
    }
    tst_rng_t r = tst_rng_make(tst_base_seed(), stream_id);
    tst_fill_matrix(dt, j->in[IN_X].host, s->m, s->k, ldx, in_elems[IN_X], &r, 0.0, 1.0);
    tst_fill_matrix(dt, j->in[IN_W].host, s->n, s->k, s->k, in_elems[IN_W], &r, -0.3, 0.3);
    tst_fill_matrix(dt, j->in[IN_B].host, 1, s->n, s->n, s->n, &r, -0.5, 0.5);
    tst_fill_matrix(dt, j->in[IN_G].host, 1, s->n, s->n, s->n, &r, 0.5, 1.5);
    tst_fill_matrix(dt, j->in[IN_BE].host, 1, s->n, s->n, s->n, &r, -0.5, 0.5);
    tst_fill_matrix(dt, j->in[IN_DY].host, s->m, s->n, s->n, in_elems[IN_DY], &r, -1.0, 1.0);
    for (int i = 0; i < IN_COUNT; ++i)
        if (tst_buf_upload(&j->in[i], msg, len)) return -1;
    return 0;
}

static void job_free(job_t *j)
{
    for (int i = 0; i < IN_COUNT; ++i) tst_buf_free(&j->in[i]);
    for (int i = 0; i < OUT_COUNT; ++i) {
        if (j->out[i].bytes) tst_buf_free(&j->out[i]);
        free(j->expect[i]);
    }
}

static void *out_ptr(const job_t *j, int i) { return j->out[i].bytes ? j->out[i].dev : NULL; }

static lgh_args_t job_args(const job_t *j)
{
    const spec_t *s = j->s;
    lgh_args_t a;
    lgh_args_init(&a, s->m, s->k, s->n, s->groups);
    a.dtype = s->dt, a.math = s->math, a.engine = s->engine;
    a.x = j->in[IN_X].dev, a.w = j->in[IN_W].dev, a.bias = j->in[IN_B].dev;
    a.gamma = j->in[IN_G].dev, a.beta = j->in[IN_BE].dev;
    a.ldx = s->ldx, a.ldy = s->ldy;
    a.y = out_ptr(j, OUT_Y);
    a.mean = out_ptr(j, OUT_MEAN), a.rstd = out_ptr(j, OUT_RSTD);
    a.h = out_ptr(j, OUT_H);
    return a;
}

static lgh_backward_args_t job_bwd_args(const job_t *j)
{
    lgh_backward_args_t b;
    memset(&b, 0, sizeof b);
    b.fwd = job_args(j);
    b.fwd.y = NULL, b.fwd.mean = NULL, b.fwd.rstd = NULL, b.fwd.h = NULL;
    b.dy = j->in[IN_DY].dev;
    b.mean = out_ptr(j, OUT_MEAN), b.rstd = out_ptr(j, OUT_RSTD);
    b.h = out_ptr(j, OUT_H);
    b.dx = out_ptr(j, OUT_DX), b.dw = out_ptr(j, OUT_DW), b.dbias = out_ptr(j, OUT_DB);
    b.dgamma = out_ptr(j, OUT_DG), b.dbeta = out_ptr(j, OUT_DBE);
    return b;
}

/* Every output of j to all-ones bytes (NaN in every dtype). */
static int poison(job_t *j, void *stream, char *msg, size_t len)
{
    for (int i = 0; i < OUT_COUNT; ++i) {
        if (!j->out[i].bytes) continue;
        if (!g_gpu) memset(j->out[i].host, 0xff, j->out[i].bytes);
        else if (tst_memset_async(j->out[i].dev, 0xff, j->out[i].bytes, stream, msg, len)) return -1;
    }
    return 0;
}

/* Device outputs to their host copies (GPU), on the stream, then waits for it. */
static int fetch(job_t *j, void *stream, char *msg, size_t len)
{
    if (!g_gpu) return 0;
    for (int i = 0; i < OUT_COUNT; ++i)
        if (j->out[i].bytes &&
            tst_d2h_async(j->out[i].host, j->out[i].dev, j->out[i].bytes, stream, msg, len))
            return -1;
    return tst_stream_sync(stream, msg, len);
}

/* The forward and (if any gradient) the backward of j on ctx and stream, outputs
 * poisoned first and fetched after. Returns the first failing status (msg says what), or
 * SUCCESS; INTERNAL_ERROR when the test's own CUDA calls failed or a message was left. */
static lgh_status_t run_job(lgh_context_t ctx, job_t *j, void *stream, char *msg, size_t len)
{
    if (poison(j, stream, msg, len)) return LGH_STATUS_INTERNAL_ERROR;
    const lgh_args_t a = job_args(j);
    lgh_status_t s = lgh_forward(ctx, &a, NULL, 0, stream);
    if (s != LGH_STATUS_SUCCESS) {
        snprintf(msg, len, "lgh_forward: %s: %s", lgh_status_string(s), lgh_last_error(ctx));
        return s;
    }
    if (lgh_last_error(ctx)[0]) {
        snprintf(msg, len, "lgh_forward succeeded, but lgh_last_error says \"%s\"",
                 lgh_last_error(ctx));
        return LGH_STATUS_INTERNAL_ERROR;
    }
    if (j->s->grads) {
        const lgh_backward_args_t b = job_bwd_args(j);
        s = lgh_backward(ctx, &b, NULL, 0, stream);
        if (s != LGH_STATUS_SUCCESS) {
            snprintf(msg, len, "lgh_backward: %s: %s", lgh_status_string(s), lgh_last_error(ctx));
            return s;
        }
        if (lgh_last_error(ctx)[0]) {
            snprintf(msg, len, "lgh_backward succeeded, but lgh_last_error says \"%s\"",
                     lgh_last_error(ctx));
            return LGH_STATUS_INTERNAL_ERROR;
        }
    }
    if (fetch(j, stream, msg, len)) return LGH_STATUS_INTERNAL_ERROR;
    return LGH_STATUS_SUCCESS;
}

/* 0 when every output equals the serial run's, byte for byte; else a description. */
static int compare(const job_t *j, char *msg, size_t len)
{
    for (int i = 0; i < OUT_COUNT; ++i) {
        if (!j->out[i].bytes) continue;
        const unsigned char *got = j->out[i].host, *want = j->expect[i];
        if (!memcmp(got, want, j->out[i].bytes)) continue;
        size_t first = 0, diff = 0;
        for (size_t b = 0; b < j->out[i].bytes; ++b)
            if (got[b] != want[b] && !diff++) first = b;
        snprintf(msg, len, "%s differs from the serial run in %zu of %zu bytes (first at byte %zu)",
                 out_names[i], diff, j->out[i].bytes, first);
        return -1;
    }
    return 0;
}

/* ---- workers -------------------------------------------------------------------------------- */

typedef enum { MODE_SHARED, MODE_OWN, MODE_MIXED } phase_t;
static const char *const mode_names[] = {"shared", "own", "mixed"};

typedef struct worker {
    int id;
    phase_t mode;
    lgh_context_t shared;
    job_t *jobs;
    int njobs;
    int rounds;
    void *stream;
    tst_tally_t tally;
} worker_t;

static void w_fail(worker_t *w, const char *what, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void w_fail(worker_t *w, const char *what, const char *fmt, ...)
{
    w->tally.failed++;
    char text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_print);
    printf("FAIL %s, thread %d: %s: %s\n", mode_names[w->mode], w->id, what, text);
    pthread_mutex_unlock(&g_print);
}

static void w_pass(worker_t *w) { w->tally.passed++; }

static void one_job(worker_t *w, lgh_context_t ctx, job_t *j, const char *where)
{
    char msg[600] = "", what[160];
    snprintf(what, sizeof what, "%s (%s context)", j->s->name, where);
    const lgh_status_t s = run_job(ctx, j, w->stream, msg, sizeof msg);
    if (s != LGH_STATUS_SUCCESS) w_fail(w, what, "%s", msg);
    else if (compare(j, msg, sizeof msg)) w_fail(w, what, "%s", msg);
    else w_pass(w);
}

/* The rest of the API on the shared context, between jobs (mixed mode). */
static void api_calls(worker_t *w, job_t *j)
{
    lgh_context_t ctx = w->shared;
    const lgh_args_t a = job_args(j);
    char what[160];
    snprintf(what, sizeof what, "API calls on %s", j->s->name);

    lgh_engine_t e = LGH_ENGINE_AUTO;
    size_t bytes = 0;
    lgh_status_t s = lgh_plan(ctx, &a, &e, &bytes);
    if (s != LGH_STATUS_SUCCESS || e == LGH_ENGINE_AUTO || lgh_last_error(ctx)[0])
        return w_fail(w, what, "lgh_plan: %s (%s)", lgh_status_string(s), lgh_last_error(ctx));
    if (j->s->grads) {
        const lgh_backward_args_t b = job_bwd_args(j);
        s = lgh_backward_plan(ctx, &b, &e, &bytes);
        if (s != LGH_STATUS_SUCCESS || lgh_last_error(ctx)[0])
            return w_fail(w, what, "lgh_backward_plan: %s (%s)", lgh_status_string(s),
                          lgh_last_error(ctx));
    }
    float ms = 0.0f;
    s = lgh_tune_cached(ctx, &a, &e, &ms);
    if (s != LGH_STATUS_SUCCESS)
        return w_fail(w, what, "lgh_tune_cached: %s (%s)", lgh_status_string(s), lgh_last_error(ctx));
    int count = 0;
    lgh_kernel_info_t info[4];
    if ((s = lgh_kernel_info(ctx, info, 4, &count)) != LGH_STATUS_SUCCESS)
        return w_fail(w, what, "lgh_kernel_info: %s", lgh_status_string(s));
    if (!lgh_engine_available(ctx, g_gpu ? LGH_ENGINE_CUBLASLT : LGH_ENGINE_CPU))
        return w_fail(w, what, "lgh_engine_available says no");

    /* A refusal naming this thread's own N: the message must be this thread's. */
    lgh_args_t bad = a;
    bad.n = 100 + w->id;
    bad.groups = 1000;
    s = lgh_forward(ctx, &bad, NULL, 0, w->stream);
    char want[64];
    snprintf(want, sizeof want, "N=%d is not a multiple of groups=1000", 100 + w->id);
    if (s != LGH_STATUS_GROUPS_MISMATCH || !strstr(lgh_last_error(ctx), want))
        return w_fail(w, what, "a refused call: %s, message \"%s\" (wanted \"%s\")",
                      lgh_status_string(s), lgh_last_error(ctx), want);
    w_pass(w);
}

/* Thread 0, mixed mode: lgh_tune on the shared context, on a problem of one row less than
 * its first job's (so that no job's engine choice changes; y is only written). */
static void tune_call(worker_t *w, job_t *j)
{
    if (j->s->m < 2) return;
    lgh_args_t a = job_args(j);
    a.m -= 1;
    a.engine = LGH_ENGINE_AUTO;
    lgh_engine_t chosen = LGH_ENGINE_AUTO;
    lgh_tune_result_t res[8];
    int count = 0;
    const lgh_status_t s = lgh_tune(w->shared, &a, w->stream, NULL, NULL, &chosen, res, 8, &count);
    if (s != LGH_STATUS_SUCCESS || chosen == LGH_ENGINE_AUTO || count < 1)
        return w_fail(w, "lgh_tune", "%s (%s)", lgh_status_string(s), lgh_last_error(w->shared));
    lgh_engine_t cached = LGH_ENGINE_AUTO;
    if (lgh_tune_cached(w->shared, &a, &cached, NULL) != LGH_STATUS_SUCCESS || cached != chosen)
        return w_fail(w, "lgh_tune", "lgh_tune_cached gives %s, lgh_tune chose %s",
                      lgh_engine_name(cached), lgh_engine_name(chosen));
    w_pass(w);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    for (int r = 0; r < w->rounds; ++r) {
        lgh_context_t own = NULL;
        if (w->mode != MODE_SHARED) {
            const lgh_status_t s = lgh_create(&own, g_gpu ? 0 : LGH_DEVICE_CPU);
            if (s != LGH_STATUS_SUCCESS) {
                w_fail(w, "lgh_create", "%s: %s", lgh_status_string(s), lgh_last_error(NULL));
                return NULL;
            }
        }
        if (w->mode == MODE_MIXED && w->id == 0 && r == 0) tune_call(w, &w->jobs[0]);
        /* Each thread starts at another job, so different problems run side by side. */
        for (int i = 0; i < w->njobs; ++i) {
            job_t *j = &w->jobs[(i + w->id + r) % w->njobs];
            if (j->skip) continue;
            switch (w->mode) {
            case MODE_SHARED: one_job(w, w->shared, j, "shared"); break;
            case MODE_OWN: one_job(w, own, j, "own"); break;
            case MODE_MIXED:
                one_job(w, (i + r) % 2 ? own : w->shared, j, (i + r) % 2 ? "own" : "shared");
                api_calls(w, j);
                break;
            }
        }
        lgh_destroy(own);
    }
    return NULL;
}

/* Runs every worker in `mode` at once; their tallies go into *t. */
static void run_phase(phase_t mode, lgh_context_t shared, job_t *jobs, int threads, int nspecs,
                      int rounds, void **streams, tst_tally_t *t)
{
    worker_t *w = calloc((size_t)threads, sizeof *w);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    int *started = calloc((size_t)threads, sizeof *started);
    if (!w || !th || !started) {
        printf("FAIL %s: out of host memory\n", mode_names[mode]);
        t->failed++;
        free(w), free(th), free(started);
        return;
    }
    for (int i = 0; i < threads; ++i) {
        w[i] = (worker_t){i, mode, shared, jobs + (size_t)i * nspecs, nspecs, rounds,
                          streams ? streams[i] : NULL, {0, 0, 0}};
        started[i] = pthread_create(&th[i], NULL, worker_main, &w[i]) == 0;
        if (!started[i]) {
            printf("FAIL %s: pthread_create for thread %d\n", mode_names[mode], i);
            t->failed++;
        }
    }
    long passed = 0, failed = 0;
    for (int i = 0; i < threads; ++i) {
        if (started[i]) pthread_join(th[i], NULL);
        passed += w[i].tally.passed;
        failed += w[i].tally.failed;
    }
    t->passed += passed;
    t->failed += failed;
    printf("%-6s %d threads x %d rounds: %ld checks passed, %ld failed\n", mode_names[mode],
           threads, rounds, passed, failed);
    free(w), free(th), free(started);
}

/* ---- GPU only: graph capture and stream churn ------------------------------------------ */

static void gpu_capture(lgh_context_t ctx, job_t *j, tst_tally_t *t)
{
    char msg[600] = "", label[200];
    snprintf(label, sizeof label, "graph captured on a new stream: %s", j->s->name);
    void *cs = NULL, *exec = NULL;
    if (tst_stream_create(&cs, msg, sizeof msg)) goto harness;
    const lgh_args_t a = job_args(j);
    const lgh_backward_args_t b = job_bwd_args(j);
    if (tst_capture_begin(cs, msg, sizeof msg)) goto harness;
    lgh_status_t s = lgh_forward(ctx, &a, NULL, 0, cs);
    lgh_status_t sb = s == LGH_STATUS_SUCCESS && j->s->grads ? lgh_backward(ctx, &b, NULL, 0, cs)
                                                             : s;
    char lgh_msg[512];
    snprintf(lgh_msg, sizeof lgh_msg, "%s", lgh_last_error(ctx));
    const int ended = tst_capture_end(cs, &exec, msg, sizeof msg);
    if (s != LGH_STATUS_SUCCESS || sb != LGH_STATUS_SUCCESS) {
        printf("FAIL %s: captured %s: %s: %s\n", label, s != LGH_STATUS_SUCCESS ? "lgh_forward" : "lgh_backward",
               lgh_status_string(s != LGH_STATUS_SUCCESS ? s : sb), lgh_msg);
        t->failed++;
        goto done;
    }
    if (ended) goto harness;
    for (int replay = 0; replay < 2; ++replay) {
        if (poison(j, cs, msg, sizeof msg) || tst_graph_launch(exec, cs, msg, sizeof msg) ||
            fetch(j, cs, msg, sizeof msg))
            goto harness;
        if (compare(j, msg, sizeof msg)) {
            printf("FAIL %s: replay %d: %s\n", label, replay + 1, msg);
            t->failed++;
            goto done;
        }
    }
    t->passed++;
    if (g_verbose) printf("ok   %s (replayed twice)\n", label);
    goto done;
harness:
    printf("FAIL %s: %s\n", label, msg);
    t->failed++;
done:
    tst_graph_destroy(exec);
    tst_stream_destroy(cs);
}

/* More streams than a context keeps workspaces for, one after the other. */
static void gpu_stream_churn(lgh_context_t ctx, job_t *j, tst_tally_t *t)
{
    enum { STREAMS = 40 };
    char msg[600] = "";
    for (int i = 0; i < STREAMS; ++i) {
        void *st = NULL;
        if (tst_stream_create(&st, msg, sizeof msg)) {
            printf("FAIL stream churn: %s\n", msg);
            t->failed++;
            return;
        }
        const lgh_status_t s = run_job(ctx, j, st, msg, sizeof msg);
        const int bad = s != LGH_STATUS_SUCCESS || compare(j, msg, sizeof msg);
        tst_stream_destroy(st);
        if (bad) {
            printf("FAIL stream churn: stream %d of %d: %s\n", i + 1, STREAMS, msg);
            t->failed++;
            return;
        }
    }
    t->passed++;
    printf("stream churn: %d streams one after the other on one context: outputs as serial\n",
           STREAMS);
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const char *tier = "cpu";
    int threads = 8, rounds = 0;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--tier") && i + 1 < argc) {
            tier = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            g_verbose = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: test_concurrency [--tier cpu|gpu] [--threads T] [--rounds R] "
                   "[--verbose]\n");
            return 0;
        } else {
            fprintf(stderr, "test_concurrency: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if ((strcmp(tier, "cpu") && strcmp(tier, "gpu")) || threads < 1 || threads > 64 ||
        rounds < 0) {
        fprintf(stderr, "test_concurrency: expected --tier cpu|gpu, 1 <= T <= 64, R >= 1\n");
        return 2;
    }
    g_gpu = !strcmp(tier, "gpu");
    if (!rounds) rounds = g_gpu ? 4 : 3;
    char title[64];
    snprintf(title, sizeof title, "test_concurrency[%s]", tier);
    tst_print_seed(title); /* computes the base seed before any thread asks for it */
    unsetenv("LGH_ENGINE");
    setenv("LGH_CACHE", "0", 1); /* lgh_tune below: the in-memory table only */
    setenv("LGH_TUNE", "0", 1);
    tst_tally_t tally = {0, 0, 0};

    lgh_context_t serial = NULL;
    lgh_status_t s = lgh_create(&serial, g_gpu ? 0 : LGH_DEVICE_CPU);
    if (s != LGH_STATUS_SUCCESS) {
        if (g_gpu) {
            printf("GPU tier: skipped (no CUDA device: %s)\n", lgh_last_error(NULL));
            tst_summary(title, &tally);
            return TST_EXIT_SKIP;
        }
        printf("FAIL lgh_create(cpu): %s\n", lgh_last_error(NULL));
        return 1;
    }
    if (g_gpu && !tst_have_cuda()) {
        printf("GPU tier: skipped (the tests were built without the CUDA runtime)\n");
        lgh_destroy(serial);
        tst_summary(title, &tally);
        return TST_EXIT_SKIP;
    }
    printf("%s: %s\n", g_gpu ? "GPU tier: device 0" : "CPU tier", lgh_device_description(serial));

    const spec_t *specs = g_gpu ? gpu_specs : cpu_specs;
    const int nspecs = g_gpu ? (int)(sizeof gpu_specs / sizeof gpu_specs[0])
                             : (int)(sizeof cpu_specs / sizeof cpu_specs[0]);
    job_t *jobs = calloc((size_t)threads * nspecs, sizeof *jobs);
    void **streams = calloc((size_t)threads, sizeof *streams);
    char msg[600] = "";
    if (!jobs || !streams) {
        printf("FAIL: out of host memory\n");
        return 1;
    }
    for (int t = 0; t < threads; ++t)
        for (int i = 0; i < nspecs; ++i)
            if (job_make(&jobs[t * nspecs + i], &specs[i], 1000u * (unsigned)t + (unsigned)i, msg,
                         sizeof msg)) {
                printf("FAIL preparing the jobs: %s\n", msg);
                return 1;
            }
    if (g_gpu) {
        /* The uploads went through the legacy stream; the workers' streams do not wait for it. */
        if (tst_dev_sync(msg, sizeof msg)) {
            printf("FAIL uploading the inputs: %s\n", msg);
            return 1;
        }
        for (int t = 0; t < threads; ++t) {
            if (t >= threads - 2 && threads > 2) {
                streams[t] = tst_stream_per_thread();
            } else if (tst_stream_create(&streams[t], msg, sizeof msg)) {
                printf("FAIL creating the streams: %s\n", msg);
                return 1;
            }
        }
    }

    /* The serial run: every job once on one context, outputs kept; twice, to be sure an
     * engine is deterministic for that job before asking threads to reproduce it. */
    for (int t = 0; t < threads * nspecs; ++t) {
        job_t *j = &jobs[t];
        for (int pass = 0; pass < 2 && !j->skip; ++pass) {
            s = run_job(serial, j, NULL, msg, sizeof msg);
            if (s == LGH_STATUS_ENGINE_UNAVAILABLE || s == LGH_STATUS_NOT_SUPPORTED) {
                if (t < nspecs) {
                    printf("skip %s: %s\n", j->s->name, msg);
                    tally.skipped++;
                }
                j->skip = 1;
            } else if (s != LGH_STATUS_SUCCESS) {
                printf("FAIL serial run of %s (job %d): %s\n", j->s->name, t, msg);
                return 1;
            } else if (pass == 0) {
                for (int i = 0; i < OUT_COUNT; ++i)
                    if (j->out[i].bytes) memcpy(j->expect[i], j->out[i].host, j->out[i].bytes);
            } else if (compare(j, msg, sizeof msg)) {
                printf("FAIL %s: two serial runs differ (%s); the engine is not deterministic "
                       "here, so threads cannot be compared bitwise\n", j->s->name, msg);
                tally.failed++;
                j->skip = 1;
            }
        }
    }
    printf("serial: %d jobs (%d problems x %d threads' inputs) run twice, outputs kept\n",
           threads * nspecs, nspecs, threads);

    lgh_context_t shared = NULL;
    if ((s = lgh_create(&shared, g_gpu ? 0 : LGH_DEVICE_CPU)) != LGH_STATUS_SUCCESS) {
        printf("FAIL lgh_create: %s\n", lgh_last_error(NULL));
        return 1;
    }
    run_phase(MODE_SHARED, shared, jobs, threads, nspecs, rounds, g_gpu ? streams : NULL, &tally);
    run_phase(MODE_OWN, shared, jobs, threads, nspecs, rounds, g_gpu ? streams : NULL, &tally);
    run_phase(MODE_MIXED, shared, jobs, threads, nspecs, rounds, g_gpu ? streams : NULL, &tally);

    if (g_gpu) {
        /* The capture: the first job with every output, on thread 0's inputs (its
         * backward needs more workspace than its forward: the capture stream's workspace
         * is made, then grown, during the capture). */
        job_t *pick = NULL;
        for (int i = nspecs - 1; i >= 0; --i)
            if (!jobs[i].skip && jobs[i].s->grads == G_ALL) pick = &jobs[i];
        if (pick) gpu_capture(shared, pick, &tally);
        for (int i = 0; i < nspecs; ++i) {
            if (jobs[i].skip) continue;
            gpu_stream_churn(shared, &jobs[i], &tally);
            break;
        }
    }

    lgh_destroy(shared);
    lgh_destroy(serial);
    for (int t = 0; t < threads; ++t)
        if (g_gpu) tst_stream_destroy(streams[t]);
    for (int t = 0; t < threads * nspecs; ++t) job_free(&jobs[t]);
    free(jobs);
    free(streams);
    tst_summary(title, &tally);
    return tally.failed ? 1 : 0;
}
