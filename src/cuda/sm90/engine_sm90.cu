// The sm90 engine: the fused Hopper kernel (kernel_sm90.cuh) behind the engine interface
// (src/core/engine.h). Decides which problems the kernel takes, makes the TMA tensor maps,
// picks the instantiation and the cluster size from the group size, sizes the persistent
// grid, and launches. Per-context state (the driver's tensor-map encoder, which kernels
// have their shared-memory limit raised, how many clusters fit) lives in the context's
// engine slot; a forward call allocates nothing and does not synchronise.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "engine_util.h"
#include "epilogue/groupnorm_kernel.h"
#include "kernel_facts.h"
#include "sm90/kernel_sm90.cuh"
#include "sm90/kernels.h"
#include "sm90/plain_product.h"
#include "sm90/tensor_map.h"

// Whether CTAs of a cluster along N (a hardware cluster for a group's statistics) share the
// x tile by TMA multicast. 0 builds the variant without.
#ifndef LGH_SM90_MULTICAST
#define LGH_SM90_MULTICAST 1
#endif

// The engine's variants: the ways one problem can run, named by small ids that lgh_tune
// times and records (and LGH_SM90_VARIANT=id forces, for measuring and testing):
//   id = way * 100 + parts,
// parts the split-K part count S (1 = no split; any S from 1 to kMaxSplits where split K is
// allowed), way one of the layouts below (WAY_MODEL: the engine's own choice). A way that
// cannot run the problem, or any way with S > 1 (split K has one layout), counts as
// WAY_MODEL. Ids below 100 are split counts alone, as tuning files written before the
// ways existed hold them.
enum way {
    WAY_MODEL,       // the engine's choice: the rows below marked (default)
    WAY_UNIT,        // groups wider than the tile: one CTA does a group's tiles in turn
    WAY_HW_CLUSTER,  // ... a hardware cluster along N, statistics through distributed shared memory
    WAY_SW_CLUSTER,  // ... a software cluster (cooperative launch), statistics through global memory (default)
    WAY_W_MULTICAST, // groups within a tile: a cluster of 2 along M sharing W by multicast (level
                     // with plain CTAs, docs/PERF.md "Clusters for multicast alone, across M")
    WAY_STRADDLE,    // groups that do not tile the 256-channel tile: fused, edge statistics
                     // exchanged with the neighbouring tiles (straddle mode)
    WAY_UNFUSED,     // ... the plain product into a float32 workspace, then the group-norm pass (default)
    WAY_COUNT
};
const int kWayStride = 100; // id = way * kWayStride + parts
// Straddle mode as the model's choice for the groups it takes (else they run unfused).
const bool kStraddleByDefault = false;

// What one run does: its way and its part count.
struct choice {
    int way;
    int splits;
};

namespace {

const char *const kEngine = "sm90";

// Kernel tables by family (engine_util.h); float32 data in tf32 runs with x rounded to
// nearest tf32 in registers (kernels_f32.cu).
const int FAMILIES = LGH_FAMILY_F32X3 + 1;

struct sm90_state {
    void *encoder;                                    // cuTensorMapEncodeTiled
    bool smem_raised[FAMILIES][LGH_SM90_GS_COUNT];    // cudaFuncSetAttribute done
    bool smem_raised_x3v[4];                          // the same, lgh_sm90_kernels_f32x3_version
    bool smem_raised_op[3][4];                        // the same, the NN and TT tables [op][version]
    bool smem_raised_straddle[3];                     // the same, lgh_sm90_kernels_straddle
    int forced_variant;                               // LGH_SM90_VARIANT=id, else -1 (the model)
    int dw_version;                                   // the backward's dW main loop (1 .. 3)
    bool bwd_transpose;                               // LGH_SM90_BWD_TRANSPOSE=1: the backward's products
                                                      // on transposed copies (NT only), for measuring
    int max_clusters[2][LGH_SM90_MAX_CLUSTER + 1];    // by X3, cluster size; 0 = not asked yet
    // Launch fallbacks (run_launch): a cooperative launch (software clusters) or a cluster
    // launch the device refused once — MPS with an SM limit, a green context — is not
    // tried again on this context; wide groups then take the next way down.
    bool coop_refused, cluster_refused;
    bool refuse_coop_for_test; // LGH_SM90_REFUSE_COOPERATIVE=1: treat every cooperative launch as refused
};

// Groups wider than the CTA tile: one CTA does the group's tiles in turn (unit mode), or a
// cluster of CTAs along N does them at once and exchanges statistics, through global
// memory between CTAs of a cooperative launch (software cluster, the default: no cluster
// launch, which v3 measured costs 4-9%; v5 measured 2-6% faster than the hardware
// cluster at the reference problem) or through distributed shared memory (a hardware
// cluster, WAY_HW_CLUSTER).

const void *const *kernel_table(int f)
{
    return f == LGH_FAMILY_F32    ? lgh_sm90_kernels_f32
           : f == LGH_FAMILY_BF16 ? lgh_sm90_kernels_bf16
           : f == LGH_FAMILY_F16  ? lgh_sm90_kernels_f16
                                  : lgh_sm90_kernels_f32x3;
}

int smem_bytes(int f) { return f == LGH_FAMILY_F32X3 ? LGH_SM90_SMEM_BYTES_X3 : LGH_SM90_SMEM_BYTES; }

const char *family_tag(int f)
{
    return f == LGH_FAMILY_F32    ? "f32 tf32"
           : f == LGH_FAMILY_BF16 ? "bf16"
           : f == LGH_FAMILY_F16  ? "f16"
                                  : "f32 3xtf32";
}

// How a problem maps onto the kernel: the group's channels inside one CTA tile, how a
// group wider than the tile is done, and the cluster's shape.
struct layout {
    int gs_tile;    // a group's channels inside one tile (the group size, or 256)
    int subtiles;   // tiles one CTA does in turn for one group (unit mode), else 1
    int group_ctas; // CTAs of a cluster row sharing one group's statistics (cluster mode), else 1
    int cn;         // CTAs along N: group_ctas, or 2 for x multicast alone
    int cm;         // CTAs along M: 2 for W multicast (box rows 256 / 2)
    bool x_mc;      // x multicast over the cluster row (box rows 128 / cn)
    bool global;    // the cluster row is a software cluster (statistics through global memory)
    bool straddle;  // straddle mode: groups of any size below 512, one CTA per tile, statistics of
                    // groups crossing tiles exchanged with the neighbours (kernel_sm90.cuh)
};

bool tiles_evenly(int64_t gs) { return gs <= LGH_SM90_BN ? lgh_is_pow2(gs) : gs % LGH_SM90_BN == 0; }

// Whether straddle mode can take p's groups: groups that do not tile the 256-channel CTA
// tile, narrower than two tiles (a group then touches at most 3 tiles), tf32 / bf16 / f16,
// where a cooperative launch was not refused and the grid is wider than the farthest
// neighbour in tile order (2 bands' heights: the deadlock-freedom condition,
// kernel_sm90.cuh).
bool straddle_can(const lgh_problem_t *p, const sm90_state *st, int sms)
{
    const int64_t gs = p->group_size;
    return !st->coop_refused && lgh_family_of(&p->a) != LGH_FAMILY_F32X3 && !tiles_evenly(gs) &&
           gs < 2 * LGH_SM90_BN && sms > 2 * LGH_SM90_BAND;
}
// Whether p's groups run in straddle mode under `way`.
bool straddles(const lgh_problem_t *p, const sm90_state *st, int sms, int way)
{
    return straddle_can(p, st, sms) && (way == WAY_STRADDLE || (way == WAY_MODEL && kStraddleByDefault));
}

// Groups wider than the tile (span tiles): whether a cluster of span CTAs can take them (at
// most 4 tiles, a power of two), and whether unit mode can (not 3xtf32, whose instances
// have no unit mode; not float16, whose earlier tiles would wait pre-norm in y, where
// values beyond float16's range would become Inf).
bool cluster_can(int span) { return span > 1 && span <= LGH_SM90_MAX_CLUSTER && (span & (span - 1)) == 0; }
bool units_can(const lgh_problem_t *p, int span)
{
    return span > 1 && lgh_family_of(&p->a) != LGH_FAMILY_F32X3 && p->a.dtype != LGH_DTYPE_FLOAT16;
}
int span_of(const lgh_problem_t *p) { return p->group_size > LGH_SM90_BN ? (int)(p->group_size / LGH_SM90_BN) : 1; }
// W multicast (a cluster of 2 along M) can take p: groups within a tile, more than one
// M-block, not 3xtf32 (whose producer has W multicast compiled out).
bool w_multicast_can(const lgh_problem_t *p)
{
    return LGH_SM90_MULTICAST && p->group_size <= LGH_SM90_BN && tiles_evenly(p->group_size) &&
           lgh_family_of(&p->a) != LGH_FAMILY_F32X3 && p->a.m > LGH_SM90_BM;
}

// Whether `way` can run p (WAY_MODEL always can). The launch fallbacks this context has
// met do not enter here: layout_of takes the next way down when one was refused.
bool way_can(const lgh_problem_t *p, const sm90_state *st, int sms, int way)
{
    const int span = span_of(p);
    switch (way) {
    case WAY_MODEL: return true;
    case WAY_UNIT: return units_can(p, span);
    case WAY_HW_CLUSTER:
    case WAY_SW_CLUSTER: return cluster_can(span);
    case WAY_W_MULTICAST: return w_multicast_can(p);
    case WAY_STRADDLE: return straddle_can(p, st, sms);
    case WAY_UNFUSED: return !tiles_evenly(p->group_size);
    default: return false;
    }
}

layout layout_of(const lgh_problem_t *p, const sm90_state *st, int sms, int way)
{
    layout l;
    const int64_t gs = p->group_size;
    const int span = span_of(p);
    l.gs_tile = gs < LGH_SM90_BN ? (int)gs : LGH_SM90_BN;
    // Wide groups: a software cluster (the model's choice), a hardware cluster, or unit mode
    // where no cluster can take the group or when asked for (measured, v3, docs/PERF.md:
    // 2.5% slower than the cluster for groups of 512, whose CTAs work in parallel, while one
    // CTA stores its first tile pre-norm and reads it back); after the launch fallbacks this
    // context has met: software clusters (cooperative launch) -> hardware clusters -> unit
    // mode (not in 3xtf32).
    const bool x3 = lgh_family_of(&p->a) == LGH_FAMILY_F32X3;
    const bool units = span > 1 && !x3 && (!cluster_can(span) || way == WAY_UNIT || st->cluster_refused);
    l.subtiles = units ? span : 1;
    l.group_ctas = units ? 1 : span;
    l.global = l.group_ctas > 1 && way != WAY_HW_CLUSTER && !st->coop_refused;
    // Clusters formed only for multicast are dropped once a cluster launch was refused.
    const bool mc = LGH_SM90_MULTICAST && !st->cluster_refused;
    l.x_mc = mc && !l.global;
    l.cn = l.group_ctas; // (no cluster along N for x multicast alone: it lost 4-9%, docs/PERF.md)
    l.cm = mc && way == WAY_W_MULTICAST && w_multicast_can(p) ? 2 : 1;
    l.straddle = straddles(p, st, sms, way);
    if (l.straddle) {
        l.gs_tile = LGH_SM90_BN; // (not an in-tile width: the kernel is lgh_sm90_kernels_straddle)
        l.subtiles = l.group_ctas = l.cn = l.cm = 1;
        l.x_mc = l.global = false;
    }
    return l;
}

// Split K (small M). With fewer tiles than SMs, K is cut into S parts: S times the work
// units, each writing a float32 partial product into the workspace, and the group-norm
// pass (groupnorm_kernel.h) sums them in order and finishes the layer. S is chosen by a
// cost model: the work per SM, ceil(tiles * S / sms) / S tile-equivalents, times 1 + f,
// with f the partials' extra traffic (written and read once, S M N 8 bytes) over W's
// bytes. docs/PERF.md (small batches) has the measured effect.
const int kMaxSplits = 16;
const int kMinSplitBlocks = 4;    // K-blocks per part at least (the ring's depth)
const double kMaxSplitTraffic = 0.35; // splits whose partials cost more than this share of W are not tried

int k_block_elems(const lgh_args_t *a) { return a->dtype == LGH_DTYPE_FLOAT32 ? 32 : 64; } // BK
int64_t tiles_unsplit(const lgh_args_t *a)
{
    return ((a->m + LGH_SM90_BM - 1) / LGH_SM90_BM) * ((a->n + LGH_SM90_BN - 1) / LGH_SM90_BN);
}
int k_blocks_of(const lgh_args_t *a) { return (int)((a->k + k_block_elems(a) - 1) / k_block_elems(a)); }
double split_traffic(const lgh_problem_t *p, int s)
{
    return (double)s * (double)p->a.m * 8.0 / ((double)p->a.k * (double)p->elem_bytes);
}
// Whether split K may run p at all: the layer (not a plain product), no pre-norm h (the
// finishing pass does not write it), fewer tiles than SMs, K long enough for two parts.
bool split_allowed(const lgh_problem_t *p, int sms)
{
    return !p->want_h && tiles_unsplit(&p->a) < sms && k_blocks_of(&p->a) >= 2 * kMinSplitBlocks;
}
// The parts worth trying for p (S >= 2, each at least kMinSplitBlocks K-blocks, traffic
// share at most kMaxSplitTraffic); returns how many, at most cap.
int split_candidates(const lgh_problem_t *p, int sms, int *out, int cap)
{
    int n = 0;
    if (!split_allowed(p, sms)) return 0;
    static const int tried[] = {2, 3, 4, 6, 8, 12, 16};
    for (int s : tried) {
        if (n >= cap || s > kMaxSplits || k_blocks_of(&p->a) / s < kMinSplitBlocks ||
            split_traffic(p, s) > kMaxSplitTraffic)
            break;
        out[n++] = s;
    }
    return n;
}
// The model's choice (1 = no split).
int model_splits(const lgh_problem_t *p, int sms)
{
    int cand[kMaxSplits];
    const int n = split_candidates(p, sms, cand, kMaxSplits);
    const int64_t tiles = tiles_unsplit(&p->a);
    int best = 1;
    double best_cost = (double)((tiles + sms - 1) / sms);
    for (int i = 0; i < n; ++i) {
        const int s = cand[i];
        const double waves = (double)((tiles * s + sms - 1) / sms) / s;
        const double cost = waves * (1.0 + split_traffic(p, s));
        if (cost < best_cost * 0.98) { // a clear win only
            best = s;
            best_cost = cost;
        }
    }
    return best;
}
// Float elements between the partial slices, and their row stride (16-byte rows).
int64_t split_ld(const lgh_problem_t *p) { return (p->a.n + 3) & ~int64_t(3); }
size_t split_bytes(const lgh_problem_t *p, int s) { return (size_t)s * (size_t)p->a.m * (size_t)split_ld(p) * 4u; }

// Whether the fused epilogue takes p's groups (else `why` says why not). It takes groups
// that tile the 256-channel CTA tile evenly: powers of two up to 256 and multiples of 256
// (in 3xtf32 only 512 and 1024 of those, a cluster of CTAs; in float16 not those done tile
// after tile, whose earlier tiles wait pre-norm in y, where values beyond float16's range
// would become Inf). Any other group size the layer allows (N divisible by G) runs
// unfused: the kernel's plain mode writes the float32 product x·Wᵀ into the workspace (in
// K-parts when split K pays, else one) and the group-norm pass adds the bias and finishes
// the layer, as split K does — unless straddle mode takes them (straddles()).
bool fused_groups(const lgh_problem_t *p, const sm90_state *st, int sms, int way, char *why, size_t len)
{
    const int64_t gs = p->group_size;
    if (straddles(p, st, sms, way)) return true;
    if (!tiles_evenly(gs)) {
        snprintf(why, len, "group size %lld does not tile the %lld-channel CTA tile evenly", (long long)gs,
                 (long long)LGH_SM90_BN);
        return false;
    }
    if (lgh_family_of(&p->a) == LGH_FAMILY_F32X3 && gs > LGH_SM90_BN &&
        !(lgh_is_pow2(gs) && gs <= (int64_t)LGH_SM90_BN * LGH_SM90_MAX_CLUSTER)) {
        snprintf(why, len, "group size %lld: the 3xtf32 epilogue takes groups wider than %lld channels only as 512 "
                           "or 1024 (a cluster of CTAs)",
                 (long long)gs, (long long)LGH_SM90_BN);
        return false;
    }
    if (p->a.dtype == LGH_DTYPE_FLOAT16 && gs > LGH_SM90_BN && layout_of(p, st, sms, way).subtiles > 1) {
        snprintf(why, len, "float16 group size %lld: a group wider than a cluster would wait pre-norm in y",
                 (long long)gs);
        return false;
    }
    return true;
}

sm90_state *get_state(struct lgh_context *ctx)
{
    void **slot = lgh_engine_state(ctx, LGH_ENGINE_SM90);
    if (*slot == nullptr) {
        sm90_state *st = static_cast<sm90_state *>(calloc(1, sizeof(sm90_state)));
        if (st == nullptr) return nullptr;
        // LGH_SM90_VARIANT=id: a variant for every call of the context that has no tuned
        // one (ids as lgh_tune records them; for measuring and testing).
        const char *env = getenv("LGH_SM90_VARIANT");
        char *end = nullptr;
        const long v = env != nullptr ? strtol(env, &end, 10) : -1;
        st->forced_variant = env != nullptr && *env != 0 && *end == 0 && v >= 0 && v < WAY_COUNT * kWayStride ? (int)v : -1;
        env = getenv("LGH_SM90_REFUSE_COOPERATIVE");
        st->refuse_coop_for_test = env != nullptr && env[0] == '1';
        // The 3xtf32 main loop of the backward's dW (sm90_3xtf32.cuh, backward_sm90.cu):
        // version 1 (tf32 corrections) by default, whose error stays below float32's own at
        // dW's short reduction over M; LGH_SM90_DW_LOOP=1|2|3 picks one, for measuring.
        env = getenv("LGH_SM90_DW_LOOP");
        st->dw_version = env != nullptr && env[0] >= '1' && env[0] <= '3' && env[1] == 0 ? env[0] - '0' : 1;
        env = getenv("LGH_SM90_BWD_TRANSPOSE");
        st->bwd_transpose = env != nullptr && env[0] == '1';
        *slot = st;
    }
    return static_cast<sm90_state *>(*slot);
}

// The variant run() takes for p: the tuned or timed one (lgh_engine_variant), else
// LGH_SM90_VARIANT, else the model's; an id's way that cannot run p is the model's, its
// part count is clamped to p's K-blocks, and 1 where split K is not allowed.
choice choice_of(const lgh_problem_t *p, const sm90_state *st, int sms, int id)
{
    choice c;
    c.way = id >= 0 ? id / kWayStride : WAY_MODEL;
    c.splits = id >= 0 ? id % kWayStride : 0;
    if (c.splits < 1 || c.splits > kMaxSplits) c.splits = split_allowed(p, sms) ? model_splits(p, sms) : 1;
    if (!split_allowed(p, sms)) c.splits = 1;
    if (c.splits > k_blocks_of(&p->a)) c.splits = k_blocks_of(&p->a);
    if (c.splits > 1 || !way_can(p, st, sms, c.way)) c.way = WAY_MODEL;
    return c;
}
choice choice_for(struct lgh_context *ctx, const lgh_problem_t *p, const sm90_state *st)
{
    const int v = lgh_engine_variant(ctx);
    return choice_of(p, st, lgh_device_props(ctx)->sm_count, v >= 0 ? v : st->forced_variant);
}

bool available(const struct lgh_context *ctx)
{
    const lgh_device_props_t *d = lgh_device_props(ctx);
    return d->ordinal != LGH_DEVICE_CPU && d->cc_major == 9 && d->cc_minor == 0;
}

lgh_status_t can_implement(struct lgh_context *ctx, const lgh_problem_t *p, char *why, size_t len)
{
    const lgh_args_t *a = &p->a;
    const int64_t elem = (int64_t)p->elem_bytes;
    // fp32 means exact-order float32 arithmetic: cublaslt runs it. 3xtf32 gives float32
    // accuracy on the tensor cores, but in another order of operations, so it is not
    // passed off as fp32.
    if (a->dtype == LGH_DTYPE_FLOAT32 && a->math != LGH_MATH_TF32 && a->math != LGH_MATH_3XTF32) {
        snprintf(why, len,
                 "math %s: the sm90 kernel computes float32 data in tf32 or 3xtf32 only (fp32, "
                 "exact-order float32, runs on cublaslt)",
                 lgh_math_name(a->math));
        return LGH_STATUS_NOT_SUPPORTED;
    }
    const int64_t gs = p->group_size;
    const sm90_state *st = get_state(ctx);
    if (st == nullptr) return lgh_refuse(why, len, "out of host memory");
    char unfused_why[200];
    const int sms = lgh_device_props(ctx)->sm_count;
    if (p->want_h && !fused_groups(p, st, sms, choice_for(ctx, p, st).way, unfused_why, sizeof unfused_why)) {
        return lgh_refuse(why, len,
                          "%s; the group-norm pass that takes such groups instead does not write the pre-norm h",
                          unfused_why);
    }
    const int64_t limit = INT32_MAX - 2 * LGH_SM90_BN;
    if (a->m > limit || a->n > limit || a->k > limit) {
        return lgh_refuse(why, len, "M, N and K must be below %lld for the kernel's int32 tile coordinates",
                          (long long)limit);
    }
    const uintptr_t xa = (uintptr_t)a->x, wa = (uintptr_t)a->w, ya = (uintptr_t)a->y;
    if (xa % 16 != 0 || wa % 16 != 0) {
        snprintf(why, len, "TMA needs x and W 16-byte aligned: x %% 16 = %d, W %% 16 = %d", (int)(xa % 16),
                 (int)(wa % 16));
        return LGH_STATUS_NOT_SUPPORTED;
    }
    if (!lgh_ld_16b_multiple(a->ldx, elem) || !lgh_ld_16b_multiple(a->ldw, elem)) {
        return lgh_refuse(why, len,
                          "TMA needs row strides that are multiples of 16 bytes: ldx = %lld, ldw = %lld elements "
                          "of %d bytes",
                          (long long)a->ldx, (long long)a->ldw, (int)elem);
    }
    // ld * elem < 2^40, asked as ld < 2^40 / elem (exact: elem divides 2^40): a one-row x or
    // W may have an ld near INT64_MAX, where ld * elem would overflow int64.
    const int64_t max_ld = (int64_t(1) << 40) / elem;
    if (a->ldx >= max_ld || a->ldw >= max_ld) {
        return lgh_refuse(why, len, "TMA row strides must be below 2^40 bytes: ldx %lld, ldw %lld",
                          (long long)a->ldx, (long long)a->ldw);
    }
    if (ya % (2 * elem) != 0 || a->ldy % 2 != 0) {
        return lgh_refuse(why, len,
                          "the kernel stores y in pairs: y must be %lld-byte aligned and ldy even (ldy = %lld)",
                          (long long)(2 * elem), (long long)a->ldy);
    }
    if (p->want_h && !LGH_SM90_STORES_H(lgh_family_of(a) == LGH_FAMILY_F32X3, gs)) {
        return lgh_refuse(why, len,
                          "3xtf32 with groups of %lld channels: the kernel does not write the pre-norm h for groups "
                          "of 8 or fewer (its registers are full there)",
                          (long long)gs);
    }
    if (p->want_h && ((uintptr_t)a->h % (2 * elem) != 0 || a->ldh % 2 != 0)) {
        return lgh_refuse(why, len,
                          "the kernel stores h in pairs: h must be %lld-byte aligned and ldh even (ldh = %lld)",
                          (long long)(2 * elem), (long long)a->ldh);
    }
    const lgh_device_props_t *d = lgh_device_props(ctx);
    const int need = smem_bytes(lgh_family_of(a));
    if (d->smem_per_block_optin < (size_t)need) {
        return lgh_refuse(why, len, "the kernel needs %lld bytes of shared memory per block, the device has %lld",
                          (long long)need, (long long)d->smem_per_block_optin);
    }
    return LGH_STATUS_SUCCESS;
}

// Software clusters' exchange area (workspace): one counter per CTA, then the partials,
// [cluster][tile parity][rank][BM rows] float2; at most one CTA per SM.
size_t flags_bytes(size_t n) { return (n * sizeof(unsigned) + 255) & ~(size_t)255; } // n flags
size_t exchange_bytes(int sms) { return flags_bytes(sms) + (size_t)sms * 2 * LGH_SM90_BM * sizeof(float2); }

// Straddle mode's exchange area (workspace): one flag per tile, then per tile its two edge
// pieces' partials, [tile][left, right][BM rows] float2 (kernel_sm90.cuh).
int64_t tile_count(const lgh_problem_t *p) { return tiles_unsplit(&p->a); }
size_t straddle_bytes(const lgh_problem_t *p)
{
    const size_t tiles = (size_t)tile_count(p);
    return flags_bytes(tiles) + tiles * 2 * LGH_SM90_BM * sizeof(float2);
}

// Workspace: enough for every variant p can run, the one run() will take whichever it is
// (lgh_plan's size serves a tuned variant too): the software clusters' exchange area
// (groups a cluster can take), straddle mode's flags and partials, the largest split's
// partials (of the candidates lgh_tune may time, or of LGH_SM90_VARIANT), and the one
// float32 product of the unfused path (groups the fused epilogue declines under some way;
// also where straddle mode's cooperative launch is refused).
size_t workspace_size(struct lgh_context *ctx, const lgh_problem_t *p)
{
    sm90_state *st = get_state(ctx);
    if (st == nullptr) return 0;
    const int sms = lgh_device_props(ctx)->sm_count;
    size_t bytes = 0;
    auto at_least = [&](size_t b) { bytes = b > bytes ? b : bytes; };
    if (cluster_can(span_of(p))) at_least(255 + exchange_bytes(sms));
    if (straddle_can(p, st, sms)) at_least(255 + straddle_bytes(p));
    // Whether some way runs p unfused: groups that do not tile the CTA tile, and those the
    // fused epilogue declines in some dtypes (fused_groups: 3xtf32 groups wider than a tile
    // other than 512 and 1024, float16 groups done tile after tile).
    bool unfused = false;
    char why[200];
    for (int w = 0; w < WAY_COUNT; ++w)
        if (way_can(p, st, sms, w) && !fused_groups(p, st, sms, w, why, sizeof why)) unfused = true;
    if (split_allowed(p, sms) || unfused) {
        int cand[kMaxSplits];
        const int n = split_candidates(p, sms, cand, kMaxSplits);
        int most = n > 0 ? cand[n - 1] : 1;
        const int chosen = choice_for(ctx, p, st).splits;
        if (chosen > most) most = chosen;
        if (most > 1 || unfused) at_least(255 + split_bytes(p, most));
    }
    return bytes;
}

// lgh_tune's variants: the part counts S where split K is allowed (ids S; 1 = no split), the
// model's choice first; then the ways other than the model's that can run p unsplit (ids
// way * 100 + 1). None (one way to run) where there is neither.
int variants(struct lgh_context *ctx, const lgh_problem_t *p, int *ids, int capacity)
{
    const sm90_state *st = get_state(ctx);
    if (st == nullptr) return 0;
    const int sms = lgh_device_props(ctx)->sm_count;
    int count = 0;
    auto add = [&](int id) {
        if (count < capacity) ids[count] = id;
        ++count;
    };
    int cand[kMaxSplits];
    const int n = split_candidates(p, sms, cand, kMaxSplits);
    const int first = n > 0 ? model_splits(p, sms) : 1;
    add(first);
    if (first != 1) add(1);
    for (int i = 0; i < n; ++i) {
        if (cand[i] != first) add(cand[i]);
    }
    // The ways, each once: skip one whose layout is the model's own (the same run twice).
    const layout model = layout_of(p, st, sms, WAY_MODEL);
    for (int w = WAY_MODEL + 1; w < WAY_COUNT; ++w) {
        if (!way_can(p, st, sms, w)) continue;
        const layout l = layout_of(p, st, sms, w);
        const bool same = l.subtiles == model.subtiles && l.group_ctas == model.group_ctas && l.global == model.global &&
                          l.cm == model.cm && l.straddle == model.straddle;
        if (!same) add(w * kWayStride + 1);
    }
    return count > 1 ? count : 0;
}

} // namespace

// Split K's launch: S parts, each writing float32 partial products into part (slices
// part_stride floats apart, rows part_ld apart). Every tile alone (no cluster, no
// multicast): the finishing pass does the statistics.
struct split_spec {
    int splits;
    float *part;
    int64_t part_ld, part_stride;
};

// How one launch runs: the problem's layout (with split K's overrides), the kernel
// instance and its shared memory, the hardware cluster and the x multicast width.
struct launch_plan {
    layout l;
    int family, x3, smem, gi; // kernel family, 3xtf32, dynamic shared memory, table index
    int x3v;                  // 1 .. 3: the kernel is lgh_sm90_kernels_f32x3_version[x3v] (or _nn, _tt)
    int op;                   // LGH_SM90_OP_NT (the layer's), or an NN or TT plain product
    const void *kernel;
    int cluster; // CTAs of a hardware cluster (1 for software clusters)
    int x_mc;    // CTAs sharing the x tile by multicast
    int bk;      // K elements per K-block
};

static launch_plan plan_launch(const lgh_problem_t *p, const sm90_state *st, int sms, const split_spec *split,
                               int x3_version, int op, int way)
{
    const lgh_args_t *a = &p->a;
    launch_plan lp;
    lp.l = layout_of(p, st, sms, way);
    if (split != nullptr || op != LGH_SM90_OP_NT) { // (NN, TT: their producer loads A without multicast)
        lp.l.gs_tile = LGH_SM90_BN; // (any instance: plain mode skips the epilogue)
        lp.l.subtiles = lp.l.group_ctas = lp.l.cn = lp.l.cm = 1;
        lp.l.x_mc = lp.l.global = lp.l.straddle = false;
    }
    lp.cluster = lp.l.global ? 1 : lp.l.cn * lp.l.cm;
    lp.x_mc = lp.l.x_mc ? lp.l.cn : 1;
    lp.bk = a->dtype == LGH_DTYPE_FLOAT32 ? lgh_sm90_mma<float>::BK : lgh_sm90_mma<__half>::BK;
    lp.family = lgh_family_of(a);
    lp.x3 = lp.family == LGH_FAMILY_F32X3;
    lp.smem = smem_bytes(lp.family);
    lp.gi = lgh_log2_int(lp.l.gs_tile);
    lp.kernel = kernel_table(lp.family)[lp.gi];
    lp.x3v = lp.x3 && lp.l.gs_tile == LGH_SM90_BN && x3_version >= 1 && x3_version <= 3 ? x3_version : 0;
    if (lp.x3v != 0) lp.kernel = lgh_sm90_kernels_f32x3_version[lp.x3v];
    if (lp.l.straddle) lp.kernel = lgh_sm90_kernels_straddle[lp.family]; // (families F32, BF16, F16: 0 .. 2)
    lp.op = op;
    if (op != LGH_SM90_OP_NT) {
        if (lp.x3v == 0) lp.x3v = LGH_SM90_X3_VERSION;
        lp.kernel = (op == LGH_SM90_OP_NN ? lgh_sm90_kernels_f32x3_nn : lgh_sm90_kernels_f32x3_tt)[lp.x3v];
    }
    return lp;
}

// The kernel's parameters for a planned launch (everything but the persistent grid's
// cluster count and the software clusters' exchange area, which run_launch fills).
static lgh_sm90_params fill_params(const lgh_problem_t *p, const launch_plan &lp, int plain, const split_spec *split)
{
    const lgh_args_t *a = &p->a;
    const layout &l = lp.l;
    lgh_sm90_params prm;
    prm.bias = a->bias;
    prm.gamma = a->gamma;
    prm.beta = a->beta;
    prm.y = split ? static_cast<void *>(split->part) : a->y;
    prm.ldy = split ? split->part_ld : a->ldy;
    prm.splits = split ? split->splits : 1;
    prm.split_stride = split ? split->part_stride : 0;
    prm.h = p->want_h && !split ? a->h : nullptr;
    prm.ldh = a->ldh;
    prm.plain = plain;
    prm.mean = a->mean;
    prm.rstd = a->rstd;
    prm.m = (int)a->m;
    prm.n = (int)a->n;
    prm.groups = (int)a->groups;
    prm.group_size = (int)p->group_size;
    prm.eps = a->eps;
    prm.lo = a->lo;
    prm.hi = a->hi;
    prm.k_blocks = (int)((a->k + lp.bk - 1) / lp.bk);
    prm.split_blocks = (prm.k_blocks + prm.splits - 1) / prm.splits;
    prm.m_tiles = (int)((a->m + (int64_t)LGH_SM90_BM * l.cm - 1) / ((int64_t)LGH_SM90_BM * l.cm));
    const int64_t unit_n = (int64_t)LGH_SM90_BN * l.subtiles * l.cn; // columns of a cluster's unit
    prm.n_tiles = (int)((a->n + unit_n - 1) / unit_n);
    prm.subtiles = l.subtiles;
    prm.cluster_n = l.cn;
    prm.cluster_m = l.cm;
    prm.group_ctas = l.group_ctas;
    prm.multicast = lp.x_mc > 1;
    prm.release = lp.x_mc > 1 || l.cm > 1 ? lp.cluster : 1;
    prm.tiles = (int)((int64_t)prm.m_tiles * prm.n_tiles * prm.splits); // work units
    // The tile order's bands (tile_order.h). Bands of 16 measured 0.9-1.3% faster for 2-byte
    // data (docs/PERF.md "Tile order"); they wait for a GPU run of the test tier before they
    // become the default. Straddle mode's deadlock-freedom check counts on 8 (straddle_can).
    prm.band = LGH_SM90_BAND / l.cm;
    prm.vcluster = l.global ? l.cn : 0;
    prm.xchg = nullptr;
    prm.xchg_flags = nullptr;
    prm.cluster_shift = lgh_log2_int(l.global ? l.cn : lp.cluster);
    prm.clusters = 0;
    return prm;
}

// The launch, for the layer (plain = 0), or for a plain product y = x·Wᵀ in 3xtf32
// (plain = 1: lgh_sm90_plain_product; x3_version 1 .. 3: on that main-loop version, 0:
// the default; op NN: y = (x·W)ᵀ, TT: y = xᵀ·Wᵀ, with x [K, M] and W [N, K] row-major), or
// for split K's partial products (split != NULL); the layer's in the layout of `way`.
static lgh_status_t run_launch(struct lgh_context *ctx, const lgh_problem_t *p, void *ws, void *stream, int plain,
                               const split_spec *split = nullptr, int x3_version = 0, int op = LGH_SM90_OP_NT,
                               int way = WAY_MODEL)
{
    const lgh_args_t *a = &p->a;
    sm90_state *st = get_state(ctx);
    if (st == nullptr) return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED, "sm90: out of host memory");
    char why[256];
    if (st->encoder == nullptr) {
        st->encoder = lgh_sm90_tensor_map_encoder(why, sizeof why);
        if (st->encoder == nullptr) return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "sm90: %s", why);
    }
    if (split != nullptr) plain = 1;
    const launch_plan lp = plan_launch(p, st, lgh_device_props(ctx)->sm_count, split, x3_version, op, way);
    const layout &l = lp.l;
    const int cluster = lp.cluster;
    CUtensorMap map_x, map_w;
    // The boxes are each CTA's slices of the x and W tiles (multicast over the cluster's
    // row and column); NN's and TT's x is [K, M], read in boxes of one K-block by 32 columns.
    if ((op != LGH_SM90_OP_NT ? lgh_sm90_tensor_map_encode(st->encoder, &map_x, a->dtype, a->x, a->k, a->m, a->ldx, lp.bk, 32, why,
                                         sizeof why)
            : lgh_sm90_tensor_map_encode(st->encoder, &map_x, a->dtype, a->x, a->m, a->k, a->ldx,
                                         LGH_SM90_BM / lp.x_mc, lp.bk, why, sizeof why)) != 0 ||
        lgh_sm90_tensor_map_encode(st->encoder, &map_w, a->dtype, a->w, a->n, a->k, a->ldw, LGH_SM90_BN / l.cm,
                                   lp.bk, why, sizeof why) != 0) {
        return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "sm90: %s", why);
    }

    const void *kernel = lp.kernel;
    const int smem = lp.smem;
    cudaError_t e;
    bool *raised = lp.op != 0       ? &st->smem_raised_op[lp.op][lp.x3v]
                   : lp.x3v != 0    ? &st->smem_raised_x3v[lp.x3v]
                   : l.straddle ? &st->smem_raised_straddle[lp.family]
                                    : &st->smem_raised[lp.family][lp.gi];
    if (!*raised) {
        e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return lgh_cuda_fail(ctx, kEngine, "cudaFuncSetAttribute(max dynamic shared memory)", e);
        *raised = true;
    }

    lgh_sm90_params prm = fill_params(p, lp, plain, split);
    const int64_t tiles = prm.tiles;
    const int sms = lgh_device_props(ctx)->sm_count;
    if (l.global) {
        uint8_t *base = reinterpret_cast<uint8_t *>(((uintptr_t)ws + 255) & ~(uintptr_t)255);
        prm.xchg_flags = reinterpret_cast<unsigned *>(base);
        prm.xchg = reinterpret_cast<float2 *>(base + flags_bytes(sms));
        e = cudaMemsetAsync(prm.xchg_flags, 0, (size_t)sms * sizeof(unsigned), static_cast<cudaStream_t>(stream));
        if (e != cudaSuccess) return lgh_cuda_fail(ctx, kEngine, "clearing the exchange counters", e);
    } else if (l.straddle) { // one flag per tile, then the tiles' edge partials
        uint8_t *base = reinterpret_cast<uint8_t *>(((uintptr_t)ws + 255) & ~(uintptr_t)255);
        prm.xchg_flags = reinterpret_cast<unsigned *>(base);
        prm.xchg = reinterpret_cast<float2 *>(base + flags_bytes((size_t)tiles));
        e = cudaMemsetAsync(prm.xchg_flags, 0, (size_t)tiles * sizeof(unsigned), static_cast<cudaStream_t>(stream));
        if (e != cudaSuccess) return lgh_cuda_fail(ctx, kEngine, "clearing the tiles' exchange flags", e);
    }

    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    // Software clusters wait on each other: the launch must make every CTA resident.
    cfg.blockDim = dim3(LGH_SM90_THREADS, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = static_cast<cudaStream_t>(stream);
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = cluster;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = cluster > 1 ? 1 : 0;
    if (l.global || l.straddle) {
        attr[0].id = cudaLaunchAttributeCooperative;
        attr[0].val.cooperative = 1;
        cfg.numAttrs = 1;
    }

    // Persistent grid: as many clusters as can be resident at once, never more than tiles.
    int *max_clusters = &st->max_clusters[lp.x3][cluster];
    if (*max_clusters == 0) {
        int n = lgh_device_props(ctx)->sm_count;
        if (cluster > 1) {
            cfg.gridDim = dim3(cluster * lgh_device_props(ctx)->sm_count, 1, 1);
            e = cudaOccupancyMaxActiveClusters(&n, kernel, &cfg);
            if ((e != cudaSuccess || n < 1) && !st->cluster_refused) { // no cluster fits: without one
                cudaGetLastError();
                st->cluster_refused = true;
                return run_launch(ctx, p, ws, stream, plain, split, x3_version, op, way);
            }
            if (e != cudaSuccess) return lgh_cuda_fail(ctx, kEngine, "cudaOccupancyMaxActiveClusters", e);
            if (n < 1) {
                return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED,
                                     "sm90: no cluster of %d CTAs with %d bytes of shared memory fits",
                                     cluster, smem);
            }
        }
        *max_clusters = n;
    }
    // A software cluster's CTAs are each alone on an SM (one CTA per SM fits).
    const int64_t fit = l.global ? sms / l.cn : *max_clusters;
    const int64_t clusters = tiles < fit ? tiles : fit;
    cfg.gridDim = dim3((unsigned)(clusters * (l.global ? l.cn : cluster)), 1, 1);

    prm.clusters = (int)clusters;

    void *args[] = {&map_x, &map_w, &prm};
    const bool refuse = (l.global || l.straddle) && st->refuse_coop_for_test;
    e = refuse ? cudaErrorCooperativeLaunchTooLarge : cudaLaunchKernelExC(&cfg, kernel, args);
    if (e != cudaSuccess && l.straddle && !st->coop_refused) {
        // Straddle mode refused: nothing ran; run() sends the groups down the unfused path.
        cudaGetLastError();
        st->coop_refused = true;
        return LGH_STATUS_NOT_SUPPORTED;
    }
    if (e != cudaSuccess && (l.global || cluster > 1) && !(l.global ? st->coop_refused : st->cluster_refused)) {
        // Refused (an SM limit under MPS, a green context, ...): take the next way down
        // for this and every later call on the context, with the same result. A launch
        // error is not sticky; clear it. Nothing of this launch ran; the exchange counters
        // cleared above are simply not used.
        cudaGetLastError();
        if (l.global) st->coop_refused = true;
        else st->cluster_refused = true;
        return run_launch(ctx, p, ws, stream, plain, split, x3_version, op, way);
    }
    if (e != cudaSuccess) return lgh_cuda_fail(ctx, kEngine, "launch", e);
    return LGH_STATUS_SUCCESS;
}

namespace {

lgh_status_t run(struct lgh_context *ctx, const lgh_problem_t *p, void *ws, size_t ws_bytes, void *stream)
{
    sm90_state *st = get_state(ctx);
    if (st == nullptr) return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED, "sm90: out of host memory");
    const int sms = lgh_device_props(ctx)->sm_count;
    const choice c = choice_for(ctx, p, st);
    int s = c.splits;
    // (the workspace planned for this problem holds the largest split; a smaller one, from
    // a caller's own lgh_plan of another variant, only allows fewer parts)
    while (s > 1 && (ws == nullptr || 255 + split_bytes(p, s) > ws_bytes)) --s;
    char why[200];
    bool unfused = !fused_groups(p, st, sms, c.way, why, sizeof why);
    if (s <= 1 && !unfused) {
        const bool straddle = straddles(p, st, sms, c.way);
        if (straddle && (ws == nullptr || 255 + straddle_bytes(p) > ws_bytes)) {
            return lgh_set_error(ctx, LGH_STATUS_WORKSPACE_TOO_SMALL,
                                 "sm90: groups of %lld channels exchange statistics between tiles through %zu "
                                 "bytes of workspace, got %zu",
                                 (long long)p->group_size, 255 + straddle_bytes(p), ws ? ws_bytes : (size_t)0);
        }
        const lgh_status_t r = run_launch(ctx, p, ws, stream, 0, nullptr, 0, LGH_SM90_OP_NT, c.way);
        // A refused cooperative launch (straddle mode) sets coop_refused and leaves nothing
        // run: the unfused path takes the groups instead, now and from then on.
        if (!(straddle && r == LGH_STATUS_NOT_SUPPORTED && st->coop_refused)) return r;
        unfused = !fused_groups(p, st, sms, c.way, why, sizeof why);
    }
    if (ws == nullptr || 255 + split_bytes(p, s) > ws_bytes) { // (unfused, one part; lgh_plan's size holds it)
        return lgh_set_error(ctx, LGH_STATUS_WORKSPACE_TOO_SMALL,
                             "sm90: %s; the unfused path needs %zu bytes of workspace, got %zu", why,
                             255 + split_bytes(p, s), ws ? ws_bytes : (size_t)0);
    }

    const lgh_args_t *a = &p->a;
    split_spec sp;
    sp.splits = s;
    sp.part = reinterpret_cast<float *>(((uintptr_t)ws + 255) & ~(uintptr_t)255);
    sp.part_ld = split_ld(p);
    sp.part_stride = a->m * sp.part_ld;
    const lgh_status_t r = run_launch(ctx, p, ws, stream, 1, &sp); // (s parts, s >= 1)
    if (r != LGH_STATUS_SUCCESS) return r;
    lgh_groupnorm_args_t g = lgh_groupnorm_args_in_place(a);
    g.src = sp.part;
    g.lds = sp.part_ld;
    g.src_f32 = 1;
    g.splits = s;
    g.split_stride = sp.part_stride;
    g.bias = a->bias;
    const cudaError_t e = lgh_groupnorm_launch(&g, stream);
    if (e != cudaSuccess) return lgh_cuda_fail(ctx, kEngine, "group-norm pass after the plain product", e);
    return LGH_STATUS_SUCCESS;
}

// One kernel's entry: its facts, with its shared-memory limit raised first (once per
// context, *raised) so that the resident count is the launch's.
void info_entry(lgh_kernel_info_t *o, const void *k, int smem, bool *raised)
{
    o->engine = LGH_ENGINE_SM90;
    if (raised != nullptr && !*raised &&
        cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) == cudaSuccess) {
        *raised = true;
    }
    cudaGetLastError();
    lgh_kernel_facts(k, LGH_SM90_THREADS, (size_t)smem, o);
}

int kernel_info(struct lgh_context *ctx, lgh_kernel_info_t *out, int capacity)
{
    sm90_state *st = get_state(ctx);
    const int total = FAMILIES * LGH_SM90_GS_COUNT + 9 + 3; // (+ the backward's product kernels, straddle mode)
    int i = 0;
    for (int d = 0; d < FAMILIES; ++d) {
        for (int g = 0; g < LGH_SM90_GS_COUNT; ++g, ++i) {
            if (i >= capacity) continue;
            out[i] = lgh_kernel_info_t{};
            snprintf(out[i].name, sizeof out[i].name, "sm90 %s, %dx%d tile, group width %d in tile", family_tag(d),
                     LGH_SM90_BM, LGH_SM90_BN, 1 << g);
            info_entry(&out[i], kernel_table(d)[g], smem_bytes(d), st ? &st->smem_raised[d][g] : nullptr);
        }
    }
    for (int v = 1; v <= 3; ++v, ++i) { // the backward's dW kernels, by main-loop version
        if (i >= capacity) continue;
        out[i] = lgh_kernel_info_t{};
        snprintf(out[i].name, sizeof out[i].name, "sm90 f32 3xtf32 main loop v%d, %dx%d tile, plain product (dW)",
                 v, LGH_SM90_BM, LGH_SM90_BN);
        info_entry(&out[i], lgh_sm90_kernels_f32x3_version[v], smem_bytes(LGH_FAMILY_F32X3),
                   st ? &st->smem_raised_x3v[v] : nullptr);
    }
    for (int f = 0; f < 3; ++f, ++i) { // straddle mode, tf32 / bf16 / f16
        if (i >= capacity) continue;
        out[i] = lgh_kernel_info_t{};
        snprintf(out[i].name, sizeof out[i].name, "sm90 %s, %dx%d tile, groups of any size (straddle mode)",
                 family_tag(f), LGH_SM90_BM, LGH_SM90_BN);
        info_entry(&out[i], lgh_sm90_kernels_straddle[f], smem_bytes(f), st ? &st->smem_raised_straddle[f] : nullptr);
    }
    for (int op = LGH_SM90_OP_NN; op <= LGH_SM90_OP_TT; ++op) { // the backward's NN and TT products
        for (int v = 1; v <= 3; ++v, ++i) {
            if (i >= capacity) continue;
            out[i] = lgh_kernel_info_t{};
            snprintf(out[i].name, sizeof out[i].name, "sm90 f32 3xtf32 main loop v%d, %dx%d tile, %s plain product",
                     v, LGH_SM90_BM, LGH_SM90_BN, op == LGH_SM90_OP_NN ? "NN" : "TT");
            info_entry(&out[i], (op == LGH_SM90_OP_NN ? lgh_sm90_kernels_f32x3_nn : lgh_sm90_kernels_f32x3_tt)[v],
                       smem_bytes(LGH_FAMILY_F32X3), st ? &st->smem_raised_op[op][v] : nullptr);
        }
    }
    return total;
}

void destroy_state(void *s) { free(s); }

} // namespace

// The backward (backward_sm90.cu).
extern "C" lgh_status_t lgh_sm90_bwd_can_implement(struct lgh_context *ctx, const lgh_bwd_problem_t *p, char *why,
                                                   size_t len);
extern "C" size_t lgh_sm90_bwd_workspace_size(struct lgh_context *ctx, const lgh_bwd_problem_t *p);
extern "C" lgh_status_t lgh_sm90_bwd_run(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *ws, size_t bytes,
                                         void *stream);

// Every member in engine.h's order (C++17 has no designated initializers); not reentrant
// (run keeps per-context state).
extern "C" const lgh_engine_ops_t lgh_engine_sm90 = {
    LGH_ENGINE_SM90, "sm90",        true, available, can_implement, workspace_size, run, kernel_info,
    destroy_state,   variants,      lgh_sm90_bwd_can_implement, lgh_sm90_bwd_workspace_size, lgh_sm90_bwd_run,
    false,
};

// The plain products (plain_product.h).
lgh_status_t lgh_sm90_plain_product(struct lgh_context *ctx, const lgh_sm90_product &pp, void *stream)
{
    const bool a_t = pp.a_t, b_kn = pp.b_kn;
    const int64_t m = pp.m, n = pp.n, k = pp.k;
    if (a_t && b_kn)
        return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED, "sm90 plain product: a and b both MN-major");
    const int op = b_kn ? LGH_SM90_OP_NN : a_t ? LGH_SM90_OP_TT : LGH_SM90_OP_NT;
    // The kernel's problem: its x is the tile's A operand (rows of the kernel's output),
    // its W the B operand (columns); for NN these are b and a, and the output is dᵀ.
    const int64_t km = b_kn ? n : m, kn = b_kn ? m : n;
    lgh_problem_t q = {};
    lgh_args_init(&q.a, km, k, kn, (kn + LGH_SM90_BN - 1) / LGH_SM90_BN); // (groups: unused by plain mode)
    q.a.math = LGH_MATH_3XTF32;
    q.a.x = b_kn ? pp.b : pp.a, q.a.ldx = b_kn ? pp.ldb : pp.lda;
    q.a.w = b_kn ? pp.a : pp.b, q.a.ldw = b_kn ? pp.lda : pp.ldb;
    q.a.y = pp.d, q.a.ldy = pp.ldd;
    const bool with_bias = pp.bias != nullptr && op == LGH_SM90_OP_NT;
    q.a.bias = with_bias ? static_cast<const void *>(pp.bias) : pp.d; // (d: not read without a bias)
    q.a.gamma = q.a.beta = pp.d;
    q.elem_bytes = 4;
    q.group_size = LGH_SM90_BN;
    char why[256];
    if (can_implement(ctx, &q, why, sizeof why) != LGH_STATUS_SUCCESS) {
        return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED, "sm90 plain product %lldx%lldx%lld: %s", (long long)m,
                             (long long)k, (long long)n, why);
    }
    const sm90_state *st = get_state(ctx);
    if (st == nullptr) return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED, "sm90: out of host memory");
    return run_launch(ctx, &q, nullptr, stream, with_bias ? 2 : 1, nullptr, pp.for_dw ? st->dw_version : 0, op);
}

bool lgh_sm90_bwd_direct(struct lgh_context *ctx)
{
    const sm90_state *st = get_state(ctx);
    return st == nullptr || !st->bwd_transpose;
}
