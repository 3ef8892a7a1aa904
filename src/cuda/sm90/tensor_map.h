/* TMA tensor maps for the sm90 engine: a 2-D row-major matrix [rows, cols] with a leading
 * dimension, loaded in boxes of box_rows x box_cols with 128-byte swizzle and zero fill
 * outside the bounds. The driver's cuTensorMapEncodeTiled is reached through the runtime's
 * entry-point query, so lgh does not link libcuda. */
#ifndef LGH_SM90_TENSOR_MAP_H
#define LGH_SM90_TENSOR_MAP_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#include "lgh.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The driver's encoder, or NULL with a reason in why. */
void *lgh_sm90_tensor_map_encoder(char *why, size_t why_len);

/* Fills *map; 0 on success, else the CUresult (why says what was asked). */
int lgh_sm90_tensor_map_encode(void *encoder, CUtensorMap *map, lgh_dtype_t dtype, const void *base,
                               int64_t rows, int64_t cols, int64_t ld, int box_rows, int box_cols,
                               char *why, size_t why_len);

#ifdef __cplusplus
}
#endif

#endif
