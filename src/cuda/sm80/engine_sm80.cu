// The sm80 engine: the fused mma.sync kernel (kernel_sm80.cuh) behind the engine interface
// (src/core/engine.h), for Ampere and Ada (compute capability 8.x) and Hopper. Decides
// which problems the kernel takes, picks a tile configuration and a group mode per
// problem, and launches; for pre-norm tiles it finishes with the group-norm pass
// (epilogue/groupnorm_kernel.h), in place, with no workspace.
//
// Choosing (plan()): every configuration that can run the problem is scored by a wave
// model — the work of the busiest SM (its CTAs, in rounds of the resident count; a last
// round with fewer CTAs than fit runs them faster, see below) divided by the
// configuration's measured speed, plus for pre-norm tiles the cost of one more pass over
// y and for wide groups the in-CTA fixup — and the cheapest wins. A kernel that spills
// (local memory) or cannot be resident on the device is never chosen. lgh_tune goes
// further: it times every (configuration, mode) pair that can run the problem on the
// user's GPU (variants(): the pairs the model picks from) and the measured fastest runs
// from then on (lgh_engine_variant()). The speed factors are H100 timings, so on other
// GPUs (an RTX 4090) the tuned choice is the one to trust. Each kernel's facts (resident
// blocks per SM, spill bytes) are read from the device once per context, on first use,
// with its shared-memory limit raised; that is the per-context state, and a forward call
// after the first for a shape allocates nothing and does not synchronise.
//
// For measuring: LGH_SM80_CONFIG=<index> forces a configuration (kernels.h; when it can run
// the problem) and LGH_SM80_MODE=pre forces pre-norm tiles plus the group-norm pass,
// LGH_SM80_MODE=fused forbids that pass whenever a fused mode exists; both are read when
// the engine's state is made, at the context's first sm80 call.
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "engine_util.h"
#include "epilogue/groupnorm_kernel.h"
#include "kernel_facts.h"
#include "sm80/kernel_sm80.cuh"
#include "sm80/kernels.h"

namespace {

const char *const kEngine = "sm80";

// Kernel tables by family (engine_util.h: element type and math).
const int FAMILIES = LGH_FAMILY_F32X3 + 1;

const void *const (*const kTables[FAMILIES])[LGH_SM80_GS_COUNT] = {
    lgh_sm80_kernels_f32, lgh_sm80_kernels_bf16, lgh_sm80_kernels_f16, lgh_sm80_kernels_f32x3};
const char *const kFamilyTag[FAMILIES] = {"f32", "bf16", "f16", "f32x3"};

// What the host needs of a configuration.
struct cfg_info {
    int bm, bn, wn, threads, kb_bytes, stages, smem;
    bool sm90_only; // compiled for sm_90 alone: run on compute capability 9.x only
    double speed;   // measured throughput per SM, relative to tf32 cfg1 on the H100
};

template <typename C>
constexpr cfg_info info_of(double speed)
{
    return {C::BM,       C::BN,       C::WN, C::THREADS, C::KB_BYTES, C::STAGES, lgh_sm80_smem_size<C>::BYTES,
            C::SM90_ONLY, speed};
}

// By family (kTables): 3xtf32 has its own configurations (kernels.h). Speeds:
// multiply-adds per SM per unit time with every resident CTA busy, measured on the H100
// (reference problem at M = 4096, pre-norm tiles, the norm pass subtracted; docs/PERF.md),
// relative to tf32 cfg1 (about 0.70 G MAC per ms per SM); cfg4's from a second run,
// against cfg3 in that run (tf32 at M = 1024 and 4096, bf16 and 3xtf32 at M = 1024). float16 has not been timed: it
// takes bfloat16's (same mma.sync rate, same kernels). The 4090 has no timings yet; the
// portable configurations keep the H100's order there. Speed 0: not timed, planned only
// when LGH_SM80_CONFIG names it.
const cfg_info kCfgs[FAMILIES][LGH_SM80_CONFIGS] = {
    {info_of<lgh_sm80_cfg0>(0.83), info_of<lgh_sm80_cfg1>(1.0), info_of<lgh_sm80_cfg2>(0.74),
     info_of<lgh_sm80_cfg3>(1.03), info_of<lgh_sm80_cfg4>(1.05)},
    {info_of<lgh_sm80_cfg0>(1.69), info_of<lgh_sm80_cfg1>(2.15), info_of<lgh_sm80_cfg2>(1.49),
     info_of<lgh_sm80_cfg3>(2.16), info_of<lgh_sm80_cfg4>(2.26)},
    {info_of<lgh_sm80_cfg0>(1.69), info_of<lgh_sm80_cfg1>(2.15), info_of<lgh_sm80_cfg2>(1.49),
     info_of<lgh_sm80_cfg3>(2.16), info_of<lgh_sm80_cfg4>(2.26)},
    {info_of<lgh_sm80_x3cfg0>(0.40), info_of<lgh_sm80_x3cfg1>(0.435), info_of<lgh_sm80_x3cfg2>(0.44),
     info_of<lgh_sm80_x3cfg3>(0.48), info_of<lgh_sm80_x3cfg4>(0.51)},
};

// Every configuration has 64-column warp slices (kernels.h): one table of group widths.
const int kWarpN = 64;

// Wide groups: a CTA runs group_size / BN subtiles; above this the fixup's int32 index
// math (rows x pairs) and the serial subtile chain stop making sense.
const int64_t kMaxWideGroup = 65536;

// Multiply-adds the GPU does at speed 1 in the time it moves one byte to or from memory
// (H100: 132 SMs x 0.70 G MAC per ms over 3 TB/s): weighs the extra pass over y of
// pre-norm tiles against the product.
const double kMacPerByte = 30.0;

// Wide groups cost this many passes over y on top of the product: the CTA stores its
// earlier subtiles pre-norm and normalises them itself after the last one, at the end of
// its work where nothing overlaps it. Measured on the H100 (reference problem, G = 16):
// the wide mode is slower than pre-norm tiles plus the norm pass by about two passes'
// time, at M = 1024 and 4096 and in every configuration with a 512-channel group.
const double kWidePasses = 3.0;

enum mode { MODE_FUSED, MODE_WIDE, MODE_PRE, MODE_COUNT };

struct kernel_facts {
    bool known;
    int blocks; // resident blocks per SM, 0 when it cannot run (or spills)
    int local;  // local memory per thread, bytes
    int regs;
};

struct sm80_state {
    kernel_facts facts[FAMILIES][LGH_SM80_CONFIGS][LGH_SM80_GS_COUNT];
    int forced_cfg;  // LGH_SM80_CONFIG, or -1
    int forced_mode; // -1 free, MODE_PRE, or MODE_FUSED (fused or wide when possible)
};

struct plan_t {
    int family, cfg, gi;
    mode md;
    lgh_sm80_params prm;
    int64_t tiles;
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

sm80_state *get_state(struct lgh_context *ctx)
{
    void **slot = lgh_engine_state(ctx, LGH_ENGINE_SM80);
    if (*slot == nullptr) {
        sm80_state *st = static_cast<sm80_state *>(calloc(1, sizeof(sm80_state)));
        if (st == nullptr) return nullptr;
        st->forced_cfg = -1;
        st->forced_mode = -1;
        const char *c = getenv("LGH_SM80_CONFIG");
        if (c != nullptr && c[0] >= '0' && c[0] < '0' + LGH_SM80_CONFIGS && c[1] == '\0') st->forced_cfg = c[0] - '0';
        const char *m = getenv("LGH_SM80_MODE");
        if (m != nullptr && strcmp(m, "pre") == 0) st->forced_mode = MODE_PRE;
        if (m != nullptr && strcmp(m, "fused") == 0) st->forced_mode = MODE_FUSED;
        *slot = st;
    }
    return static_cast<sm80_state *>(*slot);
}

// Reads (once) what the device says of a kernel, raising its shared-memory limit first.
const kernel_facts &facts_of(sm80_state *st, int family, int cfg, int gi)
{
    kernel_facts &f = st->facts[family][cfg][gi];
    if (f.known) return f;
    f.known = true;
    f.blocks = 0;
    const void *k = kTables[family][cfg][gi];
    const cfg_info &c = kCfgs[family][cfg];
    cudaFuncAttributes fa;
    if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, c.smem) != cudaSuccess ||
        cudaFuncGetAttributes(&fa, k) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&f.blocks, k, c.threads, c.smem) != cudaSuccess) {
        cudaGetLastError();
        f.blocks = 0;
        return f;
    }
    f.local = (int)fa.localSizeBytes;
    f.regs = fa.numRegs;
    if (f.local > 0) f.blocks = 0; // never run a kernel that spills
    return f;
}

bool available(const struct lgh_context *ctx)
{
    const lgh_device_props_t *d = lgh_device_props(ctx);
    return d->ordinal != LGH_DEVICE_CPU && d->cc_major >= 8;
}

int smallest_smem(int family)
{
    int s = kCfgs[family][0].smem;
    for (int c = 1; c < LGH_SM80_CONFIGS; ++c) s = kCfgs[family][c].smem < s ? kCfgs[family][c].smem : s;
    return s;
}

// ld * elem, the byte stride between rows of a matrix, where it fits in int64: always for
// two rows or more (lgh_check_args bounds (rows - 1) * ld * elem). Only a one-row matrix
// can have a larger ld, and the kernel never steps over its rows (a row index is clamped
// to the last row, 0, before it meets the stride), so 0 stands in for the product there.
int64_t row_stride_bytes(int64_t ld, int64_t elem) { return ld <= INT64_MAX / elem ? ld * elem : 0; }

int candidates(struct lgh_context *ctx, sm80_state *st, const lgh_problem_t *p, plan_t *out, int capacity);

lgh_status_t can_implement(struct lgh_context *ctx, const lgh_problem_t *p, char *why, size_t len)
{
    const lgh_args_t *a = &p->a;
    const int64_t elem = (int64_t)p->elem_bytes;
    if (a->dtype == LGH_DTYPE_FLOAT32 && a->math == LGH_MATH_FP32) {
        snprintf(why, len, "math fp32: the sm80 kernel computes float32 data in tf32 or 3xtf32 only");
        return LGH_STATUS_NOT_SUPPORTED;
    }
    if (p->want_h) {
        snprintf(why, len, "the sm80 kernel does not write the pre-norm h (sm90, cublaslt and cpu do)");
        return LGH_STATUS_NOT_SUPPORTED;
    }
    // Tile coordinates, k_bytes and the wide fixup's indices are int32.
    const int64_t limit = INT32_MAX / 4 - 1024;
    if (a->m > limit || a->n > limit || a->k > limit) {
        return lgh_refuse(why, len, "M, N and K must be below %lld for the kernel's int32 tile coordinates",
                          (long long)limit);
    }
    const uintptr_t xa = (uintptr_t)a->x, wa = (uintptr_t)a->w, ya = (uintptr_t)a->y;
    if (xa % 16 != 0 || wa % 16 != 0) {
        return lgh_refuse(why, len, "cp.async needs x and W 16-byte aligned: x %% 16 = %lld, W %% 16 = %lld",
                          (long long)(xa % 16), (long long)(wa % 16));
    }
    if (!lgh_ld_16b_multiple(a->ldx, elem) || !lgh_ld_16b_multiple(a->ldw, elem)) {
        return lgh_refuse(why, len,
                          "cp.async needs row strides that are multiples of 16 bytes: ldx = %lld, ldw = %lld "
                          "elements",
                          (long long)a->ldx, (long long)a->ldw);
    }
    if (ya % (2 * elem) != 0 || a->ldy % 2 != 0) {
        return lgh_refuse(why, len, "the kernel stores y in pairs: y must be %lld-byte aligned and ldy even (ldy = %lld)",
                          (long long)(2 * elem), (long long)a->ldy);
    }
    const lgh_device_props_t *d = lgh_device_props(ctx);
    const int need = smallest_smem(lgh_family_of(a));
    if (d->smem_per_block_optin < (size_t)need) {
        return lgh_refuse(why, len, "the kernel needs %lld bytes of shared memory per block, the device has %lld",
                          (long long)need, (long long)d->smem_per_block_optin);
    }
    // float16 runs only in the fused mode (candidate()), which takes groups that tile the
    // CTA tile: anything else goes to an engine that keeps the pre-norm in float32.
    if (a->dtype == LGH_DTYPE_FLOAT16) {
        sm80_state *st = get_state(ctx);
        plan_t one;
        if (st == nullptr || candidates(ctx, st, p, &one, 1) == 0) {
            return lgh_refuse(why, len,
                              "float16 with groups of %lld: only the fused mode keeps the pre-norm in float32 (values "
                              "beyond float16's range), and it takes power-of-two groups no wider than the CTA tile",
                              (long long)p->group_size);
        }
    }
    return LGH_STATUS_SUCCESS;
}

size_t workspace_size(struct lgh_context *, const lgh_problem_t *) { return 0; }

// The kernel index and launch parameters of configuration cfg in mode md, or false when
// that pair cannot run p.
bool shape_for(const lgh_problem_t *p, const cfg_info &c, mode md, int *gi, lgh_sm80_params *prm)
{
    const int64_t gs = p->group_size;
    const lgh_args_t *a = &p->a;
    memset(prm, 0, sizeof *prm);
    prm->m_blocks = (int)ceil_div(a->m, c.bm);
    prm->nsub = 1;
    prm->gpieces = 0;
    prm->tile_n = c.bn;
    prm->n_tiles = (int)ceil_div(a->n, c.bn);
    switch (md) {
    case MODE_FUSED: // groups tile the CTA tile
        if (!lgh_is_pow2(gs) || gs > c.bn) return false;
        *gi = 1 + lgh_log2_int(gs < kWarpN ? gs : kWarpN);
        prm->gpieces = gs > c.wn ? (int)(gs / c.wn) : 0;
        return true;
    case MODE_WIDE: // a CTA runs a whole group in BN-wide subtiles
        if (gs <= c.bn || gs % c.bn != 0 || gs > kMaxWideGroup) return false;
        *gi = 1 + lgh_log2_int(kWarpN);
        prm->nsub = (int)(gs / c.bn);
        prm->tile_n = (int)gs;
        prm->n_tiles = (int)a->groups;
        return true;
    default: // pre-norm tiles
        *gi = 0;
        return true;
    }
}

void fill_params(const lgh_problem_t *p, const cfg_info &c, lgh_sm80_params *prm)
{
    const lgh_args_t *a = &p->a;
    const int64_t elem = (int64_t)p->elem_bytes;
    prm->x = a->x;
    prm->w = a->w;
    prm->ldx_bytes = row_stride_bytes(a->ldx, elem);
    prm->ldw_bytes = row_stride_bytes(a->ldw, elem);
    prm->bias = a->bias;
    prm->gamma = a->gamma;
    prm->beta = a->beta;
    prm->y = a->y;
    prm->ldy = a->ldy;
    prm->mean = a->mean;
    prm->rstd = a->rstd;
    prm->m = (int)a->m;
    prm->n = (int)a->n;
    prm->k_bytes = (int)(a->k * elem);
    prm->k_blocks = (int)ceil_div(a->k * elem, c.kb_bytes);
    prm->groups = (int)a->groups;
    prm->group_size = (int)p->group_size;
    prm->eps = a->eps;
    prm->lo = a->lo;
    prm->hi = a->hi;
}

// Configuration cfg in mode md for p, when that pair can run p on this device: the plan
// (*out) and its cost by the wave model (see the file comment). The environment's
// LGH_SM80_CONFIG / LGH_SM80_MODE=pre restrict the pairs; allow_pre false leaves out
// pre-norm tiles (LGH_SM80_MODE=fused's first choice).
bool candidate(struct lgh_context *ctx, sm80_state *st, const lgh_problem_t *p, int cfg, mode md, bool allow_pre,
               plan_t *out, double *cost)
{
    const lgh_args_t *a = &p->a;
    const int family = lgh_family_of(a);
    const lgh_device_props_t *d = lgh_device_props(ctx);
    const int sms = d->sm_count > 0 ? d->sm_count : 1;
    if (cfg < 0 || cfg >= LGH_SM80_CONFIGS || md < MODE_FUSED || md > MODE_PRE) return false;
    if (st->forced_cfg >= 0 && cfg != st->forced_cfg) return false;
    if (st->forced_mode == MODE_PRE && md != MODE_PRE) return false;
    if (!allow_pre && md == MODE_PRE) return false;
    // float16: the wide and pre-norm modes keep pre-norm tiles in y, where a value beyond
    // float16's range (65504) would become Inf before normalisation; only the fused mode,
    // which normalises from float32 registers, is right for every input.
    if (a->dtype == LGH_DTYPE_FLOAT16 && md != MODE_FUSED) return false;
    const cfg_info &c = kCfgs[family][cfg];
    if (d->smem_per_block_optin < (size_t)c.smem) return false;
    if (c.sm90_only && d->cc_major != 9) return false;
    if (c.speed <= 0.0 && st->forced_cfg != cfg) return false;
    int gi;
    lgh_sm80_params prm;
    if (!shape_for(p, c, md, &gi, &prm)) return false;
    const kernel_facts &f = facts_of(st, family, cfg, gi);
    if (f.blocks < 1) return false;
    const int64_t tiles = (int64_t)prm.m_blocks * prm.n_tiles;
    // The busiest SM's CTAs, in rounds of f.blocks; each CTA of a full round runs at
    // 1/f.blocks of the SM's speed, and `rest` CTAs of a last partial round at
    // sqrt(rest/f.blocks) of it together (one of two CTAs alone: 0.71; measured 0.64 for
    // tf32 cfg1), so that round costs sqrt(rest * f.blocks).
    const int64_t per_sm = ceil_div(tiles, sms);
    const int64_t full = per_sm / f.blocks, rest = per_sm % f.blocks;
    const double rounds = (double)(full * f.blocks) + sqrt((double)(rest * f.blocks));
    const double norm_pass = kMacPerByte * 2.0 * (double)p->elem_bytes * (double)a->m * (double)a->n / sms;
    *cost = rounds * (double)c.bm * c.bn * prm.nsub * (double)a->k / c.speed;
    if (md == MODE_PRE) *cost += norm_pass;
    if (md == MODE_WIDE) *cost += kWidePasses * norm_pass;
    out->family = family;
    out->cfg = cfg;
    out->gi = gi;
    out->md = md;
    out->prm = prm;
    out->tiles = tiles;
    return true;
}

// Variant ids (lgh_tune): a configuration and a mode.
int variant_id(int cfg, mode md) { return cfg * MODE_COUNT + (int)md; }

// Every (configuration, mode) that can run p, cheapest by the wave model first (ties in
// table order): at most capacity of them into out[]; returns how many there are. Pre-norm
// tiles join only when LGH_SM80_MODE=fused finds no fused or wide pair.
int candidates(struct lgh_context *ctx, sm80_state *st, const lgh_problem_t *p, plan_t *out, int capacity)
{
    plan_t all[LGH_SM80_CONFIGS * MODE_COUNT];
    double cost[LGH_SM80_CONFIGS * MODE_COUNT];
    int n = 0;
    for (int pass = st->forced_mode == MODE_FUSED ? 0 : 1; pass < 2 && n == 0; ++pass)
        for (int cfg = 0; cfg < LGH_SM80_CONFIGS; ++cfg)
            for (int m = MODE_FUSED; m <= MODE_PRE; ++m)
                if (candidate(ctx, st, p, cfg, (mode)m, pass == 1, &all[n], &cost[n])) ++n;
    for (int i = 1; i < n; ++i) // insertion sort, stable
        for (int j = i; j > 0 && cost[j - 1] > cost[j]; --j) {
            const plan_t tp = all[j];
            all[j] = all[j - 1];
            all[j - 1] = tp;
            const double tc = cost[j];
            cost[j] = cost[j - 1];
            cost[j - 1] = tc;
        }
    for (int i = 0; i < n && i < capacity; ++i) out[i] = all[i];
    return n;
}

// The plan for p: the variant lgh_tune measured fastest when the core passes one and it
// still runs p, else the cheapest by the wave model.
lgh_status_t plan(struct lgh_context *ctx, sm80_state *st, const lgh_problem_t *p, plan_t *out)
{
    const int v = lgh_engine_variant(ctx);
    double cost;
    bool found = v >= 0 && candidate(ctx, st, p, v / MODE_COUNT, (mode)(v % MODE_COUNT), st->forced_mode != MODE_FUSED,
                                     out, &cost);
    if (!found) found = candidates(ctx, st, p, out, 1) > 0;
    if (!found) {
        return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED,
                             "sm80: no kernel configuration%s can run on this device (all spill or do not fit)",
                             st->forced_cfg >= 0 ? " (LGH_SM80_CONFIG)" : "");
    }
    fill_params(p, kCfgs[out->family][out->cfg], &out->prm);
    return LGH_STATUS_SUCCESS;
}

lgh_status_t run_here(struct lgh_context *ctx, const lgh_problem_t *p, cudaStream_t stream)
{
    sm80_state *st = get_state(ctx);
    if (st == nullptr) return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED, "sm80: out of host memory");
    plan_t pl;
    lgh_status_t s = plan(ctx, st, p, &pl);
    if (s != LGH_STATUS_SUCCESS) return s;
    if (pl.tiles > INT32_MAX) {
        return lgh_set_error(ctx, LGH_STATUS_NOT_SUPPORTED, "sm80: %lld tiles exceed one launch",
                             (long long)pl.tiles);
    }
    const cfg_info &c = kCfgs[pl.family][pl.cfg];
    void *args[] = {&pl.prm};
    cudaError_t e = cudaLaunchKernel(kTables[pl.family][pl.cfg][pl.gi], dim3((unsigned)pl.tiles), dim3(c.threads),
                                     args, (size_t)c.smem, stream);
    if (e != cudaSuccess) return lgh_cuda_fail(ctx, kEngine, "kernel launch", e);
    if (pl.md == MODE_PRE) {
        const lgh_groupnorm_args_t g = lgh_groupnorm_args_in_place(&p->a); // the kernel added the bias
        e = lgh_groupnorm_launch(&g, stream);
        if (e != cudaSuccess) return lgh_cuda_fail(ctx, kEngine, "group-norm pass launch", e);
    }
    return LGH_STATUS_SUCCESS;
}

// Makes the context's device current for the duration of an engine call.
// Called with the context's device current (lgh_device_enter in the entry points).
lgh_status_t run(struct lgh_context *ctx, const lgh_problem_t *p, void *, size_t, void *stream)
{
    return run_here(ctx, p, static_cast<cudaStream_t>(stream));
}

int kernel_info(struct lgh_context *ctx, lgh_kernel_info_t *out, int capacity)
{
    sm80_state *st = get_state(ctx);
    const int total = FAMILIES * LGH_SM80_CONFIGS * LGH_SM80_GS_COUNT;
    if (capacity <= 0) return total;
    int i = 0;
    for (int f = 0; f < FAMILIES; ++f)
        for (int c = 0; c < LGH_SM80_CONFIGS; ++c)
            for (int g = 0; g < LGH_SM80_GS_COUNT; ++g, ++i) {
                if (i >= capacity) continue;
                const cfg_info &ci = kCfgs[f][c];
                lgh_kernel_info_t *o = &out[i];
                *o = lgh_kernel_info_t{};
                const int elem = f == LGH_FAMILY_BF16 || f == LGH_FAMILY_F16 ? 2 : 4;
                char gs[8];
                if (g == 0) snprintf(gs, sizeof gs, "pre");
                else snprintf(gs, sizeof gs, "gs%d", 1 << (g - 1));
                snprintf(o->name, sizeof o->name, "lgh_sm80_kernel<%s,%dx%dx%d,s%d,%s%s>", kFamilyTag[f], ci.bm,
                         ci.bn, ci.kb_bytes / elem, ci.stages, gs, ci.sm90_only ? ",sm90" : "");
                o->engine = LGH_ENGINE_SM80;
                o->shared_bytes = ci.smem;
                // Occupancy as launched (after the shared-memory limit is raised); a
                // spilling kernel reports its occupancy too, though plan() never runs it.
                if (st != nullptr) facts_of(st, f, c, g);
                lgh_kernel_facts(kTables[f][c][g], ci.threads, (size_t)ci.smem, o);
            }
    return total;
}

void destroy_state(void *s) { free(s); }

// lgh_tune's variants: every (configuration, mode) that can run p, the model's first.
int variants(struct lgh_context *ctx, const lgh_problem_t *p, int *ids, int capacity)
{
    sm80_state *st = get_state(ctx);
    if (st == nullptr || capacity <= 0) return 0;
    plan_t pl[LGH_SM80_CONFIGS * MODE_COUNT];
    const int n = candidates(ctx, st, p, pl, LGH_SM80_CONFIGS * MODE_COUNT);
    for (int i = 0; i < n && i < capacity; ++i) ids[i] = variant_id(pl[i].cfg, pl[i].md);
    return n;
}

} // namespace

// Every member in engine.h's order (C++17 has no designated initializers): no backward, and
// not reentrant (run keeps per-context state).
extern "C" const lgh_engine_ops_t lgh_engine_sm80 = {
    LGH_ENGINE_SM80, "sm80", true, available, can_implement, workspace_size, run, kernel_info, destroy_state, variants,
    nullptr, nullptr, nullptr, false,
};
