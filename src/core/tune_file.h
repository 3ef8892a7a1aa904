/*
 * The tuning cache file (tune_file.c): where it lives and its text format, read and
 * written as a whole. Internal to the tuner (tune.c).
 *
 * Layering (docs/ARCHITECTURE.md): uses nothing of the core but the names of lgh.h
 * (names.c) — no context, no engines — so the format can be read, written and fuzzed on
 * its own; tune.c decides what the entries mean and when the file is read or written.
 */
#ifndef LGH_CORE_TUNE_FILE_H
#define LGH_CORE_TUNE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "lgh.h"

#define LGH_TUNE_SLOTS 256        /* problems remembered per context (and per file) */
#define LGH_TUNE_PATH_BYTES 1024  /* the cache directory and the file's path */
#define LGH_TUNE_MAX_VARIANT 9999 /* the largest variant id a line can hold (4 digits) */

/* What a tuned choice is keyed by: the problem's sizes, dtype, resolved math (ACCURATE
 * kept as asked: tune.c), and the alignment class of its row strides (tune.c: problem_key). */
typedef struct lgh_tune_key {
    int64_t m, k, n, groups;
    int dtype, math, align;
} lgh_tune_key_t;

typedef struct lgh_tune_entry {
    lgh_tune_key_t key;
    lgh_engine_t engine;
    int variant; /* the engine's variant id, or -1 (its own choice) */
    float ms;
} lgh_tune_entry_t;

/* $XDG_CACHE_HOME/lgh when XDG_CACHE_HOME is an absolute path, else $HOME/.cache/lgh.
 * 0 when neither is known (or the name does not fit in len). */
int lgh_tune_file_dir(char *dir, size_t len);

/* The file for a device key in dir: "<dir>/tune-<key, sanitised, at most 120 bytes>.txt".
 * 0 when it does not fit in len. */
int lgh_tune_file_path(const char *dir, const char *key, char *path, size_t len);

/* Reads the file at path: its entries (malloc'd; *count of them, at most LGH_TUNE_SLOTS),
 * or NULL when there is no file, it is not for this key, or anything in it is not exactly
 * as lgh_tune_file_write writes it (the whole file is ignored then). */
lgh_tune_entry_t *lgh_tune_file_read(const char *path, const char *key, int *count);

/* Writes the entries as the file at path (dir and its parents made as needed) through a
 * temporary file renamed over it, so a concurrent reader sees the old file or the new
 * one, never half of one. A failure leaves the old file as it was. */
void lgh_tune_file_write(const char *dir, const char *path, const char *key,
                         const lgh_tune_entry_t *entries, int count);

#endif
