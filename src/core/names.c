/* Names of statuses, dtypes, math modes and engines. */
#include <string.h>

#include "lgh.h"

const char *lgh_status_string(lgh_status_t s)
{
    switch (s) {
    case LGH_STATUS_SUCCESS: return "success";
    case LGH_STATUS_NULL_POINTER: return "a required pointer is NULL";
    case LGH_STATUS_INVALID_SIZE: return "a size (M, K, N or groups) is zero or negative";
    case LGH_STATUS_GROUPS_MISMATCH: return "N is not a multiple of the number of groups";
    case LGH_STATUS_INVALID_EPS: return "eps must be a finite number > 0";
    case LGH_STATUS_INVALID_CLAMP: return "the clamp needs lo <= hi, neither NaN";
    case LGH_STATUS_INVALID_LEADING_DIM: return "a leading dimension is smaller than its row";
    case LGH_STATUS_SIZE_OVERFLOW: return "the sizes overflow 64-bit byte counts";
    case LGH_STATUS_WRONG_MEMORY_SPACE: return "a pointer is in the wrong memory space for the context";
    case LGH_STATUS_INVALID_VALUE: return "an argument has an invalid value";
    case LGH_STATUS_NOT_SUPPORTED: return "the engine cannot run this problem";
    case LGH_STATUS_ENGINE_UNAVAILABLE: return "the engine is not available on this build or device";
    case LGH_STATUS_ALLOC_FAILED: return "memory allocation failed";
    case LGH_STATUS_CUDA_ERROR: return "CUDA runtime error";
    case LGH_STATUS_CUBLAS_ERROR: return "cuBLASLt error";
    case LGH_STATUS_NO_DEVICE: return "no such CUDA device";
    case LGH_STATUS_WORKSPACE_TOO_SMALL: return "the workspace is smaller than needed";
    case LGH_STATUS_INTERNAL_ERROR: return "internal error";
    }
    return "unknown status";
}

const char *lgh_dtype_name(lgh_dtype_t d)
{
    switch (d) {
    case LGH_DTYPE_FLOAT32: return "float32";
    case LGH_DTYPE_BFLOAT16: return "bfloat16";
    case LGH_DTYPE_FLOAT16: return "float16";
    }
    return "unknown";
}

const char *lgh_math_name(lgh_math_t m)
{
    switch (m) {
    case LGH_MATH_DEFAULT: return "default";
    case LGH_MATH_FP32: return "fp32";
    case LGH_MATH_TF32: return "tf32";
    case LGH_MATH_3XTF32: return "3xtf32";
    case LGH_MATH_ACCURATE: return "accurate";
    }
    return "unknown";
}

static const char *const engine_names[LGH_ENGINE_COUNT] = {"auto", "cpu", "cublaslt", "sm80", "sm90"};

const char *lgh_engine_name(lgh_engine_t e)
{
    return (e >= 0 && e < LGH_ENGINE_COUNT) ? engine_names[e] : "unknown";
}

lgh_status_t lgh_engine_from_name(const char *name, lgh_engine_t *engine)
{
    if (!name || !engine) return LGH_STATUS_NULL_POINTER;
    for (int i = 0; i < LGH_ENGINE_COUNT; ++i) {
        if (strcmp(name, engine_names[i]) == 0) {
            *engine = (lgh_engine_t)i;
            return LGH_STATUS_SUCCESS;
        }
    }
    return LGH_STATUS_INVALID_VALUE;
}

void lgh_args_init(lgh_args_t *a, int64_t m, int64_t k, int64_t n, int64_t groups)
{
    if (!a) return;
    memset(a, 0, sizeof *a);
    a->m = m;
    a->k = k;
    a->n = n;
    a->groups = groups;
    a->dtype = LGH_DTYPE_FLOAT32;
    a->math = LGH_MATH_DEFAULT;
    a->engine = LGH_ENGINE_AUTO;
    a->eps = 1e-5f;
    a->lo = -2.0f;
    a->hi = 2.0f;
}

void lgh_backward_args_init(lgh_backward_args_t *a, int64_t m, int64_t k, int64_t n, int64_t groups)
{
    if (!a) return;
    memset(a, 0, sizeof *a);
    lgh_args_init(&a->fwd, m, k, n, groups);
}
