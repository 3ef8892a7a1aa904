// Instantiates the sm90 kernel for float data, every in-tile group width (see kernels.h).
#include "sm90/kernel_sm90.cuh"
#include "sm90/kernels.h"

const void *const lgh_sm90_kernels_f32[LGH_SM90_GS_COUNT] = {
    (const void *)lgh_sm90_kernel<float, 1>,  (const void *)lgh_sm90_kernel<float, 2>,
    (const void *)lgh_sm90_kernel<float, 4>,  (const void *)lgh_sm90_kernel<float, 8>,
    (const void *)lgh_sm90_kernel<float, 16>, (const void *)lgh_sm90_kernel<float, 32>,
    (const void *)lgh_sm90_kernel<float, 64>, (const void *)lgh_sm90_kernel<float, 128>,
    (const void *)lgh_sm90_kernel<float, 256>,
};
