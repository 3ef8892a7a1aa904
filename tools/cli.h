/*
 * The lgh program's internal interface: the commands (run, info, profile, tune), their shared
 * option parsing, the CUDA helpers (device buffers, a stream, event timing) and the
 * sampled reference check. Only tools/ includes this.
 *
 * Exit statuses of every command: 0 success, 1 a failure while running (an lgh error,
 * an error above the bound, no device, ncu missing), 2 a wrong argument (one line on
 * stderr naming it).
 */
#ifndef LGH_TOOLS_CLI_H
#define LGH_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lgh.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_HELP = -1 };

/* ---- commands (cmd_*.c) ------------------------------------------------------------ */

int cli_cmd_run(int argc, char **argv);     /* argv[0] is "run" */
int cli_cmd_info(int argc, char **argv);    /* argv[0] is "info" */
int cli_cmd_profile(int argc, char **argv); /* argv[0] is "profile" */
int cli_cmd_tune(int argc, char **argv);    /* argv[0] is "tune" */

/* ---- host inputs (fill.c) ------------------------------------------------------------ */

/* count values uniform in [lo, hi) rounded to dt, from the splitmix64 stream *seed. */
void cli_fill_uniform(lgh_dtype_t dt, void *buf, int64_t count, uint64_t *seed, double lo,
                      double hi);
/* count NaNs of dt (poison for outputs). */
void cli_fill_nan(lgh_dtype_t dt, void *buf, int64_t count);

/* ---- options shared by run and profile (options.c) ----------------------------------- */

typedef struct run_opts {
    int64_t m, k, n, groups;
    lgh_dtype_t dtype;
    lgh_math_t math;
    lgh_engine_t engine;
    int device;       /* LGH_DEVICE_CPU or a CUDA ordinal */
    int device_given; /* 0: CUDA device 0 when present, else the CPU */
    int iters, warmup;
    int iters_given, warmup_given;
    int64_t check_rows; /* -1: choose (all rows when cheap, else 64 sampled) */
    float eps, lo, hi;
    uint64_t seed;
} run_opts_t;

/* The help text of the options run and profile share. */
void cli_print_run_options(FILE *f);

/* Parses argv[1..argc) (argv[0] is the command's name) into *o, starting from the
 * reference problem's defaults. Returns CLI_OK, CLI_HELP after --help (help not yet
 * printed), or CLI_USAGE after printing a one-line error naming the argument. */
int cli_parse_run_opts(const char *cmd, int argc, char **argv, run_opts_t *o);

/* One-line argument error: "lgh <cmd>: <message> (see 'lgh <cmd> --help')". */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Whether an lgh status means the arguments were wrong (exit 2) rather than that they
 * could not run here (exit 1). */
int cli_status_is_argument_error(lgh_status_t s);

/* ---- CUDA helpers (gpu.c; stubs that fail when built without CUDA) ------------------ */

int cli_gpu_built(void);
int cli_gpu_device_count(void);
int cli_gpu_alloc(int device, void **p, size_t bytes, char *err, size_t len);
void cli_gpu_free(void *p);
int cli_gpu_upload(void *dst, const void *src, size_t bytes, char *err, size_t len);
int cli_gpu_download(void *dst, const void *src, size_t bytes, char *err, size_t len);
/* A stream (cudaStream_t) on device, for lgh_forward and the events. */
int cli_gpu_stream_create(int device, void **stream, char *err, size_t len);
void cli_gpu_stream_destroy(void *stream);

/* Calls fn(arg) `iters` times on `stream`, each between two CUDA events, and stores the
 * milliseconds of each call in ms[]. Stops at the first call that does not return
 * LGH_STATUS_SUCCESS and returns its status in *status. */
typedef lgh_status_t (*cli_call_fn)(void *arg);
int cli_gpu_time(void *stream, int iters, cli_call_fn fn, void *arg, float *ms,
                 lgh_status_t *status, char *err, size_t len);
int cli_gpu_sync(void *stream, char *err, size_t len);

/* ---- the reference check (check.c) ----------------------------------------------------- */

/* Relative Frobenius and max abs error of `rows` rows of y (host, packed [rows, n] in
 * a->dtype) against the fp64 reference for the problem rows listed in row_ids, computed
 * on the CPU's threads. a holds host pointers to the inputs. Returns 0, or -1 if the
 * reference refused. *nonfinite counts NaN / inf elements of y. */
int cli_check_rows(const lgh_args_t *a, const int64_t *row_ids, int64_t rows, const void *y,
                   double *rel, double *max_abs, int64_t *nonfinite);

/* The DESIGN.md bound for dtype and resolved math mode. */
double cli_bound(lgh_dtype_t dt, lgh_math_t math);

#endif
