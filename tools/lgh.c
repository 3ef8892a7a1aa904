/*
 * lgh — the command-line program: `lgh run` times one problem and checks it against the
 * double-precision reference, `lgh info` describes the devices, engines and kernels,
 * `lgh profile` runs one call under Nsight Compute, `lgh tune` fills the tuning cache.
 * This file dispatches to the commands (cmd_run.c, cmd_info.c, cmd_profile.c,
 * cmd_tune.c); see cli.h for the exit statuses.
 */
#include <string.h>

#include "cli.h"

static void print_help(FILE *f)
{
    fprintf(f,
            "usage: lgh <command> [options]\n"
            "\n"
            "lgh computes y = hardtanh(groupnorm(x W^T + b; G groups, gamma, beta, eps); lo, hi)\n"
            "fused, on a CUDA GPU or the CPU.\n"
            "\n"
            "commands:\n"
            "  run       run a problem (the reference problem M=1024 K=8192 N=8192 G=16 by\n"
            "            default): engine, median time, TFLOP/s, error vs the fp64 reference\n"
            "  info      version, devices, engines available, every kernel's registers,\n"
            "            shared memory, spill bytes, threads and blocks per SM\n"
            "  profile   one call of `run` under Nsight Compute, per-kernel metrics next to\n"
            "            the binary's registers, spills and shared memory\n"
            "  tune      time every engine for given shapes and record the fastest as\n"
            "            AUTO's choice in the tuning cache file\n"
            "\n"
            "`lgh <command> --help` describes a command's options. The environment variable\n"
            "LGH_ENGINE (auto, cpu, cublaslt, sm80, sm90) forces an engine, as --engine does.\n"
            "Exit status: 0 success, 1 failure, 2 wrong arguments.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (!strcmp(cmd, "help") && argc > 2) {
            char *help_argv[] = {argv[2], "--help", NULL};
            if (!strcmp(argv[2], "run")) return cli_cmd_run(2, help_argv);
            if (!strcmp(argv[2], "info")) return cli_cmd_info(2, help_argv);
            if (!strcmp(argv[2], "profile")) return cli_cmd_profile(2, help_argv);
            if (!strcmp(argv[2], "tune")) return cli_cmd_tune(2, help_argv);
            fprintf(stderr, "lgh: unknown command '%s' (see 'lgh --help')\n", argv[2]);
            return CLI_USAGE;
        }
        print_help(stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "--version")) {
        const int v = lgh_version();
        printf("lgh %d.%d.%d\n", v / 10000, v / 100 % 100, v % 100);
        return CLI_OK;
    }
    if (!strcmp(cmd, "run")) return cli_cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cli_cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "profile")) return cli_cmd_profile(argc - 1, argv + 1);
    if (!strcmp(cmd, "tune")) return cli_cmd_tune(argc - 1, argv + 1);
    fprintf(stderr, "lgh: unknown command '%s' (see 'lgh --help')\n", cmd);
    return CLI_USAGE;
}
