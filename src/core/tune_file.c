/*
 * The tuning cache file (tune_file.h): one text file per device under
 * $XDG_CACHE_HOME/lgh (else ~/.cache/lgh):
 *
 *     lgh-tune-cache 1
 *     key <GPU name>|sm_<cc>|driver <version>|lgh <version>     (or the CPU's description)
 *     <m> <k> <n> <groups> <dtype> <math> <align> <engine>[:<variant>] <ms>
 *     ...
 *
 * <math> is the mode the problem asked for once DEFAULT is resolved: fp32, tf32, 3xtf32,
 * or, for float32 data only, accurate (the engine then says which of fp32 and 3xtf32 it
 * ran: tune.c). Files written before accurate existed read as they always did.
 *
 * (the variant ids are the engine's own and change with lgh versions, which the key
 * line holds).
 * Anything unexpected in it — a bad header, another device's key, a truncated or
 * malformed line, an unknown engine, a number out of range — makes the whole file
 * ignored: a cached choice only ever picks among engines that can run the problem, but a
 * file we cannot fully parse is not ours to trust.
 *
 * Layering (docs/ARCHITECTURE.md): text in, entries out and back; it knows nothing of
 * contexts or engines beyond their names (lgh.h).
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp, fsync */
#include "tune_file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TUNE_LINE_BYTES 512
#define TUNE_MAX_DIM ((int64_t)1 << 40)
#define TUNE_MAX_MS 1e7

static const char file_magic[] = "lgh-tune-cache 1";

/* ---- the file's name ---------------------------------------------------------------------- */

int lgh_tune_file_dir(char *dir, size_t len)
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

int lgh_tune_file_path(const char *dir, const char *key, char *path, size_t len)
{
    /* File name: the key with anything but [A-Za-z0-9.-] as '_', at most 120 bytes. */
    char name[128];
    size_t j = 0;
    for (const char *c = key; *c && j < 120; ++c) {
        const int keep = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                         (*c >= '0' && *c <= '9') || *c == '.' || *c == '-';
        name[j++] = keep ? *c : '_';
    }
    name[j] = '\0';
    const int n = snprintf(path, len, "%s/tune-%s.txt", dir, name);
    return n > 0 && (size_t)n < len;
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
static int parse_entry(char *line, lgh_tune_entry_t *e)
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
    lgh_tune_key_t *k = &e->key;
    if (!parse_dim(field[0], &k->m) || !parse_dim(field[1], &k->k) ||
        !parse_dim(field[2], &k->n) || !parse_dim(field[3], &k->groups) || k->n % k->groups != 0)
        return 0;
    k->dtype = -1;
    for (int d = LGH_DTYPE_FLOAT32; d <= LGH_DTYPE_FLOAT16; ++d)
        if (!strcmp(field[4], lgh_dtype_name((lgh_dtype_t)d))) k->dtype = d;
    k->math = -1; /* resolved modes only: never "default" */
    for (int m = LGH_MATH_FP32; m <= LGH_MATH_ACCURATE; ++m)
        if (!strcmp(field[5], lgh_math_name((lgh_math_t)m))) k->math = m;
    if (k->dtype < 0 || k->math < 0) return 0;
    /* 16-bit data records ACCURATE as TF32 (math_rule.c): never written, so not ours. */
    if (k->math == LGH_MATH_ACCURATE && k->dtype != LGH_DTYPE_FLOAT32) return 0;
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
static int parse_file(FILE *f, const char *key, lgh_tune_entry_t *tmp, int *count)
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
            if (n == LGH_TUNE_SLOTS || !parse_entry(line, &tmp[n])) return 0;
            ++n;
        }
    }
    if (ferror(f)) return 0;
    *count = n;
    return 1;
}

lgh_tune_entry_t *lgh_tune_file_read(const char *path, const char *key, int *count)
{
    *count = 0;
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    lgh_tune_entry_t *entries = malloc(sizeof(lgh_tune_entry_t) * LGH_TUNE_SLOTS);
    if (entries && !parse_file(f, key, entries, count)) {
        free(entries);
        entries = NULL;
        *count = 0;
    }
    fclose(f);
    return entries;
}

/* ---- writing the file ----------------------------------------------------------------------- */

/* mkdir -p, quietly: a directory we cannot make shows up as a failed write below. */
static void make_dirs(const char *dir)
{
    char buf[LGH_TUNE_PATH_BYTES];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *c = buf + 1; *c; ++c) {
        if (*c != '/') continue;
        *c = '\0';
        mkdir(buf, 0700);
        *c = '/';
    }
    mkdir(buf, 0700);
}

void lgh_tune_file_write(const char *dir, const char *path, const char *key,
                         const lgh_tune_entry_t *entries, int count)
{
    make_dirs(dir);
    char tmp[LGH_TUNE_PATH_BYTES + 16];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    const int fd = mkstemp(tmp);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return;
    }
    fprintf(f, "%s\nkey %s\n", file_magic, key);
    for (int i = 0; i < count; ++i) {
        const lgh_tune_entry_t *e = &entries[i];
        char variant[16] = "";
        if (e->variant >= 0) snprintf(variant, sizeof variant, ":%d", e->variant);
        fprintf(f, "%lld %lld %lld %lld %s %s %d %s%s %.6g\n", (long long)e->key.m,
                (long long)e->key.k, (long long)e->key.n, (long long)e->key.groups,
                lgh_dtype_name((lgh_dtype_t)e->key.dtype), lgh_math_name((lgh_math_t)e->key.math),
                e->key.align, lgh_engine_name(e->engine), variant, (double)e->ms);
    }
    int ok = !ferror(f) && fflush(f) == 0 && fsync(fd) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) unlink(tmp);
}
