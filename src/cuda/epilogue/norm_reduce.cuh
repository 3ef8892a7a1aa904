// Reductions of (count, mean, M2) statistics for the group-norm pass: over the units a
// thread holds, over a team of lanes inside a warp, over a whole block. Every merge goes
// through lgh_stats_combine (chan.cuh, Chan's formula).
#pragma once

#include "common/norm_output.h"
#include "epilogue/chan.cuh"
#include "epilogue/norm_io.cuh"

// Stats of the units v[i] this thread holds, where unit i is present when
// lane + i * step < units. Two passes over registers: the mean, then M2 about it.
template <typename IO, int ITEMS>
__device__ __forceinline__ lgh_stats lgh_norm_thread_stats(const typename IO::U (&v)[ITEMS],
                                                           bool live, int64_t lane, int64_t step,
                                                           int64_t units)
{
    float s = 0.f;
    int cnt = 0;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        if (live && lane + i * step < units) {
            float f[IO::N];
            IO::unpack(v[i], f);
#pragma unroll
            for (int j = 0; j < IO::N; ++j) s += f[j];
            cnt += IO::N;
        }
    }
    if (cnt == 0) return lgh_stats_empty();
    const float mean = s / (float)cnt;
    float m2 = 0.f;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        if (live && lane + i * step < units) {
            float f[IO::N];
            IO::unpack(v[i], f);
#pragma unroll
            for (int j = 0; j < IO::N; ++j) {
                const float d = f[j] - mean;
                m2 = fmaf(d, d, m2);
            }
        }
    }
    return {(float)cnt, mean, m2};
}

__device__ __forceinline__ lgh_stats lgh_stats_shfl_xor(lgh_stats s, int b)
{
    lgh_stats o;
    o.n = __shfl_xor_sync(0xffffffffu, s.n, b);
    o.mean = __shfl_xor_sync(0xffffffffu, s.mean, b);
    o.m2 = __shfl_xor_sync(0xffffffffu, s.m2, b);
    return o;
}

// Combines the stats of each aligned team of `team` lanes (a power of two <= 32) and
// gives every lane of the team its leader's result, so all lanes normalise with the
// same bits. Every lane of the warp must call it.
__device__ __forceinline__ lgh_stats lgh_norm_team_reduce(lgh_stats s, int team)
{
    for (int b = 1; b < team; b <<= 1) s = lgh_stats_combine(s, lgh_stats_shfl_xor(s, b));
    const int leader = (int)(threadIdx.x & 31u) & ~(team - 1);
    s.n = __shfl_sync(0xffffffffu, s.n, leader);
    s.mean = __shfl_sync(0xffffffffu, s.mean, leader);
    s.m2 = __shfl_sync(0xffffffffu, s.m2, leader);
    return s;
}

// Combines the stats of all threads of the block (blockDim.x a multiple of 32, at most
// 1024); every thread gets the same result. sh holds 33 entries. Safe to call again
// right away: the next call's writes to sh[0..31] follow this call's second barrier,
// and sh[32] is rewritten only after the next call's first barrier.
__device__ __forceinline__ lgh_stats lgh_norm_block_reduce(lgh_stats s, lgh_stats *sh)
{
    const int lane = (int)(threadIdx.x & 31u);
    const int warp = (int)(threadIdx.x >> 5);
    const int warps = (int)(blockDim.x >> 5);
#pragma unroll
    for (int b = 1; b < 32; b <<= 1) s = lgh_stats_combine(s, lgh_stats_shfl_xor(s, b));
    if (lane == 0) sh[warp] = s;
    __syncthreads();
    if (warp == 0) {
        lgh_stats t = lane < warps ? sh[lane] : lgh_stats_empty();
#pragma unroll
        for (int b = 1; b < 32; b <<= 1) t = lgh_stats_combine(t, lgh_stats_shfl_xor(t, b));
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

// Normalises, applies γ/β and clamps one unit (common/norm_output.h: the clamp keeps NaN,
// as torch.clamp does).
template <typename T, typename IO>
__device__ __forceinline__ typename IO::U lgh_norm_apply(typename IO::U u, const T *gamma,
                                                         const T *beta, float mean, float rstd,
                                                         float lo, float hi)
{
    float f[IO::N], g[IO::N], b[IO::N];
    IO::unpack(u, f);
    IO::load_param(gamma, g);
    IO::load_param(beta, b);
#pragma unroll
    for (int j = 0; j < IO::N; ++j) {
        f[j] = lgh_hardtanh(lgh_norm_affine(f[j], mean, rstd, g[j], b[j]), lo, hi);
    }
    return IO::pack(f);
}
