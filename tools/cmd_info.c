/*
 * `lgh info`: the library's version, the CPU and its BLAS, every CUDA device, the
 * engines available on each (and why the others are not), and every compiled kernel's
 * registers, shared memory, spill (local) bytes, threads per block and blocks per SM as
 * the device reports them (lgh_kernel_info).
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void print_help(void)
{
    printf("usage: lgh info [--device N|cpu]\n"
           "\n"
           "Prints the lgh version, the CPU and its BLAS, each CUDA device, the engines\n"
           "available there, and every kernel's registers, shared memory per block, spill\n"
           "(local memory) bytes per thread, threads per block and blocks per SM.\n"
           "\n"
           "options:\n"
           "  --device N|cpu   only this device (default: the CPU and every CUDA device)\n"
           "  --help           this text\n");
}

/* Engines of ctx: the available ones, then each unavailable one with lgh's reason. */
static void print_engines(lgh_context_t ctx)
{
    lgh_math_t accurate = LGH_MATH_ACCURATE;
    lgh_resolve_math(ctx, LGH_DTYPE_FLOAT32, LGH_MATH_ACCURATE, &accurate);
    printf("  float32 math accurate: %s here, untuned (lgh tune measures fp32 against 3xtf32)\n",
           lgh_math_name(accurate));
    printf("  engines available:");
    int any = 0;
    for (int e = LGH_ENGINE_AUTO + 1; e < LGH_ENGINE_COUNT; ++e) {
        if (lgh_engine_available(ctx, (lgh_engine_t)e)) {
            printf(" %s", lgh_engine_name((lgh_engine_t)e));
            any = 1;
        }
    }
    printf("%s\n", any ? "" : " none");
    for (int e = LGH_ENGINE_AUTO + 1; e < LGH_ENGINE_COUNT; ++e) {
        if (lgh_engine_available(ctx, (lgh_engine_t)e)) continue;
        /* lgh_plan with the engine forced says why (it never touches the pointers). */
        static char nowhere[16];
        lgh_args_t a;
        lgh_args_init(&a, 1, 1, 1, 1);
        a.engine = (lgh_engine_t)e;
        a.x = a.w = a.bias = a.gamma = a.beta = nowhere;
        a.y = nowhere;
        lgh_plan(ctx, &a, NULL, NULL);
        printf("  not available: %-8s (%s)\n", lgh_engine_name((lgh_engine_t)e),
               lgh_last_error(ctx));
    }
}

static void print_kernels(lgh_context_t ctx)
{
    int count = 0;
    if (lgh_kernel_info(ctx, NULL, 0, &count) != LGH_STATUS_SUCCESS || count == 0) {
        printf("  kernels: none on this device\n");
        return;
    }
    lgh_kernel_info_t *k = calloc((size_t)count, sizeof *k);
    if (!k) return;
    int got = count;
    lgh_kernel_info(ctx, k, count, &got);
    if (got < count) count = got;
    printf("  kernels (%d):\n", count);
    printf("    %-44s %-9s %5s %9s %8s %8s %10s\n", "name", "engine", "regs", "smem B", "spill B",
           "threads", "blocks/SM");
    int spills = 0;
    for (int i = 0; i < count; ++i) {
        printf("    %-44s %-9s %5d %9d %8d %8d %10d\n", k[i].name, lgh_engine_name(k[i].engine),
               k[i].registers, k[i].shared_bytes, k[i].local_bytes, k[i].threads_per_block,
               k[i].blocks_per_sm);
        spills += k[i].local_bytes > 0;
    }
    if (spills) printf("  note: %d kernel%s use local memory (spills or stack arrays)\n", spills,
                       spills == 1 ? "" : "s");
    free(k);
}

static int info_cpu(void)
{
    lgh_context_t ctx = NULL;
    if (lgh_create(&ctx, LGH_DEVICE_CPU) != LGH_STATUS_SUCCESS) {
        printf("cpu: cannot create a context: %s\n", lgh_last_error(NULL));
        return CLI_FAIL;
    }
    printf("cpu: %s\n", lgh_device_description(ctx));
    printf("  BLAS: %s\n", lgh_cpu_blas_name());
    print_engines(ctx);
    lgh_destroy(ctx);
    return CLI_OK;
}

static int info_gpu(int dev)
{
    lgh_context_t ctx = NULL;
    const lgh_status_t s = lgh_create(&ctx, dev);
    if (s != LGH_STATUS_SUCCESS) {
        printf("device %d: %s (%s)\n", dev,
               s == LGH_STATUS_NO_DEVICE ? "no CUDA device" : "cannot create a context",
               lgh_last_error(NULL));
        return CLI_FAIL;
    }
    printf("device %d: %s\n", dev, lgh_device_description(ctx));
    print_engines(ctx);
    print_kernels(ctx);
    lgh_destroy(ctx);
    return CLI_OK;
}

int cli_cmd_info(int argc, char **argv)
{
    int only = -2; /* -2: everything */
    for (int i = 1; i < argc; ++i) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            print_help();
            return CLI_OK;
        }
        const char *v = NULL;
        if (!strncmp(arg, "--device=", 9)) {
            v = arg + 9;
        } else if (!strcmp(arg, "--device")) {
            if (i + 1 >= argc) return cli_usage_error("info", "--device needs a value");
            v = argv[++i];
        } else if (!strncmp(arg, "--", 2)) {
            return cli_usage_error("info", "unknown option '%s'", arg);
        } else {
            return cli_usage_error("info", "unexpected argument '%s'", arg);
        }
        if (!strcmp(v, "cpu")) {
            only = LGH_DEVICE_CPU;
        } else {
            char *end;
            long d = strtol(v, &end, 10);
            if (!*v || *end || d < 0 || d > 1024)
                return cli_usage_error("info", "--device: '%s' is not a CUDA device number or 'cpu'",
                                       v);
            only = (int)d;
        }
    }

    const int lib = lgh_version();
    printf("lgh version %d.%d.%d", lib / 10000, lib / 100 % 100, lib % 100);
    if (lib != LGH_VERSION)
        printf(" (library; this program was built with %d.%d.%d)", LGH_VERSION_MAJOR,
               LGH_VERSION_MINOR, LGH_VERSION_PATCH);
    printf("\n");

    int rc = CLI_OK;
    if (only == -2 || only == LGH_DEVICE_CPU) rc |= info_cpu();
    if (only >= 0) return rc | info_gpu(only);
    if (only != -2) return rc;

    /* Every CUDA device lgh can open. */
    const int n = cli_gpu_device_count();
    if (n == 0) {
        lgh_context_t probe = NULL;
        if (lgh_create(&probe, 0) == LGH_STATUS_SUCCESS) {
            lgh_destroy(probe);
            return rc | info_gpu(0);
        }
        printf("cuda: no device (%s)\n", lgh_last_error(NULL));
        return rc;
    }
    printf("cuda: %d device%s\n", n, n == 1 ? "" : "s");
    for (int d = 0; d < n; ++d) rc |= info_gpu(d);
    return rc;
}
