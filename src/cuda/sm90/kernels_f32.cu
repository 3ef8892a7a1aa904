// Instantiates the sm90 kernel for float data in tf32, x rounded to nearest tf32 (A from
// registers, lgh_sm90_consume_tile_tf32_rna), every in-tile group width (kernels.h). (The
// tensor core's own truncation of x, the variant before, measured no faster and less
// accurate: docs/PERF.md, sm90 v4.)
#include "sm90/kernel_sm90.cuh"
#include "sm90/kernels.h"

const void *const lgh_sm90_kernels_f32[LGH_SM90_GS_COUNT] = {
    (const void *)lgh_sm90_kernel<float, 1, false, true>,  (const void *)lgh_sm90_kernel<float, 2, false, true>,
    (const void *)lgh_sm90_kernel<float, 4, false, true>,  (const void *)lgh_sm90_kernel<float, 8, false, true>,
    (const void *)lgh_sm90_kernel<float, 16, false, true>, (const void *)lgh_sm90_kernel<float, 32, false, true>,
    (const void *)lgh_sm90_kernel<float, 64, false, true>, (const void *)lgh_sm90_kernel<float, 128, false, true>,
    (const void *)lgh_sm90_kernel<float, 256, false, true>,
};
