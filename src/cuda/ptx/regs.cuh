// Register reallocation between warpgroups (setmaxnreg, sm_90a).
//
// In a warp-specialised kernel the producer warpgroup needs few registers and the consumer
// warpgroups (accumulators) many. The kernel is compiled under a per-thread cap
// (__launch_bounds__(threads, 1)); each warpgroup then gives registers back or takes them,
// all its threads together, as the first thing on its branch of one if/else.
#pragma once

template <int REGS>
__device__ __forceinline__ void lgh_regs_release()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
}

template <int REGS>
__device__ __forceinline__ void lgh_regs_acquire()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
}
