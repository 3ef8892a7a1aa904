/*
 * `lgh tune`: measures every engine that can run the given problems on a device and
 * records the fastest as AUTO's choice, in lgh's tuning cache file (see lgh_tune in
 * lgh.h). One line per engine on stderr while it is timed, then each engine's median
 * time, the choice, and where the cache file is.
 *
 * --m takes a comma-separated list (M is what most often changes the fastest engine);
 * every other size is one value. Inputs are random (as `lgh run` makes them).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define TUNE_MAX_SHAPES 32

static void print_help(void)
{
    printf("usage: lgh tune [options]\n"
           "\n"
           "Times every engine that can run the problem on the device (a few warm-up calls,\n"
           "then the median of ~10 calls each; the sm80 engine once per tile configuration\n"
           "and mode) and records the fastest as the engine AUTO runs for that problem\n"
           "(with the engine's fastest variant), in memory and in the tuning cache file under\n"
           "$XDG_CACHE_HOME/lgh (else ~/.cache/lgh), which later programs read.\n"
           "LGH_CACHE=0 turns the file off.\n"
           "\n"
           "options:\n"
           "  --m M[,M...]       rows, one or more (default 1024)\n"
           "  --k K --n N --groups G   other sizes (default the reference problem,\n"
           "                     K=8192 N=8192 G=16)\n"
           "  --dtype float32|bfloat16|float16        data type (default float32)\n"
           "  --math fp32|tf32|3xtf32|accurate|default   float32 math mode (default tf32;\n"
           "                     accurate: fp32 or 3xtf32, whichever is faster here)\n"
           "  --device N|cpu     CUDA device N or the CPU (default: device 0 if present,\n"
           "                     else the CPU)\n"
           "  --help             this text\n"
           "\n"
           "examples:\n"
           "  lgh tune                                  the reference problem\n"
           "  lgh tune --m 1,16,128,1024,4096 --dtype bfloat16\n");
}

static void progress(void *user, lgh_engine_t engine, int index, int total)
{
    fprintf(stderr, "  %s: [%d/%d] timing %s...\n", (const char *)user, index, total,
            lgh_engine_name(engine));
}

/* Buffers of one problem (host, and device copies on a GPU context). */
typedef struct bufs {
    void *host[6];
    void *dev[6];
} bufs_t;

static void release(bufs_t *b)
{
    for (int i = 0; i < 6; ++i) {
        free(b->host[i]);
        cli_gpu_free(b->dev[i]);
        b->host[i] = b->dev[i] = NULL;
    }
}

/* " (fp32)" or " (3xtf32)": the mode engine runs a float32-accurate problem in (each
 * engine is timed in its own, lgh.h); "" for every other problem. */
static void engine_mode(lgh_context_t ctx, const lgh_args_t *a, lgh_engine_t engine, char *out,
                        size_t len)
{
    out[0] = '\0';
    if (a->dtype != LGH_DTYPE_FLOAT32 || a->math != LGH_MATH_ACCURATE) return;
    lgh_args_t forced = *a;
    forced.engine = engine;
    lgh_math_t math;
    if (lgh_plan_math(ctx, &forced, &math) == LGH_STATUS_SUCCESS)
        snprintf(out, len, " (%s)", lgh_math_name(math));
}

/* Tunes one problem; prints its lines. */
static int tune_one(lgh_context_t ctx, const run_opts_t *o, int64_t m, void *stream)
{
    const int gpu = o->device != LGH_DEVICE_CPU;
    lgh_args_t a;
    lgh_args_init(&a, m, o->k, o->n, o->groups);
    a.dtype = o->dtype, a.math = o->math;
    static char nowhere[16];
    a.x = a.w = a.bias = a.gamma = a.beta = nowhere;
    a.y = nowhere;
    lgh_status_t s = lgh_plan(ctx, &a, NULL, NULL);
    if (s != LGH_STATUS_SUCCESS) {
        if (cli_status_is_argument_error(s)) return cli_usage_error("tune", "%s", lgh_last_error(ctx));
        fprintf(stderr, "lgh tune: %s (%s)\n", lgh_last_error(ctx), lgh_status_string(s));
        return CLI_FAIL;
    }

    bufs_t b;
    memset(&b, 0, sizeof b);
    char err[512] = "";
    int rc = CLI_FAIL;
    const size_t eb = o->dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
    const int64_t counts[6] = {m * o->k, o->n * o->k, o->n, o->n, o->n, m * o->n};
    uint64_t seed = 0x2545f4914f6cdd1dull + (uint64_t)m;
    const double wb = 1.0 / sqrt((double)o->k);
    const double lo[6] = {0.0, -wb, -wb, 0.5, -0.5, 0.0}, hi[6] = {1.0, wb, wb, 1.5, 0.5, 0.0};
    void *ptr[6];
    for (int i = 0; i < 6; ++i) {
        b.host[i] = malloc((size_t)counts[i] * eb);
        if (!b.host[i]) {
            fprintf(stderr, "lgh tune: out of host memory (%" PRId64 " bytes)\n",
                    counts[i] * (int64_t)eb);
            goto out;
        }
        cli_fill_uniform(o->dtype, b.host[i], counts[i], &seed, lo[i], hi[i]);
        ptr[i] = b.host[i];
        if (!gpu) continue;
        if (cli_gpu_alloc(o->device, &b.dev[i], (size_t)counts[i] * eb, err, sizeof err) ||
            cli_gpu_upload(b.dev[i], b.host[i], (size_t)counts[i] * eb, err, sizeof err)) {
            fprintf(stderr, "lgh tune: device memory: %s\n", err);
            goto out;
        }
        ptr[i] = b.dev[i];
    }
    a.x = ptr[0], a.w = ptr[1], a.bias = ptr[2], a.gamma = ptr[3], a.beta = ptr[4], a.y = ptr[5];

    char label[160];
    snprintf(label, sizeof label, "M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " G=%" PRId64 " %s %s",
             m, o->k, o->n, o->groups, lgh_dtype_name(o->dtype), lgh_math_name(o->math));
    lgh_tune_result_t res[LGH_ENGINE_COUNT];
    int count = 0;
    lgh_engine_t chosen = LGH_ENGINE_AUTO;
    s = lgh_tune(ctx, &a, stream, progress, label, &chosen, res, LGH_ENGINE_COUNT, &count);
    printf("%s\n", label);
    for (int i = 0; i < count && i < LGH_ENGINE_COUNT; ++i) {
        char mode[32];
        engine_mode(ctx, &a, res[i].engine, mode, sizeof mode);
        if (res[i].status == LGH_STATUS_SUCCESS)
            printf("  %-9s %10.4f ms%s\n", lgh_engine_name(res[i].engine), (double)res[i].ms, mode);
        else
            printf("  %-9s failed: %s%s\n", lgh_engine_name(res[i].engine),
                   lgh_status_string(res[i].status), mode);
    }
    if (s != LGH_STATUS_SUCCESS) {
        fprintf(stderr, "lgh tune: %s (%s)\n", lgh_last_error(ctx), lgh_status_string(s));
        goto out;
    }
    char mode[32];
    engine_mode(ctx, &a, chosen, mode, sizeof mode);
    printf("  choice: %s%s\n", lgh_engine_name(chosen), mode);
    rc = CLI_OK;
out:
    release(&b);
    return rc;
}

/* Only the options that describe a problem to tune; --m's list is taken out here. */
static int parse(int argc, char **argv, run_opts_t *o, int64_t *ms, int *nm)
{
    static const char *const allowed[] = {"--m", "--k", "--n", "--groups", "--dtype", "--math",
                                          "--device"};
    char **rest = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!rest) return CLI_FAIL;
    int nrest = 0, rc = CLI_OK;
    const char *mlist = NULL;
    rest[nrest++] = argv[0];
    for (int i = 1; i < argc && rc == CLI_OK; ++i) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            rc = CLI_HELP;
            break;
        }
        const char *eq = strchr(arg, '=');
        const size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        int ok = 0;
        for (size_t j = 0; j < sizeof allowed / sizeof allowed[0]; ++j)
            ok |= strlen(allowed[j]) == len && !strncmp(arg, allowed[j], len);
        if (!ok) {
            rc = strncmp(arg, "--", 2) ? cli_usage_error("tune", "unexpected argument '%s'", arg)
                                       : cli_usage_error("tune", "unknown option '%.*s'", (int)len, arg);
            break;
        }
        if (len == 3 && !strncmp(arg, "--m", 3)) {
            if (eq) mlist = eq + 1;
            else if (i + 1 < argc) mlist = argv[++i];
            else rc = cli_usage_error("tune", "--m needs a value");
            continue;
        }
        rest[nrest++] = argv[i];
        if (!eq && i + 1 < argc) rest[nrest++] = argv[++i];
    }
    rest[nrest] = NULL;
    if (rc == CLI_OK) rc = cli_parse_run_opts("tune", nrest, rest, o);
    free(rest);
    if (rc != CLI_OK) return rc;

    *nm = 0;
    if (!mlist) {
        ms[(*nm)++] = o->m;
        return CLI_OK;
    }
    const char *c = mlist;
    for (;;) {
        char *end;
        errno = 0;
        long long v = strtoll(c, &end, 10);
        if (end == c || errno || v < 1 || (*end && *end != ','))
            return cli_usage_error("tune", "--m: '%s' is not a comma-separated list of positive integers",
                                   mlist);
        if (*nm == TUNE_MAX_SHAPES)
            return cli_usage_error("tune", "--m: at most %d values", TUNE_MAX_SHAPES);
        ms[(*nm)++] = v;
        if (!*end) break;
        c = end + 1;
    }
    return CLI_OK;
}

int cli_cmd_tune(int argc, char **argv)
{
    run_opts_t o;
    int64_t ms[TUNE_MAX_SHAPES];
    int nm = 0;
    int rc = parse(argc, argv, &o, ms, &nm);
    if (rc == CLI_HELP) {
        print_help();
        return CLI_OK;
    }
    if (rc != CLI_OK) return rc;

    /* Device: the one asked for, else CUDA device 0 when there is one, else the CPU. */
    if (!o.device_given && cli_gpu_device_count() == 0) o.device = LGH_DEVICE_CPU;
    lgh_context_t ctx = NULL;
    lgh_status_t s = lgh_create(&ctx, o.device);
    if (s != LGH_STATUS_SUCCESS) {
        fprintf(stderr, "lgh tune: cannot create a context on %s: %s\n",
                o.device == LGH_DEVICE_CPU ? "the CPU" : "the CUDA device", lgh_last_error(NULL));
        return CLI_FAIL;
    }
    void *stream = NULL;
    char err[512] = "";
    if (o.device != LGH_DEVICE_CPU) {
        if (!cli_gpu_built()) {
            fprintf(stderr, "lgh tune: this lgh program was built without the CUDA runtime\n");
            lgh_destroy(ctx);
            return CLI_FAIL;
        }
        if (cli_gpu_stream_create(o.device, &stream, err, sizeof err)) {
            fprintf(stderr, "lgh tune: %s\n", err);
            lgh_destroy(ctx);
            return CLI_FAIL;
        }
    }
    printf("device: %s\n", lgh_device_description(ctx));
    for (int i = 0; i < nm && rc == CLI_OK; ++i) rc = tune_one(ctx, &o, ms[i], stream);

    char path[1024];
    if (lgh_tune_cache_file(ctx, path, sizeof path) == LGH_STATUS_SUCCESS)
        printf("cache file: %s\n", path);
    else
        printf("cache file: none (%s)\n", lgh_last_error(ctx));
    cli_gpu_stream_destroy(stream);
    lgh_destroy(ctx);
    return rc;
}
