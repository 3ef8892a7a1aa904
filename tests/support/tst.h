/*
 * Shared pieces of lgh's C tests (test_matrix, test_errors, ...): seeded random inputs,
 * elements of every lgh dtype in host memory, NaN poison and guard patterns, error
 * metrics against the double-precision reference, the reference run on several threads,
 * device buffers for the GPU tier, and the closing one-line summary.
 *
 * Every test program links the static library lgh_test_support built from this folder.
 * CUDA calls live in device.c only, compiled with the CUDA runtime when the build has
 * it (LGH_TEST_HAVE_CUDA) and as stubs that report "no CUDA runtime" otherwise.
 */
#ifndef LGH_TESTS_TST_H
#define LGH_TESTS_TST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lgh.h"

/* ctest's SKIP_RETURN_CODE for a whole program that has nothing to run here. */
#define TST_EXIT_SKIP 77

/* ---- random numbers ------------------------------------------------------------------ */

/* The run's base seed: LGH_TEST_SEED when set (decimal or 0x hex), else from the clock.
 * Computed once; tst_print_seed() says how to replay it. */
uint64_t tst_base_seed(void);
void tst_print_seed(const char *program);

typedef struct tst_rng {
    uint64_t s;
} tst_rng_t;

/* An independent stream for (base seed, stream id): case i of a run always gets the
 * same inputs for the same base seed, whatever ran before it. */
tst_rng_t tst_rng_make(uint64_t base, uint64_t stream);
uint64_t tst_rng_next(tst_rng_t *r);
double tst_uniform(tst_rng_t *r, double lo, double hi);

/* ---- elements of any dtype ------------------------------------------------------------ */

size_t tst_elem_bytes(lgh_dtype_t dt);
/* Stores v rounded to dt (nearest even) at element i of base. */
void tst_store(lgh_dtype_t dt, void *base, int64_t i, double v);
double tst_load(lgh_dtype_t dt, const void *base, int64_t i);

/* Bit patterns. POISON is a quiet NaN written where lgh must write (an element left
 * unwritten makes the error NaN); GUARD is a different NaN written where lgh must not
 * write (padding between rows, a tail after the last row) and compared bit for bit. */
typedef enum tst_pattern { TST_POISON = 0, TST_GUARD = 1 } tst_pattern_t;
void tst_store_pattern(lgh_dtype_t dt, void *base, int64_t i, tst_pattern_t p);
int tst_is_pattern(lgh_dtype_t dt, const void *base, int64_t i, tst_pattern_t p);

/* A buffer of `total` elements holding a rows x cols matrix at leading dimension ld
 * (total >= (rows-1)*ld + cols). Row elements get uniform values in [lo, hi) rounded
 * to dt; every other element (padding, tail) gets GUARD, a NaN, so an engine that
 * reads padding produces NaN. */
void tst_fill_matrix(lgh_dtype_t dt, void *buf, int64_t rows, int64_t cols, int64_t ld,
                     int64_t total, tst_rng_t *r, double lo, double hi);
/* Row elements POISON, everything else GUARD. */
void tst_poison_matrix(lgh_dtype_t dt, void *buf, int64_t rows, int64_t cols, int64_t ld,
                       int64_t total);
/* How many non-row elements no longer hold GUARD (0 when padding and tail untouched). */
int64_t tst_guard_damage(lgh_dtype_t dt, const void *buf, int64_t rows, int64_t cols,
                         int64_t ld, int64_t total);

/* ---- comparison ----------------------------------------------------------------------- */

typedef struct tst_err {
    double rel;       /* ||y - ref||_F / ||ref||_F (NaN if any y is not finite) */
    double max_abs;   /* max |y - ref| over finite elements */
    int64_t nonfinite; /* elements of y that are NaN or infinite */
} tst_err_t;

/* y: rows x cols at ld in dt; ref: packed rows x cols doubles. */
tst_err_t tst_compare(lgh_dtype_t dt, const void *y, int64_t rows, int64_t cols, int64_t ld,
                      const double *ref);

/* The bound docs/PRECISION.md sets for a dtype and (resolved) math mode. */
double tst_bound(lgh_dtype_t dt, lgh_math_t math);

/* ---- the reference, threaded ------------------------------------------------------------ */

/* lgh_reference_rows over all rows of *a (host pointers), split across the CPU's
 * threads. mean / rstd may be NULL. Returns 0 on success. */
int tst_reference(const lgh_args_t *a, double *y, double *mean, double *rstd);

/* ---- device memory (GPU tier) ---------------------------------------------------------- */

/* 1 when the tests were built with the CUDA runtime. */
int tst_have_cuda(void);
/* Staged-host mode (for checking the GPU tier's data movement on a CPU-only machine):
 * "device" buffers become separate host allocations and the copies memcpy, so a test
 * run on a CPU context through tst_buf_* moves its data exactly as the GPU tier does. */
void tst_set_staged_host(int on);
/* All return 0 on success; on failure write the CUDA error into msg (may be NULL). */
int tst_dev_alloc(void **p, size_t bytes, char *msg, size_t len);
int tst_dev_free(void *p);
int tst_h2d(void *dst, const void *src, size_t bytes, char *msg, size_t len);
int tst_d2h(void *dst, const void *src, size_t bytes, char *msg, size_t len);
/* cudaDeviceSynchronize + the sticky error, so a kernel fault shows up in this case. */
int tst_dev_sync(char *msg, size_t len);
/* The compute capability of CUDA device `dev` as major*10+minor, or -1. */
int tst_dev_cc(int dev);

/* Streams and graphs (test_concurrency's GPU tier). A stream is a cudaStream_t as void *;
 * tst_stream_per_thread() is cudaStreamPerThread. The copies are cudaMemcpyAsync on the
 * stream, tst_memset_async sets every byte to `byte` (0xff: NaN in every lgh dtype).
 * Capture runs in cudaStreamCaptureModeGlobal, the strictest mode. */
int tst_stream_create(void **stream, char *msg, size_t len);
void tst_stream_destroy(void *stream);
void *tst_stream_per_thread(void);
int tst_stream_sync(void *stream, char *msg, size_t len);
int tst_h2d_async(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len);
int tst_d2h_async(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len);
int tst_memset_async(void *dst, int byte, size_t bytes, void *stream, char *msg, size_t len);
int tst_capture_begin(void *stream, char *msg, size_t len);
/* Ends the capture and instantiates the graph into *exec. */
int tst_capture_end(void *stream, void **exec, char *msg, size_t len);
int tst_graph_launch(void *exec, void *stream, char *msg, size_t len);
void tst_graph_destroy(void *exec);

/* A host or device copy of a host buffer: on a GPU context `dev` is a device copy of
 * `host` (uploaded by tst_buf_upload); on the CPU dev == host. */
typedef struct tst_buf {
    void *host;
    void *dev;
    size_t bytes;
    int on_gpu;
} tst_buf_t;
int tst_buf_alloc(tst_buf_t *b, size_t bytes, int on_gpu, char *msg, size_t len);
int tst_buf_upload(tst_buf_t *b, char *msg, size_t len);
int tst_buf_download(tst_buf_t *b, char *msg, size_t len);
void tst_buf_free(tst_buf_t *b);

/* ---- engine targets (target.c) ---------------------------------------------------------- */

typedef enum tst_setup { TST_SETUP_OK, TST_SETUP_SKIP, TST_SETUP_FAIL } tst_setup_t;

/* Device 0's context shared by several targets of one program: created by the first
 * tst_open_target that needs it (tried is then set; ctx stays NULL when there is no
 * device), destroyed by the program. */
typedef struct tst_gpu {
    lgh_context_t ctx;
    int tried;
} tst_gpu_t;

/* Opens the context target `name` (engine `engine`) runs on into *ctx: a CPU context
 * (on_gpu 0; FAIL when it cannot be made or lacks the cpu engine), or device 0's (shared
 * through *shared, or the target's own when shared is NULL). SKIP, with a printed line,
 * when there is no device, the tests lack the CUDA runtime, or the engine is missing
 * where it may be (sm80, sm90 off Hopper); FAIL when cublaslt is missing, or sm90 on an
 * sm_90 device. On SKIP and FAIL *ctx is NULL unless it is the shared context. */
tst_setup_t tst_open_target(const char *name, lgh_engine_t engine, int on_gpu, lgh_context_t *ctx,
                            tst_gpu_t *shared);
/* A context on device 0, or NULL with the tier's skip line printed (no device, or no CUDA
 * runtime in the tests). */
lgh_context_t tst_open_gpu(void);

/* ---- tallies ---------------------------------------------------------------------------- */

typedef struct tst_tally {
    long passed, failed, skipped;
} tst_tally_t;

/* One labelled check's verdict, counted in *t: pass (printed with verbose), fail (always
 * printed, printf-style detail), skip (always printed, with the reason). */
void tst_pass(tst_tally_t *t, int verbose, const char *label, const char *detail);
void tst_fail(tst_tally_t *t, const char *label, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void tst_skip(tst_tally_t *t, const char *label, const char *why);

/* An unlabelled check counted in *t: silent when cond holds; otherwise "FAIL file:line:
 * cond: " and the printf-style detail. */
#define TST_CHECK(t, cond, ...)                                                              \
    do {                                                                                     \
        if (cond) {                                                                          \
            ++(t)->passed;                                                                   \
        } else {                                                                             \
            ++(t)->failed;                                                                   \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                           \
            printf(__VA_ARGS__);                                                             \
            printf("\n");                                                                    \
        }                                                                                    \
    } while (0)

/* "<name>: N cases run, P passed, F failed, S skipped" — the program's last line. */
void tst_summary(const char *name, const tst_tally_t *t);

#endif
