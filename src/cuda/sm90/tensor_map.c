/* TMA tensor-map creation for the sm90 engine (see tensor_map.h). */
#include "sm90/tensor_map.h"

#include <cuda_runtime_api.h>
#include <stdio.h>

typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                    const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                    const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                                    CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

void *lgh_sm90_tensor_map_encoder(char *why, size_t why_len)
{
    void *fn = NULL;
    enum cudaDriverEntryPointQueryResult q;
    /* The 12.0 ABI of cuTensorMapEncodeTiled: unchanged since its introduction. */
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                                     cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || fn == NULL) {
        if (e != cudaSuccess) cudaGetLastError();
        snprintf(why, why_len, "the CUDA driver has no cuTensorMapEncodeTiled (%s, query result %d)",
                 cudaGetErrorString(e), (int)q);
        return NULL;
    }
    return fn;
}

int lgh_sm90_tensor_map_encode(void *encoder, CUtensorMap *map, lgh_dtype_t dtype, const void *base,
                               int64_t rows, int64_t cols, int64_t ld, int box_rows, int box_cols,
                               char *why, size_t why_len)
{
    const size_t elem = dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
    const CUtensorMapDataType type = dtype == LGH_DTYPE_FLOAT32    ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
                                     : dtype == LGH_DTYPE_BFLOAT16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                                   : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    const cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows};
    const cuuint64_t strides[1] = {(cuuint64_t)ld * elem}; /* bytes between rows */
    const cuuint32_t box[2] = {(cuuint32_t)box_cols, (cuuint32_t)box_rows};
    const cuuint32_t elem_strides[2] = {1, 1};
    CUresult r = ((encode_tiled_fn)encoder)(map, type, 2, (void *)base, dims, strides, box, elem_strides,
                                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        snprintf(why, why_len,
                 "cuTensorMapEncodeTiled failed (CUresult %d) for a %lld x %lld matrix, ld %lld, "
                 "box %d x %d",
                 (int)r, (long long)rows, (long long)cols, (long long)ld, box_rows, box_cols);
        return (int)r;
    }
    return 0;
}
