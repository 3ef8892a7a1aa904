/*
 * The per-element output of the layer, shared by every engine (C host code and CUDA
 * kernels) so that all of them give the same value on the same inputs, special values
 * included:
 *
 *     y = hardtanh( γ·(h − mean)·rstd + β ; lo, hi )
 *
 * Special values follow PyTorch's three modules (nn.Linear → nn.GroupNorm → nn.Hardtanh)
 * as they run on CUDA, which is what a user compares against (docs/PRECISION.md,
 * "Special values"):
 *   - a NaN or ±Inf in a group's pre-norm values h makes the group's statistics NaN, so
 *     the whole (row, group) is NaN; that falls out of the arithmetic (Chan's combine and
 *     the two-pass M2 turn Inf into NaN) and needs nothing here;
 *   - the clamp keeps NaN (torch.clamp does; fminf/fmaxf would return lo or hi), and
 *     clamps ±Inf to hi / lo;
 *   - γ = ±Inf: (h − mean)·(rstd·γ) is ±Inf (NaN where h equals the mean), as PyTorch's
 *     CUDA GroupNorm computes for [M, N] input, (x − mean)·rstd·γ + β. (Its CPU kernel
 *     computes h·a + (β − a·mean), a = rstd·γ, which gives NaN where h and the mean have
 *     the same sign; lgh does not follow that: the branch it needs per element made the
 *     fused epilogue spill, and the formula cancels when |mean| ≫ std.)
 */
#ifndef LGH_COMMON_NORM_OUTPUT_H
#define LGH_COMMON_NORM_OUTPUT_H

#include <math.h>

#if defined(__CUDACC__)
#define LGH_NORM_FN __host__ __device__ __forceinline__
#define LGH_NORM_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define LGH_NORM_FN static inline
/* Host: a plain multiply-add (fmaf without FMA hardware is a slow library call). */
#define LGH_NORM_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* γ·(h − mean)·rstd + β: centred before it is scaled, so it does not cancel. */
LGH_NORM_FN float lgh_norm_affine(float h, float mean, float rstd, float gamma, float beta)
{
    return LGH_NORM_FMA(h - mean, rstd * gamma, beta);
}

/* hardtanh that keeps NaN: comparisons with NaN are false, so NaN passes through. */
LGH_NORM_FN float lgh_hardtanh(float v, float lo, float hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* The double-precision twins, for the reference. */
LGH_NORM_FN double lgh_norm_affine_d(double h, double mean, double rstd, double gamma, double beta)
{
    return (h - mean) * (rstd * gamma) + beta;
}

LGH_NORM_FN double lgh_hardtanh_d(double v, double lo, double hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

#endif
