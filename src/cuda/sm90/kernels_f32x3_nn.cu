// Instantiates the sm90 kernel's NN plain product (float data, 3xtf32, d = a·b with both
// row-major, see kernel_sm90.cuh) for each 3xtf32 main-loop version (kernels.h). A file of
// its own so that a parallel build spreads the ptxas work.
#include "sm90/kernel_sm90.cuh"
#include "sm90/kernels.h"

const void *const lgh_sm90_kernels_f32x3_nn[4] = {
    nullptr, (const void *)lgh_sm90_kernel<float, 256, true, false, 1, true>,
    (const void *)lgh_sm90_kernel<float, 256, true, false, 2, true>,
    (const void *)lgh_sm90_kernel<float, 256, true, false, 3, true>};
