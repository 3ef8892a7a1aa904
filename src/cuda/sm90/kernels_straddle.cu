// Instantiates the sm90 kernel's straddle mode (GS = 0: groups of any size below 512 that
// need not tile the 256-column CTA tile, kernel_sm90.cuh) for the tf32, bf16 and f16
// families (kernels.h). A file of its own so that a parallel build spreads the ptxas work.
#include "sm90/kernel_sm90.cuh"
#include "sm90/kernels.h"

const void *const lgh_sm90_kernels_straddle[3] = {
    (const void *)lgh_sm90_kernel<float, 0, false, true>,
    (const void *)lgh_sm90_kernel<__nv_bfloat16, 0>,
    (const void *)lgh_sm90_kernel<__half, 0>,
};
