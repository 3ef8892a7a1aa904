// Host-side helpers both fused engines use (sm80/engine_sm80.cu, sm90/engine_sm90.cu):
// the index of their kernel tables, the way they answer a refusal or a CUDA failure
// (src/core/engine.h), the row-stride check their loads need, and two integer helpers.
// C++ (the engines are .cu files); every function is static inline, like the engines' own
// helpers in their anonymous namespaces.
#pragma once

#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "core/engine.h"

// Kernel families: the element type and math one kernel table of an engine serves, the
// same index and order in both engines. float32 data in tf32, bfloat16 and float16 come
// first, in lgh_dtype_t's order; then float32 data in 3xtf32.
enum {
    LGH_FAMILY_F32 = LGH_DTYPE_FLOAT32,
    LGH_FAMILY_BF16 = LGH_DTYPE_BFLOAT16,
    LGH_FAMILY_F16 = LGH_DTYPE_FLOAT16,
    LGH_FAMILY_F32X3,
};

// The family of a problem's data and math.
static inline int lgh_family_of(const lgh_args_t *a)
{
    return a->dtype == LGH_DTYPE_FLOAT32 && a->math == LGH_MATH_3XTF32 ? LGH_FAMILY_F32X3 : (int)a->dtype;
}

static inline bool lgh_is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// floor(log2(v)) for v >= 1 (0 for v < 2).
static inline int lgh_log2_int(int64_t v)
{
    int r = 0;
    while ((int64_t(1) << (r + 1)) <= v) ++r;
    return r;
}

// can_implement's answer to a problem the engine does not take: the reason, printf-style,
// into why[0 .. len), and LGH_STATUS_NOT_SUPPORTED.
static inline lgh_status_t lgh_refuse(char *why, size_t len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static inline lgh_status_t lgh_refuse(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return LGH_STATUS_NOT_SUPPORTED;
}

// A failed CUDA call, recorded for lgh_last_error as "<engine>: <what>: <CUDA's message>";
// returns LGH_STATUS_CUDA_ERROR.
static inline lgh_status_t lgh_cuda_fail(struct lgh_context *ctx, const char *engine, const char *what,
                                         cudaError_t e)
{
    return lgh_set_error(ctx, LGH_STATUS_CUDA_ERROR, "%s: %s: %s", engine, what, cudaGetErrorString(e));
}

// Whether a row stride of ld elements of elem bytes (2 or 4, divisors of 16) is a multiple
// of 16 bytes, as cp.async and TMA need. Asked in elements: lgh_check_args bounds
// (rows - 1) * ld * elem, so a one-row matrix may have any ld up to INT64_MAX, and
// ld * elem could overflow int64 where ld % (16 / elem) cannot.
static inline bool lgh_ld_16b_multiple(int64_t ld, int64_t elem) { return ld % (16 / elem) == 0; }
