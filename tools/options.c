/*
 * Option parsing for `lgh run` and `lgh profile`: --name value or --name=value, every
 * value checked in full, and a one-line error naming the argument for anything wrong.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "lgh %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'lgh %s --help')\n", cmd);
    return CLI_USAGE;
}

int cli_status_is_argument_error(lgh_status_t s)
{
    switch (s) {
    case LGH_STATUS_NULL_POINTER:
    case LGH_STATUS_INVALID_SIZE:
    case LGH_STATUS_GROUPS_MISMATCH:
    case LGH_STATUS_INVALID_EPS:
    case LGH_STATUS_INVALID_CLAMP:
    case LGH_STATUS_INVALID_LEADING_DIM:
    case LGH_STATUS_SIZE_OVERFLOW:
    case LGH_STATUS_INVALID_VALUE: return 1;
    default: return 0;
    }
}

void cli_print_run_options(FILE *f)
{
    fprintf(f,
            "  --m M --k K --n N --groups G   sizes (default: the reference problem,\n"
            "                                 M=1024 K=8192 N=8192 G=16)\n"
            "  --dtype float32|bfloat16|float16        data type (default float32)\n"
            "  --math fp32|tf32|3xtf32|accurate|default   float32 math mode (default tf32;\n"
            "                     accurate: fp32 or 3xtf32, whichever is faster here)\n"
            "  --engine auto|cpu|cublaslt|sm80|sm90    engine (default auto)\n"
            "  --device N|cpu     CUDA device N or the CPU (default: device 0 if present,\n"
            "                     else the CPU)\n"
            "  --eps E --lo L --hi H   group norm eps and clamp (default 1e-5, -2, 2)\n"
            "  --seed S           seed of the random inputs (default 1)\n");
}

/* Whole-string integer in [lo, hi]. */
static int parse_int(const char *cmd, const char *name, const char *v, int64_t lo, int64_t hi,
                     const char *what, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return cli_usage_error(cmd, "%s: '%s' is not %s", name, v, what);
    *out = x;
    return CLI_OK;
}

static int parse_float(const char *cmd, const char *name, const char *v, float *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno) return cli_usage_error(cmd, "%s: '%s' is not a number", name, v);
    *out = (float)x;
    return CLI_OK;
}

int cli_parse_run_opts(const char *cmd, int argc, char **argv, run_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->m = 1024, o->k = 8192, o->n = 8192, o->groups = 16;
    o->dtype = LGH_DTYPE_FLOAT32;
    o->math = LGH_MATH_TF32;
    o->engine = LGH_ENGINE_AUTO;
    o->device = 0;
    o->check_rows = -1;
    o->eps = 1e-5f, o->lo = -2.0f, o->hi = 2.0f;
    o->seed = 1;
    o->check_groups = -1;

    for (int i = 1; i < argc; ++i) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return CLI_HELP;
        if (strncmp(arg, "--", 2) != 0 || !arg[2])
            return cli_usage_error(cmd, "unexpected argument '%s'", arg);

        /* Flags of `lgh run` (no value). */
        const int is_run = !strcmp(cmd, "run");
        if (is_run && !strcmp(arg, "--backward")) {
            o->backward = 1;
            continue;
        }
        if (is_run && !strcmp(arg, "--recompute")) {
            o->recompute = 1;
            continue;
        }

        /* --name=value or --name value */
        char name[64];
        const char *eq = strchr(arg, '=');
        const char *v;
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (len >= sizeof name) return cli_usage_error(cmd, "unknown option '%s'", arg);
        memcpy(name, arg, len);
        name[len] = '\0';

        static const char *const known[] = {"--m", "--k", "--n", "--groups", "--dtype", "--math",
                                            "--engine", "--device", "--iters", "--warmup",
                                            "--check-rows", "--eps", "--lo", "--hi", "--seed"};
        int found = 0;
        for (size_t j = 0; j < sizeof known / sizeof known[0]; ++j) found |= !strcmp(name, known[j]);
        found |= is_run && !strcmp(name, "--check-groups");
        if (!found) return cli_usage_error(cmd, "unknown option '%s'", name);
        if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            return cli_usage_error(cmd, "%s needs a value", name);
        }

        int64_t x = 0;
        int rc = CLI_OK;
        const int64_t big = INT64_MAX;
        if (!strcmp(name, "--m")) {
            rc = parse_int(cmd, name, v, 1, big, "a positive integer", &o->m);
        } else if (!strcmp(name, "--k")) {
            rc = parse_int(cmd, name, v, 1, big, "a positive integer", &o->k);
        } else if (!strcmp(name, "--n")) {
            rc = parse_int(cmd, name, v, 1, big, "a positive integer", &o->n);
        } else if (!strcmp(name, "--groups")) {
            rc = parse_int(cmd, name, v, 1, big, "a positive integer", &o->groups);
        } else if (!strcmp(name, "--iters")) {
            rc = parse_int(cmd, name, v, 1, 1000000, "an integer from 1 to 1000000", &x);
            o->iters = (int)x, o->iters_given = 1;
        } else if (!strcmp(name, "--warmup")) {
            rc = parse_int(cmd, name, v, 0, 1000000, "an integer from 0 to 1000000", &x);
            o->warmup = (int)x, o->warmup_given = 1;
        } else if (!strcmp(name, "--check-groups")) {
            rc = parse_int(cmd, name, v, 1, big, "a positive group count", &o->check_groups);
        } else if (!strcmp(name, "--check-rows")) {
            rc = parse_int(cmd, name, v, 0, big, "a row count (0: no check)", &o->check_rows);
        } else if (!strcmp(name, "--seed")) {
            rc = parse_int(cmd, name, v, 0, big, "a non-negative integer", &x);
            o->seed = (uint64_t)x;
        } else if (!strcmp(name, "--eps")) {
            rc = parse_float(cmd, name, v, &o->eps);
        } else if (!strcmp(name, "--lo")) {
            rc = parse_float(cmd, name, v, &o->lo);
        } else if (!strcmp(name, "--hi")) {
            rc = parse_float(cmd, name, v, &o->hi);
        } else if (!strcmp(name, "--dtype")) {
            if (!strcmp(v, "float32") || !strcmp(v, "fp32") || !strcmp(v, "f32"))
                o->dtype = LGH_DTYPE_FLOAT32;
            else if (!strcmp(v, "bfloat16") || !strcmp(v, "bf16"))
                o->dtype = LGH_DTYPE_BFLOAT16;
            else if (!strcmp(v, "float16") || !strcmp(v, "fp16") || !strcmp(v, "half"))
                o->dtype = LGH_DTYPE_FLOAT16;
            else
                rc = cli_usage_error(cmd, "--dtype: '%s' is not one of float32, bfloat16, float16",
                                     v);
        } else if (!strcmp(name, "--math")) {
            if (!strcmp(v, "fp32")) o->math = LGH_MATH_FP32;
            else if (!strcmp(v, "tf32")) o->math = LGH_MATH_TF32;
            else if (!strcmp(v, "3xtf32")) o->math = LGH_MATH_3XTF32;
            else if (!strcmp(v, "accurate")) o->math = LGH_MATH_ACCURATE;
            else if (!strcmp(v, "default")) o->math = LGH_MATH_DEFAULT;
            else
                rc = cli_usage_error(
                    cmd, "--math: '%s' is not one of fp32, tf32, 3xtf32, accurate, default", v);
        } else if (!strcmp(name, "--engine")) {
            if (lgh_engine_from_name(v, &o->engine) != LGH_STATUS_SUCCESS)
                rc = cli_usage_error(cmd,
                                     "--engine: '%s' is not one of auto, cpu, cublaslt, sm80, sm90",
                                     v);
        } else if (!strcmp(name, "--device")) {
            if (!strcmp(v, "cpu")) {
                o->device = LGH_DEVICE_CPU;
            } else {
                char *end;
                errno = 0;
                long d = strtol(v, &end, 10);
                if (!*v || *end || errno || d < 0 || d > 1024)
                    rc = cli_usage_error(cmd, "--device: '%s' is not a CUDA device number or 'cpu'",
                                         v);
                o->device = (int)d;
            }
            o->device_given = 1;
        }
        if (rc != CLI_OK) return rc;
    }
    if (o->recompute && !o->backward)
        return cli_usage_error(cmd, "--recompute only applies with --backward");
    if (o->check_groups > 0 && !o->backward)
        return cli_usage_error(cmd, "--check-groups only applies with --backward");
    /* eps, lo, hi that parse but are invalid (eps <= 0, lo > hi, NaN) are left to the
     * library, whose message names them. */
    return CLI_OK;
}
