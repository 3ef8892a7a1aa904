// The norm part of the backward (interface, formulas and order of sums: norm_backward.h).
//
// version 1: three plain kernels; h and dy are read twice (row sums, then elementwise),
// dh written once. At the reference problem that is 4 reads and 1 write of an M x N
// tensor next to two GEMMs of the same size as the forward's.
// version 2: one fused pass (lgh_bwd_fused) when the data allow 16-byte units and a
// group fits a team of warps: h and dy read once with vector loads, the next row's loads
// in flight while a row is reduced, a group's statistics (when not the forward's) from
// the registers; the column sums read their partials with more threads. Version 1's
// kernels stay for the rest (odd group sizes, unaligned data, groups over 2048).
// version 3: the column sums compensated (Kahan) over the chunks: db and dβ as close to
// float64 as PyTorch float32's (docs/PRECISION.md, "In the backward").
#include "epilogue/norm_backward.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/norm_output.h"
#include "epilogue/fused_groupnorm.cuh" // lgh_epi_to_float, lgh_epi_store1
#include "epilogue/norm_io.cuh"        // lgh_norm_io: 16-byte units
#include "ptx/barrier.cuh"             // lgh_named_barrier_sync

namespace {

struct bwd_params {
    int64_t m, n, groups, gs, chunks;
    const void *h;
    int64_t ldh;
    const void *dy;
    int64_t lddy;
    const float *mean, *rstd; // the forward's, or NULL: computed from h (the fused kernel keeps
                              // them in registers; the row kernel writes them to stats)
    const void *gamma, *beta;
    float eps, lo, hi;
    float *row_sums, *partials, *stats;
    void *dh, *dbias, *dgamma, *dbeta;
};

// dz and x̂ of one element (torch's hardtanh rule: the gradient passes unless z <= lo or
// z >= hi, so a NaN z passes it).
__device__ __forceinline__ void dz_xhat(float h, float dy, float mean, float rstd, float g, float b,
                                        float lo, float hi, float *dz, float *xhat)
{
    const float z = lgh_norm_affine(h, mean, rstd, g, b);
    *dz = (z <= lo || z >= hi) ? 0.0f : dy;
    *xhat = (h - mean) * rstd;
}

// 1. One warp per (row, group).
template <typename T>
__global__ void __launch_bounds__(256) lgh_bwd_row_sums(bwd_params p)
{
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    const T *h = static_cast<const T *>(p.h);
    const T *dy = static_cast<const T *>(p.dy);
    const T *gamma = static_cast<const T *>(p.gamma);
    const T *beta = static_cast<const T *>(p.beta);
    for (int64_t seg = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; seg < p.m * p.groups;
         seg += warps) {
        const int64_t r = seg / p.groups, c0 = (seg - r * p.groups) * p.gs;
        float mean, rstd;
        if (p.mean != nullptr) {
            mean = p.mean[seg], rstd = p.rstd[seg];
        } else { // two passes over the group (in L1 / L2 the second time)
            float sum = 0.f;
            for (int64_t c = c0 + lane; c < c0 + p.gs; c += 32) sum += lgh_epi_to_float(h[r * p.ldh + c]);
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            mean = sum / (float)p.gs;
            float m2 = 0.f;
            for (int64_t c = c0 + lane; c < c0 + p.gs; c += 32) {
                const float d = lgh_epi_to_float(h[r * p.ldh + c]) - mean;
                m2 = fmaf(d, d, m2);
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) m2 += __shfl_xor_sync(0xffffffffu, m2, o);
            rstd = 1.0f / sqrtf(m2 / (float)p.gs + p.eps);
            if (lane == 0) {
                p.stats[seg] = mean;
                p.stats[p.m * p.groups + seg] = rstd;
            }
        }
        float s1 = 0.f, s2 = 0.f;
        for (int64_t c = c0 + lane; c < c0 + p.gs; c += 32) {
            const float g = lgh_epi_to_float(gamma[c]);
            float dz, xhat;
            dz_xhat(lgh_epi_to_float(h[r * p.ldh + c]), lgh_epi_to_float(dy[r * p.lddy + c]), mean, rstd,
                    g, lgh_epi_to_float(beta[c]), p.lo, p.hi, &dz, &xhat);
            const float gv = __fmul_rn(dz, g); // rounded as in the elementwise kernel (no FMA
            s1 += gv;                          // contraction): g - mean(g) is exactly 0 in a group of one
            s2 = fmaf(gv, xhat, s2);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            s1 += __shfl_xor_sync(0xffffffffu, s1, o);
            s2 += __shfl_xor_sync(0xffffffffu, s2, o);
        }
        if (lane == 0) {
            p.row_sums[2 * seg] = s1 / (float)p.gs;
            p.row_sums[2 * seg + 1] = s2 / (float)p.gs;
        }
    }
}

// 2. One thread per column, LGH_BWD_CHUNK_ROWS rows (blockIdx.y: the chunk).
template <typename T>
__global__ void __launch_bounds__(256) lgh_bwd_elementwise(bwd_params p)
{
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= p.n) return;
    const int64_t chunk = blockIdx.y;
    const int64_t r0 = chunk * LGH_BWD_CHUNK_ROWS;
    const int64_t r1 = min(p.m, r0 + LGH_BWD_CHUNK_ROWS);
    const T *h = static_cast<const T *>(p.h);
    const T *dy = static_cast<const T *>(p.dy);
    T *dh = static_cast<T *>(p.dh);
    const float g = lgh_epi_to_float(static_cast<const T *>(p.gamma)[c]);
    const float b = lgh_epi_to_float(static_cast<const T *>(p.beta)[c]);
    const int64_t grp = c / p.gs;
    float sb = 0.f, sg = 0.f, sbe = 0.f;
    const float *mean_of = p.mean != nullptr ? p.mean : p.stats;
    const float *rstd_of = p.mean != nullptr ? p.rstd : p.stats + p.m * p.groups;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t t = r * p.groups + grp;
        const float mean = mean_of[t], rstd = rstd_of[t];
        float dz, xhat;
        dz_xhat(lgh_epi_to_float(h[r * p.ldh + c]), lgh_epi_to_float(dy[r * p.lddy + c]), mean, rstd, g, b,
                p.lo, p.hi, &dz, &xhat);
        sbe += dz;
        sg = fmaf(dz, xhat, sg);
        if (dh != nullptr) {
            const float d = rstd * (__fmul_rn(dz, g) - p.row_sums[2 * t] - xhat * p.row_sums[2 * t + 1]);
            lgh_epi_store1(dh + r * p.n + c, d);
            sb += d;
        }
    }
    p.partials[(0 * p.chunks + chunk) * p.n + c] = sb;
    p.partials[(1 * p.chunks + chunk) * p.n + c] = sg;
    p.partials[(2 * p.chunks + chunk) * p.n + c] = sbe;
}

// 2'. The fused path: one pass over h and dy. A team of 1, 2, 4 or 8 warps (chosen at
// launch: as few as hold the group at 8 elements per lane) owns a work item (chunk of
// LGH_BWD_CHUNK_ROWS rows, group) and walks its rows in order. Per row, each lane keeps
// its 8 elements of h and dy in registers (two 16-byte units of float32, one of 16-bit
// data; with 16 elements the 16-bit instances spilled at the 128 registers that two
// blocks per SM allow) and loads the next row's while this one is reduced. It sums
// dz·γ and dz·γ·x̂ over the group (lanes by shuffles, the team's warps through shared
// memory, always in the same order), then writes dh and adds its columns' dz, dz·x̂ and
// dh to partials kept in registers, written at the end of the chunk. h and dy are read
// once, dh written once.
template <typename T> constexpr int kBwdUnitsPerLane = (int)sizeof(T) / 2; // 8 elements
constexpr int kBwdThreads = 256;

// The team's two sums: butterfly shuffles within each warp, then (teams of several warps)
// the warps' results in warp order through shared memory. Two slots per warp used in
// turn (`phase` counts the team's reductions), so one barrier per reduction suffices: a
// warp can only overwrite a slot after every warp of the team has passed the barrier of
// the reduction that last read it.
__device__ __forceinline__ float2 lgh_bwd_team_sum(float a, float b, float2 (*slots)[kBwdThreads / 32],
                                                   int &phase, int team, int team_warps)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        a += __shfl_xor_sync(0xffffffffu, a, o);
        b += __shfl_xor_sync(0xffffffffu, b, o);
    }
    if (team_warps > 1) {
        const int par = phase++ & 1;
        if ((threadIdx.x & 31) == 0) slots[par][threadIdx.x / 32] = make_float2(a, b);
        lgh_named_barrier_sync(1 + team, 32 * team_warps);
        a = b = 0.f;
        for (int w = 0; w < team_warps; ++w) {
            const float2 v = slots[par][team * team_warps + w];
            a += v.x;
            b += v.y;
        }
    }
    return make_float2(a, b);
}

template <typename T>
__global__ void __launch_bounds__(kBwdThreads, 2) lgh_bwd_fused(bwd_params p, int team_warps)
{
    using io = lgh_norm_io<T, true>;
    constexpr int N = io::N, UPL = kBwdUnitsPerLane<T>;
    __shared__ float2 team_sums[2][kBwdThreads / 32]; // [phase parity][warp]
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int team = warp / team_warps, warp_in_team = warp - team * team_warps;
    const int teams_per_block = (kBwdThreads / 32) / team_warps;
    const int team_lanes = 32 * team_warps;
    const int64_t units = p.gs / N; // of one group
    const int64_t items = p.chunks * p.groups;
    const T *__restrict__ h = static_cast<const T *>(p.h);
    const T *__restrict__ dy = static_cast<const T *>(p.dy);
    const T *__restrict__ gamma = static_cast<const T *>(p.gamma);
    const T *__restrict__ beta = static_cast<const T *>(p.beta);
    T *__restrict__ dh = static_cast<T *>(p.dh);
    const bool want_dh = dh != nullptr;

    int phase = 0; // reductions this team has made (lgh_bwd_team_sum)
    for (int64_t item = (int64_t)blockIdx.x * teams_per_block + team; item < items;
         item += (int64_t)gridDim.x * teams_per_block) {
        const int64_t chunk = item / p.groups, grp = item - chunk * p.groups;
        const int64_t r0 = chunk * LGH_BWD_CHUNK_ROWS;
        const int64_t r1 = min(p.m, r0 + LGH_BWD_CHUNK_ROWS);
        // This lane's columns: units u_j = warp_in_team * 32 + lane + j * team_lanes.
        int64_t col[UPL];
        bool own[UPL];
        float g[UPL][N], b[UPL][N];
        float sb[UPL][N], sg[UPL][N], sbe[UPL][N];
#pragma unroll
        for (int j = 0; j < UPL; ++j) {
            const int64_t u = warp_in_team * 32 + lane + (int64_t)j * team_lanes;
            own[j] = u < units;
            col[j] = grp * p.gs + (own[j] ? u : 0) * N;
            io::load_param(gamma + col[j], g[j]);
            io::load_param(beta + col[j], b[j]);
#pragma unroll
            for (int e = 0; e < N; ++e) sb[j][e] = sg[j][e] = sbe[j][e] = 0.f;
        }
        typename io::U hv[UPL], dv[UPL], hn[UPL], dn[UPL];
#pragma unroll
        for (int j = 0; j < UPL; ++j) {
            if (own[j]) {
                hv[j] = __ldg(reinterpret_cast<const uint4 *>(h + r0 * p.ldh + col[j]));
                dv[j] = __ldg(reinterpret_cast<const uint4 *>(dy + r0 * p.lddy + col[j]));
            }
        }
        for (int64_t r = r0; r < r1; ++r) {
            // the next row's units, in flight while this row is reduced
            if (r + 1 < r1) {
#pragma unroll
                for (int j = 0; j < UPL; ++j) {
                    if (own[j]) {
                        hn[j] = __ldg(reinterpret_cast<const uint4 *>(h + (r + 1) * p.ldh + col[j]));
                        dn[j] = __ldg(reinterpret_cast<const uint4 *>(dy + (r + 1) * p.lddy + col[j]));
                    }
                }
            }
            const int64_t t = r * p.groups + grp;
            float mean, rstd;
            if (p.mean != nullptr) {
                mean = p.mean[t], rstd = p.rstd[t];
            } else { // the statistics of h itself (a 16-bit or recomputed h), two passes as
                float sum = 0.f;  // the forward's norm pass, from the registers
#pragma unroll
                for (int j = 0; j < UPL; ++j) {
                    if (!own[j]) continue;
                    float hf[N];
                    io::unpack(hv[j], hf);
#pragma unroll
                    for (int e = 0; e < N; ++e) sum += hf[e];
                }
                mean = lgh_bwd_team_sum(sum, 0.f, team_sums, phase, team, team_warps).x / (float)p.gs;
                float m2 = 0.f;
#pragma unroll
                for (int j = 0; j < UPL; ++j) {
                    if (!own[j]) continue;
                    float hf[N];
                    io::unpack(hv[j], hf);
#pragma unroll
                    for (int e = 0; e < N; ++e) {
                        const float d = hf[e] - mean;
                        m2 = fmaf(d, d, m2);
                    }
                }
                m2 = lgh_bwd_team_sum(m2, 0.f, team_sums, phase, team, team_warps).x;
                rstd = 1.0f / sqrtf(m2 / (float)p.gs + p.eps);
            }
            float rs1 = 0.f, rs2 = 0.f;
            if (want_dh) {
                float s1 = 0.f, s2 = 0.f;
#pragma unroll
                for (int j = 0; j < UPL; ++j) {
                    if (!own[j]) continue;
                    float hf[N], df[N];
                    io::unpack(hv[j], hf);
                    io::unpack(dv[j], df);
#pragma unroll
                    for (int e = 0; e < N; ++e) {
                        float dz, xhat;
                        dz_xhat(hf[e], df[e], mean, rstd, g[j][e], b[j][e], p.lo, p.hi, &dz, &xhat);
                        const float gv = __fmul_rn(dz, g[j][e]);
                        s1 += gv;
                        s2 = fmaf(gv, xhat, s2);
                    }
                }
                const float2 s12 = lgh_bwd_team_sum(s1, s2, team_sums, phase, team, team_warps);
                s1 = s12.x;
                s2 = s12.y;
                rs1 = s1 / (float)p.gs;
                rs2 = s2 / (float)p.gs;
            }
#pragma unroll
            for (int j = 0; j < UPL; ++j) {
                if (!own[j]) continue;
                float hf[N], df[N], out[N];
                io::unpack(hv[j], hf);
                io::unpack(dv[j], df);
#pragma unroll
                for (int e = 0; e < N; ++e) {
                    float dz, xhat;
                    dz_xhat(hf[e], df[e], mean, rstd, g[j][e], b[j][e], p.lo, p.hi, &dz, &xhat);
                    sbe[j][e] += dz;
                    sg[j][e] = fmaf(dz, xhat, sg[j][e]);
                    out[e] = rstd * (__fmul_rn(dz, g[j][e]) - rs1 - xhat * rs2);
                    sb[j][e] += out[e];
                }
                if (want_dh) io::store(dh + r * p.n + col[j], io::pack(out));
            }
#pragma unroll
            for (int j = 0; j < UPL; ++j) {
                hv[j] = hn[j];
                dv[j] = dn[j];
            }
        }
#pragma unroll
        for (int j = 0; j < UPL; ++j) {
            if (!own[j]) continue;
            float *const part[3] = {p.partials + (0 * p.chunks + chunk) * p.n + col[j],
                                    p.partials + (1 * p.chunks + chunk) * p.n + col[j],
                                    p.partials + (2 * p.chunks + chunk) * p.n + col[j]};
#pragma unroll
            for (int e = 0; e < N; e += 4) {
                *reinterpret_cast<float4 *>(part[0] + e) =
                    make_float4(sb[j][e], sb[j][e + 1], sb[j][e + 2], sb[j][e + 3]);
                *reinterpret_cast<float4 *>(part[1] + e) =
                    make_float4(sg[j][e], sg[j][e + 1], sg[j][e + 2], sg[j][e + 3]);
                *reinterpret_cast<float4 *>(part[2] + e) =
                    make_float4(sbe[j][e], sbe[j][e + 1], sbe[j][e + 2], sbe[j][e + 3]);
            }
        }
    }
}

// 3. One thread per (output, column): the chunks' partials in chunk order.
template <typename T>
__global__ void __launch_bounds__(256) lgh_bwd_column_sums(bwd_params p)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= 3 * p.n) return;
    const int q = (int)(i / p.n);
    const int64_t c = i - q * p.n;
    T *out = static_cast<T *>(q == 0 ? p.dbias : q == 1 ? p.dgamma : p.dbeta);
    if (out == nullptr) return;
    const float *__restrict__ part = p.partials + (int64_t)q * p.chunks * p.n + c;
    // Compensated (Kahan) sum in chunk order: a plain sum of 64 chunk partials (M = 1024)
    // left db and dβ ~1.6e-7 off float64, above PyTorch float32's ~1.2e-7; compensated,
    // ~0.7e-7 (a float32 simulation of the same order). __fadd_rn / __fsub_rn keep the
    // compiler from reassociating the correction away. Once the sum is infinite the
    // correction would be Inf - Inf = NaN: it is dropped, so ±Inf and NaN come out as a
    // plain sum gives them.
    float s = 0.f, comp = 0.f;
#pragma unroll 8
    for (int64_t ch = 0; ch < p.chunks; ++ch) {
        const float y = __fsub_rn(part[ch * p.n], comp);
        const float t = __fadd_rn(s, y);
        comp = isfinite(t) ? __fsub_rn(__fsub_rn(t, s), y) : 0.f;
        s = t;
    }
    lgh_epi_store1(out + c, s);
}

// Warps per team for the fused path (each lane holds at most kBwdUnitsPerLane<T> units of a
// group), or 0 when the fused path cannot take the problem.
template <typename T>
int fused_team_warps(const bwd_params &p)
{
    constexpr int64_t N = lgh_norm_io<T, true>::N;
    const auto aligned = [](const void *q) { return ((uintptr_t)q & 15u) == 0; };
    if (p.gs % N != 0 || p.ldh % N != 0 || p.lddy % N != 0) return 0;
    if (!aligned(p.h) || !aligned(p.dy) || !aligned(p.dh) || !aligned(p.gamma) || !aligned(p.beta)) return 0;
    const int64_t units = p.gs / N;
    for (int w = 1; w <= kBwdThreads / 32; w *= 2)
        if (units <= (int64_t)32 * w * kBwdUnitsPerLane<T>) return w;
    return 0;
}

template <typename T>
cudaError_t launch(const bwd_params &p, cudaStream_t stream)
{
    const int threads = kBwdThreads;
    const int team = fused_team_warps<T>(p);
    if (team > 0) {
        const int64_t teams = p.chunks * p.groups, per_block = (threads / 32) / team;
        int64_t blocks = (teams + per_block - 1) / per_block;
        if (blocks > (1 << 20)) blocks = 1 << 20; // the kernel strides over the rest
        lgh_bwd_fused<T><<<(unsigned)blocks, threads, 0, stream>>>(p, team);
    } else {
        const bool need_rows = p.dh != nullptr || p.mean == nullptr;
        if (need_rows) {
            int64_t blocks = (p.m * p.groups + 7) / 8;
            if (blocks > 65535 * 16) blocks = 65535 * 16;
            lgh_bwd_row_sums<T><<<(unsigned)blocks, threads, 0, stream>>>(p);
        }
        const dim3 grid((unsigned)((p.n + threads - 1) / threads), (unsigned)p.chunks);
        lgh_bwd_elementwise<T><<<grid, threads, 0, stream>>>(p);
    }
    if (p.dbias || p.dgamma || p.dbeta)
        lgh_bwd_column_sums<T><<<(unsigned)((3 * p.n + threads - 1) / threads), threads, 0, stream>>>(p);
    return cudaGetLastError();
}

} // namespace

extern "C" int64_t lgh_norm_bwd_chunks(int64_t m) { return (m + LGH_BWD_CHUNK_ROWS - 1) / LGH_BWD_CHUNK_ROWS; }

extern "C" cudaError_t lgh_norm_bwd_launch(const lgh_norm_bwd_args_t *a, void *stream)
{
    bwd_params p;
    p.m = a->m;
    p.n = a->n;
    p.groups = a->groups;
    p.gs = a->n / a->groups;
    p.chunks = lgh_norm_bwd_chunks(a->m);
    p.h = a->h;
    p.ldh = a->ldh;
    p.dy = a->dy;
    p.lddy = a->lddy;
    p.mean = a->mean;
    p.rstd = a->rstd;
    p.gamma = a->gamma;
    p.beta = a->beta;
    p.eps = a->eps;
    p.lo = a->lo;
    p.hi = a->hi;
    p.stats = a->stats;
    p.row_sums = a->row_sums;
    p.partials = a->partials;
    p.dh = a->dh;
    p.dbias = a->dbias;
    p.dgamma = a->dgamma;
    p.dbeta = a->dbeta;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    switch (a->dtype) {
    case LGH_DTYPE_BFLOAT16: return launch<__nv_bfloat16>(p, s);
    case LGH_DTYPE_FLOAT16: return launch<__half>(p, s);
    default: return launch<float>(p, s);
    }
}
