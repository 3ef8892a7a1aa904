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

#ifdef __cplusplus
}
#endif

#endif
