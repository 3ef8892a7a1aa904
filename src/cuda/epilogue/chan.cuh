// Partial statistics (count, mean, M2) and Chan's pairwise combination.
//
// Every lgh kernel reduces a (row, group) in pieces (a thread's values, a warp, a tile, a
// cluster, a finishing pass) and combines the pieces with this formula, never as
// E[x^2] - E[x]^2, which cancels catastrophically when |mean| >> std.
//   n = na + nb,  d = mean_b - mean_a,
//   mean = mean_a + d * nb / n,  M2 = M2_a + M2_b + d^2 * na * nb / n.
// The variance of the whole is M2 / n (biased, as torch.nn.GroupNorm).
#pragma once

struct lgh_stats {
    float n;    // element count (exact in float up to 2^24)
    float mean;
    float m2;   // sum of squared deviations from mean
};

__host__ __device__ __forceinline__ lgh_stats lgh_stats_empty() { return {0.f, 0.f, 0.f}; }

__host__ __device__ __forceinline__ lgh_stats lgh_stats_combine(lgh_stats a, lgh_stats b)
{
    const float n = a.n + b.n;
    if (n == 0.f) return a;
    const float d = b.mean - a.mean;
    const float wb = b.n / n;
    lgh_stats r;
    r.n = n;
    r.mean = a.mean + d * wb;
    r.m2 = a.m2 + b.m2 + d * d * a.n * wb;
    return r;
}

// Stats of `count` values held by one thread: two passes over registers (mean, then M2).
template <int COUNT>
__device__ __forceinline__ lgh_stats lgh_stats_of(const float (&v)[COUNT])
{
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < COUNT; ++i) s += v[i];
    const float mean = s * (1.f / COUNT);
    float m2 = 0.f;
#pragma unroll
    for (int i = 0; i < COUNT; ++i) {
        const float d = v[i] - mean;
        m2 = fmaf(d, d, m2);
    }
    return {float(COUNT), mean, m2};
}

// Combines the stats of the lanes whose lane ids differ only in the bits of `mask_bits`
// (e.g. 0x3 for the 4 lanes of a quad); every participating lane gets the result.
template <int MASK_BITS>
__device__ __forceinline__ lgh_stats lgh_stats_shfl_reduce(lgh_stats s, unsigned active = 0xffffffffu)
{
#pragma unroll
    for (int b = 1; b <= MASK_BITS; b <<= 1) {
        if (MASK_BITS & b) {
            lgh_stats o;
            o.n = __shfl_xor_sync(active, s.n, b);
            o.mean = __shfl_xor_sync(active, s.mean, b);
            o.m2 = __shfl_xor_sync(active, s.m2, b);
            s = lgh_stats_combine(s, o);
        }
    }
    return s;
}
