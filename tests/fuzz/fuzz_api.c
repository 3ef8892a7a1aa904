/*
 * fuzz_api: libFuzzer target over the arguments of lgh's public API on a CPU context
 * (lgh_plan, lgh_forward, lgh_backward_plan, lgh_backward, lgh_tune, lgh_tune_cached and
 * the small helpers around them).
 *
 * Each input is decoded into one problem: sizes (mostly 0..48; sometimes 0, negative,
 * INT64_MIN / INT64_MAX and other values near the int64 overflow edges), groups (usually
 * a divisor of N), dtype / math / engine (out-of-range values too), eps / lo / hi (NaN,
 * ±Inf, 0, -0, denormals, raw bits), leading dimensions (0, padded, too small, negative,
 * huge), which pointers are NULL, the optional mean / rstd / h outputs, the backward's
 * saved h / mean / rstd and its gradient subset, the workspace (context's, caller's of
 * exactly the planned size at an odd offset, one byte short), LGH_ENGINE / LGH_TUNE.
 * What is left of the input fills the input buffers (raw bits, small values, a constant,
 * or small values with NaN / ±Inf).
 *
 * The expected outcome comes from the contract in include/lgh.h, computed here in 128-bit
 * arithmetic: the statuses the arguments call for (one of them must be returned), else
 * success on the CPU engine (ENGINE_UNAVAILABLE for a forced GPU engine). Invariants:
 *   - every call returns a valid lgh_status_t, the one expected, and the same from the
 *     plan as from the call; lgh_last_error() is a non-empty string after a failure;
 *   - a refused call writes nothing: its buffers are 1-byte decoys (ASan reports any
 *     access past the first byte) compared byte for byte after the call; an accepted call
 *     whose only fault is a short workspace leaves its real outputs untouched;
 *   - an accepted problem runs only when it is small (a few hundred KiB): every buffer
 *     is allocated with exactly the bytes the problem spans, so ASan catches any access
 *     past a matrix's last element, and the padding between rows is compared byte for
 *     byte after the call (an output's gaps are never written, no input is written);
 *     larger accepted problems go to lgh_plan / lgh_backward_plan only (no memory is
 *     touched there);
 *   - y lies in [lo, hi] rounded to the dtype, or is NaN; rstd >= 0 or NaN;
 *   - a second run (context workspace vs. caller's) gives bitwise the same y, mean, rstd,
 *     h and the same dW, db, dγ, dβ (the backward's documented determinism).
 *
 * Build and run (tests/fuzz/fuzz.sh does both; `make fuzz` from the top level):
 *
 *   cmake -S tests/fuzz -B build-fuzz -DCMAKE_C_COMPILER=clang
 *   cmake --build build-fuzz -j
 *   build-fuzz/fuzz_api -max_total_time=60 build-fuzz/corpus/api tests/fuzz/corpus/api
 *
 * The library is compiled with -fsanitize=fuzzer-no-link,address,undefined (UB is fatal)
 * and without CUDA, OpenBLAS or OpenMP (one thread: reproducible, one core). A crash
 * input replays with `build-fuzz/fuzz_api crash-<sha1>`.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/convert.h"
#include "fuzz_common.h"
#include "lgh.h"

enum { SMALL_MAX = 48 };
/* An accepted problem runs when its buffers and its product are this small. */
#define RUN_MAX_BYTES (256 * 1024)
#define RUN_MAX_MNK (1 << 17)

#define ST(s) (1u << (s))

typedef __int128 i128;

/* ---- decoding --------------------------------------------------------------------------- */

/* Values at the edges of int64 and of the products lgh forms (M·K, M·N·K, (M-1)·ld + K). */
static int64_t special_i64(fuzz_reader_t *r, unsigned which)
{
    switch (which % 32) {
    case 0: return 0;
    case 1: return -1;
    case 2: return INT64_MIN;
    case 3: return INT64_MAX;
    case 4: return INT64_MAX - 1;
    case 5: return INT64_MAX / 2;
    case 6: return INT64_MAX / 2 + 1;
    case 7: return INT64_MAX / 4;
    case 8: return INT64_MAX / 4 + 1;
    case 9: return INT64_MAX / 8 + 1;
    case 10: return INT64_C(1) << 31;
    case 11: return (INT64_C(1) << 31) - 1;
    case 12: return INT64_C(1) << 32;
    case 13: return (INT64_C(1) << 32) + 1;
    case 14: return INT64_C(3037000499); /* floor(sqrt(2^63)) */
    case 15: return INT64_C(3037000500);
    case 16: return (INT64_C(1) << 21) - 1; /* ~ cube root of 2^63 */
    case 17: return INT64_C(1) << 21;
    case 18: return INT64_C(1) << 40;
    case 19: return INT64_C(1) << 62;
    case 20: return -(INT64_C(1) << 62);
    case 21: return 64;
    case 22: return 100;
    case 23: return 256;
    case 24: return 1000;
    case 25: return 4097;
    case 26: return 65536;
    case 27: return (int64_t)fuzz_u64(r);
    case 28: return (int64_t)(fuzz_u64(r) >> (fuzz_u8(r) % 64));
    case 29: return -(int64_t)(fuzz_u8(r) % 8) - 1;
    case 30: return 1;
    default: return 2;
    }
}

static int64_t dim(fuzz_reader_t *r)
{
    const uint8_t s = fuzz_u8(r);
    return s < 208 ? s % (SMALL_MAX + 1) : special_i64(r, s - 208u);
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t c;
    if (__builtin_add_overflow(a, b, &c)) return b > 0 ? INT64_MAX : INT64_MIN;
    return c;
}

/* A leading dimension for rows of `row` elements: 0 (packed), padded, too small, special. */
static int64_t lead(fuzz_reader_t *r, int64_t row)
{
    const uint8_t s = fuzz_u8(r);
    if (s < 112) return 0;
    if (s < 200) return sat_add(row, s % 8);
    if (s < 216) return sat_add(row, -1 - (int64_t)(s % 4));
    return special_i64(r, s - 216u);
}

static int64_t groups_for(fuzz_reader_t *r, int64_t n)
{
    const uint8_t s = fuzz_u8(r);
    if (s < 200 && n >= 1 && n <= 4096) {
        int64_t divs[64];
        int count = 0;
        for (int64_t d = 1; d <= n && count < 64; ++d)
            if (n % d == 0) divs[count++] = d;
        return divs[s % count];
    }
    if (s < 230) return s % (SMALL_MAX + 1);
    return special_i64(r, s - 230u);
}

/* An enum value: usually one of `count`, sometimes out of range. */
static int enum_value(fuzz_reader_t *r, int count)
{
    const uint8_t s = fuzz_u8(r);
    if (s < 232) return s % count;
    switch (s % 8) {
    case 0: return count;
    case 1: return -1;
    case 2: return INT_MIN;
    case 3: return INT_MAX;
    case 4: return count + 1;
    default: return (int)fuzz_u32(r);
    }
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float special_float(fuzz_reader_t *r, unsigned which)
{
    switch (which % 16) {
    case 0: return 0.0f;
    case 1: return -0.0f;
    case 2: return NAN;
    case 3: return -NAN;
    case 4: return INFINITY;
    case 5: return -INFINITY;
    case 6: return FLT_MIN;
    case 7: return bits_float(1); /* smallest denormal */
    case 8: return FLT_MAX;
    case 9: return -FLT_MAX;
    case 10: return 1e-30f;
    case 11: return 1e30f;
    case 12: return -1e-5f;
    case 13: return 65504.0f;
    case 14: return 1.0f;
    default: return bits_float(fuzz_u32(r));
    }
}

/* ---- the input data: what is left of the fuzz input, cycled ------------------------------ */

typedef struct pool {
    const uint8_t *d;
    size_t n, i;
    uint8_t mode;
    uint32_t counter;
} pool_t;

static uint8_t pool_byte(pool_t *p)
{
    if (p->n == 0) return (uint8_t)(p->counter++ * 37u + 11u);
    const uint8_t b = p->d[p->i];
    p->i = (p->i + 1) % p->n;
    return b;
}

static float pool_value(pool_t *p)
{
    switch (p->mode % 4) {
    case 0: {
        uint32_t u = 0;
        for (int i = 0; i < 4; ++i) u |= (uint32_t)pool_byte(p) << (8 * i);
        return bits_float(u);
    }
    case 1: return (float)(int8_t)pool_byte(p) / 32.0f;
    case 2: return 0.75f; /* every value alike: groups of zero variance */
    default: {
        const uint8_t b = pool_byte(p);
        if (b == 255) return NAN;
        if (b == 254) return INFINITY;
        if (b == 253) return -INFINITY;
        return (float)(int8_t)b / 16.0f;
    }
    }
}

static size_t elem_bytes(int dtype) { return dtype == LGH_DTYPE_FLOAT32 ? 4 : 2; }

static void store_value(int dtype, void *buf, size_t i, float v)
{
    if (dtype == LGH_DTYPE_FLOAT32)
        memcpy((char *)buf + 4 * i, &v, 4);
    else {
        const uint16_t h = dtype == LGH_DTYPE_BFLOAT16 ? lgh_float_to_bf16(v) : lgh_float_to_fp16(v);
        memcpy((char *)buf + 2 * i, &h, 2);
    }
}

static float load_value(int dtype, const void *buf, size_t i)
{
    if (dtype == LGH_DTYPE_FLOAT32) {
        float f;
        memcpy(&f, (const char *)buf + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, (const char *)buf + 2 * i, 2);
    return dtype == LGH_DTYPE_BFLOAT16 ? lgh_bf16_to_float(h) : lgh_fp16_to_float(h);
}

/* v rounded to dtype and back (monotone: the bounds of a clamped, rounded output). */
static float round_to(int dtype, float v)
{
    if (dtype == LGH_DTYPE_BFLOAT16) return lgh_bf16_to_float(lgh_float_to_bf16(v));
    if (dtype == LGH_DTYPE_FLOAT16) return lgh_fp16_to_float(lgh_float_to_fp16(v));
    return v;
}

/* ---- buffers: exactly sized, with a snapshot to compare against ------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t bytes;
    uint8_t *snap;
    /* matrix shape, for the gap check (rows 0: not a matrix) */
    int64_t rows, cols, ld;
    size_t eb;
} buf_t;

static void buf_make(buf_t *b, size_t bytes)
{
    b->bytes = bytes;
    b->p = malloc(bytes ? bytes : 1);
    b->snap = malloc(bytes ? bytes : 1);
    FUZZ_CHECK(b->p && b->snap, "out of memory for %zu bytes", bytes);
}

/* A 1-byte decoy: what a refused call gets; any access past its byte is an ASan report. */
static void buf_decoy(buf_t *b, pool_t *pool)
{
    buf_make(b, 1);
    b->p[0] = pool_byte(pool);
    b->snap[0] = b->p[0];
}

static void buf_matrix(buf_t *b, int64_t rows, int64_t cols, int64_t ld, size_t eb)
{
    const size_t elems = (size_t)((rows - 1) * ld + cols);
    buf_make(b, elems * eb);
    b->rows = rows, b->cols = cols, b->ld = ld, b->eb = eb;
}

static void buf_fill(buf_t *b, pool_t *pool, int dtype)
{
    const size_t eb = elem_bytes(dtype);
    if (pool->mode % 4 == 0) {
        for (size_t i = 0; i < b->bytes; ++i) b->p[i] = pool_byte(pool);
    } else {
        for (size_t i = 0; i < b->bytes / eb; ++i) store_value(dtype, b->p, i, pool_value(pool));
    }
    memcpy(b->snap, b->p, b->bytes);
}

/* Outputs start as a fixed pattern (a NaN in every dtype) that the gaps must keep. */
static void buf_poison(buf_t *b, uint8_t byte)
{
    memset(b->p, byte, b->bytes);
    memcpy(b->snap, b->p, b->bytes);
}

static void buf_free(buf_t *b)
{
    free(b->p);
    free(b->snap);
    memset(b, 0, sizeof *b);
}

static bool buf_same(const buf_t *b) { return !b->p || memcmp(b->p, b->snap, b->bytes) == 0; }

/* The padding between a matrix's rows still holds the snapshot's bytes. */
static bool gaps_same(const buf_t *b)
{
    if (!b->p || b->rows <= 1 || b->ld == b->cols) return true;
    const size_t elems = b->bytes / b->eb;
    for (size_t i = 0; i < elems; ++i) {
        if ((int64_t)(i % (size_t)b->ld) < b->cols) continue;
        if (memcmp(b->p + i * b->eb, b->snap + i * b->eb, b->eb) != 0) return false;
    }
    return true;
}

/* ---- the contract, computed independently of the library --------------------------------- */

/* (rows - 1)·ld + cols elements of eb bytes overflow int64 (rows, ld, cols >= 1). */
static bool span_overflows(int64_t rows, int64_t ld, int64_t cols, int64_t eb)
{
    const i128 e = ((i128)rows - 1) * ld + cols; /* < 2^127 */
    return e > INT64_MAX || e * eb > INT64_MAX;
}

/* a·b·c > INT64_MAX, for a, b, c >= 1. */
static bool product_overflows(int64_t a, int64_t b, int64_t c)
{
    const i128 ab = (i128)a * b;
    return ab > INT64_MAX || ab * c > INT64_MAX;
}

static int64_t resolve(int64_t ld, int64_t row) { return ld ? ld : row; }

static bool sizes_ok(const lgh_args_t *a)
{
    return a->m > 0 && a->k > 0 && a->n > 0 && a->groups > 0;
}

static bool dtype_ok(const lgh_args_t *a) { return (unsigned)a->dtype <= LGH_DTYPE_FLOAT16; }

/* The statuses the forward problem's arguments call for (0: none). need_y false: the
 * forward part of a backward call, whose y, ldy, mean, rstd, h and ldh are ignored. */
static unsigned forward_faults(const lgh_args_t *a, bool need_y)
{
    unsigned bad = 0;
    const bool sizes = sizes_ok(a);
    if (!sizes) bad |= ST(LGH_STATUS_INVALID_SIZE);
    else if (a->n % a->groups != 0) bad |= ST(LGH_STATUS_GROUPS_MISMATCH);
    if (!dtype_ok(a) || (unsigned)a->math > LGH_MATH_ACCURATE || (unsigned)a->engine >= LGH_ENGINE_COUNT)
        bad |= ST(LGH_STATUS_INVALID_VALUE);
    if (!(a->eps > 0.0f) || isinf(a->eps)) bad |= ST(LGH_STATUS_INVALID_EPS);
    if (isnan(a->lo) || isnan(a->hi) || a->lo > a->hi) bad |= ST(LGH_STATUS_INVALID_CLAMP);
    if (!a->x || !a->w || !a->bias || !a->gamma || !a->beta || (need_y && !a->y))
        bad |= ST(LGH_STATUS_NULL_POINTER);
    if (need_y && (a->mean == NULL) != (a->rstd == NULL)) bad |= ST(LGH_STATUS_NULL_POINTER);
    if (!sizes) return bad;
    const int64_t ldx = resolve(a->ldx, a->k), ldw = resolve(a->ldw, a->k);
    const int64_t ldy = need_y ? resolve(a->ldy, a->n) : a->n;
    const int64_t ldh = need_y && a->h ? resolve(a->ldh, a->n) : a->n;
    if (ldx < a->k || ldw < a->k || ldy < a->n || ldh < a->n)
        return bad | ST(LGH_STATUS_INVALID_LEADING_DIM);
    const int64_t eb = dtype_ok(a) ? (int64_t)elem_bytes(a->dtype) : 2;
    if (span_overflows(a->m, ldx, a->k, eb) || span_overflows(a->n, ldw, a->k, eb) ||
        span_overflows(a->m, ldy, a->n, eb) || product_overflows(a->m, a->n, a->k) ||
        product_overflows(a->m * a->n, a->k, 2) || product_overflows(a->m, a->groups, 4) ||
        (need_y && a->h && span_overflows(a->m, ldh, a->n, eb)))
        bad |= ST(LGH_STATUS_SIZE_OVERFLOW);
    return bad;
}

static bool want_grads(const lgh_backward_args_t *b)
{
    return b->dx || b->dw || b->dbias || b->dgamma || b->dbeta;
}

static unsigned backward_faults(const lgh_backward_args_t *b)
{
    const lgh_args_t *a = &b->fwd;
    unsigned bad = forward_faults(a, false);
    if (!b->dy || (b->mean == NULL) != (b->rstd == NULL) || !want_grads(b))
        bad |= ST(LGH_STATUS_NULL_POINTER);
    if (!sizes_ok(a) || (bad & (ST(LGH_STATUS_INVALID_LEADING_DIM) | ST(LGH_STATUS_SIZE_OVERFLOW))))
        return bad;
    const int64_t lddy = resolve(b->lddy, a->n), ldh = b->h ? resolve(b->ldh, a->n) : a->n;
    const int64_t lddx = b->dx ? resolve(b->lddx, a->k) : a->k;
    const int64_t lddw = b->dw ? resolve(b->lddw, a->k) : a->k;
    if (lddy < a->n || ldh < a->n || lddx < a->k || lddw < a->k)
        return bad | ST(LGH_STATUS_INVALID_LEADING_DIM);
    const int64_t eb = dtype_ok(a) ? (int64_t)elem_bytes(a->dtype) : 2;
    if (span_overflows(a->m, lddy, a->n, eb) || span_overflows(a->m, ldh, a->n, eb) ||
        span_overflows(a->m, lddx, a->k, eb) || span_overflows(a->n, lddw, a->k, eb))
        bad |= ST(LGH_STATUS_SIZE_OVERFLOW);
    return bad;
}

static lgh_engine_t env_engine = LGH_ENGINE_AUTO;

/* A GPU engine named by the arguments or LGH_ENGINE: ENGINE_UNAVAILABLE on the CPU. */
static bool gpu_forced(const lgh_args_t *a)
{
    const lgh_engine_t want = a->engine != LGH_ENGINE_AUTO ? a->engine : env_engine;
    return want != LGH_ENGINE_AUTO && want != LGH_ENGINE_CPU;
}

static bool verbose; /* LGH_FUZZ_VERBOSE=1: one line per call (reading a crash input) */

static void check_status(lgh_context_t ctx, const char *call, lgh_status_t s, unsigned bad,
                         bool gpu, bool may_not_support)
{
    if (verbose)
        fprintf(stderr, "  %s: %d %s%s%s (expected mask 0x%x%s)\n", call, (int)s,
                lgh_status_string(s), s ? ": " : "", s ? lgh_last_error(ctx) : "", bad,
                gpu ? ", GPU engine forced" : "");
    FUZZ_CHECK((unsigned)s <= LGH_STATUS_INTERNAL_ERROR, "%s returned %d", call, (int)s);
    FUZZ_CHECK(strcmp(lgh_status_string(s), "unknown status") != 0, "%s: status %d has no name",
               call, (int)s);
    if (bad) {
        FUZZ_CHECK(bad & ST(s), "%s returned %d (%s: %s), expected one of mask 0x%x", call, (int)s,
                   lgh_status_string(s), lgh_last_error(ctx), bad);
    } else if (gpu) {
        FUZZ_CHECK(s == LGH_STATUS_ENGINE_UNAVAILABLE, "%s returned %d (%s), expected %d", call,
                   (int)s, lgh_last_error(ctx), LGH_STATUS_ENGINE_UNAVAILABLE);
    } else {
        FUZZ_CHECK(s == LGH_STATUS_SUCCESS || (may_not_support && s == LGH_STATUS_NOT_SUPPORTED),
                   "%s returned %d (%s) for valid arguments", call, (int)s, lgh_last_error(ctx));
    }
    if (s != LGH_STATUS_SUCCESS) {
        const char *msg = lgh_last_error(ctx);
        FUZZ_CHECK(msg && msg[0], "%s failed with %d and an empty lgh_last_error", call, (int)s);
        FUZZ_CHECK(strlen(msg) < 4096, "%s: message not terminated", call);
    }
}

/* ---- one execution ------------------------------------------------------------------------ */

enum { FX, FW, FB, FG, FBE, FY, FMEAN, FRSTD, FH,      /* the forward's */
       BDY, BMEAN, BRSTD, BH, BDX, BDW, BDB, BDG, BDBE, /* the backward's own */
       NBUF };

typedef struct exec {
    lgh_context_t ctx;
    pool_t pool;
    lgh_args_t a;          /* the forward call */
    lgh_backward_args_t b; /* the backward call */
    buf_t buf[NBUF];
    bool fwd_real, bwd_real; /* exact buffers (accepted and small); else 1-byte decoys */
} exec_t;

/* A caller's workspace: mode 0 none (the context's), 1 exactly `need` bytes, 2 one byte
 * short (*short_ws), 3 more than needed; at an offset of 0..63 bytes from malloc's. */
typedef struct ws {
    uint8_t *base;
    void *ptr;
    size_t bytes;
} ws_t;

static void ws_make(ws_t *w, uint8_t mode, uint8_t offset, size_t need, bool *short_ws)
{
    memset(w, 0, sizeof *w);
    *short_ws = false;
    switch (mode % 4) {
    case 0: return;
    case 1: w->bytes = need; break;
    case 2:
        if (need == 0) return;
        w->bytes = need - 1;
        *short_ws = true;
        break;
    default: w->bytes = need + 1 + offset; break;
    }
    const size_t off = offset % 64;
    w->base = malloc(off + w->bytes ? off + w->bytes : 1); /* nothing usable past the end */
    FUZZ_CHECK(w->base, "out of memory for a workspace of %zu bytes", w->bytes);
    w->ptr = w->base + off;
}

static void snapshot_all(exec_t *e)
{
    for (int i = 0; i < NBUF; ++i)
        if (e->buf[i].p) memcpy(e->buf[i].snap, e->buf[i].p, e->buf[i].bytes);
}

static void check_forward_outputs(const exec_t *e)
{
    const lgh_args_t *a = &e->a;
    const buf_t *y = &e->buf[FY];
    const float lo = round_to(a->dtype, a->lo), hi = round_to(a->dtype, a->hi);
    for (int64_t r = 0; r < a->m; ++r)
        for (int64_t c = 0; c < a->n; ++c) {
            const float v = load_value(a->dtype, y->p, (size_t)(r * y->ld + c));
            FUZZ_CHECK(isnan(v) || (v >= lo && v <= hi), "y[%lld,%lld]=%g outside [%g, %g]",
                       (long long)r, (long long)c, (double)v, (double)lo, (double)hi);
        }
    FUZZ_CHECK(gaps_same(y), "y: padding between rows written (ldy=%lld, N=%lld)",
               (long long)y->ld, (long long)a->n);
    FUZZ_CHECK(gaps_same(&e->buf[FH]), "h: padding between rows written");
    if (a->rstd) {
        for (int64_t i = 0; i < a->m * a->groups; ++i)
            FUZZ_CHECK(isnan(a->rstd[i]) || a->rstd[i] >= 0.0f, "rstd[%lld]=%g", (long long)i,
                       (double)a->rstd[i]);
    }
    for (int i = FX; i <= FBE; ++i) FUZZ_CHECK(buf_same(&e->buf[i]), "lgh_forward wrote input %d", i);
}

static uint8_t *dup_bytes(const buf_t *b)
{
    if (!b->p) return NULL;
    uint8_t *c = malloc(b->bytes ? b->bytes : 1);
    FUZZ_CHECK(c, "out of memory");
    memcpy(c, b->p, b->bytes);
    return c;
}

static bool same_bytes(const buf_t *b, const uint8_t *copy)
{
    return !b->p || memcmp(b->p, copy, b->bytes) == 0;
}

/* Runs the call again with the other kind of workspace (the context's if the first run
 * had the caller's, else a caller's of the planned size); the buffers in `which` must
 * come out bitwise the same. */
static void rerun_same(exec_t *e, bool backward, const ws_t *first, size_t ws_need,
                       const int *which, int count)
{
    uint8_t *copy[5];
    for (int i = 0; i < count; ++i) copy[i] = dup_bytes(&e->buf[which[i]]);
    void *ws2 = NULL;
    size_t ws2_bytes = 0;
    if (!first->ptr && ws_need != (size_t)-1) {
        ws2 = malloc(ws_need ? ws_need : 1);
        ws2_bytes = ws_need;
    }
    const lgh_status_t s = backward ? lgh_backward(e->ctx, &e->b, ws2, ws2_bytes, NULL)
                                    : lgh_forward(e->ctx, &e->a, ws2, ws2_bytes, NULL);
    FUZZ_CHECK(s == LGH_STATUS_SUCCESS, "second run: %d (%s)", (int)s, lgh_last_error(e->ctx));
    for (int i = 0; i < count; ++i)
        FUZZ_CHECK(same_bytes(&e->buf[which[i]], copy[i]), "%s: buffer %d differs between runs",
                   backward ? "lgh_backward" : "lgh_forward", which[i]);
    free(ws2);
    for (int i = 0; i < count; ++i) free(copy[i]);
}

static void run_forward(exec_t *e, fuzz_reader_t *r, uint8_t flags)
{
    lgh_args_t *a = &e->a;
    lgh_context_t ctx = e->ctx;
    const unsigned bad = forward_faults(a, true);
    const bool gpu = gpu_forced(a);

    /* the plan first: its status is the call's, and it touches no memory */
    const uint8_t pf = fuzz_u8(r);
    lgh_engine_t engine = (lgh_engine_t)99;
    size_t ws_need = (size_t)-1;
    const lgh_status_t ps = lgh_plan(ctx, a, pf & 1 ? NULL : &engine, pf & 2 ? NULL : &ws_need);
    check_status(ctx, "lgh_plan", ps, bad, gpu, !e->fwd_real);
    if (ps == LGH_STATUS_SUCCESS) {
        if (!(pf & 1)) FUZZ_CHECK(engine == LGH_ENGINE_CPU, "lgh_plan chose engine %d", (int)engine);
    } else {
        FUZZ_CHECK(engine == (lgh_engine_t)99 && ws_need == (size_t)-1,
                   "lgh_plan wrote its outputs on a refusal");
    }

    /* lgh_tune_cached checks the arguments as lgh_plan does (engine choice aside) */
    lgh_engine_t cached = (lgh_engine_t)99;
    float ms = -1.0f;
    lgh_status_t s = lgh_tune_cached(ctx, a, &cached, pf & 4 ? NULL : &ms);
    check_status(ctx, "lgh_tune_cached", s, bad, false, false);
    if (s == LGH_STATUS_SUCCESS)
        FUZZ_CHECK(cached == LGH_ENGINE_AUTO, "untuned problem cached as engine %d", (int)cached);

    const bool runnable = !bad && !gpu && e->fwd_real;
    if (!bad && !gpu && !runnable) return; /* accepted but too large to run here */

    ws_t w;
    bool short_ws;
    ws_make(&w, fuzz_u8(r), fuzz_u8(r), ps == LGH_STATUS_SUCCESS && !(pf & 2) ? ws_need : 0,
            &short_ws);
    if (ps == LGH_STATUS_SUCCESS && (pf & 2)) short_ws = false, w.ptr = NULL; /* size unknown */
    s = lgh_forward(ctx, a, w.ptr, w.bytes, NULL);
    if (short_ws && runnable) {
        check_status(ctx, "lgh_forward (short workspace)", s, ST(LGH_STATUS_WORKSPACE_TOO_SMALL),
                     false, false);
    } else {
        check_status(ctx, "lgh_forward", s, bad, gpu, false);
        FUZZ_CHECK(s == ps, "lgh_forward returned %d, lgh_plan %d", (int)s, (int)ps);
    }
    if (s != LGH_STATUS_SUCCESS) {
        for (int i = FX; i <= FH; ++i)
            FUZZ_CHECK(buf_same(&e->buf[i]), "lgh_forward refused (%d) but wrote buffer %d", (int)s, i);
    } else {
        check_forward_outputs(e);
        if (flags & 8) {
            static const int outs[] = {FY, FMEAN, FRSTD, FH};
            rerun_same(e, false, &w, ws_need, outs, 4);
        }
    }
    free(w.base);

    /* lgh_tune on a small accepted problem (times the CPU engine; y is overwritten) */
    if (runnable && (flags & 32)) {
        const uint8_t t = fuzz_u8(r);
        const int capacity = (int)(t % 4) - 1;
        lgh_tune_result_t results[4];
        lgh_engine_t chosen = (lgh_engine_t)99;
        int count = -5;
        s = lgh_tune(ctx, a, NULL, NULL, NULL, t & 4 ? NULL : &chosen, t & 8 ? NULL : results,
                     capacity, t & 16 ? NULL : &count);
        unsigned tb = 0;
        if (capacity < 0) tb = ST(LGH_STATUS_INVALID_VALUE);
        else if (capacity > 0 && (t & 8)) tb = ST(LGH_STATUS_NULL_POINTER);
        check_status(ctx, "lgh_tune", s, tb, false, false);
        if (s == LGH_STATUS_SUCCESS) {
            if (!(t & 4)) FUZZ_CHECK(chosen == LGH_ENGINE_CPU, "lgh_tune chose %d", (int)chosen);
            if (!(t & 16)) FUZZ_CHECK(count == 1, "lgh_tune tried %d engines", count);
            if (capacity > 0)
                FUZZ_CHECK(results[0].engine == LGH_ENGINE_CPU &&
                               results[0].status == LGH_STATUS_SUCCESS && results[0].ms >= 0.0f,
                           "lgh_tune result %d %d %g", (int)results[0].engine,
                           (int)results[0].status, (double)results[0].ms);
            cached = (lgh_engine_t)99;
            s = lgh_tune_cached(ctx, a, &cached, &ms);
            FUZZ_CHECK(s == LGH_STATUS_SUCCESS && cached == LGH_ENGINE_CPU && ms >= 0.0f,
                       "lgh_tune_cached after lgh_tune: %d engine %d ms %g", (int)s, (int)cached,
                       (double)ms);
        }
    }
}

static void run_backward(exec_t *e, fuzz_reader_t *r, uint8_t flags)
{
    lgh_backward_args_t *b = &e->b;
    lgh_context_t ctx = e->ctx;
    const unsigned bad = backward_faults(b);
    const bool gpu = gpu_forced(&b->fwd);

    const uint8_t pf = fuzz_u8(r);
    lgh_engine_t engine = (lgh_engine_t)99;
    size_t ws_need = (size_t)-1;
    const lgh_status_t ps =
        lgh_backward_plan(ctx, b, pf & 1 ? NULL : &engine, pf & 2 ? NULL : &ws_need);
    check_status(ctx, "lgh_backward_plan", ps, bad, gpu, !e->bwd_real);
    if (ps == LGH_STATUS_SUCCESS) {
        if (!(pf & 1))
            FUZZ_CHECK(engine == LGH_ENGINE_CPU, "lgh_backward_plan chose engine %d", (int)engine);
    } else {
        FUZZ_CHECK(engine == (lgh_engine_t)99 && ws_need == (size_t)-1,
                   "lgh_backward_plan wrote its outputs on a refusal");
    }
    const bool runnable = !bad && !gpu && e->bwd_real;
    if (!bad && !gpu && !runnable) return;

    snapshot_all(e);
    ws_t w;
    bool short_ws;
    ws_make(&w, fuzz_u8(r), fuzz_u8(r), ps == LGH_STATUS_SUCCESS && !(pf & 2) ? ws_need : 0,
            &short_ws);
    if (ps == LGH_STATUS_SUCCESS && (pf & 2)) short_ws = false, w.ptr = NULL;
    const lgh_status_t s = lgh_backward(ctx, b, w.ptr, w.bytes, NULL);
    if (short_ws && runnable) {
        check_status(ctx, "lgh_backward (short workspace)", s, ST(LGH_STATUS_WORKSPACE_TOO_SMALL),
                     false, false);
    } else {
        check_status(ctx, "lgh_backward", s, bad, gpu, false);
        FUZZ_CHECK(s == ps, "lgh_backward returned %d, lgh_backward_plan %d", (int)s, (int)ps);
    }
    for (int i = FX; i <= BH; ++i) FUZZ_CHECK(buf_same(&e->buf[i]), "lgh_backward wrote input %d", i);
    if (s != LGH_STATUS_SUCCESS) {
        for (int i = BDX; i <= BDBE; ++i)
            FUZZ_CHECK(buf_same(&e->buf[i]), "lgh_backward refused (%d) but wrote gradient %d",
                       (int)s, i);
    } else {
        FUZZ_CHECK(gaps_same(&e->buf[BDX]) && gaps_same(&e->buf[BDW]),
                   "lgh_backward wrote the padding of dx or dW");
        if (flags & 8) { /* dW, db, dγ, dβ are deterministic (lgh.h) */
            static const int grads[] = {BDW, BDB, BDG, BDBE};
            rerun_same(e, true, &w, ws_need, grads, 4);
        }
    }
    free(w.base);
}

/* The small helpers: names, engine lookup, kernel info, cache file, context creation. */
static void run_misc(exec_t *e, fuzz_reader_t *r)
{
    lgh_context_t ctx = e->ctx;
    FUZZ_CHECK(lgh_version() == LGH_VERSION, "version %d", lgh_version());
    FUZZ_CHECK(lgh_status_string((lgh_status_t)(int)fuzz_u32(r)) != NULL, "status string");
    FUZZ_CHECK(lgh_dtype_name((lgh_dtype_t)(int)fuzz_u32(r)) != NULL, "dtype name");
    FUZZ_CHECK(lgh_math_name((lgh_math_t)(int)fuzz_u32(r)) != NULL, "math name");
    const int eid = enum_value(r, LGH_ENGINE_COUNT);
    FUZZ_CHECK(lgh_engine_name((lgh_engine_t)eid) != NULL, "engine name");
    const int avail = lgh_engine_available(ctx, (lgh_engine_t)eid);
    FUZZ_CHECK(avail == (eid == LGH_ENGINE_CPU), "lgh_engine_available(%d) = %d", eid, avail);
    FUZZ_CHECK(lgh_engine_available(NULL, LGH_ENGINE_CPU) == 0, "available without a context");

    char name[16];
    const size_t len = fuzz_u8(r) % sizeof name;
    for (size_t i = 0; i < len; ++i) name[i] = (char)fuzz_u8(r);
    name[len] = '\0';
    lgh_engine_t en = (lgh_engine_t)99;
    lgh_status_t s = lgh_engine_from_name(name, &en);
    bool known = false;
    for (int i = 0; i < LGH_ENGINE_COUNT; ++i)
        if (!strcmp(name, lgh_engine_name((lgh_engine_t)i))) known = true;
    FUZZ_CHECK(s == (known ? LGH_STATUS_SUCCESS : LGH_STATUS_INVALID_VALUE),
               "lgh_engine_from_name(\"%s\") = %d", name, (int)s);
    if (known) FUZZ_CHECK(!strcmp(lgh_engine_name(en), name), "engine name round trip");
    FUZZ_CHECK(lgh_engine_from_name(NULL, &en) == LGH_STATUS_NULL_POINTER, "from_name(NULL)");
    FUZZ_CHECK(lgh_engine_from_name(name, NULL) == LGH_STATUS_NULL_POINTER, "from_name(, NULL)");

    lgh_kernel_info_t info[2];
    int count = -7;
    const int cap = (int)(fuzz_u8(r) % 5) - 2;
    const uint8_t kf = fuzz_u8(r);
    s = lgh_kernel_info(ctx, kf & 1 ? NULL : info, cap, kf & 2 ? NULL : &count);
    if (kf & 2)
        FUZZ_CHECK(s == LGH_STATUS_NULL_POINTER, "lgh_kernel_info without count: %d", (int)s);
    else if (cap > 0 && (kf & 1))
        FUZZ_CHECK(s == LGH_STATUS_NULL_POINTER, "lgh_kernel_info(NULL, %d): %d", cap, (int)s);
    else
        FUZZ_CHECK(s == LGH_STATUS_SUCCESS && count == 0, "lgh_kernel_info on the CPU: %d, %d",
                   (int)s, count);

    char path[64];
    path[0] = 'x';
    const size_t plen = fuzz_u8(r) % (sizeof path + 1);
    s = lgh_tune_cache_file(ctx, kf & 4 ? NULL : path, plen);
    if ((kf & 4) || plen == 0)
        FUZZ_CHECK(s == LGH_STATUS_NULL_POINTER, "lgh_tune_cache_file: %d", (int)s);
    else
        FUZZ_CHECK(s == LGH_STATUS_NOT_SUPPORTED && path[0] == '\0',
                   "lgh_tune_cache_file with LGH_CACHE=0: %d", (int)s);

    FUZZ_CHECK(lgh_context_device(ctx) == LGH_DEVICE_CPU, "device");
    FUZZ_CHECK(lgh_device_description(ctx)[0] != '\0', "description");
    FUZZ_CHECK(lgh_cpu_blas_name() && lgh_cpu_blas_name()[0], "blas name");

    lgh_args_init(NULL, 1, 1, 1, 1);
    lgh_backward_args_init(NULL, 1, 1, 1, 1);
    FUZZ_CHECK(lgh_destroy(NULL) == LGH_STATUS_SUCCESS, "lgh_destroy(NULL)");
    FUZZ_CHECK(lgh_create(NULL, LGH_DEVICE_CPU) == LGH_STATUS_NULL_POINTER, "lgh_create(NULL)");
    const int device = (int)fuzz_u32(r);
    lgh_context_t c2 = (lgh_context_t)&count;
    s = lgh_create(&c2, device);
    if (device < LGH_DEVICE_CPU)
        FUZZ_CHECK(s == LGH_STATUS_INVALID_VALUE, "lgh_create(%d): %d", device, (int)s);
    if (s == LGH_STATUS_SUCCESS) {
        lgh_destroy(c2);
    } else {
        FUZZ_CHECK(c2 == NULL, "a failed lgh_create left *ctx set");
        FUZZ_CHECK(lgh_last_error(NULL)[0] != '\0', "a failed lgh_create left no message");
    }
}

/* Which of six pointers is NULL: usually none, sometimes one or two. */
static unsigned null_mask(fuzz_reader_t *r)
{
    const uint8_t s = fuzz_u8(r);
    if (s < 200) return 0;
    unsigned m = 1u << (s % 6);
    if (s >= 240) m |= 1u << (fuzz_u8(r) % 6);
    return m;
}

/* LGH_ENGINE and LGH_TUNE for the context about to be made; false when LGH_ENGINE names
 * no engine (lgh_create must refuse it). */
static bool setup_env(fuzz_reader_t *r)
{
    static const char *const engines[] = {"auto", "cpu", "cublaslt", "sm80", "sm90", ""};
    const uint8_t s = fuzz_u8(r);
    bool valid = true;
    env_engine = LGH_ENGINE_AUTO;
    if (s < 208) {
        unsetenv("LGH_ENGINE");
    } else if (s < 250) {
        const char *name = engines[s % 6];
        setenv("LGH_ENGINE", name, 1);
        if (name[0]) lgh_engine_from_name(name, &env_engine);
    } else {
        setenv("LGH_ENGINE", s & 1 ? "CPU" : "bogus", 1);
        valid = false;
    }
    if (fuzz_u8(r) >= 250)
        setenv("LGH_TUNE", "1", 1);
    else
        unsetenv("LGH_TUNE");
    return valid;
}

/* The calls with no context or no arguments: NULL_POINTER before anything else. */
static void run_null(exec_t *e, uint8_t ctx_mode)
{
    lgh_engine_t en;
    if (ctx_mode == 255) {
        FUZZ_CHECK(lgh_plan(NULL, &e->a, &en, NULL) == LGH_STATUS_NULL_POINTER, "lgh_plan(NULL)");
        FUZZ_CHECK(lgh_forward(NULL, &e->a, NULL, 0, NULL) == LGH_STATUS_NULL_POINTER,
                   "lgh_forward(NULL)");
        FUZZ_CHECK(lgh_backward_plan(NULL, &e->b, &en, NULL) == LGH_STATUS_NULL_POINTER,
                   "lgh_backward_plan(NULL)");
        FUZZ_CHECK(lgh_backward(NULL, &e->b, NULL, 0, NULL) == LGH_STATUS_NULL_POINTER,
                   "lgh_backward(NULL)");
        FUZZ_CHECK(lgh_tune_cached(NULL, &e->a, &en, NULL) == LGH_STATUS_NULL_POINTER,
                   "lgh_tune_cached(NULL)");
        FUZZ_CHECK(lgh_tune(NULL, &e->a, NULL, NULL, NULL, NULL, NULL, 0, NULL) ==
                       LGH_STATUS_NULL_POINTER,
                   "lgh_tune(NULL)");
        FUZZ_CHECK(lgh_last_error(e->ctx)[0] == '\0', "a message on a context not passed");
    } else {
        const unsigned np = ST(LGH_STATUS_NULL_POINTER);
        lgh_context_t c = e->ctx;
        check_status(c, "lgh_plan", lgh_plan(c, NULL, &en, NULL), np, false, false);
        check_status(c, "lgh_forward", lgh_forward(c, NULL, NULL, 0, NULL), np, false, false);
        check_status(c, "lgh_backward_plan", lgh_backward_plan(c, NULL, &en, NULL), np, false, false);
        check_status(c, "lgh_backward", lgh_backward(c, NULL, NULL, 0, NULL), np, false, false);
        check_status(c, "lgh_tune_cached", lgh_tune_cached(c, NULL, &en, NULL), np, false, false);
        check_status(c, "lgh_tune_cached", lgh_tune_cached(c, &e->a, NULL, NULL), np, false, false);
        check_status(c, "lgh_tune", lgh_tune(c, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL), np,
                     false, false);
    }
    for (int i = 0; i < NBUF; ++i) FUZZ_CHECK(buf_same(&e->buf[i]), "buffer %d written", i);
}

/* The leading dimension a buffer gets: the given one where the matrix is used, else
 * packed (an unused matrix's ld is ignored by lgh, whatever it is). */
static int64_t buf_ld(bool used, int64_t ld, int64_t row)
{
    return used ? resolve(ld, row) : row;
}

enum { M_X, M_W, M_Y, M_H, M_DY, M_BH, M_DX, M_DW, M_COUNT };

/* Whether the problem's buffers and product are small enough to run (sizes >= 1). */
static bool small_problem(const lgh_args_t *a, const lgh_backward_args_t *b, const bool *used,
                          size_t eb)
{
    const int64_t m = a->m, k = a->k, n = a->n;
    if (m > RUN_MAX_MNK || k > RUN_MAX_MNK || n > RUN_MAX_MNK || a->groups > RUN_MAX_MNK ||
        (i128)m * n * k > RUN_MAX_MNK)
        return false;
    const int64_t lds[M_COUNT] = {a->ldx, a->ldw, a->ldy, a->ldh, b->lddy, b->ldh, b->lddx, b->lddw};
    const int64_t rows[M_COUNT] = {m, n, m, m, m, m, m, n};
    const int64_t cols[M_COUNT] = {k, k, n, n, n, n, k, k};
    i128 bytes = (i128)n * 5 * (i128)eb + (i128)m * a->groups * 16;
    for (int i = 0; i < M_COUNT; ++i) {
        const int64_t ld = buf_ld(used[i], lds[i], cols[i]);
        if (ld < cols[i]) continue; /* refused: no buffer */
        const i128 elems = (i128)(rows[i] - 1) * ld + cols[i];
        if (elems > RUN_MAX_BYTES) return false;
        bytes += elems * (i128)eb;
    }
    return bytes <= RUN_MAX_BYTES;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    setenv("LGH_CACHE", "0", 1); /* the tuner's file stays untouched (fuzz_cache covers it) */
    verbose = getenv("LGH_FUZZ_VERBOSE") && !strcmp(getenv("LGH_FUZZ_VERBOSE"), "1");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader_t r = {data, size, 0};
    static exec_t e; /* large: kept off the stack, zeroed for each input */
    memset(&e, 0, sizeof e);
    static char dummy; /* stands for a non-NULL pointer until the buffers are made */

    const uint8_t flags = fuzz_u8(&r); /* 1 fwd, 2 bwd, 4 chain, 8 rerun, 16 misc, 32 tune */
    const uint8_t ctx_mode = fuzz_u8(&r);
    const bool env_ok = setup_env(&r);
    lgh_status_t s = lgh_create(&e.ctx, LGH_DEVICE_CPU);
    if (!env_ok) {
        FUZZ_CHECK(s == LGH_STATUS_INVALID_VALUE && e.ctx == NULL, "LGH_ENGINE=%s: %d",
                   getenv("LGH_ENGINE"), (int)s);
        FUZZ_CHECK(lgh_last_error(NULL)[0] != '\0', "lgh_create refused without a message");
        return 0;
    }
    FUZZ_CHECK(s == LGH_STATUS_SUCCESS && e.ctx, "lgh_create(CPU): %d %s", (int)s,
               lgh_last_error(NULL));

    /* ---- the forward problem ---- */
    lgh_args_t *a = &e.a;
    {
        const int64_t m = dim(&r), k = dim(&r), n = dim(&r);
        lgh_args_init(a, m, k, n, 1);
    }
    a->groups = groups_for(&r, a->n);
    a->dtype = (lgh_dtype_t)enum_value(&r, 3);
    a->math = (lgh_math_t)enum_value(&r, 5);
    if (fuzz_u8(&r) >= 192) a->engine = (lgh_engine_t)enum_value(&r, LGH_ENGINE_COUNT);
    const uint8_t se = fuzz_u8(&r);
    a->eps = se < 160 ? 1e-5f : se < 192 ? (float)(se % 8 + 1) * 1e-3f : special_float(&r, se);
    const uint8_t sc = fuzz_u8(&r);
    if (sc < 160) {
        a->lo = -0.5f * (float)(1 + sc % 4);
        a->hi = 0.5f * (float)(1 + (sc / 4) % 4);
    } else {
        a->lo = special_float(&r, fuzz_u8(&r));
        a->hi = special_float(&r, fuzz_u8(&r));
    }
    a->ldx = lead(&r, a->k);
    a->ldw = lead(&r, a->k);
    a->ldy = lead(&r, a->n);
    a->ldh = lead(&r, a->n);
    const uint8_t opt = fuzz_u8(&r); /* 1 mean and rstd, 4 h; >= 248: one of the two alone */
    bool want_mean = opt & 1, want_rstd = opt & 1;
    if (opt >= 248) want_mean = opt & 2, want_rstd = !want_mean;
    const bool want_h = opt & 4;
    const unsigned fnull = null_mask(&r); /* x w b γ β y */

    /* ---- the backward problem: the same forward problem, its own pointers ---- */
    lgh_backward_args_t *b = &e.b;
    const uint8_t sy = fuzz_u8(&r);
    const int64_t bwd_ldy = sy < 224 ? a->ldy : special_i64(&r, sy); /* ignored */
    const bool bwd_fwd_outputs = sy & 1; /* the forward's y, mean, h (ignored) */
    const int64_t bwd_fwd_ldh = special_i64(&r, fuzz_u8(&r));         /* ignored */
    b->lddy = lead(&r, a->n);
    b->ldh = lead(&r, a->n);
    b->lddx = lead(&r, a->k);
    b->lddw = lead(&r, a->k);
    const uint8_t grads = fuzz_u8(&r); /* dx dw db dγ dβ; none (refused) is rare */
    const unsigned gmask = (grads & 31) ? (grads & 31u) : grads < 128 ? 31u : 0u;
    const uint8_t bopt = fuzz_u8(&r); /* 1 mean and rstd, 4 h, 8 the forward's h, mean, rstd */
    bool bwd_mean = bopt & 1, bwd_rstd = bopt & 1;
    if (bopt >= 248) bwd_mean = bopt & 2, bwd_rstd = !bwd_mean;
    const unsigned bnull = null_mask(&r); /* x w b γ β dy */
    const bool chain_wanted = (flags & 4) && (bopt & 8) && want_h;
    if (chain_wanted) b->ldh = a->ldh;

    const uint8_t value_mode = fuzz_u8(&r);
    e.pool = (pool_t){data + r.pos, size - r.pos, 0, value_mode, 0};
    pool_t *pool = &e.pool;

    /* ---- what the contract says, with stand-in pointers ---- */
    const void *fptr[6] = {0};
    for (int i = 0; i < 6; ++i) fptr[i] = fnull & (1u << i) ? NULL : &dummy;
    a->x = fptr[0], a->w = fptr[1], a->bias = fptr[2], a->gamma = fptr[3], a->beta = fptr[4];
    a->y = (void *)fptr[5];
    a->mean = want_mean ? (float *)&dummy : NULL;
    a->rstd = want_rstd ? (float *)&dummy : NULL;
    a->h = want_h ? (void *)&dummy : NULL;
    b->fwd = *a;
    b->fwd.ldy = bwd_ldy;
    b->fwd.ldh = bwd_fwd_ldh;
    if (!bwd_fwd_outputs) b->fwd.y = NULL, b->fwd.mean = b->fwd.rstd = NULL, b->fwd.h = NULL;
    b->fwd.x = bnull & 1 ? NULL : &dummy;
    b->fwd.w = bnull & 2 ? NULL : &dummy;
    b->fwd.bias = bnull & 4 ? NULL : &dummy;
    b->fwd.gamma = bnull & 8 ? NULL : &dummy;
    b->fwd.beta = bnull & 16 ? NULL : &dummy;
    b->dy = bnull & 32 ? NULL : &dummy;
    b->h = (bopt & 4) || chain_wanted ? &dummy : NULL;
    b->mean = bwd_mean ? (const float *)&dummy : NULL;
    b->rstd = bwd_rstd ? (const float *)&dummy : NULL;
    void *const gd = &dummy;
    b->dx = gmask & 1 ? gd : NULL, b->dw = gmask & 2 ? gd : NULL, b->dbias = gmask & 4 ? gd : NULL;
    b->dgamma = gmask & 8 ? gd : NULL, b->dbeta = gmask & 16 ? gd : NULL;

    const size_t eb = dtype_ok(a) ? elem_bytes(a->dtype) : 4;
    const bool used[M_COUNT] = {true, true, true, want_h, true, b->h != NULL,
                                b->dx != NULL, b->dw != NULL};
    const bool small = sizes_ok(a) && small_problem(a, b, used, eb);
    e.fwd_real = small && !forward_faults(a, true) && !gpu_forced(a) && (flags & 3) != 2;
    e.bwd_real = small && !backward_faults(b) && !gpu_forced(&b->fwd) && (flags & 2);
    const bool chain = chain_wanted && e.fwd_real && e.bwd_real;

    /* ---- buffers: exact where a call runs, decoys elsewhere ---- */
    buf_t *B = e.buf;
    const int64_t m = a->m, k = a->k, n = a->n, mg = a->m * (e.fwd_real || e.bwd_real ? a->groups : 1);
    if (e.fwd_real || e.bwd_real) {
        buf_matrix(&B[FX], m, k, buf_ld(true, a->ldx, k), eb);
        buf_matrix(&B[FW], n, k, buf_ld(true, a->ldw, k), eb);
        for (int i = FB; i <= FBE; ++i) buf_matrix(&B[i], 1, n, n, eb);
        for (int i = FX; i <= FBE; ++i) buf_fill(&B[i], pool, a->dtype);
    } else {
        for (int i = FX; i <= FBE; ++i) buf_decoy(&B[i], pool);
    }
    if (e.fwd_real) {
        buf_matrix(&B[FY], m, n, buf_ld(true, a->ldy, n), eb);
        buf_matrix(&B[FMEAN], 1, mg, mg, 4);
        buf_matrix(&B[FRSTD], 1, mg, mg, 4);
        buf_matrix(&B[FH], m, n, buf_ld(used[M_H], a->ldh, n), eb);
        for (int i = FY; i <= FH; ++i) buf_poison(&B[i], 0xff);
    } else {
        for (int i = FY; i <= FH; ++i) buf_decoy(&B[i], pool);
    }
    if (e.bwd_real) {
        buf_matrix(&B[BDY], m, n, buf_ld(true, b->lddy, n), eb);
        buf_matrix(&B[BMEAN], 1, mg, mg, 4);
        buf_matrix(&B[BRSTD], 1, mg, mg, 4);
        buf_matrix(&B[BH], m, n, buf_ld(used[M_BH], b->ldh, n), eb);
        buf_fill(&B[BDY], pool, a->dtype);
        buf_fill(&B[BMEAN], pool, LGH_DTYPE_FLOAT32);
        buf_fill(&B[BRSTD], pool, LGH_DTYPE_FLOAT32);
        buf_fill(&B[BH], pool, a->dtype);
        buf_matrix(&B[BDX], m, k, buf_ld(used[M_DX], b->lddx, k), eb);
        buf_matrix(&B[BDW], n, k, buf_ld(used[M_DW], b->lddw, k), eb);
        for (int i = BDB; i <= BDBE; ++i) buf_matrix(&B[i], 1, n, n, eb);
        for (int i = BDX; i <= BDBE; ++i) buf_poison(&B[i], 0xfe);
    } else {
        for (int i = BDY; i <= BDBE; ++i) buf_decoy(&B[i], pool);
    }

    /* ---- the real pointers, NULL where the stand-ins were ---- */
    a->x = a->x ? B[FX].p : NULL, a->w = a->w ? B[FW].p : NULL;
    a->bias = a->bias ? B[FB].p : NULL, a->gamma = a->gamma ? B[FG].p : NULL;
    a->beta = a->beta ? B[FBE].p : NULL, a->y = a->y ? B[FY].p : NULL;
    a->mean = a->mean ? (float *)B[FMEAN].p : NULL, a->rstd = a->rstd ? (float *)B[FRSTD].p : NULL;
    a->h = a->h ? B[FH].p : NULL;
    lgh_args_t *f = &b->fwd;
    f->x = f->x ? B[FX].p : NULL, f->w = f->w ? B[FW].p : NULL;
    f->bias = f->bias ? B[FB].p : NULL, f->gamma = f->gamma ? B[FG].p : NULL;
    f->beta = f->beta ? B[FBE].p : NULL, f->y = f->y ? B[FY].p : NULL;
    f->mean = f->mean ? (float *)B[FMEAN].p : NULL, f->rstd = f->rstd ? (float *)B[FRSTD].p : NULL;
    f->h = f->h ? B[FH].p : NULL;
    b->dy = b->dy ? B[BDY].p : NULL;
    if (chain) { /* what this forward saved */
        b->h = B[FH].p;
        b->mean = b->mean ? (const float *)B[FMEAN].p : NULL;
        b->rstd = b->rstd ? (const float *)B[FRSTD].p : NULL;
    } else {
        b->h = b->h ? B[BH].p : NULL;
        b->mean = b->mean ? (const float *)B[BMEAN].p : NULL;
        b->rstd = b->rstd ? (const float *)B[BRSTD].p : NULL;
    }
    b->dx = b->dx ? B[BDX].p : NULL, b->dw = b->dw ? B[BDW].p : NULL;
    b->dbias = b->dbias ? B[BDB].p : NULL, b->dgamma = b->dgamma ? B[BDG].p : NULL;
    b->dbeta = b->dbeta ? B[BDBE].p : NULL;

    if (verbose)
        fprintf(stderr,
                "flags 0x%x: M=%lld K=%lld N=%lld G=%lld dtype %d math %d engine %d eps %g "
                "lo %g hi %g ldx %lld ldw %lld ldy %lld ldh %lld mean %d rstd %d h %d | "
                "backward: ldy %lld lddy %lld ldh %lld lddx %lld lddw %lld grads 0x%x "
                "mean %d rstd %d h %d chain %d | real: fwd %d bwd %d\n",
                flags, (long long)a->m, (long long)a->k, (long long)a->n, (long long)a->groups,
                (int)a->dtype, (int)a->math, (int)a->engine, (double)a->eps, (double)a->lo,
                (double)a->hi, (long long)a->ldx, (long long)a->ldw, (long long)a->ldy,
                (long long)a->ldh, !!a->mean, !!a->rstd, !!a->h, (long long)b->fwd.ldy,
                (long long)b->lddy, (long long)b->ldh, (long long)b->lddx, (long long)b->lddw,
                gmask, !!b->mean, !!b->rstd, !!b->h, chain, e.fwd_real, e.bwd_real);
    if (ctx_mode >= 254) {
        run_null(&e, ctx_mode);
    } else {
        if (flags & 16) run_misc(&e, &r);
        if ((flags & 3) != 2) run_forward(&e, &r, flags);
        if (flags & 2) run_backward(&e, &r, flags);
    }

    for (int i = 0; i < NBUF; ++i) buf_free(&e.buf[i]);
    lgh_destroy(e.ctx);
    return 0;
}
