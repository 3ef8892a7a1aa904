// Instantiates the sm90 kernel for float data in 3xtf32 math, every in-tile group width
// (see kernels.h), and the plain-product kernel with tf32 corrections.
#include "sm90/kernel_sm90.cuh"
#include "sm90/kernels.h"

const void *const lgh_sm90_kernels_f32x3[LGH_SM90_GS_COUNT] = {
    (const void *)lgh_sm90_kernel<float, 1, true>,   (const void *)lgh_sm90_kernel<float, 2, true>,
    (const void *)lgh_sm90_kernel<float, 4, true>,   (const void *)lgh_sm90_kernel<float, 8, true>,
    (const void *)lgh_sm90_kernel<float, 16, true>,  (const void *)lgh_sm90_kernel<float, 32, true>,
    (const void *)lgh_sm90_kernel<float, 64, true>,  (const void *)lgh_sm90_kernel<float, 128, true>,
    (const void *)lgh_sm90_kernel<float, 256, true>,
};

const void *const lgh_sm90_kernel_f32x3_tf32 = (const void *)lgh_sm90_kernel<float, 256, true, false, true>;
