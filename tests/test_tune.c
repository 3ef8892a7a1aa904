/*
 * test_tune: the tuner's caches on a CPU context (the cpu engine is the only candidate
 * there, so these check the bookkeeping, not the timing): lgh_tune writes the cache
 * file; a new context reads it (lgh_tune_cached, lgh_plan); LGH_CACHE=0 writes
 * nothing; a corrupt, truncated or stale file is ignored, never trusted, and
 * lgh_forward still runs; LGH_TUNE=1 tunes on the first lgh_forward; every output
 * after tuning matches the double-precision reference.
 *
 * Each case uses its own fresh XDG_CACHE_HOME under a temporary directory, so the
 * user's own cache is never read or written.
 *
 *   test_tune [--tier cpu]     (ctest: tune_cpu)
 *   test_tune --tier gpu       lgh_tune on device 0 over every engine, each output checked
 *                              (ctest: tune_gpu; exit 77 without a CUDA device)
 *   test_tune --tier cpu-staged  the GPU tier's steps on the CPU (ctest: tune_cpu_staged)
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lgh.h"
#include "support/tst.h"

static tst_tally_t tally;

#define CHECK(cond, ...) TST_CHECK(&tally, cond, __VA_ARGS__)

static char root[256];
static int case_no;

/* A fresh, empty cache home for the next case. */
static void fresh_cache_home(char *home, size_t len)
{
    snprintf(home, len, "%s/case%d", root, ++case_no);
    mkdir(home, 0700);
    setenv("XDG_CACHE_HOME", home, 1);
}

/* ---- the problem: host buffers, random inputs, ldx and ldy wider than the rows ---- */

typedef struct prob {
    lgh_args_t a;
    float *x, *w, *b, *g, *be, *y;
    double *ref;
} prob_t;

static void prob_make(prob_t *p, int64_t m, int64_t k, int64_t n, int64_t groups, lgh_math_t math)
{
    memset(p, 0, sizeof *p);
    lgh_args_init(&p->a, m, k, n, groups);
    p->a.math = math;
    p->a.ldx = k + 3;
    p->a.ldy = n + 5;
    const int64_t xs = m * p->a.ldx, ws = n * k, ys = m * p->a.ldy;
    p->x = malloc(sizeof(float) * (size_t)xs);
    p->w = malloc(sizeof(float) * (size_t)ws);
    p->b = malloc(sizeof(float) * (size_t)n);
    p->g = malloc(sizeof(float) * (size_t)n);
    p->be = malloc(sizeof(float) * (size_t)n);
    p->y = malloc(sizeof(float) * (size_t)ys);
    p->ref = malloc(sizeof(double) * (size_t)(m * n));
    if (!p->x || !p->w || !p->b || !p->g || !p->be || !p->y || !p->ref) {
        printf("test_tune: out of memory\n");
        exit(1);
    }
    tst_rng_t r = tst_rng_make(tst_base_seed(), 1);
    tst_fill_matrix(LGH_DTYPE_FLOAT32, p->x, m, k, p->a.ldx, xs, &r, 0.0, 1.0);
    tst_fill_matrix(LGH_DTYPE_FLOAT32, p->w, n, k, k, ws, &r, -0.2, 0.2);
    tst_fill_matrix(LGH_DTYPE_FLOAT32, p->b, 1, n, n, n, &r, -0.2, 0.2);
    tst_fill_matrix(LGH_DTYPE_FLOAT32, p->g, 1, n, n, n, &r, 0.5, 1.5);
    tst_fill_matrix(LGH_DTYPE_FLOAT32, p->be, 1, n, n, n, &r, -0.5, 0.5);
    p->a.x = p->x, p->a.w = p->w, p->a.bias = p->b, p->a.gamma = p->g, p->a.beta = p->be;
    p->a.y = p->y;
    if (tst_reference(&p->a, p->ref, NULL, NULL) != 0) {
        printf("test_tune: the reference refused the problem\n");
        exit(1);
    }
}

static void prob_free(prob_t *p)
{
    free(p->x), free(p->w), free(p->b), free(p->g), free(p->be), free(p->y), free(p->ref);
}

static void poison(prob_t *p)
{
    tst_poison_matrix(LGH_DTYPE_FLOAT32, p->y, p->a.m, p->a.n, p->a.ldy, p->a.m * p->a.ldy);
}

/* y (written by whatever ran last) against the reference, and padding untouched. */
static void check_output(prob_t *p, const char *what)
{
    const lgh_math_t math = p->a.math == LGH_MATH_DEFAULT ? LGH_MATH_TF32 : p->a.math;
    const tst_err_t e = tst_compare(LGH_DTYPE_FLOAT32, p->y, p->a.m, p->a.n, p->a.ldy, p->ref);
    const double bound = tst_bound(LGH_DTYPE_FLOAT32, math);
    CHECK(e.nonfinite == 0 && e.rel <= bound, "%s: rel err %.3g (bound %.0e), %lld non-finite",
          what, e.rel, bound, (long long)e.nonfinite);
    const int64_t damage =
        tst_guard_damage(LGH_DTYPE_FLOAT32, p->y, p->a.m, p->a.n, p->a.ldy, p->a.m * p->a.ldy);
    CHECK(damage == 0, "%s: %lld padding elements of y written", what, (long long)damage);
}

/* Forward with AUTO on a fresh context; the output checked. */
static void forward_ok(prob_t *p, const char *what)
{
    lgh_context_t ctx = NULL;
    CHECK(lgh_create(&ctx, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS, "%s: lgh_create", what);
    if (!ctx) return;
    lgh_engine_t e = LGH_ENGINE_AUTO;
    CHECK(lgh_plan(ctx, &p->a, &e, NULL) == LGH_STATUS_SUCCESS && e == LGH_ENGINE_CPU,
          "%s: lgh_plan gave %s (%s)", what, lgh_engine_name(e), lgh_last_error(ctx));
    poison(p);
    lgh_status_t s = lgh_forward(ctx, &p->a, NULL, 0, NULL);
    CHECK(s == LGH_STATUS_SUCCESS, "%s: lgh_forward: %s", what, lgh_last_error(ctx));
    if (s == LGH_STATUS_SUCCESS) check_output(p, what);
    lgh_destroy(ctx);
}

/* What a new context finds cached for p (AUTO: nothing). */
static lgh_engine_t cached_on_new_context(const prob_t *p, float *ms)
{
    lgh_context_t ctx = NULL;
    lgh_engine_t e = LGH_ENGINE_COUNT;
    if (lgh_create(&ctx, LGH_DEVICE_CPU) != LGH_STATUS_SUCCESS) return e;
    if (lgh_tune_cached(ctx, &p->a, &e, ms) != LGH_STATUS_SUCCESS) e = LGH_ENGINE_COUNT;
    lgh_destroy(ctx);
    return e;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) ++n;
    closedir(d);
    return n;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    const int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* Reads the file written by lgh_tune: its two header lines (with newlines) and the first
 * seven fields ("m k n groups dtype math align") of its entry for `a`'s dtype and math (the
 * file holds one entry per problem tuned so far, in an order of its own). */
static int read_written(const char *path, const lgh_args_t *a, char *header, size_t hlen, char *key7, size_t klen)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char l1[512], l2[512], line[512];
    int found = fgets(l1, sizeof l1, f) && fgets(l2, sizeof l2, f);
    if (found) {
        snprintf(header, hlen, "%s%s", l1, l2);
        found = 0;
        while (!found && fgets(line, sizeof line, f)) {
            char dtype[64], math[64];
            if (sscanf(line, "%*s %*s %*s %*s %63s %63s", dtype, math) != 2) continue;
            found = strcmp(dtype, lgh_dtype_name(a->dtype)) == 0 && strcmp(math, lgh_math_name(a->math)) == 0;
        }
    }
    fclose(f);
    if (!found) return 0;
    /* Cut the entry after its seventh field. */
    int spaces = 0;
    char *c = line;
    for (; *c && spaces < 7; ++c)
        if (*c == ' ') ++spaces;
    if (spaces < 7) return 0;
    c[-1] = '\0';
    snprintf(key7, klen, "%s", line);
    return 1;
}

/* ---- the device tier: lgh_tune over every engine of the device, outputs checked ---------- */

/* One problem on `ctx` with buffers from tst_buf_* (device memory on a GPU, separate
 * host copies in staged mode): lgh_tune's results consistent, y after tuning right, a
 * new context running the choice through AUTO, its y right. */
/* Each variant id of `engine` named in turn by the cache file (the line lgh_tune wrote for
 * dev's problem, with its engine:variant replaced), run on a fresh context with the engine
 * forced: the file must be read back with that engine, and y (poisoned first) must match
 * the reference within bound. */
static void cached_variant_runs(lgh_context_t ctx, int device, const lgh_args_t *dev, lgh_engine_t engine,
                                const int *ids, int count, tst_buf_t *y, int64_t y_count, const double *ref,
                                double bound, const char *what)
{
    char path[1024], header[1200], key7[512], text[2048], msg[256] = "";
    if (!lgh_engine_available(ctx, engine) || lgh_tune_cache_file(ctx, path, sizeof path) != LGH_STATUS_SUCCESS ||
        !read_written(path, dev, header, sizeof header, key7, sizeof key7))
        return;
    const char *name = lgh_engine_name(engine);
    const int64_t m = dev->m, n = dev->n;
    lgh_args_t forced = *dev;
    forced.engine = engine;
    for (int i = 0; i < count; ++i) {
        const int v = ids[i];
        snprintf(text, sizeof text, "%s%s %s:%d 1\n", header, key7, name, v);
        CHECK(write_file(path, text), "writing %s", path);
        lgh_context_t c3 = NULL;
        CHECK(lgh_create(&c3, device) == LGH_STATUS_SUCCESS, "%s: lgh_create", what);
        if (!c3) break;
        lgh_engine_t cached = LGH_ENGINE_AUTO;
        CHECK(lgh_tune_cached(c3, &forced, &cached, NULL) == LGH_STATUS_SUCCESS && cached == engine,
              "%s: %s:%d not read from the file (%s)", what, name, v, lgh_engine_name(cached));
        tst_poison_matrix(dev->dtype, y->host, m, n, n, y_count);
        CHECK(tst_buf_upload(y, msg, sizeof msg) == 0, "%s: upload: %s", what, msg);
        const lgh_status_t s = lgh_forward(c3, &forced, NULL, 0, NULL);
        CHECK(s == LGH_STATUS_SUCCESS, "%s: %s variant %d: %s", what, name, v, lgh_last_error(c3));
        CHECK(tst_dev_sync(msg, sizeof msg) == 0, "%s: sync: %s", what, msg);
        CHECK(tst_buf_download(y, msg, sizeof msg) == 0, "%s: download: %s", what, msg);
        const tst_err_t e = tst_compare(dev->dtype, y->host, m, n, n, ref);
        CHECK(e.nonfinite == 0 && e.rel <= bound, "%s: %s variant %d: rel err %.3g (bound %.0e)", what, name, v,
              e.rel, bound);
        lgh_destroy(c3);
    }
}

static void device_case(lgh_context_t ctx, int device, int on_gpu, lgh_dtype_t dt, lgh_math_t math)
{
    const int64_t m = 300, k = 256, n = 384, groups = 6;
    const size_t eb = tst_elem_bytes(dt);
    const int64_t counts[6] = {m * k, n * k, n, n, n, m * n};
    const double lo[5] = {0.0, -0.06, -0.06, 0.5, -0.5}, hi[5] = {1.0, 0.06, 0.06, 1.5, 0.5};
    char what[128], msg[256] = "";
    snprintf(what, sizeof what, "%s %s", lgh_dtype_name(dt), lgh_math_name(math));
    tst_buf_t b[6];
    memset(b, 0, sizeof b);
    double *ref = malloc(sizeof(double) * (size_t)(m * n));
    int ok = ref != NULL;
    tst_rng_t r = tst_rng_make(tst_base_seed(), 100 + (uint64_t)dt * 8 + (uint64_t)math);
    for (int i = 0; ok && i < 6; ++i) {
        ok = tst_buf_alloc(&b[i], (size_t)counts[i] * eb, on_gpu, msg, sizeof msg) == 0;
        if (!ok) break;
        const int64_t cols = i < 2 ? k : n, rows = counts[i] / cols;
        if (i < 5)
            tst_fill_matrix(dt, b[i].host, rows, cols, cols, counts[i], &r, lo[i], hi[i]);
        else
            tst_poison_matrix(dt, b[i].host, m, n, n, counts[i]);
        ok = tst_buf_upload(&b[i], msg, sizeof msg) == 0;
    }
    CHECK(ok, "%s: buffers: %s", what, msg);
    if (!ok) goto out;
    lgh_args_t host, dev;
    lgh_args_init(&host, m, k, n, groups);
    host.dtype = dt, host.math = math;
    dev = host;
    host.x = b[0].host, host.w = b[1].host, host.bias = b[2].host, host.gamma = b[3].host;
    host.beta = b[4].host, host.y = b[5].host;
    dev.x = b[0].dev, dev.w = b[1].dev, dev.bias = b[2].dev, dev.gamma = b[3].dev;
    dev.beta = b[4].dev, dev.y = b[5].dev;
    CHECK(tst_reference(&host, ref, NULL, NULL) == 0, "%s: reference", what);
    const double bound = tst_bound(dt, math == LGH_MATH_DEFAULT ? LGH_MATH_TF32 : math);

    lgh_tune_result_t res[LGH_ENGINE_COUNT];
    int count = 0;
    lgh_engine_t chosen = LGH_ENGINE_AUTO;
    lgh_status_t s = lgh_tune(ctx, &dev, NULL, NULL, NULL, &chosen, res, LGH_ENGINE_COUNT, &count);
    CHECK(s == LGH_STATUS_SUCCESS, "%s: lgh_tune: %s", what, lgh_last_error(ctx));
    if (s != LGH_STATUS_SUCCESS) goto out;
    float best = -1.0f;
    for (int i = 0; i < count && i < LGH_ENGINE_COUNT; ++i) {
        printf("  %s: %-9s %s %.4f ms\n", what, lgh_engine_name(res[i].engine),
               lgh_status_string(res[i].status), (double)res[i].ms);
        CHECK(lgh_engine_available(ctx, res[i].engine), "%s: tried unavailable %s", what,
              lgh_engine_name(res[i].engine));
        if (res[i].status == LGH_STATUS_SUCCESS && (best < 0.0f || res[i].ms < best))
            best = res[i].ms;
        if (res[i].engine == chosen)
            CHECK(res[i].status == LGH_STATUS_SUCCESS && res[i].ms > 0.0f, "%s: chosen %s failed",
                  what, lgh_engine_name(chosen));
    }
    float cached_ms = 0.0f;
    lgh_engine_t cached = LGH_ENGINE_AUTO;
    CHECK(lgh_tune_cached(ctx, &dev, &cached, &cached_ms) == LGH_STATUS_SUCCESS &&
              cached == chosen && cached_ms == best,
          "%s: cached %s %g ms, chosen %s, fastest %g ms", what, lgh_engine_name(cached),
          (double)cached_ms, lgh_engine_name(chosen), (double)best);
    CHECK(tst_buf_download(&b[5], msg, sizeof msg) == 0, "%s: download: %s", what, msg);
    tst_err_t e = tst_compare(dt, b[5].host, m, n, n, ref);
    CHECK(e.nonfinite == 0 && e.rel <= bound, "%s: y after lgh_tune: rel err %.3g (bound %.0e)",
          what, e.rel, bound);

    /* A new context: AUTO runs the tuned engine, and its output is right. */
    lgh_context_t ctx2 = NULL;
    CHECK(lgh_create(&ctx2, device) == LGH_STATUS_SUCCESS, "%s: lgh_create", what);
    if (!ctx2) goto out;
    lgh_engine_t planned = LGH_ENGINE_AUTO;
    CHECK(lgh_plan(ctx2, &dev, &planned, NULL) == LGH_STATUS_SUCCESS && planned == chosen,
          "%s: new context plans %s, tuned %s", what, lgh_engine_name(planned),
          lgh_engine_name(chosen));
    tst_poison_matrix(dt, b[5].host, m, n, n, counts[5]);
    CHECK(tst_buf_upload(&b[5], msg, sizeof msg) == 0, "%s: upload: %s", what, msg);
    s = lgh_forward(ctx2, &dev, NULL, 0, NULL);
    CHECK(s == LGH_STATUS_SUCCESS, "%s: lgh_forward: %s", what, lgh_last_error(ctx2));
    if (on_gpu) CHECK(tst_dev_sync(msg, sizeof msg) == 0, "%s: sync: %s", what, msg);
    CHECK(tst_buf_download(&b[5], msg, sizeof msg) == 0, "%s: download: %s", what, msg);
    e = tst_compare(dt, b[5].host, m, n, n, ref);
    CHECK(e.nonfinite == 0 && e.rel <= bound,
          "%s: y of AUTO (%s) after tuning: rel err %.3g (bound %.0e)", what,
          lgh_engine_name(chosen), e.rel, bound);
    lgh_destroy(ctx2);

    /* Every sm80 variant (a tile configuration and mode; ids 0..14 today) named by the
     * cache file, run with the engine forced: each output right, and ids the engine does
     * not know (15..19) fall back to its own choice. */
    int sm80_ids[20];
    for (int v = 0; v < 20; ++v) sm80_ids[v] = v;
    if (on_gpu && dt == LGH_DTYPE_FLOAT32 && math == LGH_MATH_TF32)
        cached_variant_runs(ctx, device, &dev, LGH_ENGINE_SM80, sm80_ids, 20, &b[5], counts[5], ref, bound, what);
    /* The same for sm90 variants named by the file (engine_sm90.cu: way * 100 + split parts):
     * no split, W multicast (this shape's groups tile the CTA tile and M spans three
     * M-blocks), ways that cannot run it (unit mode, straddle mode) and an unknown id, which
     * all fall back to the engine's own choice. */
    static const int sm90_ids[] = {0, 1, 2, 401, 101, 501, 9999};
    if (on_gpu)
        cached_variant_runs(ctx, device, &dev, LGH_ENGINE_SM90, sm90_ids, (int)(sizeof sm90_ids / sizeof sm90_ids[0]),
                            &b[5], counts[5], ref, bound, what);
out:
    for (int i = 0; i < 6; ++i) tst_buf_free(&b[i]);
    free(ref);
}

/* --tier gpu (device 0; exit 77 without one) or cpu-staged (the same on the CPU). */
static int device_tier(int staged)
{
    const int device = staged ? LGH_DEVICE_CPU : 0;
    if (staged) tst_set_staged_host(1);
    lgh_context_t ctx = NULL;
    if (lgh_create(&ctx, device) != LGH_STATUS_SUCCESS) {
        printf("GPU tier: skipped (no CUDA device: %s)\n", lgh_last_error(NULL));
        return TST_EXIT_SKIP;
    }
    if (!staged && !tst_have_cuda()) {
        printf("GPU tier: skipped (the tests were built without the CUDA runtime)\n");
        lgh_destroy(ctx);
        return TST_EXIT_SKIP;
    }
    printf("%s tier: %s\n", staged ? "staged" : "GPU", lgh_device_description(ctx));
    char home[512];
    fresh_cache_home(home, sizeof home);
    device_case(ctx, device, 1, LGH_DTYPE_FLOAT32, LGH_MATH_TF32);
    device_case(ctx, device, 1, LGH_DTYPE_FLOAT32, LGH_MATH_3XTF32);
    device_case(ctx, device, 1, LGH_DTYPE_BFLOAT16, LGH_MATH_DEFAULT);
    lgh_destroy(ctx);
    return 0;
}

static void remove_tree(void);

int main(int argc, char **argv)
{
    const char *tier = "cpu";
    if (argc == 3 && !strcmp(argv[1], "--tier")) tier = argv[2];
    if (strcmp(tier, "cpu") && strcmp(tier, "gpu") && strcmp(tier, "cpu-staged")) {
        printf("usage: test_tune [--tier cpu|gpu|cpu-staged]\n");
        return 2;
    }
    tst_print_seed("test_tune");
    unsetenv("LGH_ENGINE");
    unsetenv("LGH_TUNE");
    unsetenv("LGH_CACHE");
    snprintf(root, sizeof root, "/tmp/lgh-test-tune-XXXXXX");
    if (!mkdtemp(root)) {
        printf("test_tune: cannot make a temporary directory\n");
        return 1;
    }
    if (strcmp(tier, "cpu") != 0) {
        const int rc = device_tier(!strcmp(tier, "cpu-staged"));
        remove_tree();
        tst_summary("test_tune", &tally);
        return rc ? rc : tally.failed ? 1 : 0;
    }
    char home[512], dir[600], path[1024];
    prob_t p;
    prob_make(&p, 37, 70, 48, 6, LGH_MATH_FP32);

    /* 1. lgh_tune on the CPU: one candidate, chosen, written to the file. */
    fresh_cache_home(home, sizeof home);
    snprintf(dir, sizeof dir, "%s/lgh", home);
    lgh_context_t ctx = NULL;
    CHECK(lgh_create(&ctx, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS, "lgh_create");
    lgh_tune_result_t res[LGH_ENGINE_COUNT];
    int count = -1;
    lgh_engine_t chosen = LGH_ENGINE_AUTO;
    poison(&p);
    lgh_status_t s = lgh_tune(ctx, &p.a, NULL, NULL, NULL, &chosen, res, LGH_ENGINE_COUNT, &count);
    CHECK(s == LGH_STATUS_SUCCESS, "lgh_tune: %s", lgh_last_error(ctx));
    CHECK(chosen == LGH_ENGINE_CPU && count == 1 && res[0].engine == LGH_ENGINE_CPU &&
              res[0].status == LGH_STATUS_SUCCESS && res[0].ms > 0.0f,
          "chosen %s, %d results, ms %g", lgh_engine_name(chosen), count, (double)res[0].ms);
    check_output(&p, "y written by lgh_tune");
    CHECK(lgh_tune_cache_file(ctx, path, sizeof path) == LGH_STATUS_SUCCESS &&
              strncmp(path, dir, strlen(dir)) == 0,
          "cache file '%s' not under %s", path, dir);
    CHECK(access(path, R_OK) == 0, "cache file %s not written", path);
    CHECK(count_entries(dir) == 1, "%d files in %s (a temporary file left?)", count_entries(dir), dir);
    lgh_engine_t e = LGH_ENGINE_COUNT;
    float ms = 0.0f;
    CHECK(lgh_tune_cached(ctx, &p.a, &e, &ms) == LGH_STATUS_SUCCESS && e == LGH_ENGINE_CPU &&
              ms == res[0].ms,
          "in memory: %s %g", lgh_engine_name(e), (double)ms);
    poison(&p);
    s = lgh_forward(ctx, &p.a, NULL, 0, NULL);
    CHECK(s == LGH_STATUS_SUCCESS, "lgh_forward after tuning: %s", lgh_last_error(ctx));
    check_output(&p, "lgh_forward after lgh_tune");
    /* Argument refusals. */
    CHECK(lgh_tune(NULL, &p.a, NULL, NULL, NULL, NULL, NULL, 0, NULL) == LGH_STATUS_NULL_POINTER,
          "NULL context");
    CHECK(lgh_tune(ctx, &p.a, NULL, NULL, NULL, NULL, res, -1, NULL) == LGH_STATUS_INVALID_VALUE,
          "negative capacity");
    CHECK(lgh_tune(ctx, &p.a, NULL, NULL, NULL, NULL, NULL, 2, NULL) == LGH_STATUS_NULL_POINTER,
          "results NULL with capacity 2");
    lgh_destroy(ctx);

    /* 2. A second context reads the file: the cached choice and its time. */
    e = cached_on_new_context(&p, &ms);
    CHECK(e == LGH_ENGINE_CPU && fabs((double)ms - (double)res[0].ms) <= 1e-4 * (double)res[0].ms,
          "second context: %s %g ms (tuned %g)", lgh_engine_name(e), (double)ms,
          (double)res[0].ms);
    forward_ok(&p, "second context");

    /* A hand-written valid file is read as written. */
    char header[1200], key7[512], text[4096];
    CHECK(read_written(path, &p.a, header, sizeof header, key7, sizeof key7), "reading %s back", path);
    snprintf(text, sizeof text, "%s%s cpu 1.25\n", header, key7);
    CHECK(write_file(path, text), "writing %s", path);
    e = cached_on_new_context(&p, &ms);
    CHECK(e == LGH_ENGINE_CPU && ms == 1.25f, "hand-written file: %s %g", lgh_engine_name(e),
          (double)ms);
    /* An engine with a variant id (tunable engines): read; the cpu engine has none and
     * runs its only way. */
    snprintf(text, sizeof text, "%s%s cpu:7 1.5\n", header, key7);
    CHECK(write_file(path, text), "writing %s", path);
    e = cached_on_new_context(&p, &ms);
    CHECK(e == LGH_ENGINE_CPU && ms == 1.5f, "file with a variant: %s %g", lgh_engine_name(e),
          (double)ms);
    forward_ok(&p, "file with a variant");
    /* A valid file naming an engine this device lacks: read, but AUTO does not use it. */
    snprintf(text, sizeof text, "%s%s sm90 0.5\n", header, key7);
    CHECK(write_file(path, text), "writing %s", path);
    e = cached_on_new_context(&p, &ms);
    CHECK(e == LGH_ENGINE_SM90, "file naming sm90: cached %s", lgh_engine_name(e));
    forward_ok(&p, "file naming an unavailable engine");

    /* 3. Corrupt or stale files: ignored as a whole, lgh_forward still right. */
    char magic[64];
    snprintf(magic, sizeof magic, "%.*s", (int)(strchr(header, '\n') - header + 1), header);
    const char *key_line = strchr(header, '\n') + 1;
    struct {
        const char *what;
        char text[4096];
    } bad[24];
    int nbad = 0;
#define BAD(name, ...) \
    (bad[nbad].what = name, snprintf(bad[nbad].text, sizeof bad[nbad].text, __VA_ARGS__), ++nbad)
    BAD("garbage", "\x01\x7f garbage %s\n\n\n", "zz");
    BAD("empty", "%s", "");
    BAD("truncated line", "%s%s cpu 1.25\n%s", header, key7, "37 70 4");
    BAD("no final newline", "%s%s cpu 1.25", header, key7);
    BAD("unknown engine", "%s%s cpu 1.25\n%s warp 1.0\n", header, key7, key7);
    BAD("engine auto", "%s%s auto 1.0\n", header, key7);
    BAD("wrong key", "%skey Some Other GPU|sm_90|driver 1|lgh 0.1.0\n%s cpu 1.25\n", magic, key7);
    BAD("wrong version", "lgh-tune-cache 2\n%s%s cpu 1.25\n", key_line, key7);
    BAD("negative time", "%s%s cpu -1\n", header, key7);
    BAD("NaN time", "%s%s cpu nan\n", header, key7);
    BAD("zero size", "%s%s cpu 1.25\n0 70 48 6 float32 fp32 8 cpu 1.0\n", header, key7);
    BAD("groups not dividing n", "%s%s cpu 1.25\n37 70 50 6 float32 fp32 8 cpu 1.0\n", header, key7);
    BAD("bad align", "%s%s cpu 1.25\n37 70 48 6 float32 fp32 3 cpu 1.0\n", header, key7);
    BAD("bad dtype", "%s%s cpu 1.25\n37 70 48 6 float64 fp32 8 cpu 1.0\n", header, key7);
    BAD("extra field", "%s%s cpu 1.25 7\n", header, key7);
    BAD("double space", "%s%s  cpu 1.25\n", header, key7);
    BAD("empty variant", "%s%s cpu: 1.25\n", header, key7);
    BAD("negative variant", "%s%s cpu:-1 1.25\n", header, key7);
    BAD("variant with a leading zero", "%s%s cpu:07 1.25\n", header, key7);
    BAD("variant too large", "%s%s cpu:12345 1.25\n", header, key7);
    BAD("variant not a number", "%s%s cpu:x 1.25\n", header, key7);
    for (int i = 0; i < nbad; ++i) {
        CHECK(write_file(path, bad[i].text), "writing %s", path);
        e = cached_on_new_context(&p, &ms);
        CHECK(e == LGH_ENGINE_AUTO, "%s: the file was trusted (cached %s %g)", bad[i].what,
              lgh_engine_name(e), (double)ms);
        forward_ok(&p, bad[i].what);
    }
    /* Tuning over a stale file replaces it with a good one. */
    CHECK(lgh_create(&ctx, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS, "lgh_create");
    CHECK(lgh_tune(ctx, &p.a, NULL, NULL, NULL, NULL, NULL, 0, NULL) == LGH_STATUS_SUCCESS,
          "lgh_tune over a stale file: %s", lgh_last_error(ctx));
    lgh_destroy(ctx);
    CHECK(cached_on_new_context(&p, NULL) == LGH_ENGINE_CPU, "file not rewritten after tuning");

    /* 4. LGH_CACHE=0: nothing read, nothing written; the in-memory table still works. */
    fresh_cache_home(home, sizeof home);
    snprintf(dir, sizeof dir, "%s/lgh", home);
    setenv("LGH_CACHE", "0", 1);
    CHECK(lgh_create(&ctx, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS, "lgh_create");
    CHECK(lgh_tune(ctx, &p.a, NULL, NULL, NULL, &chosen, NULL, 0, NULL) == LGH_STATUS_SUCCESS,
          "lgh_tune with LGH_CACHE=0: %s", lgh_last_error(ctx));
    CHECK(lgh_tune_cache_file(ctx, path, sizeof path) == LGH_STATUS_NOT_SUPPORTED && !path[0],
          "LGH_CACHE=0 still names a cache file '%s'", path);
    CHECK(lgh_tune_cached(ctx, &p.a, &e, NULL) == LGH_STATUS_SUCCESS && e == LGH_ENGINE_CPU,
          "in-memory choice with LGH_CACHE=0: %s", lgh_engine_name(e));
    lgh_destroy(ctx);
    CHECK(count_entries(home) == 0, "LGH_CACHE=0 wrote %d entries in %s", count_entries(home), home);
    CHECK(cached_on_new_context(&p, NULL) == LGH_ENGINE_AUTO, "LGH_CACHE=0: a new context found a choice");
    unsetenv("LGH_CACHE");

    /* 5. LGH_TUNE=1: the first AUTO lgh_forward tunes (and writes the file). */
    fresh_cache_home(home, sizeof home);
    setenv("LGH_TUNE", "1", 1);
    CHECK(lgh_create(&ctx, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS, "lgh_create");
    poison(&p);
    s = lgh_forward(ctx, &p.a, NULL, 0, NULL);
    CHECK(s == LGH_STATUS_SUCCESS, "lgh_forward with LGH_TUNE=1: %s", lgh_last_error(ctx));
    check_output(&p, "lgh_forward with LGH_TUNE=1");
    CHECK(lgh_tune_cached(ctx, &p.a, &e, NULL) == LGH_STATUS_SUCCESS && e == LGH_ENGINE_CPU,
          "LGH_TUNE=1 left no choice: %s", lgh_engine_name(e));
    lgh_destroy(ctx);
    unsetenv("LGH_TUNE");
    CHECK(cached_on_new_context(&p, NULL) == LGH_ENGINE_CPU, "LGH_TUNE=1 wrote no file");
    /* Without LGH_TUNE, lgh_forward of an untuned problem tunes nothing. */
    fresh_cache_home(home, sizeof home);
    forward_ok(&p, "untuned, LGH_TUNE unset");
    CHECK(count_entries(home) == 0, "lgh_forward without LGH_TUNE wrote a cache file");

    prob_free(&p);
    remove_tree();
    tst_summary("test_tune", &tally);
    return tally.failed ? 1 : 0;
}

/* Removes the temporary tree (files are ours, two levels deep). */
static void remove_tree(void)
{
    for (int i = 1; i <= case_no; ++i) {
        char d[600];
        snprintf(d, sizeof d, "%s/case%d/lgh", root, i);
        DIR *dd = opendir(d);
        if (dd) {
            for (struct dirent *de; (de = readdir(dd));) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
                char f[1200];
                snprintf(f, sizeof f, "%s/%s", d, de->d_name);
                unlink(f);
            }
            closedir(dd);
            rmdir(d);
        }
        snprintf(d, sizeof d, "%s/case%d", root, i);
        rmdir(d);
    }
    rmdir(root);
}
