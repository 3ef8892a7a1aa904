/*
 * `lgh profile`: runs one call of `lgh run` (same options) under Nsight Compute and
 * prints, per kernel, the metrics the seed tuned by (SM and DRAM throughput, warps
 * active, L2 hit rate, grid size, registers per thread, the register occupancy limit)
 * and the kernel's duration, next to what the binary says of the same kernel through
 * lgh_kernel_info (registers, spill bytes, shared memory, threads, blocks per SM).
 *
 * Steps: find ncu (--ncu, else PATH, else /usr/local/cuda/bin); run
 *   ncu --clock-control none --metrics <list> --export <tmp>/report <this program> run
 *       <options> --warmup 0 --iters 1 --check-rows 0
 * then `ncu --import <tmp>/report.ncu-rep --csv --page details` (falling back to the raw
 * page) and parse the CSV by its header. Where ncu is missing, cannot read the GPU's
 * counters (ERR_NVGPUCTRPERM) or fails, one line says so and the exit status is 1.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

static const char *const kMetrics[] = {
    "gpu__time_duration.sum",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "lts__t_sector_hit_rate.pct",
    "launch__grid_size",
    "launch__registers_per_thread",
    "launch__occupancy_limit_registers",
};
#define N_BASE_METRICS ((int)(sizeof kMetrics / sizeof kMetrics[0]))
enum { M_REGS = 6, MAX_METRICS = N_BASE_METRICS + 16 };

/* The metrics one profile asks: kMetrics, then those of --metrics (the names ncu knows
 * differ between GPUs and ncu versions, so the extra ones are the caller's choice, e.g.
 * sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active for the tensor pipe). */
typedef struct metric_list {
    const char *name[MAX_METRICS];
    int count;
} metric_list_t;

static void print_help(void)
{
    printf("usage: lgh profile [options]\n"
           "\n"
           "Runs one call of `lgh run` with the same options under Nsight Compute (ncu) and\n"
           "prints, per kernel, these metrics:\n");
    for (int i = 0; i < N_BASE_METRICS; ++i) printf("  %s\n", kMetrics[i]);
    printf("next to the binary's registers, spill bytes, shared memory, threads and blocks\n"
           "per SM for the same kernel (lgh_kernel_info). Needs a CUDA device and ncu; where\n"
           "ncu is missing or cannot read the GPU's counters it says so in one line.\n"
           "\n"
           "options (those of lgh run, plus):\n");
    cli_print_run_options(stdout);
    printf("  --ncu PATH         the ncu program (default: ncu on PATH, else\n"
           "                     /usr/local/cuda/bin/ncu)\n"
           "  --metrics LIST     more ncu metrics to print, comma-separated (at most 16)\n"
           "  --keep             keep ncu's report and log (their folder is printed)\n"
           "  --help             this text\n");
}

/* ---- processes ------------------------------------------------------------------------ */

/* Runs argv with stdout and stderr into out_path. Returns the exit status, or -1. */
static int run_to_file(char *const argv[], const char *out_path)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static int is_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* ncu: on PATH, else the toolkit's usual place. */
static int find_ncu(char *out, size_t len)
{
    const char *path = getenv("PATH");
    if (path) {
        const char *p = path;
        while (*p) {
            const char *colon = strchr(p, ':');
            size_t n = colon ? (size_t)(colon - p) : strlen(p);
            if (n > 0 && n + 5 < len) {
                snprintf(out, len, "%.*s/ncu", (int)n, p);
                if (is_executable(out)) return 0;
            }
            p += n + (colon ? 1 : 0);
        }
    }
    snprintf(out, len, "/usr/local/cuda/bin/ncu");
    return is_executable(out) ? 0 : -1;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
        if (n + 1 == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

/* The last non-empty line of text, for a one-line failure message. */
static void last_line(const char *text, char *out, size_t len)
{
    out[0] = '\0';
    const char *end = text + strlen(text);
    while (end > text && isspace((unsigned char)end[-1])) --end;
    const char *start = end;
    while (start > text && start[-1] != '\n') --start;
    snprintf(out, len, "%.*s", (int)(end - start), start);
}

/* ---- CSV -------------------------------------------------------------------------------- */

enum { MAX_FIELDS = 64, MAX_KERNELS = 256 };

/* Splits one CSV line in place ("a","b,c",""""): returns the field count. */
static int csv_split(char *line, char **fields)
{
    int n = 0;
    char *p = line;
    while (n < MAX_FIELDS) {
        char *out = p;
        fields[n++] = out;
        if (*p == '"') {
            ++p;
            while (*p) {
                if (*p == '"' && p[1] == '"') {
                    *out++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    ++p;
                    break;
                } else {
                    *out++ = *p++;
                }
            }
            while (*p && *p != ',') ++p;
        } else {
            while (*p && *p != ',' && *p != '\r' && *p != '\n') *out++ = *p++;
        }
        const int more = *p == ',';
        *out = '\0';
        if (!more) break;
        ++p;
    }
    return n;
}

/* Copies src into dst[n], cut to fit (names and values from ncu may be long). */
static void copy_str(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (len >= n) len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int column(char **hdr, int n, const char *name)
{
    for (int i = 0; i < n; ++i)
        if (!strcmp(hdr[i], name)) return i;
    return -1;
}

typedef struct kernel {
    char id[16];
    char name[512];
    char block[48], grid[48];
    char value[MAX_METRICS][48];
    char unit[MAX_METRICS][24];
} kernel_t;

static kernel_t *find_or_add(kernel_t *k, int *count, const char *id)
{
    for (int i = 0; i < *count; ++i)
        if (!strcmp(k[i].id, id)) return &k[i];
    if (*count >= MAX_KERNELS) return NULL;
    kernel_t *n = &k[(*count)++];
    memset(n, 0, sizeof *n);
    snprintf(n->id, sizeof n->id, "%s", id);
    return n;
}

static int metric_index(const metric_list_t *ml, const char *name)
{
    for (int i = 0; i < ml->count; ++i)
        if (!strcmp(ml->name[i], name)) return i;
    return -1;
}

/* Parses ncu's CSV (details page: one row per metric; raw page: one column per metric).
 * Returns the number of metric values found. */
static int parse_csv(char *text, const metric_list_t *ml, kernel_t *k, int *count)
{
    char *fields[MAX_FIELDS], *hdr[MAX_FIELDS];
    char *hdr_copy = NULL;
    int nh = 0, found = 0;
    int c_id = -1, c_name = -1, c_block = -1, c_grid = -1, c_metric = -1, c_unit = -1, c_value = -1;
    int raw_col[MAX_METRICS];
    char raw_units[MAX_METRICS][24];
    memset(raw_units, 0, sizeof raw_units);
    int units_row_pending = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] != '"') continue; /* ==PROF== and other chatter */
        if (!hdr_copy) {
            hdr_copy = strdup(line);
            if (!hdr_copy) return 0;
            nh = csv_split(hdr_copy, hdr);
            c_id = column(hdr, nh, "ID");
            c_name = column(hdr, nh, "Kernel Name");
            if (c_name < 0) c_name = column(hdr, nh, "Function Name");
            c_block = column(hdr, nh, "Block Size");
            c_grid = column(hdr, nh, "Grid Size");
            c_metric = column(hdr, nh, "Metric Name");
            c_unit = column(hdr, nh, "Metric Unit");
            c_value = column(hdr, nh, "Metric Value");
            for (int m = 0; m < ml->count; ++m) raw_col[m] = column(hdr, nh, ml->name[m]);
            units_row_pending = c_metric < 0; /* the raw page's second row holds units */
            if (c_id < 0) c_id = c_name; /* no ID column: one kernel per name */
            if (c_id < 0) break;
            continue;
        }
        int nf = csv_split(line, fields);
        if (nf <= c_id) continue;
        if (units_row_pending && (!fields[c_id][0] || (c_id != c_name && !isdigit((unsigned char)fields[c_id][0])))) {
            for (int m = 0; m < ml->count; ++m)
                if (raw_col[m] >= 0 && raw_col[m] < nf)
                    copy_str(raw_units[m], sizeof raw_units[m], fields[raw_col[m]]);
            units_row_pending = 0; /* the units belong to every kernel: copied below */
            continue;
        }
        kernel_t *kk = find_or_add(k, count, fields[c_id]);
        if (!kk) break;
        if (c_name >= 0 && c_name < nf) copy_str(kk->name, sizeof kk->name, fields[c_name]);
        if (c_block >= 0 && c_block < nf) copy_str(kk->block, sizeof kk->block, fields[c_block]);
        if (c_grid >= 0 && c_grid < nf) copy_str(kk->grid, sizeof kk->grid, fields[c_grid]);
        if (c_metric >= 0) {
            if (c_metric >= nf || c_value >= nf) continue;
            int m = metric_index(ml, fields[c_metric]);
            if (m < 0) continue;
            copy_str(kk->value[m], sizeof kk->value[m], fields[c_value]);
            if (c_unit >= 0 && c_unit < nf)
                copy_str(kk->unit[m], sizeof kk->unit[m], fields[c_unit]);
            ++found;
        } else {
            for (int m = 0; m < ml->count; ++m) {
                if (raw_col[m] < 0 || raw_col[m] >= nf) continue;
                copy_str(kk->value[m], sizeof kk->value[m], fields[raw_col[m]]);
                copy_str(kk->unit[m], sizeof kk->unit[m], raw_units[m]);
                ++found;
            }
        }
    }
    free(hdr_copy);
    return found;
}

/* ---- matching ncu's kernels with lgh_kernel_info --------------------------------------- */

static double number(const char *s)
{
    char buf[64];
    size_t n = 0;
    for (; *s && n + 1 < sizeof buf; ++s)
        if (*s != ',') buf[n++] = *s;
    buf[n] = '\0';
    char *end;
    double v = strtod(buf, &end);
    return end == buf ? -1.0 : v;
}

/* "(256, 1, 1)" -> 256; -1 if unreadable. */
static long threads_of(const char *block)
{
    long prod = 1;
    int any = 0;
    for (const char *p = block; *p;) {
        if (isdigit((unsigned char)*p)) {
            char *end;
            prod *= strtol(p, &end, 10);
            p = end;
            any = 1;
        } else {
            ++p;
        }
    }
    return any ? prod : -1;
}

/* The identifier an lgh_kernel_info name starts with ("lgh_norm_warp<f32,...>" ->
 * "lgh_norm_warp"). */
static void leading_identifier(const char *name, char *out, size_t len)
{
    size_t n = 0;
    while (name[n] && (isalnum((unsigned char)name[n]) || name[n] == '_') && n + 1 < len) ++n;
    snprintf(out, len, "%.*s", (int)n, name);
}

/* The lgh_kernel_info entry for an ncu kernel: the name's leading identifier must appear
 * in ncu's kernel name or the registers must agree; among those, agreeing registers,
 * the identifier and the block size each make a better match. */
static void print_binary_match(const kernel_t *k, const lgh_kernel_info_t *info, int count)
{
    if (!strstr(k->name, "lgh")) {
        printf("    binary: not an lgh kernel (vendor library: cuBLASLt / cuBLAS)\n");
        return;
    }
    const double regs = number(k->value[M_REGS]);
    const long threads = threads_of(k->block);
    int best = -1, best_score = 0, ties = 0;
    for (int i = 0; i < count; ++i) {
        char ident[96];
        leading_identifier(info[i].name, ident, sizeof ident);
        const int named = ident[0] && strstr(k->name, ident) != NULL;
        const int same_regs = regs >= 0 && info[i].registers == (int)regs;
        if (!named && !same_regs) continue;
        const int score = 4 * same_regs + 2 * named + (threads > 0 && info[i].threads_per_block == threads);
        if (score > best_score) best = i, best_score = score, ties = 0;
        else if (score == best_score) ++ties;
    }
    if (best < 0) {
        printf("    binary: no lgh_kernel_info entry matches (%.0f registers, %ld threads)\n", regs,
               threads);
        return;
    }
    const lgh_kernel_info_t *b = &info[best];
    printf("    binary: registers %d, spill (local) %d B/thread, shared %d B/block, threads %d, "
           "blocks/SM %d  [%s%s%s]\n",
           b->registers, b->local_bytes, b->shared_bytes, b->threads_per_block, b->blocks_per_sm,
           b->name, ties ? ", or one of its siblings alike" : "",
           best_score < 4 ? "; registers differ from ncu's" : "");
}

/* ---- the command ------------------------------------------------------------------------ */

int cli_cmd_profile(int argc, char **argv)
{
    /* Take out profile's own options; the rest are run's. */
    char ncu[4096] = "";
    int keep = 0;
    metric_list_t ml = {{0}, 0};
    for (int i = 0; i < N_BASE_METRICS; ++i) ml.name[ml.count++] = kMetrics[i];
    char extra[1024] = ""; /* --metrics' value, split in place into ml */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest) return CLI_FAIL;
    int nrest = 0;
    rest[nrest++] = argv[0];
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--keep")) {
            keep = 1;
        } else if (!strcmp(argv[i], "--metrics") || !strncmp(argv[i], "--metrics=", 10)) {
            const char *v = argv[i][9] == '=' ? argv[i] + 10 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !v[0] || strlen(v) >= sizeof extra) {
                free(rest);
                return cli_usage_error("profile", "--metrics needs a comma-separated list of ncu metric names");
            }
            snprintf(extra, sizeof extra, "%s", v);
            char *save = NULL;
            for (char *t = strtok_r(extra, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (ml.count >= MAX_METRICS) {
                    free(rest);
                    return cli_usage_error("profile", "--metrics: at most 16 names");
                }
                if (metric_index(&ml, t) < 0) ml.name[ml.count++] = t;
            }
        } else if (!strcmp(argv[i], "--ncu") || !strncmp(argv[i], "--ncu=", 6)) {
            const char *v = argv[i][5] == '=' ? argv[i] + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                free(rest);
                return cli_usage_error("profile", "--ncu needs a value");
            }
            snprintf(ncu, sizeof ncu, "%s", v);
        } else {
            rest[nrest++] = argv[i];
        }
    }
    run_opts_t o;
    int rc = cli_parse_run_opts("profile", nrest, rest, &o);
    if (rc == CLI_HELP) {
        print_help();
        free(rest);
        return CLI_OK;
    }
    if (rc != CLI_OK) {
        free(rest);
        return rc;
    }
    if (o.device == LGH_DEVICE_CPU) {
        free(rest);
        return cli_usage_error("profile", "--device cpu: profiling needs a CUDA device");
    }

    /* Everything that can be said in one line before ncu runs. */
    if (ncu[0] && !is_executable(ncu)) {
        printf("lgh profile: ncu not found at '%s'\n", ncu);
        free(rest);
        return CLI_FAIL;
    }
    if (!ncu[0] && find_ncu(ncu, sizeof ncu)) {
        printf("lgh profile: ncu (Nsight Compute) is not on PATH nor in /usr/local/cuda/bin; "
               "install it or pass --ncu PATH\n");
        free(rest);
        return CLI_FAIL;
    }
    lgh_context_t ctx = NULL;
    const lgh_status_t cs = lgh_create(&ctx, o.device);
    if (cs != LGH_STATUS_SUCCESS) {
        printf("lgh profile: %s %d: %s\n",
               cs == LGH_STATUS_NO_DEVICE ? "no CUDA device" : "cannot create a context on device",
               o.device, lgh_last_error(NULL));
        free(rest);
        return CLI_FAIL;
    }
    char self[4096];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sn <= 0) {
        printf("lgh profile: cannot find this program's own path (/proc/self/exe)\n");
        lgh_destroy(ctx);
        free(rest);
        return CLI_FAIL;
    }
    self[sn] = '\0';
    char dir[] = "/tmp/lgh-profile-XXXXXX";
    if (!mkdtemp(dir)) {
        printf("lgh profile: cannot make a temporary folder: %s\n", strerror(errno));
        lgh_destroy(ctx);
        free(rest);
        return CLI_FAIL;
    }

    /* ncu ... <self> run <options> --warmup 0 --iters 1 --check-rows 0 --device N */
    char metrics[2048] = "", report[4200], log[4200], csv[4200], rep_file[4200], device[16];
    for (int i = 0; i < ml.count; ++i)
        snprintf(metrics + strlen(metrics), sizeof metrics - strlen(metrics), "%s%s", i ? "," : "",
                 ml.name[i]);
    snprintf(report, sizeof report, "%s/report", dir);
    snprintf(rep_file, sizeof rep_file, "%s/report.ncu-rep", dir);
    snprintf(log, sizeof log, "%s/ncu.log", dir);
    snprintf(csv, sizeof csv, "%s/metrics.csv", dir);
    snprintf(device, sizeof device, "%d", o.device);
    char **child = calloc((size_t)nrest + 24, sizeof *child);
    if (!child) {
        lgh_destroy(ctx);
        free(rest);
        return CLI_FAIL;
    }
    int c = 0;
    child[c++] = ncu;
    child[c++] = "--clock-control";
    child[c++] = "none";
    child[c++] = "--metrics";
    child[c++] = metrics;
    child[c++] = "--export";
    child[c++] = report;
    child[c++] = "--force-overwrite";
    child[c++] = self;
    child[c++] = "run";
    for (int i = 1; i < nrest; ++i) child[c++] = rest[i];
    child[c++] = "--warmup";
    child[c++] = "0";
    child[c++] = "--iters";
    child[c++] = "1";
    child[c++] = "--check-rows";
    child[c++] = "0";
    child[c++] = "--device";
    child[c++] = device;
    child[c] = NULL;

    /* The concrete mode the profiled call runs (the child plans the same problem alike). */
    lgh_math_t math = o.math == LGH_MATH_DEFAULT ? LGH_MATH_TF32 : o.math;
    {
        static char nowhere[16];
        lgh_args_t pa;
        lgh_args_init(&pa, o.m, o.k, o.n, o.groups);
        pa.dtype = o.dtype, pa.math = o.math, pa.engine = o.engine;
        pa.x = pa.w = pa.bias = pa.gamma = pa.beta = pa.y = nowhere;
        lgh_plan_math(ctx, &pa, &math);
    }
    printf("lgh profile: M=%lld K=%lld N=%lld groups=%lld %s%s%s, engine %s, device %d (%s)\n",
           (long long)o.m, (long long)o.k, (long long)o.n, (long long)o.groups,
           lgh_dtype_name(o.dtype), o.dtype == LGH_DTYPE_FLOAT32 ? " " : "",
           o.dtype == LGH_DTYPE_FLOAT32 ? lgh_math_name(math) : "", lgh_engine_name(o.engine),
           o.device, lgh_device_description(ctx));
    printf("  ncu: %s --clock-control none, one call (the first for the shape)\n", ncu);

    rc = CLI_FAIL;
    const int status = run_to_file(child, log);
    char *log_text = read_file(log);
    char line[512] = "";
    if (log_text) last_line(log_text, line, sizeof line);
    if (log_text && strstr(log_text, "ERR_NVGPUCTRPERM")) {
        printf("lgh profile: ncu cannot read the GPU's performance counters (ERR_NVGPUCTRPERM): "
               "run as root or allow profiling for all users (NVreg_RestrictProfilingToAdminUsers=0)\n");
        keep = 1;
        goto out;
    }
    if (status != 0 || access(rep_file, R_OK) != 0) {
        printf("lgh profile: ncu failed (exit status %d): %s [log: %s]\n", status,
               line[0] ? line : "no output", log);
        keep = 1;
        goto out;
    }

    /* Read the report back as CSV: the details page, else the raw page. */
    kernel_t *kernels = calloc(MAX_KERNELS, sizeof *kernels);
    int nk = 0, found = 0;
    static const char *const pages[] = {"details", "raw"};
    for (int pg = 0; pg < 2 && kernels && found == 0; ++pg) {
        char *import[] = {ncu, "--import", rep_file, "--csv", "--page", (char *)pages[pg], NULL};
        nk = 0;
        memset(kernels, 0, MAX_KERNELS * sizeof *kernels);
        if (run_to_file(import, csv) != 0) continue;
        char *text = read_file(csv);
        if (text) found = parse_csv(text, &ml, kernels, &nk);
        free(text);
    }
    if (!kernels || found == 0 || nk == 0) {
        printf("lgh profile: ncu ran but its report has no readable metrics (CSV kept at %s)\n",
               csv);
        free(kernels);
        keep = 1;
        goto out;
    }

    int ninfo = 0;
    lgh_kernel_info(ctx, NULL, 0, &ninfo);
    lgh_kernel_info_t *info = calloc((size_t)ninfo + 1, sizeof *info);
    if (info) lgh_kernel_info(ctx, info, ninfo, &ninfo);

    for (int i = 0; i < nk; ++i) {
        const kernel_t *k = &kernels[i];
        printf("\nkernel %d: %.160s%s\n", i + 1, k->name, strlen(k->name) > 160 ? "..." : "");
        if (k->grid[0] || k->block[0]) printf("    grid %s, block %s\n", k->grid, k->block);
        for (int m = 0; m < ml.count; ++m)
            printf("    %-52s %14s %s\n", ml.name[m], k->value[m][0] ? k->value[m] : "n/a",
                   k->unit[m]);
        if (info) print_binary_match(k, info, ninfo);
    }
    free(info);
    free(kernels);
    rc = CLI_OK;

out:
    free(log_text);
    if (keep) {
        printf("  ncu's files: %s\n", dir);
    } else {
        unlink(rep_file);
        unlink(log);
        unlink(csv);
        rmdir(dir);
    }
    free(child);
    free(rest);
    lgh_destroy(ctx);
    return rc;
}
