/*
 * The double-precision reference: the test oracle, not an engine (slow on purpose).
 * Reads x, W, b, γ, β in their dtype from host memory, widens to double, accumulates
 * the product in double, takes two-pass mean / variance per (row, group) in double.
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

#ifdef __cplusplus
}
#endif

#endif
