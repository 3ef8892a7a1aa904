/*
 * bfloat16 / float16 -> float32 over whole matrices (see widen.h). convert.h's scalar
 * functions are the definition; these are branch-free forms of the same conversions so
 * the compiler vectorises the row loops (a float16 W of the reference problem is 64 M
 * elements). They agree with convert.h on all 65536 inputs.
 */
#include "cpu/widen.h"

#include <string.h>

static inline float bf16_bits_to_float(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Normal numbers: rebias the exponent (15 -> 127). Infinity / NaN: exponent all ones.
 * Zero / subnormal (exponent 0): the value is man * 2^-24, computed exactly in float
 * (man < 2^10, and the product is a normal float). */
static inline float fp16_bits_to_float(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = h & 0x7c00u;
    const uint32_t man = h & 0x03ffu;
    const uint32_t normal = ((uint32_t)(h & 0x7fffu) << 13) + (112u << 23);
    const uint32_t special = 0x7f800000u | (man << 13);
    const float sub = (float)(int32_t)man * (1.0f / 16777216.0f);
    uint32_t sub_bits;
    memcpy(&sub_bits, &sub, 4);
    uint32_t u = exp == 0x7c00u ? special : exp == 0 ? sub_bits : normal;
    u |= sign;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void widen_row(const uint16_t *restrict src, int64_t cols, lgh_dtype_t dtype,
                      float *restrict dst)
{
    if (dtype == LGH_DTYPE_BFLOAT16) {
        for (int64_t j = 0; j < cols; ++j) dst[j] = bf16_bits_to_float(src[j]);
    } else {
        for (int64_t j = 0; j < cols; ++j) dst[j] = fp16_bits_to_float(src[j]);
    }
}

void lgh_cpu_widen(const void *src, int64_t rows, int64_t cols, int64_t ld, lgh_dtype_t dtype,
                   float *dst, int threads)
{
    const uint16_t *s = src;
    /* About 64 Ki elements per thread before another thread pays off. */
    int64_t useful = rows * cols / 65536;
    if (useful < 1) useful = 1;
    const int nt = threads < 1 ? 1 : useful < threads ? (int)useful : threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
    for (int64_t r = 0; r < rows; ++r) widen_row(s + r * ld, cols, dtype, dst + r * cols);
    (void)nt;
}
