/*
 * Host side of the test support (see tst.h): seeds, dtype elements, poison and guard
 * patterns, error metrics, bounds, the threaded reference, the summary line.
 */
#include "tst.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu/convert.h"
#include "cpu/reference.h"

/* ---- random numbers ---------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int seed_ready;
static int seed_from_env;
static uint64_t seed_value;

uint64_t tst_base_seed(void)
{
    if (!seed_ready) {
        const char *env = getenv("LGH_TEST_SEED");
        if (env && *env) {
            seed_value = strtoull(env, NULL, 0);
            seed_from_env = 1;
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^
                         ((uint64_t)getpid() << 32);
            seed_value = splitmix64(&x) & 0xffffffffffffull; /* short enough to retype */
        }
        seed_ready = 1;
    }
    return seed_value;
}

void tst_print_seed(const char *program)
{
    uint64_t s = tst_base_seed();
    printf("%s: seed %" PRIu64 " (%s; replay with LGH_TEST_SEED=%" PRIu64 ")\n", program, s,
           seed_from_env ? "from LGH_TEST_SEED" : "from the clock", s);
}

tst_rng_t tst_rng_make(uint64_t base, uint64_t stream)
{
    uint64_t x = base ^ (stream * 0xd1b54a32d192ed03ull);
    tst_rng_t r = {splitmix64(&x)};
    return r;
}

uint64_t tst_rng_next(tst_rng_t *r) { return splitmix64(&r->s); }

double tst_uniform(tst_rng_t *r, double lo, double hi)
{
    double u = (double)(tst_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
    return lo + (hi - lo) * u;
}

/* ---- elements ---------------------------------------------------------------------- */

size_t tst_elem_bytes(lgh_dtype_t dt) { return dt == LGH_DTYPE_FLOAT32 ? 4 : 2; }

void tst_store(lgh_dtype_t dt, void *base, int64_t i, double v)
{
    switch (dt) {
    case LGH_DTYPE_FLOAT32: ((float *)base)[i] = (float)v; break;
    case LGH_DTYPE_BFLOAT16: ((uint16_t *)base)[i] = lgh_float_to_bf16((float)v); break;
    case LGH_DTYPE_FLOAT16: ((uint16_t *)base)[i] = lgh_float_to_fp16((float)v); break;
    }
}

double tst_load(lgh_dtype_t dt, const void *base, int64_t i)
{
    switch (dt) {
    case LGH_DTYPE_FLOAT32: return ((const float *)base)[i];
    case LGH_DTYPE_BFLOAT16: return lgh_bf16_to_float(((const uint16_t *)base)[i]);
    case LGH_DTYPE_FLOAT16: return lgh_fp16_to_float(((const uint16_t *)base)[i]);
    }
    return NAN;
}

/* [pattern][dtype]: quiet NaN to poison; a NaN with an unusual payload (and the sign
 * bit) as the guard, so neither can be produced by arithmetic by accident. */
static const uint32_t pattern_bits[2][3] = {
    {0x7fc00000u, 0x7fc0u, 0x7e00u},
    {0xffa5a5a5u, 0xffa5u, 0xfda5u},
};

void tst_store_pattern(lgh_dtype_t dt, void *base, int64_t i, tst_pattern_t p)
{
    uint32_t bits = pattern_bits[p][dt];
    if (dt == LGH_DTYPE_FLOAT32)
        memcpy((char *)base + 4 * i, &bits, 4);
    else
        ((uint16_t *)base)[i] = (uint16_t)bits;
}

int tst_is_pattern(lgh_dtype_t dt, const void *base, int64_t i, tst_pattern_t p)
{
    uint32_t bits = pattern_bits[p][dt];
    if (dt == LGH_DTYPE_FLOAT32) {
        uint32_t got;
        memcpy(&got, (const char *)base + 4 * i, 4);
        return got == bits;
    }
    return ((const uint16_t *)base)[i] == (uint16_t)bits;
}

/* Whether element i of a rows x cols matrix at ld is part of a row. */
static int in_row(int64_t i, int64_t rows, int64_t cols, int64_t ld)
{
    return i / ld < rows && i % ld < cols;
}

void tst_fill_matrix(lgh_dtype_t dt, void *buf, int64_t rows, int64_t cols, int64_t ld,
                     int64_t total, tst_rng_t *r, double lo, double hi)
{
    for (int64_t i = 0; i < total; ++i) {
        if (in_row(i, rows, cols, ld))
            tst_store(dt, buf, i, tst_uniform(r, lo, hi));
        else
            tst_store_pattern(dt, buf, i, TST_GUARD);
    }
}

void tst_poison_matrix(lgh_dtype_t dt, void *buf, int64_t rows, int64_t cols, int64_t ld,
                       int64_t total)
{
    for (int64_t i = 0; i < total; ++i)
        tst_store_pattern(dt, buf, i, in_row(i, rows, cols, ld) ? TST_POISON : TST_GUARD);
}

int64_t tst_guard_damage(lgh_dtype_t dt, const void *buf, int64_t rows, int64_t cols,
                         int64_t ld, int64_t total)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < total; ++i)
        if (!in_row(i, rows, cols, ld) && !tst_is_pattern(dt, buf, i, TST_GUARD)) ++bad;
    return bad;
}

/* ---- comparison -------------------------------------------------------------------- */

tst_err_t tst_compare(lgh_dtype_t dt, const void *y, int64_t rows, int64_t cols, int64_t ld,
                      const double *ref)
{
    tst_err_t e = {0.0, 0.0, 0};
    double num = 0.0, den = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
            double v = tst_load(dt, y, r * ld + c), want = ref[r * cols + c];
            if (!isfinite(v)) {
                ++e.nonfinite;
                continue;
            }
            double d = fabs(v - want);
            num += d * d;
            den += want * want;
            if (d > e.max_abs) e.max_abs = d;
        }
    }
    /* An all-zero reference cannot happen on random inputs; fall back to the absolute
     * norm rather than dividing by zero. */
    e.rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
    if (e.nonfinite) e.rel = NAN;
    return e;
}

double tst_bound(lgh_dtype_t dt, lgh_math_t math)
{
    if (dt != LGH_DTYPE_FLOAT32) return 1e-2;
    switch (math) {
    case LGH_MATH_FP32:
    case LGH_MATH_3XTF32:
    case LGH_MATH_ACCURATE: return 1e-5;
    case LGH_MATH_DEFAULT:
    case LGH_MATH_TF32: return 1e-3;
    }
    return 1e-5;
}

/* ---- the threaded reference ------------------------------------------------------------ */

typedef struct ref_job {
    const lgh_args_t *a;
    int64_t begin, end;
    double *y, *mean, *rstd;
    int rc;
} ref_job_t;

static void *ref_worker(void *p)
{
    ref_job_t *j = p;
    const int64_t n = j->a->n, g = j->a->groups;
    j->rc = j->begin >= j->end
                ? 0
                : lgh_reference_rows(j->a, j->begin, j->end, j->y + j->begin * n,
                                     j->mean ? j->mean + j->begin * g : NULL,
                                     j->rstd ? j->rstd + j->begin * g : NULL);
    return NULL;
}

int tst_reference(const lgh_args_t *a, double *y, double *mean, double *rstd)
{
    enum { MAX_THREADS = 64 };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (int)ncpu;
    /* Small problems are not worth a thread each. */
    const double work = (double)a->m * (double)a->n * (double)a->k;
    if (work < 4e6) nt = 1;
    if (nt > a->m) nt = (int)a->m;

    ref_job_t jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < nt; ++t) {
        jobs[t] = (ref_job_t){a, a->m * t / nt, a->m * (t + 1) / nt, y, mean, rstd, 0};
        if (t > 0 && pthread_create(&th[t], NULL, ref_worker, &jobs[t]) == 0) {
            started[t] = 1;
        } else if (t > 0) {
            ref_worker(&jobs[t]); /* no thread: do it here */
        }
    }
    ref_worker(&jobs[0]);
    int rc = jobs[0].rc;
    for (int t = 1; t < nt; ++t) {
        if (started[t]) pthread_join(th[t], NULL);
        if (jobs[t].rc) rc = jobs[t].rc;
    }
    return rc;
}

/* ---- device buffers (host side of the pair) ------------------------------------------ */

int tst_buf_alloc(tst_buf_t *b, size_t bytes, int on_gpu, char *msg, size_t len)
{
    memset(b, 0, sizeof *b);
    b->bytes = bytes;
    b->on_gpu = on_gpu;
    b->host = malloc(bytes ? bytes : 1);
    if (!b->host) {
        if (msg) snprintf(msg, len, "malloc(%zu) failed", bytes);
        return -1;
    }
    if (!on_gpu) {
        b->dev = b->host;
        return 0;
    }
    if (tst_dev_alloc(&b->dev, bytes ? bytes : 1, msg, len)) {
        free(b->host);
        b->host = NULL;
        return -1;
    }
    return 0;
}

int tst_buf_upload(tst_buf_t *b, char *msg, size_t len)
{
    return b->on_gpu ? tst_h2d(b->dev, b->host, b->bytes, msg, len) : 0;
}

int tst_buf_download(tst_buf_t *b, char *msg, size_t len)
{
    return b->on_gpu ? tst_d2h(b->host, b->dev, b->bytes, msg, len) : 0;
}

void tst_buf_free(tst_buf_t *b)
{
    if (b->on_gpu && b->dev) tst_dev_free(b->dev);
    free(b->host);
    memset(b, 0, sizeof *b);
}

/* ---- summary ------------------------------------------------------------------------- */

void tst_pass(tst_tally_t *t, int verbose, const char *label, const char *detail)
{
    t->passed++;
    if (verbose) printf("ok   %s%s%s\n", label, detail ? ": " : "", detail ? detail : "");
}

void tst_fail(tst_tally_t *t, const char *label, const char *fmt, ...)
{
    t->failed++;
    printf("FAIL %s: ", label);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

void tst_skip(tst_tally_t *t, const char *label, const char *why)
{
    t->skipped++;
    printf("skip %s: %s\n", label, why);
}

void tst_summary(const char *name, const tst_tally_t *t)
{
    printf("%s: %ld cases run, %ld passed, %ld failed, %ld skipped\n", name,
           t->passed + t->failed, t->passed, t->failed, t->skipped);
    fflush(stdout);
}
