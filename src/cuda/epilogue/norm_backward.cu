// The norm part of the backward (interface, formulas and order of sums: norm_backward.h).
//
// version 1: three plain kernels; h and dy are read twice (row sums, then elementwise),
// dh written once. At the reference problem that is 4 reads and 1 write of an M x N
// tensor next to two GEMMs of the same size as the forward's.
#include "epilogue/norm_backward.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/norm_output.h"
#include "epilogue/fused_groupnorm.cuh" // lgh_epi_to_float, lgh_epi_store1

namespace {

struct bwd_params {
    int64_t m, n, groups, gs, chunks;
    const void *h;
    int64_t ldh;
    const void *dy;
    int64_t lddy;
    const float *mean, *rstd; // the forward's, or NULL: stats (computed by the row kernel)
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

// 3. One thread per column: the chunks' partials in chunk order.
template <typename T>
__global__ void __launch_bounds__(256) lgh_bwd_column_sums(bwd_params p)
{
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= p.n) return;
    void *out[3] = {p.dbias, p.dgamma, p.dbeta};
#pragma unroll
    for (int q = 0; q < 3; ++q) {
        if (out[q] == nullptr) continue;
        float s = 0.f;
        for (int64_t ch = 0; ch < p.chunks; ++ch) s += p.partials[(q * p.chunks + ch) * p.n + c];
        lgh_epi_store1(static_cast<T *>(out[q]) + c, s);
    }
}

template <typename T>
cudaError_t launch(const bwd_params &p, cudaStream_t stream)
{
    const int threads = 256;
    const bool need_rows = p.dh != nullptr || p.mean == nullptr;
    if (need_rows) {
        int64_t blocks = (p.m * p.groups + 7) / 8;
        if (blocks > 65535 * 16) blocks = 65535 * 16;
        lgh_bwd_row_sums<T><<<(unsigned)blocks, threads, 0, stream>>>(p);
    }
    const dim3 grid((unsigned)((p.n + threads - 1) / threads), (unsigned)p.chunks);
    lgh_bwd_elementwise<T><<<grid, threads, 0, stream>>>(p);
    if (p.dbias || p.dgamma || p.dbeta)
        lgh_bwd_column_sums<T><<<(unsigned)((p.n + threads - 1) / threads), threads, 0, stream>>>(p);
    cudaError_t e = cudaGetLastError();
    return e;
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
