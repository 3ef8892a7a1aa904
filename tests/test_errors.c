/*
 * test_errors: every refusal of the public API, one test each, plus the small API
 * surface around it (status strings, version, names, lgh_plan, kernel info).
 *
 *   test_errors [--tier cpu|gpu] [--verbose]
 *
 * Each refusal starts from a valid problem (which must run: the control), breaks one
 * thing, and checks (1) the status, (2) that lgh_last_error() names the problem in
 * words, (3) that lgh_plan() refuses the same way where it checks the same thing, and
 * (4) that nothing was written: y, mean and rstd are filled with a guard pattern before
 * the call and must come back bit for bit unchanged.
 *
 * --tier cpu (default) runs on a CPU context; --tier gpu runs the same refusals on CUDA
 * device 0, plus the memory-space refusals (a host pointer given to the GPU context, a
 * device pointer given to a CPU context). Without a CUDA device the GPU tier prints
 * "GPU tier: skipped (no CUDA device)" and exits 77 (ctest SKIP_RETURN_CODE).
 */
#include <ctype.h>
#include <strings.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgh.h"
#include "support/tst.h"

static int g_verbose;
static tst_tally_t g_tally;

/* The shared verdicts (support/tst.c), counted in g_tally. */
#define pass(label, detail) tst_pass(&g_tally, g_verbose, (label), (detail))
#define fail(label, ...) tst_fail(&g_tally, (label), __VA_ARGS__)
#define skip(label, why) tst_skip(&g_tally, (label), (why))

/* Whether msg contains word as a whole word (case-insensitive): "x" matches "x is NULL"
 * but not "max". */
static int has_word(const char *msg, const char *word)
{
    const size_t n = strlen(word);
    for (const char *p = msg; *p; ++p) {
        if (strncasecmp(p, word, n) != 0) continue;
        const int left = p == msg || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
        const int right = !(isalnum((unsigned char)p[n]) || p[n] == '_');
        if (left && right) return 1;
    }
    return 0;
}

/* ---- the fixture: a valid problem on one context ------------------------------------- */

enum { M = 5, K = 12, N = 16, G = 4, Y_SLACK = 64 };

typedef struct fixture {
    const char *tier;
    lgh_context_t ctx;
    int on_gpu;
    tst_buf_t x, w, b, g, be, y, mean, rstd;
    lgh_args_t a; /* valid: runs */
} fixture_t;

static int fixture_make(fixture_t *f, const char *tier, lgh_context_t ctx, int on_gpu)
{
    char msg[256] = "";
    memset(f, 0, sizeof *f);
    f->tier = tier;
    f->ctx = ctx;
    f->on_gpu = on_gpu;
    const size_t e = 4;
    if (tst_buf_alloc(&f->x, M * K * e, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&f->w, N * K * e, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&f->b, N * e, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&f->g, N * e, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&f->be, N * e, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&f->y, (M * N + Y_SLACK) * e, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&f->mean, (M * G + Y_SLACK) * e, on_gpu, msg, sizeof msg) ||
        tst_buf_alloc(&f->rstd, (M * G + Y_SLACK) * e, on_gpu, msg, sizeof msg)) {
        fail(tier, "fixture allocation: %s", msg);
        return -1;
    }
    tst_rng_t r = tst_rng_make(tst_base_seed(), on_gpu ? 2 : 1);
    tst_fill_matrix(LGH_DTYPE_FLOAT32, f->x.host, M, K, K, M * K, &r, 0.0, 1.0);
    tst_fill_matrix(LGH_DTYPE_FLOAT32, f->w.host, N, K, K, N * K, &r, -0.3, 0.3);
    tst_fill_matrix(LGH_DTYPE_FLOAT32, f->b.host, 1, N, N, N, &r, -0.5, 0.5);
    tst_fill_matrix(LGH_DTYPE_FLOAT32, f->g.host, 1, N, N, N, &r, 0.5, 1.5);
    tst_fill_matrix(LGH_DTYPE_FLOAT32, f->be.host, 1, N, N, N, &r, -0.5, 0.5);
    if (tst_buf_upload(&f->x, msg, sizeof msg) || tst_buf_upload(&f->w, msg, sizeof msg) ||
        tst_buf_upload(&f->b, msg, sizeof msg) || tst_buf_upload(&f->g, msg, sizeof msg) ||
        tst_buf_upload(&f->be, msg, sizeof msg)) {
        fail(tier, "fixture upload: %s", msg);
        return -1;
    }
    lgh_args_init(&f->a, M, K, N, G);
    f->a.x = f->x.dev, f->a.w = f->w.dev, f->a.bias = f->b.dev, f->a.gamma = f->g.dev;
    f->a.beta = f->be.dev, f->a.y = f->y.dev, f->a.mean = f->mean.dev, f->a.rstd = f->rstd.dev;
    return 0;
}

static void fixture_free(fixture_t *f)
{
    tst_buf_free(&f->x), tst_buf_free(&f->w), tst_buf_free(&f->b), tst_buf_free(&f->g);
    tst_buf_free(&f->be), tst_buf_free(&f->y), tst_buf_free(&f->mean), tst_buf_free(&f->rstd);
}

/* Fills y, mean, rstd (host and device) with the guard pattern. */
static int guard_outputs(fixture_t *f, char *msg, size_t len)
{
    tst_buf_t *outs[] = {&f->y, &f->mean, &f->rstd};
    for (int i = 0; i < 3; ++i) {
        const int64_t n = (int64_t)(outs[i]->bytes / 4);
        for (int64_t j = 0; j < n; ++j)
            tst_store_pattern(LGH_DTYPE_FLOAT32, outs[i]->host, j, TST_GUARD);
        if (tst_buf_upload(outs[i], msg, len)) return -1;
    }
    return 0;
}

/* Elements of y, mean, rstd that no longer hold the guard (after downloading them). */
static int64_t outputs_touched(fixture_t *f, char *msg, size_t len)
{
    tst_buf_t *outs[] = {&f->y, &f->mean, &f->rstd};
    int64_t touched = 0;
    for (int i = 0; i < 3; ++i) {
        if (tst_buf_download(outs[i], msg, len)) return -1;
        const int64_t n = (int64_t)(outs[i]->bytes / 4);
        for (int64_t j = 0; j < n; ++j)
            touched += !tst_is_pattern(LGH_DTYPE_FLOAT32, outs[i]->host, j, TST_GUARD);
    }
    return touched;
}

/* Plan-level checks: lgh_plan refuses arguments like lgh_forward, but not memory
 * spaces (it never looks at memory) nor the caller's workspace size. */
enum { PLAN_SAME, PLAN_SKIP };

/* Runs forward with args on the fixture's context and checks the refusal. word1 and
 * word2 (either may be NULL) must both appear in lgh_last_error() as whole words. */
static void expect_refused_ws(fixture_t *f, const char *what, const lgh_args_t *args,
                              lgh_status_t want, const char *word1, const char *word2, int plan,
                              void *ws, size_t ws_bytes)
{
    char label[200], msg[256] = "";
    snprintf(label, sizeof label, "%s: %s", f->tier, what);
    if (guard_outputs(f, msg, sizeof msg)) {
        fail(label, "could not prepare outputs: %s", msg);
        return;
    }
    if (plan == PLAN_SAME) {
        lgh_status_t ps = lgh_plan(f->ctx, args, NULL, NULL);
        if (ps != want) {
            fail(label, "lgh_plan returned %s (%s), want %s", lgh_status_string(ps),
                 lgh_last_error(f->ctx), lgh_status_string(want));
            return;
        }
    }
    lgh_status_t s = lgh_forward(f->ctx, args, ws, ws_bytes, NULL);
    char text[512];
    snprintf(text, sizeof text, "%s", f->ctx ? lgh_last_error(f->ctx) : "");
    if (f->on_gpu && tst_dev_sync(msg, sizeof msg)) {
        fail(label, "CUDA error after the refused call: %s", msg);
        return;
    }
    if (s != want) {
        fail(label, "lgh_forward returned %s (%s), want %s", lgh_status_string(s), text,
             lgh_status_string(want));
        return;
    }
    if (f->ctx && (strlen(text) < 8 || (word1 && !has_word(text, word1)) ||
                   (word2 && !has_word(text, word2)))) {
        fail(label, "message \"%s\" does not name the problem (want the words '%s'%s%s%s)", text,
             word1 ? word1 : "", word2 ? " and '" : "", word2 ? word2 : "", word2 ? "'" : "");
        return;
    }
    int64_t touched = outputs_touched(f, msg, sizeof msg);
    if (touched != 0) {
        if (touched < 0)
            fail(label, "could not read the outputs back: %s", msg);
        else
            fail(label, "refused, but %" PRId64 " elements of y/mean/rstd were written", touched);
        return;
    }
    pass(label, text);
}

static void expect_refused(fixture_t *f, const char *what, const lgh_args_t *args,
                           lgh_status_t want, const char *word1, const char *word2, int plan)
{
    expect_refused_ws(f, what, args, want, word1, word2, plan, NULL, 0);
}

/* The fixture's problem, which must run (the control for every refusal). */
static int expect_runs(fixture_t *f, const char *what, const lgh_args_t *args)
{
    char label[200], msg[256] = "";
    snprintf(label, sizeof label, "%s: %s", f->tier, what);
    if (guard_outputs(f, msg, sizeof msg)) {
        fail(label, "could not prepare outputs: %s", msg);
        return -1;
    }
    lgh_status_t s = lgh_forward(f->ctx, args, NULL, 0, NULL);
    if (f->on_gpu && tst_dev_sync(msg, sizeof msg)) {
        fail(label, "CUDA error: %s", msg);
        return -1;
    }
    if (s != LGH_STATUS_SUCCESS) {
        fail(label, "lgh_forward returned %s: %s", lgh_status_string(s), lgh_last_error(f->ctx));
        return -1;
    }
    if (tst_buf_download(&f->y, msg, sizeof msg)) {
        fail(label, "download: %s", msg);
        return -1;
    }
    for (int64_t i = 0; i < M * N; ++i) {
        float v = ((float *)f->y.host)[i];
        if (!(v >= args->lo && v <= args->hi)) {
            fail(label, "y[%" PRId64 "] = %g is not written or outside [lo, hi]", i, (double)v);
            return -1;
        }
    }
    pass(label, NULL);
    return 0;
}

/* ---- the refusals --------------------------------------------------------------------- */

/* REFUSE(label, status, word1, word2, statement): a copy `a` of the valid args, changed
 * by the statement, must be refused. */
#define REFUSE(what, want, w1, w2, change)                                                   \
    do {                                                                                     \
        lgh_args_t a = f->a;                                                                 \
        change;                                                                              \
        expect_refused(f, what, &a, want, w1, w2, PLAN_SAME);                                \
    } while (0)

static void refusals(fixture_t *f)
{
    if (expect_runs(f, "control: the valid problem runs", &f->a)) {
        fail(f->tier, "the valid problem does not run: the refusals below prove nothing");
    }

    /* NULL pointers */
    expect_refused(f, "args NULL", NULL, LGH_STATUS_NULL_POINTER, "args", "NULL", PLAN_SAME);
    {
        char label[128];
        snprintf(label, sizeof label, "%s: ctx NULL", f->tier);
        char msg[256] = "";
        if (guard_outputs(f, msg, sizeof msg)) {
            fail(label, "could not prepare outputs: %s", msg);
        } else {
            lgh_status_t s = lgh_forward(NULL, &f->a, NULL, 0, NULL);
            lgh_status_t p = lgh_plan(NULL, &f->a, NULL, NULL);
            int64_t touched = outputs_touched(f, msg, sizeof msg);
            if (s != LGH_STATUS_NULL_POINTER || p != LGH_STATUS_NULL_POINTER)
                fail(label, "lgh_forward returned %s, lgh_plan %s; want %s", lgh_status_string(s),
                     lgh_status_string(p), lgh_status_string(LGH_STATUS_NULL_POINTER));
            else if (touched != 0)
                fail(label, "refused, but %" PRId64 " output elements changed", touched);
            else
                pass(label, NULL);
        }
    }
    REFUSE("x NULL", LGH_STATUS_NULL_POINTER, "x", "NULL", a.x = NULL);
    REFUSE("w NULL", LGH_STATUS_NULL_POINTER, "w", "NULL", a.w = NULL);
    REFUSE("bias NULL", LGH_STATUS_NULL_POINTER, "bias", "NULL", a.bias = NULL);
    REFUSE("gamma NULL", LGH_STATUS_NULL_POINTER, "gamma", "NULL", a.gamma = NULL);
    REFUSE("beta NULL", LGH_STATUS_NULL_POINTER, "beta", "NULL", a.beta = NULL);
    REFUSE("y NULL", LGH_STATUS_NULL_POINTER, "y", "NULL", a.y = NULL);
    REFUSE("mean without rstd", LGH_STATUS_NULL_POINTER, "mean", "rstd", a.rstd = NULL);
    REFUSE("rstd without mean", LGH_STATUS_NULL_POINTER, "mean", "rstd", a.mean = NULL);

    /* sizes */
    REFUSE("M = 0", LGH_STATUS_INVALID_SIZE, "M", NULL, a.m = 0);
    REFUSE("M < 0", LGH_STATUS_INVALID_SIZE, "M", NULL, a.m = -5);
    REFUSE("K = 0", LGH_STATUS_INVALID_SIZE, "K", NULL, a.k = 0);
    REFUSE("K < 0", LGH_STATUS_INVALID_SIZE, "K", NULL, a.k = -12);
    REFUSE("N = 0", LGH_STATUS_INVALID_SIZE, "N", NULL, a.n = 0);
    REFUSE("N < 0", LGH_STATUS_INVALID_SIZE, "N", NULL, a.n = -16);
    REFUSE("groups = 0", LGH_STATUS_INVALID_SIZE, "groups", NULL, a.groups = 0);
    REFUSE("groups < 0", LGH_STATUS_INVALID_SIZE, "groups", NULL, a.groups = -4);
    REFUSE("N % G != 0 (16 % 3)", LGH_STATUS_GROUPS_MISMATCH, "N", "groups", a.groups = 3);
    REFUSE("N % G != 0 (G > N)", LGH_STATUS_GROUPS_MISMATCH, "N", "groups", a.groups = 32);

    /* eps */
    REFUSE("eps = 0", LGH_STATUS_INVALID_EPS, "eps", NULL, a.eps = 0.0f);
    REFUSE("eps < 0", LGH_STATUS_INVALID_EPS, "eps", NULL, a.eps = -1e-5f);
    REFUSE("eps NaN", LGH_STATUS_INVALID_EPS, "eps", NULL, a.eps = NAN);
    REFUSE("eps +inf", LGH_STATUS_INVALID_EPS, "eps", NULL, a.eps = INFINITY);
    REFUSE("eps -inf", LGH_STATUS_INVALID_EPS, "eps", NULL, a.eps = -INFINITY);

    /* clamp */
    REFUSE("lo > hi", LGH_STATUS_INVALID_CLAMP, "lo", "hi", (a.lo = 1.0f, a.hi = -1.0f));
    REFUSE("lo NaN", LGH_STATUS_INVALID_CLAMP, "lo", NULL, a.lo = NAN);
    REFUSE("hi NaN", LGH_STATUS_INVALID_CLAMP, "hi", NULL, a.hi = NAN);

    /* leading dimensions */
    REFUSE("ldx < K", LGH_STATUS_INVALID_LEADING_DIM, "ldx", NULL, a.ldx = K - 1);
    REFUSE("ldw < K", LGH_STATUS_INVALID_LEADING_DIM, "ldw", NULL, a.ldw = K - 1);
    REFUSE("ldy < N", LGH_STATUS_INVALID_LEADING_DIM, "ldy", NULL, a.ldy = N - 1);
    REFUSE("ldx negative", LGH_STATUS_INVALID_LEADING_DIM, "ldx", NULL, a.ldx = -1);

    /* overflow: every size valid on its own, the byte or flop counts not */
    REFUSE("M*K*4 overflows", LGH_STATUS_SIZE_OVERFLOW, "overflow", NULL,
           (a.m = INT64_C(1) << 40, a.k = INT64_C(1) << 40));
    REFUSE("(M-1)*ldy overflows", LGH_STATUS_SIZE_OVERFLOW, "overflow", NULL,
           a.ldy = INT64_C(1) << 62);
    REFUSE("2*M*N*K overflows", LGH_STATUS_SIZE_OVERFLOW, "overflow", NULL,
           (a.m = INT64_C(1) << 21, a.k = INT64_C(1) << 21, a.n = INT64_C(1) << 22,
            a.groups = 1));

    /* enums */
    REFUSE("dtype out of range", LGH_STATUS_INVALID_VALUE, "dtype", NULL, a.dtype = (lgh_dtype_t)7);
    REFUSE("dtype negative", LGH_STATUS_INVALID_VALUE, "dtype", NULL, a.dtype = (lgh_dtype_t)-1);
    REFUSE("math out of range", LGH_STATUS_INVALID_VALUE, "math", NULL, a.math = (lgh_math_t)9);
    REFUSE("math one past ACCURATE", LGH_STATUS_INVALID_VALUE, "math", NULL,
           a.math = (lgh_math_t)(LGH_MATH_ACCURATE + 1));
    REFUSE("math negative", LGH_STATUS_INVALID_VALUE, "math", NULL, a.math = (lgh_math_t)-1);
    REFUSE("engine out of range", LGH_STATUS_INVALID_VALUE, "engine", NULL,
           a.engine = (lgh_engine_t)42);
    REFUSE("engine = LGH_ENGINE_COUNT", LGH_STATUS_INVALID_VALUE, "engine", NULL,
           a.engine = LGH_ENGINE_COUNT);

    /* forced engines this context cannot run */
    if (!f->on_gpu) {
        REFUSE("forced cublaslt on a CPU context", LGH_STATUS_ENGINE_UNAVAILABLE, "cublaslt", NULL,
               a.engine = LGH_ENGINE_CUBLASLT);
        REFUSE("forced sm90 on a CPU context", LGH_STATUS_ENGINE_UNAVAILABLE, "sm90", NULL,
               a.engine = LGH_ENGINE_SM90);
        REFUSE("forced sm80 on a CPU context", LGH_STATUS_ENGINE_UNAVAILABLE, "sm80", NULL,
               a.engine = LGH_ENGINE_SM80);
    } else {
        REFUSE("forced cpu on a GPU context", LGH_STATUS_ENGINE_UNAVAILABLE, "cpu", NULL,
               a.engine = LGH_ENGINE_CPU);
    }

    /* workspace too small: the first dtype whose plan needs any workspace */
    {
        char label[160];
        snprintf(label, sizeof label, "%s: workspace too small", f->tier);
        static const lgh_dtype_t dts[] = {LGH_DTYPE_FLOAT32, LGH_DTYPE_BFLOAT16, LGH_DTYPE_FLOAT16};
        int done = 0;
        for (int i = 0; i < 3 && !done; ++i) {
            lgh_args_t a = f->a;
            a.dtype = dts[i]; /* buffers are large enough for any dtype */
            size_t need = 0;
            lgh_engine_t e;
            lgh_status_t ps = lgh_plan(f->ctx, &a, &e, &need);
            if (ps != LGH_STATUS_SUCCESS) {
                fail(label, "lgh_plan(%s) returned %s: %s", lgh_dtype_name(dts[i]),
                     lgh_status_string(ps), lgh_last_error(f->ctx));
                done = 1;
                break;
            }
            if (need == 0) continue;
            tst_buf_t ws;
            char msg[256] = "";
            if (tst_buf_alloc(&ws, need, f->on_gpu, msg, sizeof msg)) {
                fail(label, "workspace allocation: %s", msg);
                done = 1;
                break;
            }
            char what[96];
            snprintf(what, sizeof what, "workspace of %zu bytes, %s needs %zu (%s)", need - 1,
                     lgh_engine_name(e), need, lgh_dtype_name(dts[i]));
            expect_refused_ws(f, what, &a, LGH_STATUS_WORKSPACE_TOO_SMALL, "workspace", NULL,
                              PLAN_SKIP, ws.dev, need - 1);
            tst_buf_free(&ws);
            done = 1;
        }
        if (!done)
            skip(label, "the engine needs no workspace for this problem in any dtype, so no "
                        "workspace can be too small");
    }

    /* boundaries that are valid */
    {
        lgh_args_t a = f->a;
        a.lo = a.hi = 0.5f;
        expect_runs(f, "lo == hi is valid (y == lo everywhere)", &a);
        a = f->a;
        a.mean = a.rstd = NULL;
        expect_runs(f, "no mean and no rstd is valid", &a);
        a = f->a;
        a.ldx = K, a.ldw = K, a.ldy = N;
        expect_runs(f, "leading dims equal to the row are valid", &a);
    }
}

/* ---- environment: LGH_ENGINE ---------------------------------------------------------- */

static void env_tests(int device, const char *tier, const lgh_args_t *valid_args)
{
    char label[160];
    lgh_context_t c = NULL;

    snprintf(label, sizeof label, "%s: unknown LGH_ENGINE at lgh_create", tier);
    setenv("LGH_ENGINE", "warp-drive", 1);
    lgh_status_t s = lgh_create(&c, device);
    const char *msg = lgh_last_error(NULL);
    if (s != LGH_STATUS_INVALID_VALUE || c != NULL)
        fail(label, "lgh_create returned %s (ctx %s), want INVALID_VALUE and no context",
             lgh_status_string(s), c ? "set" : "NULL");
    else if (!has_word(msg, "LGH_ENGINE") || !strstr(msg, "warp-drive"))
        fail(label, "message \"%s\" does not name LGH_ENGINE and its value", msg);
    else
        pass(label, msg);
    if (c) lgh_destroy(c), c = NULL;

    /* A forced engine this device cannot run, through the environment. */
    const char *other = device == LGH_DEVICE_CPU ? "cublaslt" : "cpu";
    snprintf(label, sizeof label, "%s: LGH_ENGINE=%s unavailable here", tier, other);
    setenv("LGH_ENGINE", other, 1);
    s = lgh_create(&c, device);
    if (s != LGH_STATUS_SUCCESS) {
        fail(label, "lgh_create with LGH_ENGINE=%s: %s: %s", other, lgh_status_string(s),
             lgh_last_error(NULL));
    } else {
        lgh_status_t p = lgh_plan(c, valid_args, NULL, NULL);
        if (p != LGH_STATUS_ENGINE_UNAVAILABLE)
            fail(label, "lgh_plan returned %s, want ENGINE_UNAVAILABLE", lgh_status_string(p));
        else if (!has_word(lgh_last_error(c), other))
            fail(label, "message \"%s\" does not name the engine", lgh_last_error(c));
        else
            pass(label, lgh_last_error(c));

        /* The engine in the args wins over the environment. */
        snprintf(label, sizeof label, "%s: args.engine overrides LGH_ENGINE", tier);
        lgh_args_t a = *valid_args;
        a.engine = device == LGH_DEVICE_CPU ? LGH_ENGINE_CPU : LGH_ENGINE_CUBLASLT;
        lgh_engine_t e = LGH_ENGINE_AUTO;
        p = lgh_plan(c, &a, &e, NULL);
        if (p != LGH_STATUS_SUCCESS || e != a.engine)
            fail(label, "lgh_plan returned %s, engine %s: %s", lgh_status_string(p),
                 lgh_engine_name(e), lgh_last_error(c));
        else
            pass(label, NULL);
        lgh_destroy(c), c = NULL;
    }

    /* The engine that can run, through the environment. */
    const char *own = device == LGH_DEVICE_CPU ? "cpu" : "cublaslt";
    snprintf(label, sizeof label, "%s: LGH_ENGINE=%s is used", tier, own);
    setenv("LGH_ENGINE", own, 1);
    s = lgh_create(&c, device);
    if (s != LGH_STATUS_SUCCESS) {
        fail(label, "lgh_create: %s: %s", lgh_status_string(s), lgh_last_error(NULL));
    } else {
        lgh_engine_t e = LGH_ENGINE_AUTO;
        lgh_status_t p = lgh_plan(c, valid_args, &e, NULL);
        if (p != LGH_STATUS_SUCCESS || strcmp(lgh_engine_name(e), own) != 0)
            fail(label, "lgh_plan returned %s, engine %s: %s", lgh_status_string(p),
                 lgh_engine_name(e), lgh_last_error(c));
        else
            pass(label, NULL);
        lgh_destroy(c), c = NULL;
    }
    unsetenv("LGH_ENGINE");
}

/* ---- API surface that needs no problem ------------------------------------------------ */

static void api_tests(void)
{
    /* version */
    if (lgh_version() != LGH_VERSION)
        fail("lgh_version", "library says %d, header says %d", lgh_version(), LGH_VERSION);
    else
        pass("lgh_version() == LGH_VERSION", NULL);

    /* every status has its own non-empty string; unknown ones still get a string */
    {
        const char *seen[LGH_STATUS_INTERNAL_ERROR + 1];
        int ok = 1;
        for (int s = 0; s <= LGH_STATUS_INTERNAL_ERROR; ++s) {
            const char *str = lgh_status_string((lgh_status_t)s);
            seen[s] = str;
            if (!str || strlen(str) < 5) {
                fail("lgh_status_string", "status %d has no description", s);
                ok = 0;
                continue;
            }
            for (int t = 0; t < s; ++t)
                if (seen[t] && !strcmp(seen[t], str)) {
                    fail("lgh_status_string", "statuses %d and %d share \"%s\"", t, s, str);
                    ok = 0;
                }
            if (g_verbose) printf("     status %2d: %s\n", s, str);
        }
        const char *unk = lgh_status_string((lgh_status_t)999);
        if (!unk || !*unk) {
            fail("lgh_status_string", "an unknown status gives no string");
            ok = 0;
        }
        if (ok) pass("lgh_status_string for every status", NULL);
    }

    /* names */
    {
        int ok = 1;
        static const char *const engines[] = {"auto", "cpu", "cublaslt", "sm80", "sm90"};
        for (int e = 0; e < LGH_ENGINE_COUNT; ++e) {
            lgh_engine_t parsed = LGH_ENGINE_COUNT;
            if (strcmp(lgh_engine_name((lgh_engine_t)e), engines[e]) ||
                lgh_engine_from_name(engines[e], &parsed) != LGH_STATUS_SUCCESS ||
                parsed != (lgh_engine_t)e) {
                fail("engine names", "engine %d does not round-trip as \"%s\"", e, engines[e]);
                ok = 0;
            }
        }
        lgh_engine_t parsed;
        if (lgh_engine_from_name("warp-drive", &parsed) != LGH_STATUS_INVALID_VALUE ||
            lgh_engine_from_name(NULL, &parsed) != LGH_STATUS_NULL_POINTER ||
            lgh_engine_from_name("cpu", NULL) != LGH_STATUS_NULL_POINTER) {
            fail("lgh_engine_from_name", "bad names or NULL are not refused");
            ok = 0;
        }
        if (strcmp(lgh_dtype_name(LGH_DTYPE_FLOAT32), "float32") ||
            strcmp(lgh_dtype_name(LGH_DTYPE_BFLOAT16), "bfloat16") ||
            strcmp(lgh_dtype_name(LGH_DTYPE_FLOAT16), "float16") ||
            strcmp(lgh_math_name(LGH_MATH_FP32), "fp32") ||
            strcmp(lgh_math_name(LGH_MATH_TF32), "tf32") ||
            strcmp(lgh_math_name(LGH_MATH_3XTF32), "3xtf32") ||
            strcmp(lgh_math_name(LGH_MATH_ACCURATE), "accurate") ||
            !lgh_dtype_name((lgh_dtype_t)9) || !lgh_math_name((lgh_math_t)9) ||
            !lgh_engine_name((lgh_engine_t)99)) {
            fail("names", "dtype / math names are not as documented");
            ok = 0;
        }
        if (ok) pass("names of engines, dtypes, math modes", NULL);
    }

    /* lgh_args_init */
    {
        lgh_args_t a;
        memset(&a, 0x5a, sizeof a);
        lgh_args_init(&a, 3, 4, 6, 2);
        if (a.m != 3 || a.k != 4 || a.n != 6 || a.groups != 2 || a.dtype != LGH_DTYPE_FLOAT32 ||
            a.math != LGH_MATH_DEFAULT || a.engine != LGH_ENGINE_AUTO || a.eps != 1e-5f ||
            a.lo != -2.0f || a.hi != 2.0f || a.x || a.w || a.bias || a.gamma || a.beta || a.y ||
            a.mean || a.rstd || a.ldx || a.ldw || a.ldy)
            fail("lgh_args_init", "fields are not the documented defaults");
        else
            pass("lgh_args_init defaults", NULL);
        lgh_args_init(NULL, 1, 1, 1, 1); /* must not crash */
    }

    /* lgh_create refusals */
    {
        lgh_context_t c = (lgh_context_t)&c;
        lgh_status_t s = lgh_create(NULL, LGH_DEVICE_CPU);
        if (s != LGH_STATUS_NULL_POINTER)
            fail("lgh_create(NULL)", "returned %s", lgh_status_string(s));
        else
            pass("lgh_create(NULL, cpu) refused", lgh_last_error(NULL));
        s = lgh_create(&c, -2);
        if (s != LGH_STATUS_INVALID_VALUE || c != NULL || !has_word(lgh_last_error(NULL), "-2"))
            fail("lgh_create(device -2)", "returned %s, message \"%s\"", lgh_status_string(s),
                 lgh_last_error(NULL));
        else
            pass("lgh_create(device -2) refused", lgh_last_error(NULL));
        s = lgh_create(&c, 4096);
        if (s != LGH_STATUS_NO_DEVICE || c != NULL || strlen(lgh_last_error(NULL)) < 8)
            fail("lgh_create(device 4096)", "returned %s, message \"%s\"", lgh_status_string(s),
                 lgh_last_error(NULL));
        else
            pass("lgh_create(device 4096) refused", lgh_last_error(NULL));
        if (lgh_destroy(NULL) != LGH_STATUS_SUCCESS)
            fail("lgh_destroy(NULL)", "is not a no-op");
        else
            pass("lgh_destroy(NULL) is a no-op", NULL);
    }
    if (!lgh_cpu_blas_name() || !*lgh_cpu_blas_name())
        fail("lgh_cpu_blas_name", "empty");
    else
        pass("lgh_cpu_blas_name", lgh_cpu_blas_name());
}

/* lgh_plan, kernel info and the context queries on one context. */
static void context_tests(fixture_t *f)
{
    char label[160];
    const int dev = f->on_gpu ? 0 : LGH_DEVICE_CPU;

    snprintf(label, sizeof label, "%s: context queries", f->tier);
    if (lgh_context_device(f->ctx) != dev || !lgh_device_description(f->ctx) ||
        !*lgh_device_description(f->ctx))
        fail(label, "device %d, description \"%s\"", lgh_context_device(f->ctx),
             lgh_device_description(f->ctx));
    else
        pass(label, lgh_device_description(f->ctx));

    /* lgh_plan on the valid problem: AUTO resolves to an available engine, both outputs
     * optional, and it never touches memory (pointers here point nowhere). */
    snprintf(label, sizeof label, "%s: lgh_plan", f->tier);
    lgh_engine_t e = LGH_ENGINE_COUNT;
    size_t ws = (size_t)-1;
    lgh_status_t s = lgh_plan(f->ctx, &f->a, &e, &ws);
    lgh_args_t nowhere = f->a;
    nowhere.x = nowhere.w = nowhere.bias = nowhere.gamma = nowhere.beta = (const void *)16;
    nowhere.y = (void *)16;
    nowhere.mean = nowhere.rstd = (float *)16;
    lgh_status_t s2 = lgh_plan(f->ctx, &nowhere, NULL, NULL);
    if (s != LGH_STATUS_SUCCESS || s2 != LGH_STATUS_SUCCESS)
        fail(label, "returned %s / %s: %s", lgh_status_string(s), lgh_status_string(s2),
             lgh_last_error(f->ctx));
    else if (e <= LGH_ENGINE_AUTO || e >= LGH_ENGINE_COUNT || !lgh_engine_available(f->ctx, e) ||
             ws == (size_t)-1)
        fail(label, "chose engine %d (available %d), workspace %zu", (int)e,
             lgh_engine_available(f->ctx, e), ws);
    else if (!f->on_gpu && e != LGH_ENGINE_CPU)
        fail(label, "AUTO on a CPU context chose %s", lgh_engine_name(e));
    else {
        char d[96];
        snprintf(d, sizeof d, "AUTO -> %s, workspace %zu bytes", lgh_engine_name(e), ws);
        pass(label, d);
    }

    /* engine availability matches the context's device */
    snprintf(label, sizeof label, "%s: lgh_engine_available", f->tier);
    if (lgh_engine_available(f->ctx, LGH_ENGINE_CPU) != !f->on_gpu ||
        (f->on_gpu && !lgh_engine_available(f->ctx, LGH_ENGINE_CUBLASLT)) ||
        lgh_engine_available(NULL, LGH_ENGINE_CPU) ||
        lgh_engine_available(f->ctx, (lgh_engine_t)99))
        fail(label, "cpu %d cublaslt %d on a %s context", lgh_engine_available(f->ctx, LGH_ENGINE_CPU),
             lgh_engine_available(f->ctx, LGH_ENGINE_CUBLASLT), f->tier);
    else
        pass(label, NULL);

    /* kernel info: count with no room, then the entries */
    snprintf(label, sizeof label, "%s: lgh_kernel_info", f->tier);
    int count = -1;
    s = lgh_kernel_info(f->ctx, NULL, 0, &count);
    if (s != LGH_STATUS_SUCCESS || count < 0) {
        fail(label, "count query returned %s, count %d", lgh_status_string(s), count);
    } else if (lgh_kernel_info(f->ctx, NULL, 0, NULL) != LGH_STATUS_NULL_POINTER) {
        fail(label, "count NULL is not refused");
    } else if (f->on_gpu && count == 0) {
        fail(label, "a GPU context reports no kernels");
    } else {
        lgh_kernel_info_t *info = calloc((size_t)count + 1, sizeof *info);
        int again = -1, ok = 1;
        s = lgh_kernel_info(f->ctx, info, count, &again);
        if (s != LGH_STATUS_SUCCESS || again != count) {
            fail(label, "second call returned %s, count %d (first %d)", lgh_status_string(s),
                 again, count);
            ok = 0;
        }
        for (int i = 0; ok && i < count; ++i) {
            const lgh_kernel_info_t *k = &info[i];
            if (!k->name[0] || k->registers <= 0 || k->threads_per_block <= 0 ||
                k->shared_bytes < 0 || k->local_bytes < 0 || k->blocks_per_sm < 0) {
                fail(label, "entry %d (%s): registers %d threads %d shared %d local %d blocks/SM %d",
                     i, k->name, k->registers, k->threads_per_block, k->shared_bytes,
                     k->local_bytes, k->blocks_per_sm);
                ok = 0;
            }
            if (g_verbose)
                printf("     kernel %-40s %-8s regs %3d smem %6d local %4d threads %4d blocks/SM %d\n",
                       k->name, lgh_engine_name(k->engine), k->registers, k->shared_bytes,
                       k->local_bytes, k->threads_per_block, k->blocks_per_sm);
        }
        if (ok) {
            char d[64];
            snprintf(d, sizeof d, "%d kernels", count);
            pass(label, d);
        }
        free(info);
    }
}

/* ---- memory spaces (GPU tier only) ------------------------------------------------------ */

static void memory_space_tests(fixture_t *gpu)
{
    /* A host pointer in each slot of a GPU context's problem. */
    static float host_block[M * N * 4 + Y_SLACK];
    static const char *const names[] = {"x", "w", "bias", "gamma", "beta", "y", "mean", "rstd"};
    for (int i = 0; i < 8; ++i) {
        lgh_args_t a = gpu->a;
        const void **slots[] = {&a.x, &a.w, &a.bias, &a.gamma, &a.beta};
        if (i < 5) *slots[i] = host_block;
        else if (i == 5) a.y = host_block;
        else if (i == 6) a.mean = host_block;
        else a.rstd = host_block;
        char what[96];
        snprintf(what, sizeof what, "host pointer as %s on a GPU context", names[i]);
        expect_refused(gpu, what, &a, LGH_STATUS_WRONG_MEMORY_SPACE, names[i], NULL, PLAN_SKIP);
    }

    /* A device pointer in each input slot of a CPU context's problem; y, mean and rstd
     * are host memory here, so the unchanged-output check reads them directly. */
    lgh_context_t cpu = NULL;
    if (lgh_create(&cpu, LGH_DEVICE_CPU) != LGH_STATUS_SUCCESS) {
        fail("gpu: device pointer on a CPU context", "lgh_create(cpu): %s", lgh_last_error(NULL));
        return;
    }
    fixture_t host;
    if (fixture_make(&host, "gpu: cpu context", cpu, 0) == 0) {
        const void *dev_in[] = {gpu->a.x, gpu->a.w, gpu->a.bias, gpu->a.gamma, gpu->a.beta};
        for (int i = 0; i < 5; ++i) {
            lgh_args_t a = host.a;
            const void **slots[] = {&a.x, &a.w, &a.bias, &a.gamma, &a.beta};
            *slots[i] = dev_in[i];
            char what[96];
            snprintf(what, sizeof what, "device pointer as %s on a CPU context", names[i]);
            expect_refused(&host, what, &a, LGH_STATUS_WRONG_MEMORY_SPACE, names[i], NULL,
                           PLAN_SKIP);
        }
        /* y itself on the device: refused, and the device y must still hold its guard. */
        char msg[256] = "", label[] = "gpu: device pointer as y on a CPU context";
        if (guard_outputs(gpu, msg, sizeof msg)) {
            fail(label, "could not prepare the device y: %s", msg);
        } else {
            lgh_args_t a = host.a;
            a.y = gpu->a.y;
            lgh_status_t s = lgh_forward(cpu, &a, NULL, 0, NULL);
            int64_t touched = outputs_touched(gpu, msg, sizeof msg);
            if (s != LGH_STATUS_WRONG_MEMORY_SPACE || !has_word(lgh_last_error(cpu), "y"))
                fail(label, "returned %s: %s", lgh_status_string(s), lgh_last_error(cpu));
            else if (touched)
                fail(label, "refused, but %" PRId64 " elements changed", touched);
            else
                pass(label, lgh_last_error(cpu));
        }
    }
    fixture_free(&host);
    lgh_destroy(cpu);
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
            printf("usage: test_errors [--tier cpu|gpu] [--verbose]\n");
            return 0;
        } else {
            fprintf(stderr, "test_errors: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (strcmp(tier, "cpu") && strcmp(tier, "gpu")) {
        fprintf(stderr, "test_errors: --tier %s: expected cpu or gpu\n", tier);
        return 2;
    }
    char title[64];
    snprintf(title, sizeof title, "test_errors[%s]", tier);
    tst_print_seed(title);
    unsetenv("LGH_ENGINE"); /* the tests set it themselves */

    if (!strcmp(tier, "cpu")) {
        api_tests();
        lgh_context_t ctx = NULL;
        lgh_status_t s = lgh_create(&ctx, LGH_DEVICE_CPU);
        if (s != LGH_STATUS_SUCCESS) {
            fail("lgh_create(cpu)", "%s: %s", lgh_status_string(s), lgh_last_error(NULL));
        } else {
            fixture_t f;
            if (fixture_make(&f, "cpu", ctx, 0) == 0) {
                context_tests(&f);
                refusals(&f);
                env_tests(LGH_DEVICE_CPU, "cpu", &f.a);
            }
            fixture_free(&f);
            lgh_destroy(ctx);
        }
    } else {
        lgh_context_t ctx = NULL;
        lgh_status_t s = lgh_create(&ctx, 0);
        if (s != LGH_STATUS_SUCCESS) {
            printf("GPU tier: skipped (no CUDA device: %s)\n", lgh_last_error(NULL));
            tst_summary(title, &g_tally);
            return TST_EXIT_SKIP;
        }
        if (!tst_have_cuda()) {
            printf("GPU tier: skipped (the tests were built without the CUDA runtime)\n");
            lgh_destroy(ctx);
            tst_summary(title, &g_tally);
            return TST_EXIT_SKIP;
        }
        printf("GPU tier: device 0 = %s\n", lgh_device_description(ctx));
        fixture_t f;
        if (fixture_make(&f, "gpu", ctx, 1) == 0) {
            context_tests(&f);
            refusals(&f);
            memory_space_tests(&f);
            env_tests(0, "gpu", &f.a);
        }
        fixture_free(&f);
        lgh_destroy(ctx);
    }
    tst_summary(title, &g_tally);
    return g_tally.failed ? 1 : 0;
}
