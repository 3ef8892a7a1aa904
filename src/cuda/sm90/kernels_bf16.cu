// Instantiates the sm90 kernel for __nv_bfloat16 data, every in-tile group width (see kernels.h).
#include "sm90/kernel_sm90.cuh"
#include "sm90/kernels.h"

const void *const lgh_sm90_kernels_bf16[LGH_SM90_GS_COUNT] = {
    (const void *)lgh_sm90_kernel<__nv_bfloat16, 1>,  (const void *)lgh_sm90_kernel<__nv_bfloat16, 2>,
    (const void *)lgh_sm90_kernel<__nv_bfloat16, 4>,  (const void *)lgh_sm90_kernel<__nv_bfloat16, 8>,
    (const void *)lgh_sm90_kernel<__nv_bfloat16, 16>, (const void *)lgh_sm90_kernel<__nv_bfloat16, 32>,
    (const void *)lgh_sm90_kernel<__nv_bfloat16, 64>, (const void *)lgh_sm90_kernel<__nv_bfloat16, 128>,
    (const void *)lgh_sm90_kernel<__nv_bfloat16, 256>,
};
