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
    /* `lgh run` only: */
    int backward;         /* --backward: time and check lgh_backward too */
    int recompute;        /* --recompute: the forward saves mean / rstd only, not h */
    int64_t check_groups; /* --check-groups: groups whose dW, db, dγ, dβ are checked; -1 auto */
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

/* The docs/PRECISION.md bound for dtype and resolved math mode. */
double cli_bound(lgh_dtype_t dt, lgh_math_t math);

/* ---- the backward's check (check.c) ------------------------------------------------------
 *
 * What of lgh_backward's output is compared with lgh_reference_backward: dx on `rows`
 * rows (row_ids, ascending), and dW, db, dγ, dβ on the channels of `ngroups` groups
 * (group_ids, ascending) summed over all rows. Gradients sum over rows, so the parameter
 * gradients are never sampled by row; on a large problem the groups are. The reference
 * runs on the CPU's threads, split by rows. */
typedef struct cli_bwd_sample {
    const int64_t *row_ids;
    int64_t rows;
    const int64_t *group_ids;
    int64_t ngroups;
} cli_bwd_sample_t;

/* Sets dy (host, packed [m, n] in b->fwd.dtype; b->dy is ignored) to 0 wherever the
 * reference's z lies within rel_tol·max(1, |lo|, |hi|) of lo or hi, within the part of
 * the problem the check reads (s's rows, all channels; s's groups, all rows): there a
 * z that an engine puts a rounding error away from the reference's may fall on the other
 * side of the clamp, and that element's gradient would then differ by all of dy. *zeroed
 * counts the elements set to 0. b holds host pointers to the forward's inputs. Returns 0,
 * or -1 if the reference refused or memory ran out. */
int cli_mask_near_clamp(const lgh_backward_args_t *b, const cli_bwd_sample_t *s, void *dy,
                        double rel_tol, int64_t *zeroed);

/* Errors of the five gradients, in the order dx, dW, db, dγ, dβ: relative Frobenius
 * ||g - ref|| / ||ref|| (NaN when an element is NaN, e.g. unwritten) and max |g - ref|. */
typedef struct cli_bwd_errors {
    double rel[5];
    double max_abs[5];
} cli_bwd_errors_t;

/* Compares lgh's gradients (host, in b->fwd.dtype) with lgh_reference_backward on the
 * part s: dx_rows packed [s->rows, k] (row i is row s->row_ids[i] of dx); dw_groups packed
 * [s->ngroups * n/groups, k] (the dW rows of the listed groups, in order); dbias, dgamma,
 * dbeta all n channels. b holds host pointers to the forward's inputs and to dy (packed,
 * as given to lgh_backward). Returns 0, or -1 if the reference refused or memory ran out. */
int cli_check_backward(const lgh_backward_args_t *b, const cli_bwd_sample_t *s,
                       const void *dx_rows, const void *dw_groups, const void *dbias,
                       const void *dgamma, const void *dbeta, cli_bwd_errors_t *out);

/* The bound of a gradient for dtype and resolved math mode (float32 / 3xtf32 1e-5, tf32
 * 1e-3, bfloat16 / float16 2e-2), and the rel_tol cli_mask_near_clamp uses (1e-2 for
 * float32, whatever its math mode; 5e-2 for the 16-bit types). */
double cli_backward_bound(lgh_dtype_t dt, lgh_math_t math);
double cli_near_clamp_tolerance(lgh_dtype_t dt);

/* ---- `lgh run --backward` (run_backward.c) ------------------------------------------------ */

/* What run() hands the backward stage: the context, the options, the forward problem
 * (a: device pointers, as run; host: the same inputs on the host), the stream and the
 * forward-only median in ms. Prints the backward's lines; returns CLI_OK, CLI_FAIL or
 * CLI_USAGE. */
int cli_run_backward(lgh_context_t ctx, const run_opts_t *o, const lgh_args_t *a,
                     const lgh_args_t *host, void *stream, double forward_ms);

/* The median of n floats (sorts them). */
double cli_median(float *ms, int n);

#endif
