/*
 * The double-precision reference: the test oracle, not an engine (slow on purpose).
 * Reads x, W, b, γ, β in their dtype from host memory, widens to double, accumulates
 * the product in double, takes two-pass mean / variance per (row, group) in double.
 * Built as the static library lgh_reference (src/cpu/CMakeLists.txt), which the tests
 * and the CLI link; liblgh itself does not contain it.
 */
#ifndef LGH_CPU_REFERENCE_H
#define LGH_CPU_REFERENCE_H

#include <stdint.h>

#include "lgh.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Computes rows [row_begin, row_end) of the layer for *a (host pointers; a->y, a->mean,
 * a->rstd ignored). y_out is [(row_end-row_begin), n] packed; mean_out / rstd_out are
 * [(row_end-row_begin), groups] packed and may be NULL. Leading dims of 0 mean packed.
 * Returns 0 on success, -1 on bad arguments. */
int lgh_reference_rows(const lgh_args_t *a, int64_t row_begin, int64_t row_end, double *y_out,
                       double *mean_out, double *rstd_out);

/* Compares rows [row_begin, row_end) of a->y (a->dtype, leading dim a->ldy, 0 = packed)
 * with ref ([(row_end-row_begin), n] packed, from lgh_reference_rows): returns the
 * relative Frobenius error ||y - ref|| / ||ref|| (the absolute one if ref is all zero)
 * and stores max |y - ref| in *max_abs (may be NULL). Any NaN in y, such as an element
 * left unwritten over a NaN poison, gives NaN, which fails every bound. NaN on bad
 * arguments. */
double lgh_reference_error(const lgh_args_t *a, int64_t row_begin, int64_t row_end,
                           const double *ref, double *max_abs);

/* ---- backward ------------------------------------------------------------------------
 *
 * The gradients of the layer in double precision, the oracle for lgh_backward:
 *
 *     x̂  = (h − mean)·rstd,  z = γ·x̂ + β   (lgh_norm_affine_d: a non-finite γ gives the
 *                                           forward's value)
 *     dz = dy where !(z <= lo || z >= hi), else 0   (torch's hardtanh backward: a NaN z
 *                                                   passes the gradient)
 *     dβ = Σ_rows dz,  dγ = Σ_rows dz·x̂,  g = dz·γ
 *     dh = rstd·(g − mean_group(g) − x̂·mean_group(g·x̂))
 *     db = Σ_rows dh,  dx = dh·W,  dW = dhᵀ·x
 *
 * Reads a->fwd's x / ldx, w / ldw, bias, gamma, beta, eps, lo, hi and a->dy / lddy, all
 * in a->fwd.dtype from host memory (leading dims of 0 mean packed). h, mean and rstd are
 * recomputed in double exactly as lgh_reference_rows computes them; a->mean, a->rstd,
 * a->h, a->fwd.math / engine and the gradient pointers of *a are ignored. Outputs are
 * packed doubles: dx [m][k], dw [n][k], dbias / dgamma / dbeta [n]; any may be NULL
 * (not computed; the products are skipped when neither dx nor dw is wanted). Every sum
 * runs in a fixed order (rows ascending; the products' inner index ascending), so the
 * result does not depend on anything but the inputs. Returns 0, or -1 on bad arguments
 * or a failed allocation. */
int lgh_reference_backward(const lgh_backward_args_t *a, double *dx, double *dw, double *dbias,
                           double *dgamma, double *dbeta);

/* Which elements of z = γ·x̂ + β (the value the clamp sees, computed in double as above)
 * lie within tol = rel_tol·max(1, |lo|, |hi|) of lo or hi: near[r·n + c] (packed [m][n],
 * may be NULL) gets 1 there and 0 elsewhere (a NaN z is never near), *count (may be
 * NULL) the number of such elements. Returns 0, or -1 on bad arguments.
 *
 * Why the tests need it: the clamp's gradient is discontinuous at lo and hi (dz jumps
 * between dy and 0), so a z that an engine computes a rounding error away from the
 * reference's can fall on the other side of lo or hi, and that one element's dz then
 * differs by the whole of dy; on a small problem that alone breaks any relative bound,
 * although both answers are right for their own z. A test therefore sets dy to 0 where
 * the reference's z is near lo or hi (rel_tol a few times the engine's expected error on
 * z), so that a legitimate flip of the mask changes nothing. */
int lgh_reference_near_clamp(const lgh_args_t *a, double rel_tol, unsigned char *near,
                             int64_t *count);

#ifdef __cplusplus
}
#endif

#endif
