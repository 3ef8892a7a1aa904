/*
 * The tuner (see tune.h and lgh_tune in lgh.h): times every engine that can run a
 * problem (each variant of a tunable engine: its tile configurations and modes, see
 * lgh_engine_ops_t.variants), keeps the fastest per problem key in a table the context
 * owns, and mirrors the table in one text file per device under $XDG_CACHE_HOME/lgh
 * (else ~/.cache/lgh):
 *
 *     lgh-tune-cache 1
 *     key <GPU name>|sm_<cc>|driver <version>|lgh <version>     (or the CPU's description)
 *     <m> <k> <n> <groups> <dtype> <math> <align> <engine>[:<variant>] <ms>
 *     ...
 *
 * (the variant ids are the engine's own and change with lgh versions, which the key
 * line holds).
 * The file is read once per context, lazily, and rewritten (temporary file + rename, so
 * a reader never sees half a file) after each tuning. Anything unexpected in it — a
 * bad header, another device's key, a truncated or malformed line, an unknown engine, a
 * number out of range — makes the whole file ignored: a cached choice only ever picks
 * among engines that can run the problem, but a file we cannot fully parse is not ours
 * to trust. LGH_CACHE=0 turns the file off (the in-memory table still works).
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp, fsync, clock_gettime */
#include "tune.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "context.h"
#include "registry.h"

#ifdef LGH_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define TUNE_SLOTS 256      /* problems remembered per context (and per file) */
#define TUNE_PATH_BYTES 1024
#define TUNE_KEY_BYTES 320
#define TUNE_LINE_BYTES 512
#define TUNE_MAX_DIM ((int64_t)1 << 40)
#define TUNE_MAX_MS 1e7
/* Calls per engine: GPU calls are short, so more of them; the CPU engine is the only
 * candidate on a CPU context and slow at large sizes, so fewer. */
#define TUNE_GPU_WARMUP 3
#define TUNE_GPU_CALLS 10
#define TUNE_CPU_WARMUP 1
#define TUNE_CPU_CALLS 5
#define TUNE_MAX_VARIANTS 64 /* variants of one engine timed per problem */
#define TUNE_MAX_VARIANT 9999

static const char file_magic[] = "lgh-tune-cache 1";

typedef struct tune_key {
    int64_t m, k, n, groups;
    int dtype, math, align;
} tune_key_t;

typedef struct tune_entry {
    tune_key_t key;
    lgh_engine_t engine;
    int variant; /* the engine's variant id, or -1 (its own choice) */
    float ms;
} tune_entry_t;

struct lgh_tune_cache {
    int on_forward; /* LGH_TUNE=1 */
    int use_file;   /* LGH_CACHE is not 0, and a cache directory and device key are known */
    int loaded;     /* the file has been read (or there is none to read) */
    char dir[TUNE_PATH_BYTES];
    char path[TUNE_PATH_BYTES];
    char key[TUNE_KEY_BYTES];
    int count, next; /* entries used; the slot replaced next once all are used */
    tune_entry_t entry[TUNE_SLOTS];
};

/* ---- problem keys ----------------------------------------------------------------------- */

/* Largest power of two <= 16 dividing every row stride in bytes: the vectorised and TMA
 * paths depend on it, so problems differing only there are tuned apart. */
static int align_class(const lgh_problem_t *p)
{
    /* A stride in bytes may exceed int64 (one row: any ld >= its row is accepted); only its
     * residue mod 16 matters, which the wrapping uint64_t product keeps. */
    const uint64_t eb = (uint64_t)p->elem_bytes;
    const uint64_t bytes[3] = {(uint64_t)p->a.ldx * eb, (uint64_t)p->a.ldw * eb,
                               (uint64_t)p->a.ldy * eb};
    unsigned a = 16;
    for (int i = 0; i < 3; ++i)
        while (a > 1 && bytes[i] % a != 0) a /= 2;
    return (int)a;
}

static tune_key_t problem_key(const lgh_problem_t *p)
{
    tune_key_t k = {p->a.m, p->a.k, p->a.n, p->a.groups, (int)p->a.dtype, (int)p->a.math,
                    align_class(p)};
    return k;
}

static int same_key(const tune_key_t *a, const tune_key_t *b)
{
    return a->m == b->m && a->k == b->k && a->n == b->n && a->groups == b->groups &&
           a->dtype == b->dtype && a->math == b->math && a->align == b->align;
}

static tune_entry_t *find(struct lgh_tune_cache *t, const tune_key_t *k)
{
    for (int i = 0; i < t->count; ++i)
        if (same_key(&t->entry[i].key, k)) return &t->entry[i];
    return NULL;
}

/* Records (or replaces) the choice for a key; when the table is full the oldest
 * slot goes. */
static void insert(struct lgh_tune_cache *t, const tune_entry_t *e)
{
    tune_entry_t *slot = find(t, &e->key);
    if (!slot) {
        if (t->count < TUNE_SLOTS) {
            slot = &t->entry[t->count++];
        } else {
            slot = &t->entry[t->next];
            t->next = (t->next + 1) % TUNE_SLOTS;
        }
    }
    *slot = *e;
}

/* ---- the cache file's name and key -------------------------------------------------------- */

/* What identifies the device for the file: a choice measured on another GPU model,
 * driver or lgh version is stale. 0 when it cannot be told. */
static int device_key(struct lgh_context *ctx, char *key, size_t len)
{
    const int v = LGH_VERSION;
    int n;
    if (ctx->props.ordinal == LGH_DEVICE_CPU) {
        n = snprintf(key, len, "%s|lgh %d.%d.%d", ctx->description, v / 10000, v / 100 % 100,
                     v % 100);
    } else {
#ifdef LGH_HAVE_CUDA
        struct cudaDeviceProp prop;
        int driver = 0;
        if (cudaGetDeviceProperties(&prop, ctx->props.ordinal) != cudaSuccess ||
            cudaDriverGetVersion(&driver) != cudaSuccess)
            return 0;
        n = snprintf(key, len, "%.200s|sm_%d%d|driver %d|lgh %d.%d.%d", prop.name, prop.major,
                     prop.minor, driver, v / 10000, v / 100 % 100, v % 100);
#else
        return 0;
#endif
    }
    if (n < 0 || (size_t)n >= len) return 0;
    /* One line, printable: the key is compared byte for byte with the file's. */
    for (char *c = key; *c; ++c)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) *c = '_';
    return 1;
}

/* $XDG_CACHE_HOME/lgh when XDG_CACHE_HOME is an absolute path, else $HOME/.cache/lgh.
 * 0 when neither is known. */
static int cache_dir(char *dir, size_t len)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(dir, len, "%s/lgh", xdg);
    else if (home && home[0] == '/')
        n = snprintf(dir, len, "%s/.cache/lgh", home);
    else
        return 0;
    return n > 0 && (size_t)n < len;
}

static void tune_free(struct lgh_tune_cache *t) { free(t); }

static struct lgh_tune_cache *tune_state(struct lgh_context *ctx)
{
    if (ctx->tune) return ctx->tune;
    struct lgh_tune_cache *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    const char *tune_env = getenv("LGH_TUNE");
    t->on_forward = tune_env && !strcmp(tune_env, "1");
    const char *cache_env = getenv("LGH_CACHE");
    const int disabled = cache_env && !strcmp(cache_env, "0");
    if (!disabled && cache_dir(t->dir, sizeof t->dir) && device_key(ctx, t->key, sizeof t->key)) {
        /* File name: the key with anything but [A-Za-z0-9.-] as '_', at most 120 bytes. */
        char name[128];
        size_t j = 0;
        for (const char *c = t->key; *c && j < 120; ++c) {
            const int keep = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                             (*c >= '0' && *c <= '9') || *c == '.' || *c == '-';
            name[j++] = keep ? *c : '_';
        }
        name[j] = '\0';
        const int n = snprintf(t->path, sizeof t->path, "%s/tune-%s.txt", t->dir, name);
        t->use_file = n > 0 && (size_t)n < sizeof t->path;
    }
    if (!t->use_file) t->path[0] = '\0';
    t->loaded = !t->use_file;
    ctx->tune = t;
    ctx->tune_free = tune_free;
    return t;
}

/* ---- reading the file: every field checked, any doubt and the file is ignored ------------- */

static int parse_dim(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 1 || v > TUNE_MAX_DIM) return 0;
    *out = v;
    return 1;
}

/* "<engine>" or "<engine>:<variant>" (a decimal id, no sign or leading zero). */
static int parse_engine(char *field, lgh_engine_t *engine, int *variant)
{
    *variant = -1;
    char *colon = strchr(field, ':');
    if (colon) {
        *colon = '\0';
        const char *v = colon + 1;
        const size_t len = strlen(v);
        if (len == 0 || len > 4 || (len > 1 && v[0] == '0')) return 0;
        for (size_t i = 0; i < len; ++i)
            if (v[i] < '0' || v[i] > '9') return 0;
        *variant = atoi(v);
    }
    return lgh_engine_from_name(field, engine) == LGH_STATUS_SUCCESS && *engine != LGH_ENGINE_AUTO;
}

/* One entry line (without its newline): exactly nine fields separated by one space. */
static int parse_entry(char *line, tune_entry_t *e)
{
    char *field[9];
    int n = 0;
    for (char *c = line;; ++c) {
        if (n == 9) return 0;
        field[n++] = c;
        while (*c && *c != ' ') ++c;
        if (!*c) break;
        *c = '\0';
    }
    if (n != 9) return 0;
    tune_key_t *k = &e->key;
    if (!parse_dim(field[0], &k->m) || !parse_dim(field[1], &k->k) ||
        !parse_dim(field[2], &k->n) || !parse_dim(field[3], &k->groups) || k->n % k->groups != 0)
        return 0;
    k->dtype = -1;
    for (int d = LGH_DTYPE_FLOAT32; d <= LGH_DTYPE_FLOAT16; ++d)
        if (!strcmp(field[4], lgh_dtype_name((lgh_dtype_t)d))) k->dtype = d;
    k->math = -1; /* resolved modes only: never "default" */
    for (int m = LGH_MATH_FP32; m <= LGH_MATH_3XTF32; ++m)
        if (!strcmp(field[5], lgh_math_name((lgh_math_t)m))) k->math = m;
    if (k->dtype < 0 || k->math < 0) return 0;
    if (strlen(field[6]) > 2) return 0;
    k->align = atoi(field[6]);
    if (k->align != 1 && k->align != 2 && k->align != 4 && k->align != 8 && k->align != 16)
        return 0;
    char check[4];
    snprintf(check, sizeof check, "%d", k->align);
    if (strcmp(check, field[6]) != 0) return 0; /* "016", "+8" */
    if (!parse_engine(field[7], &e->engine, &e->variant)) return 0;
    char *end;
    errno = 0;
    const double ms = strtod(field[8], &end);
    if (!*field[8] || *end || errno || !isfinite(ms) || ms <= 0.0 || ms > TUNE_MAX_MS) return 0;
    e->ms = (float)ms;
    return e->ms > 0.0f; /* below float's range: it would be written back as "0" */
}

/* Reads the whole file into tmp[]; 0 (and nothing kept) on any fault. */
static int parse_file(FILE *f, const char *key, tune_entry_t *tmp, int *count)
{
    char line[TUNE_LINE_BYTES];
    int n = 0;
    for (int lineno = 0; fgets(line, sizeof line, f); ++lineno) {
        const size_t len = strlen(line);
        /* A line without its newline was cut short (or is too long to be ours). */
        if (len == 0 || line[len - 1] != '\n') return 0;
        line[len - 1] = '\0';
        if (lineno == 0) {
            if (strcmp(line, file_magic) != 0) return 0;
        } else if (lineno == 1) {
            if (strncmp(line, "key ", 4) != 0 || strcmp(line + 4, key) != 0) return 0;
        } else {
            if (n == TUNE_SLOTS || !parse_entry(line, &tmp[n])) return 0;
            ++n;
        }
    }
    if (ferror(f)) return 0;
    *count = n;
    return 1;
}

static void load_file(struct lgh_tune_cache *t)
{
    t->loaded = 1;
    if (!t->use_file) return;
    FILE *f = fopen(t->path, "r");
    if (!f) return;
    tune_entry_t *tmp = malloc(sizeof(tune_entry_t) * TUNE_SLOTS);
    int n = 0;
    if (tmp && parse_file(f, t->key, tmp, &n)) {
        /* What this context measured itself wins over the file. */
        for (int i = 0; i < n; ++i)
            if (!find(t, &tmp[i].key)) insert(t, &tmp[i]);
    }
    free(tmp);
    fclose(f);
}

/* ---- writing the file ----------------------------------------------------------------------- */

/* mkdir -p, quietly: a directory we cannot make shows up as a failed write below. */
static void make_dirs(const char *dir)
{
    char buf[TUNE_PATH_BYTES];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *c = buf + 1; *c; ++c) {
        if (*c != '/') continue;
        *c = '\0';
        mkdir(buf, 0700);
        *c = '/';
    }
    mkdir(buf, 0700);
}

/* Writes the table to a temporary file next to the cache file and renames it over
 * the cache file, so a concurrent reader sees the old file or the new one, never half
 * of one. A failure leaves the old file (and the in-memory table) as they were. */
static void save_file(const struct lgh_tune_cache *t)
{
    if (!t->use_file) return;
    make_dirs(t->dir);
    char tmp[TUNE_PATH_BYTES + 16];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", t->path);
    const int fd = mkstemp(tmp);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return;
    }
    fprintf(f, "%s\nkey %s\n", file_magic, t->key);
    for (int i = 0; i < t->count; ++i) {
        const tune_entry_t *e = &t->entry[i];
        char variant[16] = "";
        if (e->variant >= 0) snprintf(variant, sizeof variant, ":%d", e->variant);
        fprintf(f, "%lld %lld %lld %lld %s %s %d %s%s %.6g\n", (long long)e->key.m,
                (long long)e->key.k, (long long)e->key.n, (long long)e->key.groups,
                lgh_dtype_name((lgh_dtype_t)e->key.dtype), lgh_math_name((lgh_math_t)e->key.math),
                e->key.align, lgh_engine_name(e->engine), variant, (double)e->ms);
    }
    int ok = !ferror(f) && fflush(f) == 0 && fsync(fd) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, t->path) != 0) unlink(tmp);
}

/* ---- timing ------------------------------------------------------------------------------- */

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

/* With the context's lock held (the whole timing: lgh_tune synchronises anyway). */
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

/* An engine's time for p: its only one, or its fastest variant's (*variant gets that
 * variant's id; -1 for an engine without variants). Fails only when every variant
 * fails, with the first failure. */
static lgh_status_t time_variants(struct lgh_context *ctx, const lgh_engine_ops_t *e,
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
        if (ids[v] < 0 || ids[v] > TUNE_MAX_VARIANT) continue; /* not storable in the file */
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

/* ---- the core's entry points -------------------------------------------------------------- */

lgh_engine_t lgh_tune_lookup(struct lgh_context *ctx, const lgh_problem_t *p, int *variant)
{
    if (variant) *variant = -1;
    struct lgh_tune_cache *t = tune_state(ctx);
    if (!t) return LGH_ENGINE_AUTO;
    if (!t->loaded) load_file(t);
    const tune_key_t k = problem_key(p);
    const tune_entry_t *e = find(t, &k);
    if (e && variant) *variant = e->variant;
    return e ? e->engine : LGH_ENGINE_AUTO;
}

int lgh_tune_on_forward(struct lgh_context *ctx)
{
    struct lgh_tune_cache *t = tune_state(ctx);
    return t && t->on_forward;
}

/* Called with the context's device current (lgh_tune and lgh_forward enter its scope):
 * the workspace, the events and the engines' launches belong there; and with its lock
 * held, which is dropped only around the progress callback (it may call lgh). */
lgh_status_t lgh_tune_problem(struct lgh_context *ctx, const lgh_problem_t *p, void *stream,
                              lgh_tune_progress_fn progress, void *user, lgh_engine_t *chosen,
                              lgh_tune_result_t *results, int capacity, int *count)
{
    struct lgh_tune_cache *t = tune_state(ctx);
    if (!t) return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED, "lgh_tune: out of host memory");
    if (!t->loaded) load_file(t);

    const lgh_engine_ops_t *cand[LGH_ENGINE_COUNT];
    int total = 0;
    char why[256];
    for (int id = LGH_ENGINE_AUTO + 1; id < LGH_ENGINE_COUNT; ++id) {
        const lgh_engine_ops_t *e = lgh_find_engine((lgh_engine_t)id);
        if (e && e->available(ctx) && e->can_implement(ctx, p, why, sizeof why) == LGH_STATUS_SUCCESS)
            cand[total++] = e;
    }
    if (count) *count = total;
    if (total == 0)
        return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED, "no engine can run this problem on %s",
                             ctx->description);

    const lgh_engine_ops_t *best = NULL;
    float best_ms = 0.0f;
    int best_variant = -1;
    lgh_status_t first_failure = LGH_STATUS_SUCCESS;
    char failure[LGH_MESSAGE_BYTES] = "";
    for (int i = 0; i < total; ++i) {
        if (progress) {
            lgh_context_unlock(ctx);
            progress(user, cand[i]->id, i + 1, total);
            lgh_context_lock(ctx);
        }
        float ms = 0.0f;
        int variant = -1;
        const lgh_status_t s = time_variants(ctx, cand[i], p, stream, &ms, &variant);
        if (results && i < capacity) {
            results[i].engine = cand[i]->id;
            results[i].status = s;
            results[i].ms = s == LGH_STATUS_SUCCESS ? ms : 0.0f;
        }
        if (s != LGH_STATUS_SUCCESS) {
            if (first_failure == LGH_STATUS_SUCCESS) {
                first_failure = s;
                snprintf(failure, sizeof failure, "%s: %.400s", cand[i]->name,
                         lgh_last_error(ctx));
            }
            continue;
        }
        if (!best || ms < best_ms) {
            best = cand[i];
            best_ms = ms;
            best_variant = variant;
        }
    }
    if (!best)
        return lgh_set_error(ctx, first_failure, "lgh_tune: no engine ran: %s", failure);

    tune_entry_t e = {problem_key(p), best->id, best_variant, best_ms};
    insert(t, &e);
    save_file(t);
    if (chosen) *chosen = best->id;
    lgh_clear_error(ctx);
    return LGH_STATUS_SUCCESS;
}

/* ---- public API ---------------------------------------------------------------------------- */

lgh_status_t lgh_tune(lgh_context_t ctx, const lgh_args_t *args, void *stream,
                      lgh_tune_progress_fn progress, void *user, lgh_engine_t *chosen,
                      lgh_tune_result_t *results, int capacity, int *count)
{
    if (!ctx) return LGH_STATUS_NULL_POINTER;
    if (capacity < 0)
        return lgh_set_error(ctx, LGH_STATUS_INVALID_VALUE, "lgh_tune: capacity %d < 0", capacity);
    if (capacity > 0 && !results)
        return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER,
                             "lgh_tune: results is NULL with capacity %d", capacity);
    lgh_problem_t p;
    lgh_status_t s = lgh_check_args(ctx, args, &p);
    if (s != LGH_STATUS_SUCCESS) return s;
    s = lgh_check_memory(ctx, &p);
    if (s != LGH_STATUS_SUCCESS) return s;
    lgh_device_scope_t scope; /* can_implement reads facts of the current device */
    s = lgh_device_enter(ctx, &scope);
    if (s != LGH_STATUS_SUCCESS) return s;
    lgh_context_lock(ctx);
    s = lgh_tune_problem(ctx, &p, stream, progress, user, chosen, results, capacity, count);
    lgh_context_unlock(ctx);
    lgh_device_leave(&scope);
    return s;
}

lgh_status_t lgh_tune_cached(lgh_context_t ctx, const lgh_args_t *args, lgh_engine_t *engine,
                             float *ms)
{
    if (!ctx) return LGH_STATUS_NULL_POINTER;
    if (!engine) return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER, "lgh_tune_cached: engine is NULL");
    lgh_problem_t p;
    lgh_status_t s = lgh_check_args(ctx, args, &p);
    if (s != LGH_STATUS_SUCCESS) return s;
    lgh_context_lock(ctx);
    struct lgh_tune_cache *t = tune_state(ctx);
    if (!t) {
        lgh_context_unlock(ctx);
        return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED, "lgh_tune_cached: out of host memory");
    }
    if (!t->loaded) load_file(t);
    const tune_key_t k = problem_key(&p);
    const tune_entry_t *e = find(t, &k);
    *engine = e ? e->engine : LGH_ENGINE_AUTO;
    if (ms) *ms = e ? e->ms : 0.0f;
    lgh_context_unlock(ctx);
    lgh_clear_error(ctx);
    return LGH_STATUS_SUCCESS;
}

lgh_status_t lgh_tune_cache_file(lgh_context_t ctx, char *path, size_t len)
{
    if (!ctx) return LGH_STATUS_NULL_POINTER;
    if (!path || len == 0)
        return lgh_set_error(ctx, LGH_STATUS_NULL_POINTER, "lgh_tune_cache_file: no buffer");
    path[0] = '\0';
    /* The table's path and use_file never change once it exists: read them unlocked. */
    lgh_context_lock(ctx);
    const struct lgh_tune_cache *t = tune_state(ctx);
    lgh_context_unlock(ctx);
    if (!t) return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED, "lgh_tune_cache_file: out of host memory");
    if (!t->use_file)
        return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED,
                             "no tuning cache file: LGH_CACHE=0, or no XDG_CACHE_HOME or HOME");
    if (strlen(t->path) >= len)
        return lgh_set_error(ctx, LGH_STATUS_INVALID_VALUE,
                             "lgh_tune_cache_file: the path needs %zu bytes, %zu given",
                             strlen(t->path) + 1, len);
    memcpy(path, t->path, strlen(t->path) + 1);
    lgh_clear_error(ctx);
    return LGH_STATUS_SUCCESS;
}
