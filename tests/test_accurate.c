/*
 * test_accurate: LGH_MATH_ACCURATE through the API (test_math_rule checks the rule itself
 * on made-up devices).
 *
 *   test_accurate --tier cpu   (ctest: accurate_cpu) On a CPU context ACCURATE resolves to
 *       FP32 (lgh_resolve_math, lgh_plan_math, lgh_backward_plan_math; AUTO and the forced
 *       cpu engine), and gives y, mean, rstd and all five gradients bitwise equal to FP32's;
 *       math 5 is refused; lgh_tune records the problem under "accurate", apart from FP32,
 *       and a new context reads it back from the cache file; a file holding "accurate" for
 *       16-bit data is not lgh's and is ignored.
 *   test_accurate --tier gpu   (ctest: accurate_gpu; exit 77 without a CUDA device) AUTO
 *       runs the device rule's mode (3XTF32 on sm90 on a cc 9.0 device), forced engines
 *       run their own float32-accurate mode (cublaslt FP32, sm80 / sm90 3XTF32), every
 *       output within the float32 bound; the backward resolves alike; lgh_tune times
 *       cublaslt in FP32 against the tensor-core engines in 3XTF32 and AUTO then runs the
 *       winner in its mode.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lgh.h"
#include "support/tst.h"

static tst_tally_t tally;

#define CHECK(cond, ...) TST_CHECK(&tally, cond, __VA_ARGS__)

/* ---- one float32 problem, on the host and (GPU tier) on the device ------------------- */

enum { X, W, B, G, BE, Y, MEAN, RSTD, DY, DX, DW, DB, DG, DBE, NBUF };

typedef struct prob {
    lgh_args_t a; /* pointers into buf[].dev */
    tst_buf_t buf[NBUF];
    double *ref;
} prob_t;

static int prob_make(prob_t *p, int64_t m, int64_t k, int64_t n, int64_t groups, int on_gpu)
{
    memset(p, 0, sizeof *p);
    lgh_args_init(&p->a, m, k, n, groups);
    const int64_t count[NBUF] = {m * k, n * k, n, n, n, m * n, m * groups, m * groups,
                                 m * n, m * k, n * k, n, n, n};
    char msg[256] = "";
    for (int i = 0; i < NBUF; ++i) {
        if (tst_buf_alloc(&p->buf[i], sizeof(float) * (size_t)count[i], on_gpu, msg, sizeof msg)) {
            printf("FAIL: buffer: %s\n", msg);
            return 1;
        }
    }
    tst_rng_t r = tst_rng_make(tst_base_seed(), 7);
    const double lo[] = {0.0, -0.2, -0.2, 0.5, -0.5}, hi[] = {1.0, 0.2, 0.2, 1.5, 0.5};
    for (int i = X; i <= BE; ++i) {
        const int64_t rows = i == X ? m : i == W ? n : 1, cols = i <= W ? k : n;
        tst_fill_matrix(LGH_DTYPE_FLOAT32, p->buf[i].host, rows, cols, cols, count[i], &r, lo[i],
                        hi[i]);
    }
    tst_fill_matrix(LGH_DTYPE_FLOAT32, p->buf[DY].host, m, n, n, count[DY], &r, -1.0, 1.0);
    for (int i = X; i <= BE; ++i)
        if (tst_buf_upload(&p->buf[i], msg, sizeof msg)) return printf("FAIL: upload: %s\n", msg), 1;
    if (tst_buf_upload(&p->buf[DY], msg, sizeof msg)) return printf("FAIL: upload: %s\n", msg), 1;
    p->ref = malloc(sizeof(double) * (size_t)(m * n));
    if (!p->ref) return printf("FAIL: out of memory\n"), 1;
    lgh_args_t host = p->a;
    host.x = p->buf[X].host, host.w = p->buf[W].host, host.bias = p->buf[B].host;
    host.gamma = p->buf[G].host, host.beta = p->buf[BE].host, host.y = p->buf[Y].host;
    if (tst_reference(&host, p->ref, NULL, NULL) != 0) return printf("FAIL: reference\n"), 1;
    p->a.x = p->buf[X].dev, p->a.w = p->buf[W].dev, p->a.bias = p->buf[B].dev;
    p->a.gamma = p->buf[G].dev, p->a.beta = p->buf[BE].dev, p->a.y = p->buf[Y].dev;
    p->a.mean = p->buf[MEAN].dev, p->a.rstd = p->buf[RSTD].dev;
    return 0;
}

static void prob_free(prob_t *p)
{
    for (int i = 0; i < NBUF; ++i) tst_buf_free(&p->buf[i]);
    free(p->ref);
}

/* Runs the forward with math / engine; y, mean and rstd end up in the host copies.
 * Returns the status; y is poisoned first, so a call that writes nothing shows. */
static lgh_status_t run_forward(lgh_context_t ctx, prob_t *p, lgh_math_t math, lgh_engine_t engine)
{
    char msg[256] = "";
    tst_poison_matrix(LGH_DTYPE_FLOAT32, p->buf[Y].host, p->a.m, p->a.n, p->a.n, p->a.m * p->a.n);
    if (tst_buf_upload(&p->buf[Y], msg, sizeof msg)) return LGH_STATUS_INTERNAL_ERROR;
    lgh_args_t a = p->a;
    a.math = math, a.engine = engine;
    lgh_status_t s = lgh_forward(ctx, &a, NULL, 0, NULL);
    if (p->buf[Y].on_gpu && tst_dev_sync(msg, sizeof msg)) {
        printf("FAIL: after lgh_forward: %s\n", msg);
        return LGH_STATUS_CUDA_ERROR;
    }
    for (int i = Y; i <= RSTD; ++i)
        if (tst_buf_download(&p->buf[i], msg, sizeof msg)) return LGH_STATUS_INTERNAL_ERROR;
    return s;
}

/* The five gradients with math / engine (the forward's h not saved: recomputed). */
static lgh_status_t run_backward(lgh_context_t ctx, prob_t *p, lgh_math_t math, lgh_engine_t engine)
{
    char msg[256] = "";
    lgh_backward_args_t b;
    lgh_backward_args_init(&b, p->a.m, p->a.k, p->a.n, p->a.groups);
    b.fwd = p->a;
    b.fwd.math = math, b.fwd.engine = engine;
    b.fwd.y = NULL, b.fwd.mean = b.fwd.rstd = NULL;
    b.dy = p->buf[DY].dev;
    b.dx = p->buf[DX].dev, b.dw = p->buf[DW].dev, b.dbias = p->buf[DB].dev;
    b.dgamma = p->buf[DG].dev, b.dbeta = p->buf[DBE].dev;
    lgh_status_t s = lgh_backward(ctx, &b, NULL, 0, NULL);
    if (p->buf[DX].on_gpu && tst_dev_sync(msg, sizeof msg)) return LGH_STATUS_CUDA_ERROR;
    for (int i = DX; i <= DBE; ++i)
        if (tst_buf_download(&p->buf[i], msg, sizeof msg)) return LGH_STATUS_INTERNAL_ERROR;
    return s;
}

/* Copies of the host buffers first..last, to compare two runs bit for bit. */
static void *snapshot(const prob_t *p, int first, int last, size_t *bytes)
{
    *bytes = 0;
    for (int i = first; i <= last; ++i) *bytes += p->buf[i].bytes;
    char *s = malloc(*bytes), *at = s;
    if (!s) return NULL;
    for (int i = first; i <= last; ++i) {
        memcpy(at, p->buf[i].host, p->buf[i].bytes);
        at += p->buf[i].bytes;
    }
    return s;
}

static lgh_math_t plan_math(lgh_context_t ctx, const prob_t *p, lgh_math_t math, lgh_engine_t engine,
                            lgh_engine_t *chosen)
{
    lgh_args_t a = p->a;
    a.math = math, a.engine = engine;
    lgh_math_t m = (lgh_math_t)-1;
    if (lgh_plan_math(ctx, &a, &m) != LGH_STATUS_SUCCESS) return (lgh_math_t)-1;
    if (chosen && lgh_plan(ctx, &a, chosen, NULL) != LGH_STATUS_SUCCESS) *chosen = LGH_ENGINE_COUNT;
    return m;
}

static lgh_math_t backward_plan_math(lgh_context_t ctx, const prob_t *p, lgh_engine_t engine,
                                     lgh_engine_t *chosen)
{
    lgh_backward_args_t b;
    lgh_backward_args_init(&b, p->a.m, p->a.k, p->a.n, p->a.groups);
    b.fwd = p->a;
    b.fwd.math = LGH_MATH_ACCURATE, b.fwd.engine = engine;
    b.dy = p->buf[DY].dev;
    b.dx = p->buf[DX].dev, b.dw = p->buf[DW].dev;
    lgh_math_t m = (lgh_math_t)-1;
    if (lgh_backward_plan_math(ctx, &b, &m) != LGH_STATUS_SUCCESS) return (lgh_math_t)-1;
    if (chosen && lgh_backward_plan(ctx, &b, chosen, NULL) != LGH_STATUS_SUCCESS)
        *chosen = LGH_ENGINE_COUNT;
    return m;
}

static const char *math_str(lgh_math_t m) { return (int)m < 0 ? "(refused)" : lgh_math_name(m); }

/* y against the double reference within the float32 bound. */
static void check_bound(const prob_t *p, const char *what)
{
    const tst_err_t e = tst_compare(LGH_DTYPE_FLOAT32, p->buf[Y].host, p->a.m, p->a.n, p->a.n, p->ref);
    const double bound = tst_bound(LGH_DTYPE_FLOAT32, LGH_MATH_FP32);
    CHECK(e.nonfinite == 0 && e.rel <= bound, "%s: rel err %.3g (bound %.0e), %lld non-finite",
          what, e.rel, bound, (long long)e.nonfinite);
}

/* ---- the tuning cache, in a directory of its own --------------------------------------- */

static char cache_root[256];

static void fresh_cache(const char *name)
{
    char dir[320];
    snprintf(dir, sizeof dir, "%s/%s", cache_root, name);
    mkdir(dir, 0700);
    setenv("XDG_CACHE_HOME", dir, 1);
    setenv("LGH_CACHE", "1", 1);
}

/* Removes what fresh_cache made: <root>/<case>/lgh/<files>. */
static void remove_cache_root(void)
{
    DIR *cases = opendir(cache_root);
    if (!cases) return;
    struct dirent *c;
    while ((c = readdir(cases))) {
        if (c->d_name[0] == '.') continue;
        char lgh[600];
        snprintf(lgh, sizeof lgh, "%s/%s/lgh", cache_root, c->d_name);
        DIR *files = opendir(lgh);
        if (files) {
            struct dirent *f;
            while ((f = readdir(files))) {
                if (f->d_name[0] == '.') continue;
                char path[900];
                snprintf(path, sizeof path, "%s/%s", lgh, f->d_name);
                unlink(path);
            }
            closedir(files);
        }
        rmdir(lgh);
        *strrchr(lgh, '/') = '\0';
        rmdir(lgh);
    }
    closedir(cases);
    rmdir(cache_root);
}

/* Whether the context's cache file holds `needle`. */
static int cache_file_has(lgh_context_t ctx, const char *needle)
{
    char path[1200];
    if (lgh_tune_cache_file(ctx, path, sizeof path) != LGH_STATUS_SUCCESS) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* ---- CPU tier --------------------------------------------------------------------------- */

static void cpu_tier(void)
{
    lgh_context_t ctx = NULL;
    if (lgh_create(&ctx, LGH_DEVICE_CPU) != LGH_STATUS_SUCCESS) {
        CHECK(0, "lgh_create(cpu): %s", lgh_last_error(NULL));
        return;
    }
    lgh_math_t r = (lgh_math_t)-1;
    CHECK(lgh_resolve_math(ctx, LGH_DTYPE_FLOAT32, LGH_MATH_ACCURATE, &r) == LGH_STATUS_SUCCESS &&
              r == LGH_MATH_FP32,
          "the CPU's rule: %s", math_str(r));
    CHECK(lgh_resolve_math(ctx, LGH_DTYPE_BFLOAT16, LGH_MATH_ACCURATE, &r) == LGH_STATUS_SUCCESS &&
              r == LGH_MATH_DEFAULT,
          "bfloat16 ignores math: %s", math_str(r));
    CHECK(lgh_resolve_math(ctx, LGH_DTYPE_FLOAT32, (lgh_math_t)5, &r) == LGH_STATUS_INVALID_VALUE,
          "lgh_resolve_math took math 5");
    CHECK(!strcmp(lgh_math_name(LGH_MATH_ACCURATE), "accurate"), "name %s",
          lgh_math_name(LGH_MATH_ACCURATE));

    prob_t p;
    if (prob_make(&p, 37, 70, 48, 6, 0)) {
        CHECK(0, "problem");
        lgh_destroy(ctx);
        return;
    }
    lgh_engine_t e = LGH_ENGINE_AUTO;
    r = plan_math(ctx, &p, LGH_MATH_ACCURATE, LGH_ENGINE_AUTO, &e);
    CHECK(r == LGH_MATH_FP32 && e == LGH_ENGINE_CPU, "AUTO plans %s on %s", math_str(r),
          lgh_engine_name(e));
    r = plan_math(ctx, &p, LGH_MATH_ACCURATE, LGH_ENGINE_CPU, NULL);
    CHECK(r == LGH_MATH_FP32, "forced cpu plans %s", math_str(r));
    r = plan_math(ctx, &p, LGH_MATH_DEFAULT, LGH_ENGINE_AUTO, NULL);
    CHECK(r == LGH_MATH_TF32, "DEFAULT plans %s", math_str(r));
    r = backward_plan_math(ctx, &p, LGH_ENGINE_AUTO, NULL);
    CHECK(r == LGH_MATH_FP32, "the backward plans %s", math_str(r));
    lgh_args_t bad = p.a;
    bad.math = (lgh_math_t)5;
    CHECK(lgh_plan_math(ctx, &bad, &r) == LGH_STATUS_INVALID_VALUE, "lgh_plan_math took math 5");
    CHECK(lgh_plan_math(ctx, &p.a, NULL) == LGH_STATUS_NULL_POINTER &&
              lgh_plan_math(NULL, &p.a, &r) == LGH_STATUS_NULL_POINTER &&
              lgh_plan_math(ctx, NULL, &r) == LGH_STATUS_NULL_POINTER &&
              lgh_resolve_math(ctx, LGH_DTYPE_FLOAT32, LGH_MATH_ACCURATE, NULL) ==
                  LGH_STATUS_NULL_POINTER &&
              lgh_resolve_math(ctx, (lgh_dtype_t)3, LGH_MATH_ACCURATE, &r) ==
                  LGH_STATUS_INVALID_VALUE,
          "NULL or a bad dtype not refused");

    /* Bits: FP32 first, then ACCURATE under AUTO and forced. */
    size_t bytes = 0, bytes2 = 0;
    CHECK(run_forward(ctx, &p, LGH_MATH_FP32, LGH_ENGINE_AUTO) == LGH_STATUS_SUCCESS, "fp32: %s",
          lgh_last_error(ctx));
    void *fp32 = snapshot(&p, Y, RSTD, &bytes);
    check_bound(&p, "fp32");
    const lgh_engine_t engines[] = {LGH_ENGINE_AUTO, LGH_ENGINE_CPU};
    for (int i = 0; i < 2; ++i) {
        CHECK(run_forward(ctx, &p, LGH_MATH_ACCURATE, engines[i]) == LGH_STATUS_SUCCESS,
              "accurate (%s): %s", lgh_engine_name(engines[i]), lgh_last_error(ctx));
        void *acc = snapshot(&p, Y, RSTD, &bytes2);
        CHECK(fp32 && acc && bytes == bytes2 && !memcmp(fp32, acc, bytes),
              "accurate (%s): y, mean, rstd differ from fp32's bits", lgh_engine_name(engines[i]));
        free(acc);
    }
    free(fp32);
    /* A refused math writes nothing. */
    CHECK(run_forward(ctx, &p, (lgh_math_t)5, LGH_ENGINE_AUTO) == LGH_STATUS_INVALID_VALUE,
          "math 5 was not refused");
    CHECK(tst_is_pattern(LGH_DTYPE_FLOAT32, p.buf[Y].host, 0, TST_POISON), "math 5 wrote y");

    CHECK(run_backward(ctx, &p, LGH_MATH_FP32, LGH_ENGINE_AUTO) == LGH_STATUS_SUCCESS,
          "backward fp32: %s", lgh_last_error(ctx));
    void *g32 = snapshot(&p, DX, DBE, &bytes);
    CHECK(run_backward(ctx, &p, LGH_MATH_ACCURATE, LGH_ENGINE_AUTO) == LGH_STATUS_SUCCESS,
          "backward accurate: %s", lgh_last_error(ctx));
    void *gacc = snapshot(&p, DX, DBE, &bytes2);
    CHECK(g32 && gacc && bytes == bytes2 && !memcmp(g32, gacc, bytes),
          "backward accurate: gradients differ from fp32's bits");
    free(g32), free(gacc);
    lgh_destroy(ctx);

    /* Tuning: keyed as "accurate", apart from FP32, and read back by a new context. */
    fresh_cache("tune");
    if (lgh_create(&ctx, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS) {
        lgh_args_t a = p.a;
        a.math = LGH_MATH_ACCURATE;
        lgh_engine_t chosen = LGH_ENGINE_AUTO;
        CHECK(lgh_tune(ctx, &a, NULL, NULL, NULL, &chosen, NULL, 0, NULL) == LGH_STATUS_SUCCESS &&
                  chosen == LGH_ENGINE_CPU,
              "lgh_tune: %s", lgh_last_error(ctx));
        CHECK(cache_file_has(ctx, " float32 accurate "), "no accurate line in the cache file");
        lgh_destroy(ctx);
        ctx = NULL;
    }
    if (lgh_create(&ctx, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS) {
        lgh_args_t a = p.a;
        a.math = LGH_MATH_ACCURATE;
        lgh_engine_t cached = LGH_ENGINE_COUNT;
        CHECK(lgh_tune_cached(ctx, &a, &cached, NULL) == LGH_STATUS_SUCCESS &&
                  cached == LGH_ENGINE_CPU,
              "a new context finds %s for accurate", lgh_engine_name(cached));
        a.math = LGH_MATH_FP32;
        CHECK(lgh_tune_cached(ctx, &a, &cached, NULL) == LGH_STATUS_SUCCESS &&
                  cached == LGH_ENGINE_AUTO,
              "fp32 shares accurate's entry: %s", lgh_engine_name(cached));
        CHECK(run_forward(ctx, &p, LGH_MATH_ACCURATE, LGH_ENGINE_AUTO) == LGH_STATUS_SUCCESS,
              "tuned accurate: %s", lgh_last_error(ctx));
        check_bound(&p, "tuned accurate");
        r = plan_math(ctx, &p, LGH_MATH_ACCURATE, LGH_ENGINE_AUTO, NULL);
        CHECK(r == LGH_MATH_FP32, "tuned accurate plans %s", math_str(r));

        /* "accurate" for 16-bit data is never written: such a file is not lgh's. */
        char path[1200];
        if (lgh_tune_cache_file(ctx, path, sizeof path) == LGH_STATUS_SUCCESS) {
            FILE *f = fopen(path, "a");
            if (f) {
                fprintf(f, "8 8 8 2 bfloat16 accurate 16 cpu 0.5\n");
                fclose(f);
            }
        }
        lgh_destroy(ctx);
        ctx = NULL;
        if (lgh_create(&ctx, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS) {
            a.math = LGH_MATH_ACCURATE;
            CHECK(lgh_tune_cached(ctx, &a, &cached, NULL) == LGH_STATUS_SUCCESS &&
                      cached == LGH_ENGINE_AUTO,
                  "a file with bfloat16 accurate was trusted: %s", lgh_engine_name(cached));
            lgh_destroy(ctx);
        }
    }
    prob_free(&p);
}

/* ---- GPU tier --------------------------------------------------------------------------- */

static int gpu_tier(void)
{
    lgh_context_t ctx = tst_open_gpu();
    if (ctx == NULL) return TST_EXIT_SKIP;
    setenv("LGH_CACHE", "0", 1); /* the rule, not whatever the user's cache holds */
    const int cc = tst_dev_cc(0);
    lgh_math_t rule = (lgh_math_t)-1;
    CHECK(lgh_resolve_math(ctx, LGH_DTYPE_FLOAT32, LGH_MATH_ACCURATE, &rule) == LGH_STATUS_SUCCESS,
          "lgh_resolve_math: %s", lgh_last_error(ctx));
    CHECK(rule == LGH_MATH_FP32 || rule == LGH_MATH_3XTF32, "the rule gave %s", math_str(rule));
    if (cc == 90) CHECK(rule == LGH_MATH_3XTF32, "cc 9.0: the rule gave %s", math_str(rule));
    if (cc == 86 || cc == 89 || cc == 120)
        CHECK(rule == LGH_MATH_FP32, "cc %d: the rule gave %s", cc, math_str(rule));

    prob_t p;
    if (prob_make(&p, 256, 512, 384, 6, 1)) {
        CHECK(0, "problem");
        lgh_destroy(ctx);
        return 1;
    }
    /* AUTO, untuned: the rule's mode; on cc 9.0 the sm90 engine's 3xtf32. */
    lgh_engine_t e = LGH_ENGINE_AUTO;
    lgh_math_t m = plan_math(ctx, &p, LGH_MATH_ACCURATE, LGH_ENGINE_AUTO, &e);
    CHECK(m == rule || (rule == LGH_MATH_3XTF32 && e == LGH_ENGINE_CUBLASLT && m == LGH_MATH_FP32),
          "AUTO plans %s on %s, rule %s", math_str(m), lgh_engine_name(e), math_str(rule));
    if (cc == 90)
        CHECK(m == LGH_MATH_3XTF32 && e == LGH_ENGINE_SM90, "cc 9.0: AUTO plans %s on %s",
              math_str(m), lgh_engine_name(e));
    CHECK(run_forward(ctx, &p, LGH_MATH_ACCURATE, LGH_ENGINE_AUTO) == LGH_STATUS_SUCCESS,
          "AUTO accurate: %s", lgh_last_error(ctx));
    check_bound(&p, "AUTO accurate");

    /* Forced engines: their own accurate mode, never less accurate. */
    static const struct {
        lgh_engine_t engine;
        lgh_math_t want;
    } forced[] = {{LGH_ENGINE_CUBLASLT, LGH_MATH_FP32},
                  {LGH_ENGINE_SM80, LGH_MATH_3XTF32},
                  {LGH_ENGINE_SM90, LGH_MATH_3XTF32}};
    for (int i = 0; i < 3; ++i) {
        const lgh_engine_t fe = forced[i].engine;
        if (!lgh_engine_available(ctx, fe)) {
            tst_skip(&tally, lgh_engine_name(fe), "not available on this device");
            continue;
        }
        m = plan_math(ctx, &p, LGH_MATH_ACCURATE, fe, NULL);
        CHECK(m == forced[i].want, "forced %s plans %s", lgh_engine_name(fe), math_str(m));
        CHECK(run_forward(ctx, &p, LGH_MATH_ACCURATE, fe) == LGH_STATUS_SUCCESS,
              "forced %s: %s", lgh_engine_name(fe), lgh_last_error(ctx));
        char what[64];
        snprintf(what, sizeof what, "forced %s accurate", lgh_engine_name(fe));
        check_bound(&p, what);
    }

    /* The backward resolves alike: on cc 9.0 the sm90 engine's 3xtf32 products. */
    m = backward_plan_math(ctx, &p, LGH_ENGINE_AUTO, &e);
    CHECK(m == LGH_MATH_FP32 || m == LGH_MATH_3XTF32, "the backward plans %s", math_str(m));
    if (cc == 90)
        CHECK(m == LGH_MATH_3XTF32 && e == LGH_ENGINE_SM90, "cc 9.0: the backward plans %s on %s",
              math_str(m), lgh_engine_name(e));
    m = backward_plan_math(ctx, &p, LGH_ENGINE_CUBLASLT, NULL);
    CHECK(m == LGH_MATH_FP32, "forced cublaslt backward plans %s", math_str(m));
    CHECK(run_backward(ctx, &p, LGH_MATH_ACCURATE, LGH_ENGINE_AUTO) == LGH_STATUS_SUCCESS,
          "backward accurate: %s", lgh_last_error(ctx));

    /* Tuning times FP32 (cublaslt) against 3XTF32 (sm80 / sm90) and AUTO follows it. */
    lgh_args_t a = p.a;
    a.math = LGH_MATH_ACCURATE;
    lgh_tune_result_t res[LGH_ENGINE_COUNT];
    int count = 0;
    lgh_engine_t chosen = LGH_ENGINE_AUTO;
    CHECK(lgh_tune(ctx, &a, NULL, NULL, NULL, &chosen, res, LGH_ENGINE_COUNT, &count) ==
              LGH_STATUS_SUCCESS,
          "lgh_tune: %s", lgh_last_error(ctx));
    int timed_fp32 = 0, timed_3x = 0;
    for (int i = 0; i < count && i < LGH_ENGINE_COUNT; ++i) {
        if (res[i].status != LGH_STATUS_SUCCESS) continue;
        printf("  tuned: %-9s %.4f ms\n", lgh_engine_name(res[i].engine), (double)res[i].ms);
        timed_fp32 |= res[i].engine == LGH_ENGINE_CUBLASLT;
        timed_3x |= res[i].engine == LGH_ENGINE_SM80 || res[i].engine == LGH_ENGINE_SM90;
    }
    CHECK(timed_fp32, "lgh_tune did not time cublaslt (fp32)");
    if (lgh_engine_available(ctx, LGH_ENGINE_SM90) || lgh_engine_available(ctx, LGH_ENGINE_SM80))
        CHECK(timed_3x, "lgh_tune did not time a 3xtf32 engine");
    m = plan_math(ctx, &p, LGH_MATH_ACCURATE, LGH_ENGINE_AUTO, &e);
    CHECK(e == chosen, "tuned: AUTO plans %s, lgh_tune chose %s", lgh_engine_name(e),
          lgh_engine_name(chosen));
    CHECK(m == (chosen == LGH_ENGINE_SM80 || chosen == LGH_ENGINE_SM90 ? LGH_MATH_3XTF32
                                                                       : LGH_MATH_FP32),
          "tuned: %s plans %s", lgh_engine_name(chosen), math_str(m));
    CHECK(run_forward(ctx, &p, LGH_MATH_ACCURATE, LGH_ENGINE_AUTO) == LGH_STATUS_SUCCESS,
          "tuned accurate: %s", lgh_last_error(ctx));
    check_bound(&p, "tuned AUTO accurate");

    prob_free(&p);
    lgh_destroy(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    const char *tier = "cpu";
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--tier") && i + 1 < argc) tier = argv[++i];
        else return printf("usage: test_accurate [--tier cpu|gpu]\n"), 2;
    }
    tst_print_seed("test_accurate");
    snprintf(cache_root, sizeof cache_root, "/tmp/lgh-test-accurate-%ld", (long)getpid());
    mkdir(cache_root, 0700);
    int rc = 0;
    if (!strcmp(tier, "gpu")) {
        rc = gpu_tier();
        if (rc == TST_EXIT_SKIP) {
            remove_cache_root();
            return rc;
        }
    } else {
        cpu_tier();
    }
    remove_cache_root();
    tst_summary("test_accurate", &tally);
    return tally.failed || rc ? 1 : 0;
}
