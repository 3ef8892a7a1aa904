/*
 * Shared pieces of lgh's libFuzzer targets (fuzz_api.c, fuzz_cache.c): a reader that
 * turns the fuzz input into values (zeros once it runs out), and the failure report.
 * See fuzz.sh for how the targets are built and run.
 */
#ifndef LGH_FUZZ_COMMON_H
#define LGH_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An invariant of the API: report it and abort, which libFuzzer records as a crash
 * (the input is saved as crash-<sha1> under the artifact prefix). */
#define FUZZ_CHECK(cond, ...)                                                             \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n  ", __FILE__, __LINE__, \
                    #cond);                                                               \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, "\n");                                                        \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

typedef struct fuzz_reader {
    const uint8_t *data;
    size_t size, pos;
} fuzz_reader_t;

static inline uint8_t fuzz_u8(fuzz_reader_t *r)
{
    return r->pos < r->size ? r->data[r->pos++] : 0;
}

static inline uint32_t fuzz_u32(fuzz_reader_t *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= (uint32_t)fuzz_u8(r) << (8 * i);
    return v;
}

static inline uint64_t fuzz_u64(fuzz_reader_t *r)
{
    uint64_t lo = fuzz_u32(r);
    return lo | (uint64_t)fuzz_u32(r) << 32;
}

#endif
