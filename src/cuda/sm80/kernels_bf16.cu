// Instantiates the sm80 kernel for bfloat16 data: every configuration, every group
// width (the table's layout: kernels.h).
#include "sm80/kernel_sm80.cuh"
#include "sm80/kernels.h"

#define LGH_SM80_K(C, GS) (const void *)lgh_sm80_kernel<__nv_bfloat16, C, GS, false>
#define LGH_SM80_ROW(C)                                                                            \
    {                                                                                              \
        LGH_SM80_K(C, 0), LGH_SM80_K(C, 1), LGH_SM80_K(C, 2), LGH_SM80_K(C, 4), LGH_SM80_K(C, 8),  \
            LGH_SM80_K(C, 16), LGH_SM80_K(C, 32), LGH_SM80_K(C, 64)                                \
    }

const void *const lgh_sm80_kernels_bf16[LGH_SM80_CONFIGS][LGH_SM80_GS_COUNT] = {
    LGH_SM80_ROW(lgh_sm80_cfg0),
    LGH_SM80_ROW(lgh_sm80_cfg1),
    LGH_SM80_ROW(lgh_sm80_cfg2),
    LGH_SM80_ROW(lgh_sm80_cfg3),
    LGH_SM80_ROW(lgh_sm80_cfg4),
};
