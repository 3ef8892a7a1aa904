// Instantiates the sm90 kernel for __half data, every in-tile group width (see kernels.h).
#include "sm90/kernel_sm90.cuh"
#include "sm90/kernels.h"

const void *const lgh_sm90_kernels_f16[LGH_SM90_GS_COUNT] = {
    (const void *)lgh_sm90_kernel<__half, 1>,  (const void *)lgh_sm90_kernel<__half, 2>,
    (const void *)lgh_sm90_kernel<__half, 4>,  (const void *)lgh_sm90_kernel<__half, 8>,
    (const void *)lgh_sm90_kernel<__half, 16>, (const void *)lgh_sm90_kernel<__half, 32>,
    (const void *)lgh_sm90_kernel<__half, 64>, (const void *)lgh_sm90_kernel<__half, 128>,
    (const void *)lgh_sm90_kernel<__half, 256>,
};
