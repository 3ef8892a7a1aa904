/*
 * test_faults: what a call does when the context cannot allocate its workspace.
 *
 *   test_faults [--tier cpu|gpu] [--verbose]
 *
 * The failures are injected: LGH_FAULT_INJECT=alloc:N, read by lgh_create, makes the
 * N-th workspace allocation of that context fail as an out-of-memory would
 * (src/core/context.h). Each check creates its context with the variable set and unsets
 * it at once, so no other context sees it. Checked:
 *
 *   forward     lgh_forward returns LGH_STATUS_ALLOC_FAILED, the message says a workspace
 *               could not be allocated (and that the fault was injected), y, mean, rstd
 *               and h keep their guard pattern bit for bit; the next call succeeds with the
 *               outputs of a context that never failed, bit for bit.
 *   backward    the same for lgh_backward and the five gradients.
 *   growth      alloc:2: repeated calls of one problem allocate once (the later calls
 *               would fail otherwise), a problem needing more workspace fails once
 *               (nothing written) and then runs, and the first problem still runs.
 *   caller's    a call given its own workspace allocates nothing (alloc:1 then trips on the
 *               next call without one).
 *   tune        lgh_tune reports the engine whose workspace failed, and tunes on the next call.
 *   settings    malformed LGH_FAULT_INJECT values make lgh_create fail (INVALID_VALUE).
 *
 * --tier cpu (default): the CPU engine (bfloat16 data and the backward need a workspace).
 * --tier gpu: device 0, with device buffers; the forward forced to cublaslt (the engine
 * that always needs a workspace), the backward on AUTO. Without a CUDA device it prints
 * "GPU tier: skipped (no CUDA device)" and exits 77.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgh.h"
#include "support/tst.h"

static int g_verbose;
static int g_gpu;
static tst_tally_t g_tally;

/* The shared verdicts (support/tst.c), counted in g_tally. */
#define pass(label, detail) tst_pass(&g_tally, g_verbose, (label), (detail))
#define fail(label, ...) tst_fail(&g_tally, (label), __VA_ARGS__)
#define skip(label, why) tst_skip(&g_tally, (label), (why))

/* A context with LGH_FAULT_INJECT=fault (NULL: unset) at its creation only. */
static lgh_status_t make_ctx(lgh_context_t *ctx, const char *fault)
{
    if (fault) setenv("LGH_FAULT_INJECT", fault, 1);
    const lgh_status_t s = lgh_create(ctx, g_gpu ? 0 : LGH_DEVICE_CPU);
    unsetenv("LGH_FAULT_INJECT");
    return s;
}

/* ---- a problem with every output -------------------------------------------------------- */

enum { IN_X, IN_W, IN_B, IN_G, IN_BE, IN_DY, IN_COUNT };
enum { O_Y, O_MEAN, O_RSTD, O_H, O_DX, O_DW, O_DB, O_DG, O_DBE, O_COUNT };
static const char *const out_names[O_COUNT] = {"y", "mean", "rstd", "h", "dx",
                                               "dW", "db", "dgamma", "dbeta"};
enum { FWD_OUTS = 4 }; /* y, mean, rstd, h; the rest are gradients */

typedef struct prob {
    int64_t m, k, n, groups;
    lgh_dtype_t dt;
    tst_buf_t in[IN_COUNT], out[O_COUNT];
    unsigned char *keep[O_COUNT]; /* a copy of the outputs (control run) */
    lgh_args_t a;
    lgh_backward_args_t b;
} prob_t;

static lgh_dtype_t out_dtype(const prob_t *p, int i)
{
    return i == O_MEAN || i == O_RSTD ? LGH_DTYPE_FLOAT32 : p->dt;
}

static int prob_make(prob_t *p, int64_t m, int64_t k, int64_t n, int64_t groups, lgh_dtype_t dt,
                     lgh_engine_t engine, uint64_t seed)
{
    char msg[256] = "";
    memset(p, 0, sizeof *p);
    p->m = m, p->k = k, p->n = n, p->groups = groups, p->dt = dt;
    const size_t e = tst_elem_bytes(dt);
    const int64_t in_elems[IN_COUNT] = {m * k, n * k, n, n, n, m * n};
    const int64_t out_elems[O_COUNT] = {m * n, m * groups, m * groups, m * n, m * k, n * k, n, n, n};
    for (int i = 0; i < IN_COUNT; ++i)
        if (tst_buf_alloc(&p->in[i], (size_t)in_elems[i] * e, g_gpu, msg, sizeof msg)) goto bad;
    for (int i = 0; i < O_COUNT; ++i) {
        if (tst_buf_alloc(&p->out[i], (size_t)out_elems[i] * tst_elem_bytes(out_dtype(p, i)), g_gpu,
                          msg, sizeof msg))
            goto bad;
        if (!(p->keep[i] = malloc(p->out[i].bytes))) goto bad;
    }
    tst_rng_t r = tst_rng_make(tst_base_seed(), seed);
    tst_fill_matrix(dt, p->in[IN_X].host, m, k, k, m * k, &r, 0.0, 1.0);
    tst_fill_matrix(dt, p->in[IN_W].host, n, k, k, n * k, &r, -0.3, 0.3);
    tst_fill_matrix(dt, p->in[IN_B].host, 1, n, n, n, &r, -0.5, 0.5);
    tst_fill_matrix(dt, p->in[IN_G].host, 1, n, n, n, &r, 0.5, 1.5);
    tst_fill_matrix(dt, p->in[IN_BE].host, 1, n, n, n, &r, -0.5, 0.5);
    tst_fill_matrix(dt, p->in[IN_DY].host, m, n, n, m * n, &r, -1.0, 1.0);
    for (int i = 0; i < IN_COUNT; ++i)
        if (tst_buf_upload(&p->in[i], msg, sizeof msg)) goto bad;

    lgh_args_init(&p->a, m, k, n, groups);
    p->a.dtype = dt, p->a.engine = engine;
    p->a.x = p->in[IN_X].dev, p->a.w = p->in[IN_W].dev, p->a.bias = p->in[IN_B].dev;
    p->a.gamma = p->in[IN_G].dev, p->a.beta = p->in[IN_BE].dev;
    p->a.y = p->out[O_Y].dev, p->a.mean = p->out[O_MEAN].dev, p->a.rstd = p->out[O_RSTD].dev;
    p->a.h = p->out[O_H].dev;
    lgh_backward_args_init(&p->b, m, k, n, groups);
    p->b.fwd = p->a;
    p->b.fwd.engine = LGH_ENGINE_AUTO;
    p->b.fwd.y = NULL, p->b.fwd.mean = NULL, p->b.fwd.rstd = NULL, p->b.fwd.h = NULL;
    p->b.dy = p->in[IN_DY].dev;
    p->b.mean = p->out[O_MEAN].dev, p->b.rstd = p->out[O_RSTD].dev, p->b.h = p->out[O_H].dev;
    p->b.dx = p->out[O_DX].dev, p->b.dw = p->out[O_DW].dev, p->b.dbias = p->out[O_DB].dev;
    p->b.dgamma = p->out[O_DG].dev, p->b.dbeta = p->out[O_DBE].dev;
    return 0;
bad:
    fail("preparing a problem", "%s", msg[0] ? msg : "out of host memory");
    return -1;
}

static void prob_free(prob_t *p)
{
    for (int i = 0; i < IN_COUNT; ++i) tst_buf_free(&p->in[i]);
    for (int i = 0; i < O_COUNT; ++i) {
        tst_buf_free(&p->out[i]);
        free(p->keep[i]);
    }
}

/* Outputs [from, to) to the guard pattern (host and device). */
static int guard(prob_t *p, int from, int to)
{
    char msg[256];
    for (int i = from; i < to; ++i) {
        const int64_t n = (int64_t)(p->out[i].bytes / tst_elem_bytes(out_dtype(p, i)));
        for (int64_t j = 0; j < n; ++j) tst_store_pattern(out_dtype(p, i), p->out[i].host, j, TST_GUARD);
        if (tst_buf_upload(&p->out[i], msg, sizeof msg)) {
            fail("guarding the outputs", "%s", msg);
            return -1;
        }
    }
    return 0;
}

static int download(prob_t *p, int from, int to)
{
    char msg[256];
    if (g_gpu && tst_dev_sync(msg, sizeof msg)) {
        fail("synchronising", "%s", msg);
        return -1;
    }
    for (int i = from; i < to; ++i) {
        if (tst_buf_download(&p->out[i], msg, sizeof msg)) {
            fail("downloading the outputs", "%s", msg);
            return -1;
        }
    }
    return 0;
}

/* Elements of outputs [from, to) no longer holding the guard; -1 when they cannot be read. */
static long touched(prob_t *p, int from, int to, char *which, size_t len)
{
    if (download(p, from, to)) return -1;
    long count = 0;
    which[0] = '\0';
    for (int i = from; i < to; ++i) {
        const int64_t n = (int64_t)(p->out[i].bytes / tst_elem_bytes(out_dtype(p, i)));
        long here = 0;
        for (int64_t j = 0; j < n; ++j) here += !tst_is_pattern(out_dtype(p, i), p->out[i].host, j, TST_GUARD);
        if (here && !which[0]) snprintf(which, len, "%s", out_names[i]);
        count += here;
    }
    return count;
}

static void keep(prob_t *p, int from, int to)
{
    for (int i = from; i < to; ++i) memcpy(p->keep[i], p->out[i].host, p->out[i].bytes);
}

/* The first of outputs [from, to) that differs from the kept copy, or NULL. */
static const char *differs(prob_t *p, int from, int to)
{
    if (download(p, from, to)) return "(unreadable)";
    for (int i = from; i < to; ++i)
        if (memcmp(p->keep[i], p->out[i].host, p->out[i].bytes)) return out_names[i];
    return NULL;
}

/* The message of an injected workspace failure. */
static int is_alloc_message(const char *m)
{
    return strstr(m, "allocate") && strstr(m, "workspace") && strstr(m, "LGH_FAULT_INJECT");
}

/* ---- the checks ------------------------------------------------------------------------------ */

/* Runs p's forward (fwd) or backward on a clean context and keeps its outputs. */
static int control(prob_t *p, int fwd)
{
    lgh_context_t ctx = NULL;
    lgh_status_t s = make_ctx(&ctx, NULL);
    if (s == LGH_STATUS_SUCCESS)
        s = fwd ? lgh_forward(ctx, &p->a, NULL, 0, NULL) : lgh_backward(ctx, &p->b, NULL, 0, NULL);
    if (s != LGH_STATUS_SUCCESS) {
        fail(fwd ? "control forward" : "control backward", "%s: %s", lgh_status_string(s),
             lgh_last_error(ctx));
        lgh_destroy(ctx);
        return -1;
    }
    lgh_destroy(ctx);
    const int from = fwd ? 0 : FWD_OUTS, to = fwd ? FWD_OUTS : O_COUNT;
    if (download(p, from, to)) return -1;
    keep(p, from, to);
    return 0;
}

/* One injected failure of forward (fwd) or backward calls, then the call again. */
static void fault_then_recover(prob_t *p, int fwd, const char *label)
{
    const int from = fwd ? 0 : FWD_OUTS, to = fwd ? FWD_OUTS : O_COUNT;
    lgh_context_t ctx = NULL;
    lgh_status_t s = make_ctx(&ctx, "alloc:1");
    if (s != LGH_STATUS_SUCCESS) return fail(label, "lgh_create: %s", lgh_last_error(NULL));
    size_t ws = 0;
    lgh_engine_t e = LGH_ENGINE_AUTO;
    s = fwd ? lgh_plan(ctx, &p->a, &e, &ws) : lgh_backward_plan(ctx, &p->b, &e, &ws);
    if (s != LGH_STATUS_SUCCESS) {
        fail(label, "plan: %s: %s", lgh_status_string(s), lgh_last_error(ctx));
    } else if (ws == 0) {
        skip(label, "the engine needs no workspace for this problem");
    } else if (guard(p, from, to) == 0) {
        s = fwd ? lgh_forward(ctx, &p->a, NULL, 0, NULL) : lgh_backward(ctx, &p->b, NULL, 0, NULL);
        char msg[512], which[32];
        snprintf(msg, sizeof msg, "%s", lgh_last_error(ctx));
        const long t = touched(p, from, to, which, sizeof which);
        const char *d = NULL;
        if (s != LGH_STATUS_ALLOC_FAILED || !is_alloc_message(msg)) {
            fail(label, "the failing call returned %s: \"%s\"", lgh_status_string(s), msg);
        } else if (t != 0) {
            fail(label, "the failing call wrote %ld elements (first in %s)", t, which);
        } else if ((s = fwd ? lgh_forward(ctx, &p->a, NULL, 0, NULL)
                            : lgh_backward(ctx, &p->b, NULL, 0, NULL)) != LGH_STATUS_SUCCESS) {
            fail(label, "the next call returned %s: %s", lgh_status_string(s), lgh_last_error(ctx));
        } else if (lgh_last_error(ctx)[0]) {
            fail(label, "the next call succeeded, but the message is still \"%s\"",
                 lgh_last_error(ctx));
        } else if ((d = differs(p, from, to)) != NULL) {
            fail(label, "after the fault, %s differs from a clean context's", d);
        } else {
            char detail[600];
            snprintf(detail, sizeof detail, "%s engine, %zu bytes: \"%s\"", lgh_engine_name(e), ws, msg);
            pass(label, detail);
        }
    }
    lgh_destroy(ctx);
}

/* alloc:2 with a small and a large problem of the same kind. */
static void growth(prob_t *small, prob_t *large)
{
    const char *label = "growth: one allocation per problem size, a failed one retried";
    lgh_context_t ctx = NULL;
    if (make_ctx(&ctx, "alloc:2") != LGH_STATUS_SUCCESS)
        return fail(label, "lgh_create: %s", lgh_last_error(NULL));
    size_t ws_small = 0, ws_large = 0;
    lgh_plan(ctx, &small->a, NULL, &ws_small);
    lgh_plan(ctx, &large->a, NULL, &ws_large);
    if (!(ws_small > 0 && ws_large > ws_small)) {
        skip(label, "the two problems' workspaces do not grow");
        lgh_destroy(ctx);
        return;
    }
    lgh_status_t s;
    for (int i = 0; i < 4; ++i) { /* allocation 1, then none */
        if ((s = lgh_forward(ctx, &small->a, NULL, 0, NULL)) != LGH_STATUS_SUCCESS) {
            fail(label, "small problem, call %d: %s: %s", i + 1, lgh_status_string(s),
                 lgh_last_error(ctx));
            lgh_destroy(ctx);
            return;
        }
    }
    char which[32];
    if (guard(large, 0, FWD_OUTS)) goto out;
    s = lgh_forward(ctx, &large->a, NULL, 0, NULL); /* allocation 2: fails */
    const long t = touched(large, 0, FWD_OUTS, which, sizeof which);
    if (s != LGH_STATUS_ALLOC_FAILED || !is_alloc_message(lgh_last_error(ctx))) {
        fail(label, "large problem: %s: \"%s\"", lgh_status_string(s), lgh_last_error(ctx));
    } else if (t != 0) {
        fail(label, "the failing call wrote %ld elements (first in %s)", t, which);
    } else if ((s = lgh_forward(ctx, &large->a, NULL, 0, NULL)) != LGH_STATUS_SUCCESS) {
        fail(label, "large problem again: %s: %s", lgh_status_string(s), lgh_last_error(ctx));
    } else if ((s = lgh_forward(ctx, &small->a, NULL, 0, NULL)) != LGH_STATUS_SUCCESS) {
        fail(label, "small problem after: %s: %s", lgh_status_string(s), lgh_last_error(ctx));
    } else {
        char detail[128];
        snprintf(detail, sizeof detail, "%zu then %zu bytes", ws_small, ws_large);
        pass(label, detail);
    }
out:
    lgh_destroy(ctx);
}

static void caller_workspace(prob_t *p)
{
    const char *label = "a caller's workspace is not the context's to allocate";
    lgh_context_t ctx = NULL;
    if (make_ctx(&ctx, "alloc:1") != LGH_STATUS_SUCCESS)
        return fail(label, "lgh_create: %s", lgh_last_error(NULL));
    size_t ws = 0;
    lgh_status_t s = lgh_plan(ctx, &p->a, NULL, &ws);
    tst_buf_t own;
    char msg[256] = "";
    if (s != LGH_STATUS_SUCCESS || ws == 0) {
        skip(label, "no workspace needed");
    } else if (tst_buf_alloc(&own, ws, g_gpu, msg, sizeof msg)) {
        fail(label, "%s", msg);
    } else {
        if ((s = lgh_forward(ctx, &p->a, own.dev, ws, NULL)) != LGH_STATUS_SUCCESS)
            fail(label, "with its own workspace: %s: %s", lgh_status_string(s), lgh_last_error(ctx));
        else if ((s = lgh_forward(ctx, &p->a, NULL, 0, NULL)) != LGH_STATUS_ALLOC_FAILED)
            fail(label, "the first call without one returned %s, not the injected failure",
                 lgh_status_string(s));
        else
            pass(label, NULL);
        download(p, 0, FWD_OUTS); /* waits for the device before the buffer goes */
        tst_buf_free(&own);
    }
    lgh_destroy(ctx);
}

static void tune_fault(prob_t *p)
{
    const char *label = "lgh_tune with a failing workspace";
    lgh_context_t ctx = NULL;
    if (make_ctx(&ctx, "alloc:1") != LGH_STATUS_SUCCESS)
        return fail(label, "lgh_create: %s", lgh_last_error(NULL));
    lgh_args_t a = p->a;
    a.engine = LGH_ENGINE_AUTO;
    lgh_tune_result_t res[8];
    int count = 0, failed_alloc = 0;
    lgh_engine_t chosen = LGH_ENGINE_AUTO;
    lgh_status_t s = lgh_tune(ctx, &a, NULL, NULL, NULL, &chosen, res, 8, &count);
    for (int i = 0; i < count && i < 8; ++i) failed_alloc += res[i].status == LGH_STATUS_ALLOC_FAILED;
    /* CPU: one engine, so the tuning fails with it. GPU: the engine that made the first
     * allocation fails (an engine with variants may absorb it, when a later variant's
     * allocation succeeds), the others are timed. */
    const int ok = g_gpu ? failed_alloc <= 1 && (s == LGH_STATUS_SUCCESS || s == LGH_STATUS_ALLOC_FAILED)
                         : failed_alloc == 1 && s == LGH_STATUS_ALLOC_FAILED;
    if (!ok) {
        fail(label, "returned %s with %d engines reporting ALLOC_FAILED (wanted 1): %s",
             lgh_status_string(s), failed_alloc, lgh_last_error(ctx));
    } else if ((s = lgh_tune(ctx, &a, NULL, NULL, NULL, &chosen, res, 8, &count)) !=
               LGH_STATUS_SUCCESS) {
        fail(label, "tuning again: %s: %s", lgh_status_string(s), lgh_last_error(ctx));
    } else {
        pass(label, lgh_engine_name(chosen));
    }
    lgh_destroy(ctx);
}

static void settings(void)
{
    static const char *const bad[] = {"alloc:0", "alloc:", "alloc:x", "alloc:1x", "alloc:-1",
                                      "alloc:01", "oom:1", "alloc", "ALLOC:1", " alloc:1",
                                      "alloc:99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        char label[96];
        snprintf(label, sizeof label, "LGH_FAULT_INJECT=\"%s\" refused", bad[i]);
        lgh_context_t ctx = NULL;
        const lgh_status_t s = make_ctx(&ctx, bad[i]);
        if (s != LGH_STATUS_INVALID_VALUE || ctx || !strstr(lgh_last_error(NULL), "LGH_FAULT_INJECT"))
            fail(label, "lgh_create returned %s: %s", lgh_status_string(s), lgh_last_error(NULL));
        else
            pass(label, lgh_last_error(NULL));
        lgh_destroy(ctx);
    }
    lgh_context_t ctx = NULL;
    const lgh_status_t s = make_ctx(&ctx, "");
    if (s != LGH_STATUS_SUCCESS) fail("LGH_FAULT_INJECT=\"\" is unset", "%s", lgh_last_error(NULL));
    else pass("LGH_FAULT_INJECT=\"\" is unset", NULL);
    lgh_destroy(ctx);
}

int main(int argc, char **argv)
{
    const char *tier = "cpu";
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--tier") && i + 1 < argc) {
            tier = argv[++i];
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            g_verbose = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: test_faults [--tier cpu|gpu] [--verbose]\n");
            return 0;
        } else {
            fprintf(stderr, "test_faults: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (strcmp(tier, "cpu") && strcmp(tier, "gpu")) {
        fprintf(stderr, "test_faults: --tier %s: expected cpu or gpu\n", tier);
        return 2;
    }
    g_gpu = !strcmp(tier, "gpu");
    char title[64];
    snprintf(title, sizeof title, "test_faults[%s]", tier);
    tst_print_seed(title);
    unsetenv("LGH_ENGINE");
    unsetenv("LGH_FAULT_INJECT");
    setenv("LGH_CACHE", "0", 1);
    setenv("LGH_TUNE", "0", 1);

    lgh_context_t probe = NULL;
    if (make_ctx(&probe, NULL) != LGH_STATUS_SUCCESS) {
        if (g_gpu) {
            printf("GPU tier: skipped (no CUDA device: %s)\n", lgh_last_error(NULL));
            tst_summary(title, &g_tally);
            return TST_EXIT_SKIP;
        }
        printf("FAIL lgh_create(cpu): %s\n", lgh_last_error(NULL));
        return 1;
    }
    if (g_gpu && !tst_have_cuda()) {
        printf("GPU tier: skipped (the tests were built without the CUDA runtime)\n");
        lgh_destroy(probe);
        tst_summary(title, &g_tally);
        return TST_EXIT_SKIP;
    }
    printf("%s: %s\n", g_gpu ? "GPU tier: device 0" : "CPU tier", lgh_device_description(probe));
    lgh_destroy(probe);

    /* CPU: bfloat16 (widened copies in the workspace). GPU: cublaslt, whose workspace
     * holds cuBLASLt's own, for the forward; the backward on AUTO (dh in the workspace). */
    const lgh_engine_t fwd_engine = g_gpu ? LGH_ENGINE_CUBLASLT : LGH_ENGINE_AUTO;
    prob_t small = {0}, large = {0}, f32 = {0};
    if (prob_make(&small, 24, 40, 48, 4, LGH_DTYPE_BFLOAT16, fwd_engine, 1) == 0 &&
        prob_make(&large, 96, 160, 192, 6, LGH_DTYPE_BFLOAT16, fwd_engine, 2) == 0 &&
        prob_make(&f32, 33, 70, 96, 3, LGH_DTYPE_FLOAT32, fwd_engine, 3) == 0) {
        if (control(&small, 1) == 0) fault_then_recover(&small, 1, "forward, bfloat16");
        if (control(&f32, 1) == 0) {
            fault_then_recover(&f32, 1, "forward, float32");
            /* The backward takes the control forward's h, mean and rstd. */
            if (control(&f32, 0) == 0) fault_then_recover(&f32, 0, "backward, float32");
        }
        if (control(&large, 1) == 0 && control(&large, 0) == 0)
            fault_then_recover(&large, 0, "backward, bfloat16");
        growth(&small, &large);
        caller_workspace(&small);
        tune_fault(&small);
    }
    prob_free(&small), prob_free(&large), prob_free(&f32);
    settings();
    tst_summary(title, &g_tally);
    return g_tally.failed ? 1 : 0;
}
