/*
 * The tuner (see tune.h and lgh_tune in lgh.h): times every engine that can run a
 * problem (each variant of a tunable engine), keeps the fastest per problem key in a
 * table the context owns, and mirrors the table in one text file per device
 * (tune_file.c says where and in what format). The file is read once per context,
 * lazily, and rewritten (whole, atomically) after each tuning; what a file holds for a
 * key never overrides what this context measured itself. LGH_CACHE=0 turns the file off
 * (the in-memory table still works).
 *
 * This file holds the table, the core's entry points (tune.h) and the public lgh_tune*
 * functions; tune_time.c times one engine, tune_file.c reads and writes the file.
 *
 * Layering (docs/ARCHITECTURE.md): uses the registry (which engines to time), the
 * context, check.c (the public functions check their arguments), tune_time.c and
 * tune_file.c. It never calls dispatch.c, which calls it through tune.h.
 */
#include "tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "context.h"
#include "math_rule.h"
#include "registry.h"
#include "tune_file.h"
#include "tune_time.h"

#ifdef LGH_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define TUNE_KEY_BYTES 320

struct lgh_tune_cache {
    int on_forward; /* LGH_TUNE=1 */
    int use_file;   /* LGH_CACHE is not 0, and a cache directory and device key are known */
    int loaded;     /* the file has been read (or there is none to read) */
    char dir[LGH_TUNE_PATH_BYTES];
    char path[LGH_TUNE_PATH_BYTES];
    char key[TUNE_KEY_BYTES];
    int count, next; /* entries used; the slot replaced next once all are used */
    lgh_tune_entry_t entry[LGH_TUNE_SLOTS];
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

/* Keyed by the math as asked where that is a float32-accurate request: its entry holds
 * the engine measured fastest, and the engine implies the mode it ran
 * (lgh_math_accurate_for_engine), so FP32 and 3XTF32 compete under one key. */
static lgh_tune_key_t problem_key(const lgh_problem_t *p)
{
    const int math = p->accurate ? (int)LGH_MATH_ACCURATE : (int)p->a.math;
    lgh_tune_key_t k = {p->a.m, p->a.k, p->a.n, p->a.groups, (int)p->a.dtype, math,
                        align_class(p)};
    return k;
}

static int same_key(const lgh_tune_key_t *a, const lgh_tune_key_t *b)
{
    return a->m == b->m && a->k == b->k && a->n == b->n && a->groups == b->groups &&
           a->dtype == b->dtype && a->math == b->math && a->align == b->align;
}

static lgh_tune_entry_t *find(struct lgh_tune_cache *t, const lgh_tune_key_t *k)
{
    for (int i = 0; i < t->count; ++i)
        if (same_key(&t->entry[i].key, k)) return &t->entry[i];
    return NULL;
}

/* Records (or replaces) the choice for a key; when the table is full the oldest
 * slot goes. */
static void insert(struct lgh_tune_cache *t, const lgh_tune_entry_t *e)
{
    lgh_tune_entry_t *slot = find(t, &e->key);
    if (!slot) {
        if (t->count < LGH_TUNE_SLOTS) {
            slot = &t->entry[t->count++];
        } else {
            slot = &t->entry[t->next];
            t->next = (t->next + 1) % LGH_TUNE_SLOTS;
        }
    }
    *slot = *e;
}

/* ---- the table's state, and its file ------------------------------------------------------ */

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
    if (!disabled && lgh_tune_file_dir(t->dir, sizeof t->dir) &&
        device_key(ctx, t->key, sizeof t->key))
        t->use_file = lgh_tune_file_path(t->dir, t->key, t->path, sizeof t->path);
    if (!t->use_file) t->path[0] = '\0';
    t->loaded = !t->use_file;
    ctx->tune = t;
    ctx->tune_free = tune_free;
    return t;
}

static void load_file(struct lgh_tune_cache *t)
{
    t->loaded = 1;
    if (!t->use_file) return;
    int n = 0;
    lgh_tune_entry_t *file = lgh_tune_file_read(t->path, t->key, &n);
    /* What this context measured itself wins over the file. */
    for (int i = 0; i < n; ++i)
        if (!find(t, &file[i].key)) insert(t, &file[i]);
    free(file);
}

static void save_file(const struct lgh_tune_cache *t)
{
    if (!t->use_file) return;
    lgh_tune_file_write(t->dir, t->path, t->key, t->entry, t->count);
}

/* ---- the core's entry points -------------------------------------------------------------- */

lgh_engine_t lgh_tune_lookup(struct lgh_context *ctx, const lgh_problem_t *p, int *variant)
{
    if (variant) *variant = -1;
    struct lgh_tune_cache *t = tune_state(ctx);
    if (!t) return LGH_ENGINE_AUTO;
    if (!t->loaded) load_file(t);
    const lgh_tune_key_t k = problem_key(p);
    const lgh_tune_entry_t *e = find(t, &k);
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

    /* Each engine with the problem as it would run it: a float32-accurate request in the
     * engine's own accurate mode, so sm80 / sm90 time 3XTF32 and cublaslt / cpu FP32. */
    const lgh_engine_ops_t *cand[LGH_ENGINE_COUNT];
    lgh_problem_t cand_p[LGH_ENGINE_COUNT];
    int total = 0;
    char why[256];
    for (int id = LGH_ENGINE_AUTO + 1; id < LGH_ENGINE_COUNT; ++id) {
        const lgh_engine_ops_t *e = lgh_find_engine((lgh_engine_t)id);
        if (!e || !e->available(ctx)) continue;
        cand_p[total] = *p;
        lgh_math_settle(&cand_p[total], e->id);
        if (e->can_implement(ctx, &cand_p[total], why, sizeof why) == LGH_STATUS_SUCCESS)
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
        const lgh_status_t s = lgh_tune_time_engine(ctx, cand[i], &cand_p[i], stream, &ms, &variant);
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

    lgh_tune_entry_t e = {problem_key(p), best->id, best_variant, best_ms};
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
    const lgh_tune_key_t k = problem_key(&p);
    const lgh_tune_entry_t *e = find(t, &k);
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
