// Instantiates the sm90 kernel for float data in 3xtf32 math, every in-tile group width
// (see kernels.h), and groups of the tile width by main-loop version.
#include "sm90/kernel_sm90.cuh"
#include "sm90/kernels.h"

const void *const lgh_sm90_kernels_f32x3[LGH_SM90_GS_COUNT] = {
    (const void *)lgh_sm90_kernel<float, 1, true>,   (const void *)lgh_sm90_kernel<float, 2, true>,
    (const void *)lgh_sm90_kernel<float, 4, true>,   (const void *)lgh_sm90_kernel<float, 8, true>,
    (const void *)lgh_sm90_kernel<float, 16, true>,  (const void *)lgh_sm90_kernel<float, 32, true>,
    (const void *)lgh_sm90_kernel<float, 64, true>,  (const void *)lgh_sm90_kernel<float, 128, true>,
    (const void *)lgh_sm90_kernel<float, 256, true>,
};

// (The build's default version is the instance above, not compiled twice.)
constexpr int x3v(int v) { return v == LGH_SM90_X3_VERSION ? 0 : v; }
const void *const lgh_sm90_kernels_f32x3_version[4] = {
    nullptr, (const void *)lgh_sm90_kernel<float, 256, true, false, x3v(1)>,
    (const void *)lgh_sm90_kernel<float, 256, true, false, x3v(2)>,
    (const void *)lgh_sm90_kernel<float, 256, true, false, x3v(3)>};
