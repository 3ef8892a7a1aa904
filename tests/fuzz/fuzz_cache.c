/*
 * fuzz_cache: libFuzzer target over the tuning-cache file parser (src/core/tune_file.c).
 *
 * The parser is reached only through a file, so each input becomes the cache file of a
 * CPU context: LGH_CACHE=1, XDG_CACHE_HOME a temporary directory of this process (under
 * /dev/shm when it exists, else $TMPDIR or /tmp; removed at exit), the file at the path
 * lgh_tune_cache_file() names. The first input byte chooses how the file is made:
 *
 *   bits 0-1: 0, 3  the right header ("lgh-tune-cache 1", "key <this CPU's key>"), then
 *                   the rest of the input as entry lines (what the fuzzer mostly explores);
 *             1     the right first line, then the rest (the key line fuzzed too);
 *             2     the rest of the input alone;
 *   bit 2:    no file at all (the rest of the input is ignored);
 *   bit 3:    after the lookups, lgh_tune on a small problem rewrites the file, and a new
 *             context reads it back (the round trip).
 *
 * A new context then answers lgh_tune_cached for the key of every line that splits into
 * nine fields, with leading dimensions chosen to give the line's alignment class.
 * Invariants (besides no crash, leak or UB):
 *   - a found entry names a real engine (not auto) with a time in (0, 1e7] ms, and lgh_plan
 *     still succeeds on the CPU engine for that problem;
 *   - all or nothing: when anything is found, every line that is exactly as lgh writes
 *     them (canonical below) is found too; a wrong header finds nothing;
 *   - a canonical file (what save_file writes: the header, at most 256 canonical lines,
 *     each ending in a newline) is accepted, and each key answers its first line's engine
 *     and time;
 *   - the round trip: the rewritten file is read back by a new context, with the tuned
 *     problem on the cpu engine and every entry found before still found, same engine.
 *
 * Build and run: see fuzz_api.c's header and tests/fuzz/fuzz.sh.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp, setenv, nftw */
#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "lgh.h"

#define MAX_LINES 300
#define CANON_MAX_ENTRIES 256 /* the file's table size (tune_file.h: LGH_TUNE_SLOTS) */
#define LINE_MAX_BYTES 511    /* with its newline (tune_file.c reads lines into 512 bytes) */
#define MAX_DIM ((int64_t)1 << 40)

static bool verbose; /* LGH_FUZZ_VERBOSE=1: what each input's file holds and gives */
static char tmp_root[256];
static char cache_path[1024];
static char cache_key[512];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    if (tmp_root[0]) nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : getenv("TMPDIR") && getenv("TMPDIR")[0] == '/' ? getenv("TMPDIR") : "/tmp";
    snprintf(tmp_root, sizeof tmp_root, "%s/lgh-fuzz-cache-XXXXXX", base);
    FUZZ_CHECK(mkdtemp(tmp_root), "mkdtemp %s", tmp_root);
    atexit(cleanup);
    verbose = getenv("LGH_FUZZ_VERBOSE") && !strcmp(getenv("LGH_FUZZ_VERBOSE"), "1");
    setenv("XDG_CACHE_HOME", tmp_root, 1);
    setenv("LGH_CACHE", "1", 1);
    unsetenv("LGH_TUNE");
    unsetenv("LGH_ENGINE");

    lgh_context_t ctx;
    FUZZ_CHECK(lgh_create(&ctx, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS, "lgh_create");
    FUZZ_CHECK(lgh_tune_cache_file(ctx, cache_path, sizeof cache_path) == LGH_STATUS_SUCCESS,
               "lgh_tune_cache_file: %s", lgh_last_error(ctx));
    /* the key line: the CPU's description and lgh's version, printable (tune_file.c) */
    const int v = lgh_version();
    snprintf(cache_key, sizeof cache_key, "%s|lgh %d.%d.%d", lgh_device_description(ctx),
             v / 10000, v / 100 % 100, v % 100);
    for (char *c = cache_key; *c; ++c)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) *c = '_';
    lgh_destroy(ctx);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/lgh", tmp_root);
    mkdir(dir, 0700);
    return 0;
}

/* ---- the lines of the file, as lgh reads them -------------------------------------------- */

typedef struct entry {
    bool split;     /* nine fields, dims and names parsed: the key is known */
    bool canonical; /* exactly as lgh writes it */
    int64_t m, k, n, groups;
    int dtype, math, align;
    lgh_engine_t engine;
    double ms;
} entry_t;

static const char *const engine_names[] = {"cpu", "cublaslt", "sm80", "sm90"};
static const lgh_engine_t engine_ids[] = {LGH_ENGINE_CPU, LGH_ENGINE_CUBLASLT, LGH_ENGINE_SM80,
                                          LGH_ENGINE_SM90};

/* A decimal without sign or leading zero in [1, 2^40]. */
static bool canonical_dim(const char *s, int64_t *out)
{
    const size_t len = strlen(s);
    if (len == 0 || len > 13 || s[0] == '0') return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > MAX_DIM) return false;
    *out = v;
    return true;
}

/* As lgh's reader takes a dimension (strtoll), without judging the spelling. */
static bool loose_dim(const char *s, int64_t *out)
{
    char *end;
    const long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < 1 || v > MAX_DIM) return false;
    *out = v;
    return true;
}

/* What %.6g writes: digits, an optional fraction, an optional exponent. */
static bool canonical_ms(const char *s)
{
    const char *c = s;
    if (*c < '0' || *c > '9') return false;
    while (*c >= '0' && *c <= '9') ++c;
    if (*c == '.') {
        ++c;
        if (*c < '0' || *c > '9') return false;
        while (*c >= '0' && *c <= '9') ++c;
    }
    if (*c == 'e') {
        ++c;
        if (*c == '+' || *c == '-') ++c;
        if (*c < '0' || *c > '9') return false;
        while (*c >= '0' && *c <= '9') ++c;
    }
    if (*c) return false;
    const double v = strtod(s, NULL);
    return v >= 1e-30 && v <= 1e7; /* well inside float's range */
}

static void parse_line(char *line, entry_t *e)
{
    memset(e, 0, sizeof *e);
    char *field[9];
    int n = 0;
    for (char *c = line;; ++c) {
        if (n == 9) return;
        field[n++] = c;
        while (*c && *c != ' ') ++c;
        if (!*c) break;
        *c = '\0';
    }
    if (n != 9) return;
    bool canon = true;
    int64_t *dims[4] = {&e->m, &e->k, &e->n, &e->groups};
    for (int i = 0; i < 4; ++i) {
        if (!canonical_dim(field[i], dims[i])) {
            canon = false;
            if (!loose_dim(field[i], dims[i])) return;
        }
    }
    if (e->n % e->groups != 0) return;
    static const char *const dtypes[] = {"float32", "bfloat16", "float16"};
    static const char *const maths[] = {"", "fp32", "tf32", "3xtf32", "accurate"};
    e->dtype = e->math = -1;
    for (int d = 0; d < 3; ++d)
        if (!strcmp(field[4], dtypes[d])) e->dtype = d;
    for (int m = 1; m < 5; ++m)
        if (!strcmp(field[5], maths[m])) e->math = m;
    if (e->dtype < 0 || e->math < 0) return;
    /* "accurate" is a float32 request; 16-bit data records it as tf32, so such a line is
     * not lgh's. */
    if (e->math == LGH_MATH_ACCURATE && e->dtype != LGH_DTYPE_FLOAT32) return;
    static const char *const aligns[] = {"1", "2", "4", "8", "16"};
    e->align = 0;
    for (int i = 0; i < 5; ++i)
        if (!strcmp(field[6], aligns[i])) e->align = 1 << i;
    if (!e->align) return;
    char *colon = strchr(field[7], ':');
    if (colon) {
        const char *v = colon + 1;
        const size_t len = strlen(v);
        if (len == 0 || len > 4 || (len > 1 && v[0] == '0')) return;
        for (size_t i = 0; i < len; ++i)
            if (v[i] < '0' || v[i] > '9') return;
        *colon = '\0';
    }
    e->engine = LGH_ENGINE_AUTO;
    for (int i = 0; i < 4; ++i)
        if (!strcmp(field[7], engine_names[i])) e->engine = engine_ids[i];
    if (e->engine == LGH_ENGINE_AUTO) return;
    char *end;
    e->ms = strtod(field[8], &end);
    if (!*field[8] || *end || !isfinite(e->ms) || e->ms <= 0.0 || e->ms > 1e7) return;
    e->split = true;
    e->canonical = canon && canonical_ms(field[8]);
}

/* Leading dimensions >= rows giving the alignment class `align` (tune.c: the largest power
 * of two <= 16 dividing every row stride in bytes); false when none does. */
static bool ld_for(int64_t row, int eb, int align, int64_t *ld)
{
    for (int64_t l = row; l < row + 32; ++l) {
        const int64_t bytes = l * eb;
        int a = 16;
        while (a > 1 && bytes % a != 0) a /= 2;
        if (a == align) {
            *ld = l;
            return true;
        }
    }
    return false;
}

static char dummy;

/* The arguments whose tuning key is e's; false when no valid problem has that key. */
static bool key_args(const entry_t *e, lgh_args_t *a)
{
    lgh_args_init(a, e->m, e->k, e->n, e->groups);
    a->dtype = (lgh_dtype_t)e->dtype;
    a->math = (lgh_math_t)e->math;
    const int eb = e->dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
    if (!ld_for(e->k, eb, e->align, &a->ldx) || !ld_for(e->n, eb, e->align, &a->ldy)) return false;
    a->ldw = a->ldx;
    a->x = a->w = a->bias = a->gamma = a->beta = &dummy;
    a->y = &dummy;
    return true;
}

static bool same_key(const entry_t *a, const entry_t *b)
{
    return a->m == b->m && a->k == b->k && a->n == b->n && a->groups == b->groups &&
           a->dtype == b->dtype && a->math == b->math && a->align == b->align;
}

/* ---- one execution ------------------------------------------------------------------------ */

static entry_t entries[MAX_LINES];
static bool found_before[MAX_LINES];
static lgh_engine_t engine_before[MAX_LINES];

static void write_file(const uint8_t *head, size_t head_len, const uint8_t *body, size_t body_len)
{
    FILE *f = fopen(cache_path, "wb");
    FUZZ_CHECK(f, "cannot write %s", cache_path);
    fwrite(head, 1, head_len, f);
    fwrite(body, 1, body_len, f);
    FUZZ_CHECK(fclose(f) == 0, "fclose %s", cache_path);
}

/* lgh_tune on a tiny problem from byte t (rewrites the cache file); its key line. */
static void tune_tiny(lgh_context_t ctx, uint8_t t, entry_t *key)
{
    const int64_t m = 1 + t % 3, k = 1 + (t / 3) % 3, n = (t & 64) ? 4 : 2;
    const int64_t groups = (t & 128) ? 2 : 1;
    float x[3 * 3], w[4 * 3], b[4], g[4], be[4], y[3 * 4];
    for (int i = 0; i < 12; ++i) x[i % 9] = w[i] = y[i] = 0.25f * (float)(i % 5);
    for (int i = 0; i < 4; ++i) b[i] = 0.0f, g[i] = 1.0f, be[i] = 0.0f;
    lgh_args_t a;
    lgh_args_init(&a, m, k, n, groups);
    a.x = x, a.w = w, a.bias = b, a.gamma = g, a.beta = be, a.y = y;
    lgh_engine_t chosen = LGH_ENGINE_AUTO;
    const lgh_status_t s = lgh_tune(ctx, &a, NULL, NULL, NULL, &chosen, NULL, 0, NULL);
    FUZZ_CHECK(s == LGH_STATUS_SUCCESS && chosen == LGH_ENGINE_CPU, "lgh_tune: %d %s", (int)s,
               lgh_last_error(ctx));
    memset(key, 0, sizeof *key);
    key->m = m, key->k = k, key->n = n, key->groups = groups;
    key->dtype = LGH_DTYPE_FLOAT32, key->math = LGH_MATH_TF32;
    int align = 16; /* packed rows of k and n floats */
    while (align > 1 && (k * 4) % align) align /= 2;
    while (align > 1 && (n * 4) % align) align /= 2;
    key->align = align;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader_t r = {data, size, 0};
    const uint8_t mode = fuzz_u8(&r);
    const uint8_t tune_byte = fuzz_u8(&r);
    const uint8_t *body = data + r.pos;
    const size_t body_len = size - r.pos;

    /* ---- the file ---- */
    char head[1200];
    size_t head_len = 0;
    if ((mode & 3) != 2) head_len = (size_t)snprintf(head, sizeof head, "lgh-tune-cache 1\n");
    if ((mode & 3) == 0 || (mode & 3) == 3)
        head_len += (size_t)snprintf(head + head_len, sizeof head - head_len, "key %s\n", cache_key);
    if (mode & 4)
        unlink(cache_path);
    else
        write_file((const uint8_t *)head, head_len, body, body_len);

    /* ---- what lgh should make of it ---- */
    const size_t total = (mode & 4) ? 0 : head_len + body_len;
    char *text = malloc(total + 1);
    FUZZ_CHECK(text, "out of memory");
    memcpy(text, head, (mode & 4) ? 0 : head_len);
    if (!(mode & 4)) memcpy(text + head_len, body, body_len);
    text[total] = '\0';
    const bool has_nul = memchr(text, '\0', total) != NULL;

    int lines = 0, count = 0;
    bool header_ok = false, canonical = total > 0 && !has_nul && text[total - 1] == '\n';
    {
        char *p = text, *end = text + total;
        while (p < end) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            const size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
            if (len > LINE_MAX_BYTES) canonical = false;
            if (nl) *nl = '\0';
            if (lines == 0) {
                header_ok = nl && !strcmp(p, "lgh-tune-cache 1");
            } else if (lines == 1) {
                header_ok = header_ok && nl && !strncmp(p, "key ", 4) && !strcmp(p + 4, cache_key);
            } else if (count < MAX_LINES) {
                parse_line(p, &entries[count]);
                if (!entries[count].canonical) canonical = false;
                ++count;
            } else {
                canonical = false;
            }
            ++lines;
            p += len;
        }
    }
    if (lines < 2) header_ok = false;
    if (!header_ok || count > CANON_MAX_ENTRIES) canonical = false;
    if (mode & 4) canonical = false;

    /* ---- what lgh makes of it ---- */
    lgh_context_t ctx;
    FUZZ_CHECK(lgh_create(&ctx, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS, "lgh_create");
    int found = 0, queried = 0;
    for (int i = 0; i < count; ++i) {
        found_before[i] = false;
        const entry_t *e = &entries[i];
        lgh_args_t a;
        if (!e->split || !key_args(e, &a)) continue;
        lgh_engine_t engine = (lgh_engine_t)99;
        float ms = -1.0f;
        const lgh_status_t s = lgh_tune_cached(ctx, &a, &engine, &ms);
        if (s != LGH_STATUS_SUCCESS) { /* a key no problem may have (sizes overflow) */
            FUZZ_CHECK(s == LGH_STATUS_SIZE_OVERFLOW, "lgh_tune_cached: %d %s", (int)s,
                       lgh_last_error(ctx));
            continue;
        }
        ++queried;
        if (engine == LGH_ENGINE_AUTO) {
            FUZZ_CHECK(ms == 0.0f, "untuned problem with ms %g", (double)ms);
            FUZZ_CHECK(!canonical || !e->canonical, "line %d of a canonical file not found", i + 3);
            continue;
        }
        ++found;
        found_before[i] = true;
        engine_before[i] = engine;
        FUZZ_CHECK(engine == LGH_ENGINE_CPU || engine == LGH_ENGINE_CUBLASLT ||
                       engine == LGH_ENGINE_SM80 || engine == LGH_ENGINE_SM90,
                   "cached engine %d", (int)engine);
        FUZZ_CHECK(isfinite(ms) && ms > 0.0f && ms <= 1e7f, "cached time %g ms (line %d)",
                   (double)ms, i + 3);
        FUZZ_CHECK(header_ok, "an entry found in a file with a wrong header");
        if (canonical) {
            int first = i;
            for (int j = 0; j < i; ++j)
                if (entries[j].split && same_key(&entries[j], e)) {
                    first = j;
                    break;
                }
            FUZZ_CHECK(engine == entries[first].engine && ms == (float)entries[first].ms,
                       "line %d: engine %d ms %g, the file says %d %g", i + 3, (int)engine,
                       (double)ms, (int)entries[first].engine, entries[first].ms);
        }
        if (found <= 4) {
            lgh_engine_t pe = (lgh_engine_t)99;
            size_t ws = 0;
            const lgh_status_t ps = lgh_plan(ctx, &a, &pe, &ws);
            FUZZ_CHECK(ps == LGH_STATUS_SUCCESS && pe == LGH_ENGINE_CPU,
                       "lgh_plan on a tuned problem: %d engine %d (%s)", (int)ps, (int)pe,
                       lgh_last_error(ctx));
        }
    }
    if (found > 0) { /* the file was taken: every canonical line is in the table */
        for (int i = 0; i < count; ++i) {
            lgh_args_t a;
            if (!entries[i].canonical || !key_args(&entries[i], &a)) continue;
            lgh_engine_t engine = LGH_ENGINE_AUTO;
            if (lgh_tune_cached(ctx, &a, &engine, NULL) == LGH_STATUS_SUCCESS)
                FUZZ_CHECK(engine != LGH_ENGINE_AUTO, "file taken, but canonical line %d not found",
                           i + 3);
        }
    }
    if (verbose)
        fprintf(stderr, "file: %d lines, %d entry lines, header %s, %s; %d keys asked, %d found\n",
                lines, count, header_ok ? "right" : "wrong", canonical ? "canonical" : "not canonical",
                queried, found);

    /* ---- the round trip: lgh rewrites the file, a new context reads it back ---- */
    if (mode & 8) {
        entry_t tuned;
        tune_tiny(ctx, tune_byte, &tuned);
        lgh_context_t ctx2;
        FUZZ_CHECK(lgh_create(&ctx2, LGH_DEVICE_CPU) == LGH_STATUS_SUCCESS, "lgh_create");
        lgh_args_t a;
        FUZZ_CHECK(key_args(&tuned, &a), "tiny problem key");
        lgh_engine_t engine = LGH_ENGINE_AUTO;
        float ms = 0.0f;
        lgh_status_t s = lgh_tune_cached(ctx2, &a, &engine, &ms);
        FUZZ_CHECK(s == LGH_STATUS_SUCCESS && engine == LGH_ENGINE_CPU && ms > 0.0f,
                   "the file lgh wrote after tuning is not read back: %d engine %d ms %g", (int)s,
                   (int)engine, (double)ms);
        for (int i = 0; i < count; ++i) {
            if (!found_before[i]) continue;
            lgh_args_t ai;
            key_args(&entries[i], &ai);
            engine = LGH_ENGINE_AUTO;
            s = lgh_tune_cached(ctx2, &ai, &engine, NULL);
            FUZZ_CHECK(s == LGH_STATUS_SUCCESS, "round trip query: %d", (int)s);
            if (same_key(&entries[i], &tuned)) continue; /* replaced by the new measurement */
            /* a full table drops its oldest entry for the new one */
            FUZZ_CHECK(engine == engine_before[i] || (engine == LGH_ENGINE_AUTO && count >= CANON_MAX_ENTRIES),
                       "line %d: engine %d before the rewrite, %d after", i + 3,
                       (int)engine_before[i], (int)engine);
        }
        lgh_destroy(ctx2);
    }
    lgh_destroy(ctx);
    free(text);
    return 0;
}
