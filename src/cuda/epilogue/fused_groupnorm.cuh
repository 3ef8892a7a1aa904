// The fused epilogue: bias, per-(row, group) statistics, normalise, γ/β, clamp, one store
// of y — on accumulators still in registers. Shared by the fused engines (sm90 wgmma,
// sm80 mma.sync); they differ only in how partial statistics of a row meet across warps or
// CTAs, which happens between lgh_epi_group_stats and lgh_epi_group_normalize.
//
// The fragment: the accumulator layout that wgmma (per warp: 16 rows of a 64xN tile) and
// mma.sync (one m16n8 block per j) share. A thread holding NB n8-blocks of one 16-row slab
// has, for block j and row half h in {0, 1}:
//     v[4j + 2h + c] = tile[r0 + 8h][8j + 2(lane % 4) + c],   c in {0, 1},  r0 = lane / 4
// So one row of the slab lives in the 4 lanes of a quad, each with 2 values per block.
//
// Per-column parameters come from a tile-wide copy in shared memory (lgh_epi_tile_params),
// staged by the engine once per tile with zeros beyond N: reading them straight from
// global memory in the unrolled epilogue made the compiler batch 128 loads into registers
// next to 128 accumulators (spills in the sm90 kernel).
//
// Groups: the template parameter GS is the number of a group's channels inside the
// fragment — the group size when it divides the fragment width NB*8, or NB*8 when the
// fragment is one piece of a wider group (whose pieces the engine combines). GS is a power
// of two. Along a row, a thread's values in order p = 2j + c belong to consecutive groups of
// VALS_PER_GROUP values each; a group spans LANES quad lanes. Because N is a multiple of the
// group size and the group size divides the tile width (or is a multiple of it), a group is
// either entirely inside [0, N) or entirely outside, so statistics never need masking.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "common/norm_output.h"
#include "epilogue/chan.cuh"

__device__ __forceinline__ float lgh_epi_to_float(float x) { return x; }
__device__ __forceinline__ float lgh_epi_to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float lgh_epi_to_float(__half x) { return __half2float(x); }

__device__ __forceinline__ void lgh_epi_store2(float *p, float a, float b)
{
    *reinterpret_cast<float2 *>(p) = make_float2(a, b);
}
__device__ __forceinline__ void lgh_epi_store2(__nv_bfloat16 *p, float a, float b)
{
    *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(a, b);
}
__device__ __forceinline__ void lgh_epi_store2(__half *p, float a, float b)
{
    *reinterpret_cast<__half2 *>(p) = __floats2half2_rn(a, b);
}
__device__ __forceinline__ float2 lgh_epi_load2(const float *p) { return *reinterpret_cast<const float2 *>(p); }
__device__ __forceinline__ float2 lgh_epi_load2(const __nv_bfloat16 *p)
{
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
}
__device__ __forceinline__ float2 lgh_epi_load2(const __half *p)
{
    return __half22float2(*reinterpret_cast<const __half2 *>(p));
}
__device__ __forceinline__ void lgh_epi_store1(float *p, float a) { *p = a; }
__device__ __forceinline__ void lgh_epi_store1(__nv_bfloat16 *p, float a) { *p = __float2bfloat16_rn(a); }
__device__ __forceinline__ void lgh_epi_store1(__half *p, float a) { *p = __float2half_rn(a); }

// What the epilogue needs of the problem besides the per-column parameters.
template <typename T>
struct lgh_epi_args {
    T *y;          // 2-element aligned, ldy even (checked by the engine)
    int64_t ldy;
    float *mean, *rstd; // [m, groups] or NULL
    int m, n, groups, group_size;
    float eps, lo, hi;
};

// The epilogue's arguments from a kernel's parameters (the fused kernels' parameter structs
// name these fields alike).
template <typename T, typename Params>
__device__ __forceinline__ lgh_epi_args<T> lgh_epi_args_of(const Params &p)
{
    lgh_epi_args<T> a;
    a.y = static_cast<T *>(p.y);
    a.ldy = p.ldy;
    a.mean = p.mean;
    a.rstd = p.rstd;
    a.m = p.m;
    a.n = p.n;
    a.groups = p.groups;
    a.group_size = p.group_size;
    a.eps = p.eps;
    a.lo = p.lo;
    a.hi = p.hi;
    return a;
}

// bias, γ, β of one tile's WIDTH columns as float, in shared memory.
template <int WIDTH>
struct lgh_epi_tile_params {
    float bias[WIDTH], gamma[WIDTH], beta[WIDTH];
};

// One thread's share of staging: column `col` (global) into slot `i` of the tile copy.
template <typename T>
struct lgh_epi_param_loader {
    float b, g, be;
    __device__ __forceinline__ void load(const T *bias, const T *gamma, const T *beta, int col, int n)
    {
        b = g = be = 0.f;
        if (col < n) {
            b = lgh_epi_to_float(bias[col]);
            g = lgh_epi_to_float(gamma[col]);
            be = lgh_epi_to_float(beta[col]);
        }
    }
    template <int WIDTH>
    __device__ __forceinline__ void store(lgh_epi_tile_params<WIDTH> *tp, int i) const
    {
        tp->bias[i] = b;
        tp->gamma[i] = g;
        tp->beta[i] = be;
    }
};

// How GS channels fall on a thread's values in a fragment of NB blocks.
template <int NB, int GS>
struct lgh_epi_shape {
    static_assert(GS >= 1 && (GS & (GS - 1)) == 0 && GS <= NB * 8,
                  "a group's part in the fragment is a power of two no wider than the fragment");
    static constexpr int VALS_PER_GROUP = GS >= 8 ? GS / 4 : (GS >= 2 ? 2 : 1);
    static constexpr int LANES = GS >= 8 ? 4 : (GS == 4 ? 2 : 1);
    static constexpr int GROUPS = 2 * NB / VALS_PER_GROUP; // per thread per row half
};

// Index into v of the thread's p-th value (p = 2j + c) of row half h.
__host__ __device__ constexpr int lgh_epi_idx(int p, int h) { return 4 * (p >> 1) + 2 * h + (p & 1); }

// The fragment column (0 .. NB*8-1) of the thread's p-th value.
__device__ __forceinline__ int lgh_epi_col(int p) { return 8 * (p >> 1) + 2 * (threadIdx.x & 3) + (p & 1); }

// Adds the bias. tp: the tile's parameters, indexed by fragment column.
template <int NB, int WIDTH>
__device__ __forceinline__ void lgh_epi_add_bias(float (&v)[4 * NB], const lgh_epi_tile_params<WIDTH> *tp)
{
#pragma unroll
    for (int j = 0; j < NB; ++j) {
        const float2 b = *reinterpret_cast<const float2 *>(&tp->bias[lgh_epi_col(2 * j)]);
        v[4 * j] += b.x;
        v[4 * j + 1] += b.y;
        v[4 * j + 2] += b.x;
        v[4 * j + 3] += b.y;
    }
}

// As lgh_epi_add_bias, with the bias read from global memory (columns from col0, masked to
// n): for plain products that add the bias (the sm90 backward recomputing h), where no
// tile copy of the parameters exists. The same float32 adds as the epilogue's, so h comes
// out bitwise as the layer's kernel computed it.
template <int NB, typename T>
__device__ __forceinline__ void lgh_epi_add_bias_global(float (&v)[4 * NB], const T *bias, int col0, int n)
{
    const int c = col0 + 2 * (threadIdx.x & 3);
#pragma unroll
    for (int j = 0; j < NB; ++j) {
        const int col = c + 8 * j;
        const float b0 = col < n ? lgh_epi_to_float(bias[col]) : 0.0f;
        const float b1 = col + 1 < n ? lgh_epi_to_float(bias[col + 1]) : 0.0f;
        v[4 * j] += b0;
        v[4 * j + 1] += b1;
        v[4 * j + 2] += b0;
        v[4 * j + 3] += b1;
    }
}

// Statistics of the thread's u-th group in row half h, combined over the quad lanes that
// share the group: the statistics of the group's part inside this fragment.
template <int NB, int GS>
__device__ __forceinline__ lgh_stats lgh_epi_group_stats(const float (&v)[4 * NB], int u, int h)
{
    using S = lgh_epi_shape<NB, GS>;
    float t[S::VALS_PER_GROUP];
#pragma unroll
    for (int q = 0; q < S::VALS_PER_GROUP; ++q) t[q] = v[lgh_epi_idx(u * S::VALS_PER_GROUP + q, h)];
    lgh_stats s = lgh_stats_of(t);
    return lgh_stats_shfl_reduce<S::LANES - 1>(s);
}

// Writes group g's mean / rstd of the fragment's two rows (row0 and row0 + 8), masked to M.
template <typename T>
__device__ __forceinline__ void lgh_epi_write_row_stats(const lgh_epi_args<T> &a, int row0, int g, float mean0,
                                                        float rstd0, float mean1, float rstd1)
{
    if (row0 < a.m) {
        a.mean[(int64_t)row0 * a.groups + g] = mean0;
        a.rstd[(int64_t)row0 * a.groups + g] = rstd0;
    }
    if (row0 + 8 < a.m) {
        a.mean[(int64_t)(row0 + 8) * a.groups + g] = mean1;
        a.rstd[(int64_t)(row0 + 8) * a.groups + g] = rstd1;
    }
}

// Normalises the thread's u-th group in both row halves (s0: statistics of row row0's
// group, s1: of row row0 + 8), applies γ/β and the clamp in place, and writes mean / rstd
// (when asked) from the lane holding the group's first column. write_stats is false on all
// but one CTA of a cluster that shares the group. col0: the fragment's first output column.
template <int NB, int GS, int WIDTH, typename T>
__device__ __forceinline__ void lgh_epi_group_normalize(float (&v)[4 * NB], int u, lgh_stats s0,
                                                        lgh_stats s1, const lgh_epi_tile_params<WIDTH> *tp,
                                                        const lgh_epi_args<T> &a, int row0, int col0,
                                                        bool write_stats)
{
    using S = lgh_epi_shape<NB, GS>;
    const float mean0 = s0.mean, mean1 = s1.mean;
    const float rstd0 = rsqrtf(s0.m2 / s0.n + a.eps);
    const float rstd1 = rsqrtf(s1.m2 / s1.n + a.eps);
#pragma unroll
    for (int q = 0; q < S::VALS_PER_GROUP; ++q) {
        const int p = u * S::VALS_PER_GROUP + q;
        const int col = lgh_epi_col(p);
        const float g = tp->gamma[col], b = tp->beta[col];
        const float y0 = lgh_norm_affine(v[lgh_epi_idx(p, 0)], mean0, rstd0, g, b);
        const float y1 = lgh_norm_affine(v[lgh_epi_idx(p, 1)], mean1, rstd1, g, b);
        v[lgh_epi_idx(p, 0)] = lgh_hardtanh(y0, a.lo, a.hi);
        v[lgh_epi_idx(p, 1)] = lgh_hardtanh(y1, a.lo, a.hi);
    }
    if (a.mean != nullptr && write_stats) {
        const int first = col0 + lgh_epi_col(u * S::VALS_PER_GROUP);
        if (first % a.group_size == 0 && first < a.n)
            lgh_epi_write_row_stats(a, row0, first / a.group_size, mean0, rstd0, mean1, rstd1);
    }
}

// ---- Groups of any size (straddle mode: a group may begin and end anywhere in a tile) ----
// The fragment's columns [lo, hi) (relative to the tile's first column) hold one group's
// piece. Statistics of that piece in row half h, combined over the quad (Chan): each
// thread's values in two passes, masked per column, any count (0 included).
template <int NB>
__device__ __forceinline__ lgh_stats lgh_epi_range_stats(const float (&v)[4 * NB], int h, int lo, int hi)
{
    float s = 0.f, n = 0.f;
#pragma unroll
    for (int p = 0; p < 2 * NB; ++p) {
        const int c = lgh_epi_col(p);
        if (c >= lo && c < hi) {
            s += v[lgh_epi_idx(p, h)];
            n += 1.f;
        }
    }
    const float mean = n > 0.f ? s / n : 0.f;
    float m2 = 0.f;
#pragma unroll
    for (int p = 0; p < 2 * NB; ++p) {
        const int c = lgh_epi_col(p);
        if (c >= lo && c < hi) {
            const float d = v[lgh_epi_idx(p, h)] - mean;
            m2 = fmaf(d, d, m2);
        }
    }
    return lgh_stats_shfl_reduce<3>(lgh_stats{n, mean, m2});
}

// Normalises the piece [lo, hi) of both row halves with the group's statistics s0, s1, as
// lgh_epi_group_normalize does, and writes mean / rstd of group g (when write_stats) from
// the quad's first lane.
template <int NB, int WIDTH, typename T>
__device__ __forceinline__ void lgh_epi_range_normalize(float (&v)[4 * NB], int lo, int hi, lgh_stats s0,
                                                        lgh_stats s1, const lgh_epi_tile_params<WIDTH> *tp,
                                                        const lgh_epi_args<T> &a, int row0, int g, bool write_stats)
{
    const float rstd0 = rsqrtf(s0.m2 / s0.n + a.eps);
    const float rstd1 = rsqrtf(s1.m2 / s1.n + a.eps);
#pragma unroll
    for (int p = 0; p < 2 * NB; ++p) {
        const int c = lgh_epi_col(p);
        if (c >= lo && c < hi) {
            const float gm = tp->gamma[c], b = tp->beta[c];
            v[lgh_epi_idx(p, 0)] = lgh_hardtanh(lgh_norm_affine(v[lgh_epi_idx(p, 0)], s0.mean, rstd0, gm, b), a.lo, a.hi);
            v[lgh_epi_idx(p, 1)] = lgh_hardtanh(lgh_norm_affine(v[lgh_epi_idx(p, 1)], s1.mean, rstd1, gm, b), a.lo, a.hi);
        }
    }
    if (a.mean != nullptr && write_stats && (threadIdx.x & 3) == 0)
        lgh_epi_write_row_stats(a, row0, g, s0.mean, rstd0, s1.mean, rstd1);
}

// Stores the fragment's two rows (row0 and row0 + 8), masked to [0, m) x [0, n), in pairs.
// TRANSPOSED (plain products computed as their transpose, kernel_sm90.cuh's NN): element
// (row, col) goes to y[col][row], one value at a time; a warp's store of one register then
// writes 8 consecutive floats of each of 4 rows of y, whole 32-byte sectors.
template <int NB, typename T, bool TRANSPOSED = false>
__device__ __forceinline__ void lgh_epi_store(const float (&v)[4 * NB], const lgh_epi_args<T> &a,
                                              int row0, int col0)
{
    const int c = col0 + 2 * (threadIdx.x & 3);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int row = row0 + 8 * h;
        if (row >= a.m) continue;
        T *yrow = a.y + (int64_t)row * a.ldy;
#pragma unroll
        for (int j = 0; j < NB; ++j) {
            const int col = c + 8 * j;
            if constexpr (TRANSPOSED) {
                if (col < a.n) lgh_epi_store1(a.y + (int64_t)col * a.ldy + row, v[4 * j + 2 * h]);
                if (col + 1 < a.n) lgh_epi_store1(a.y + (int64_t)(col + 1) * a.ldy + row, v[4 * j + 2 * h + 1]);
            } else if (col + 1 < a.n) {
                lgh_epi_store2(yrow + col, v[4 * j + 2 * h], v[4 * j + 2 * h + 1]);
            } else if (col < a.n) {
                lgh_epi_store1(yrow + col, v[4 * j + 2 * h]);
            }
        }
    }
}

// Wide groups done by one CTA tile after tile (the sm80 engine's wide mode, the sm90
// engine's unit mode): every tile of the group but the last was stored pre-norm (bias
// added); once the last tile completed the statistics, this normalises, in place, those
// earlier `cols` columns from c0 of the CTA's rows [m0, m0 + rows_max), with the final
// fin[r] = (mean, M2) over the group's channels, and writes mean / rstd when asked (group:
// the group's index). Threads tid = 0 .. nthreads-1 share the work; they must see every
// earlier store and fin first (a barrier of those threads). Same arithmetic as
// lgh_epi_group_normalize. γ and β come from global memory: the tile copies are gone.
template <typename T>
__device__ __forceinline__ void lgh_epi_wide_fixup(const lgh_epi_args<T> &a, const T *gamma, const T *beta,
                                                   const float2 *fin, int m0, int rows_max, int c0, int cols,
                                                   int group, int tid, int nthreads)
{
    const int rows = min(rows_max, a.m - m0);
    const int pairs = cols / 2;
    const float n = (float)a.group_size;
    for (int idx = tid; idx < rows * pairs; idx += nthreads) {
        const int r = idx / pairs;
        const int col = c0 + 2 * (idx - r * pairs);
        const float2 st = fin[r];
        const float rstd = rsqrtf(st.y / n + a.eps);
        T *py = a.y + (int64_t)(m0 + r) * a.ldy + col;
        const float2 v = lgh_epi_load2(py); // y pairs are 2-element aligned (col even, ldy even)
        const float y0 = lgh_norm_affine(v.x, st.x, rstd, lgh_epi_to_float(gamma[col]),
                                         lgh_epi_to_float(beta[col]));
        const float y1 = lgh_norm_affine(v.y, st.x, rstd, lgh_epi_to_float(gamma[col + 1]),
                                         lgh_epi_to_float(beta[col + 1]));
        lgh_epi_store2(py, lgh_hardtanh(y0, a.lo, a.hi), lgh_hardtanh(y1, a.lo, a.hi));
    }
    if (a.mean != nullptr) {
        for (int r = tid; r < rows; r += nthreads) {
            const float2 st = fin[r];
            a.mean[(int64_t)(m0 + r) * a.groups + group] = st.x;
            a.rstd[(int64_t)(m0 + r) * a.groups + group] = rsqrtf(st.y / n + a.eps);
        }
    }
}
