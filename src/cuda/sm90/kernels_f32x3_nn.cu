// Instantiates the sm90 kernel's NN and TT plain products (float data, 3xtf32, an
// MN-major A operand, see kernel_sm90.cuh) for each 3xtf32 main-loop version (kernels.h).
// A file of its own so that a parallel build spreads the ptxas work.
#include "sm90/kernel_sm90.cuh"
#include "sm90/kernels.h"

template <int OP>
constexpr const void *lgh_sm90_product_kernel(int v)
{
    return v == 1   ? (const void *)lgh_sm90_kernel<float, 256, true, false, 1, OP>
           : v == 2 ? (const void *)lgh_sm90_kernel<float, 256, true, false, 2, OP>
                    : (const void *)lgh_sm90_kernel<float, 256, true, false, 3, OP>;
}

const void *const lgh_sm90_kernels_f32x3_nn[4] = {nullptr, lgh_sm90_product_kernel<LGH_SM90_OP_NN>(1),
                                                  lgh_sm90_product_kernel<LGH_SM90_OP_NN>(2),
                                                  lgh_sm90_product_kernel<LGH_SM90_OP_NN>(3)};
const void *const lgh_sm90_kernels_f32x3_tt[4] = {nullptr, lgh_sm90_product_kernel<LGH_SM90_OP_TT>(1),
                                                  lgh_sm90_product_kernel<LGH_SM90_OP_TT>(2),
                                                  lgh_sm90_product_kernel<LGH_SM90_OP_TT>(3)};
