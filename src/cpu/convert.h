/* bfloat16 / float16 <-> float32 conversion on the host (round to nearest even, NaN and
 * infinity kept, float16 subnormals exact). Header-only: used by the CPU engine, the
 * reference, the tests and the CLI. */
#ifndef LGH_CPU_CONVERT_H
#define LGH_CPU_CONVERT_H

#include <stdint.h>
#include <string.h>

static inline float lgh_bf16_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t lgh_float_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float lgh_fp16_to_float(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else { /* subnormal: value = man * 2^-24 */
        float f = (float)man * (1.0f / 16777216.0f);
        memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t lgh_float_to_fp16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return sign | 0x7e00u;   /* NaN */
    if (u >= 0x477ff000u) return sign | 0x7c00u;  /* rounds to >= 65520: infinity */
    if (u < 0x38800000u) {                         /* below 2^-14: subnormal or zero */
        float a;
        memcpy(&a, &u, 4);
        /* a * 2^24 rounded to nearest even integer is the subnormal's mantissa */
        float scaled = a * 16777216.0f;
        uint32_t m = (uint32_t)scaled;
        float rem = scaled - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
        return sign | (uint16_t)m;
    }
    u += 0x0fffu + ((u >> 13) & 1u);          /* round mantissa to 10 bits, nearest even */
    return sign | (uint16_t)(((u >> 13) - (112u << 10)) & 0x7fffu);
}

#endif
