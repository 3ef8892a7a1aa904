/*
 * Host inputs for the lgh program's commands (run, tune): uniform random values rounded
 * to the dtype, from a splitmix64 stream so a seed replays the same problem, and NaN
 * poison for outputs.
 */
#include <math.h>

#include "cli.h"
#include "cpu/convert.h"

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cli_fill_uniform(lgh_dtype_t dt, void *buf, int64_t count, uint64_t *seed, double lo,
                      double hi)
{
    for (int64_t i = 0; i < count; ++i) {
        const double u = (double)(splitmix64(seed) >> 11) * (1.0 / 9007199254740992.0);
        const float v = (float)(lo + (hi - lo) * u);
        if (dt == LGH_DTYPE_FLOAT32) ((float *)buf)[i] = v;
        else if (dt == LGH_DTYPE_BFLOAT16) ((uint16_t *)buf)[i] = lgh_float_to_bf16(v);
        else ((uint16_t *)buf)[i] = lgh_float_to_fp16(v);
    }
}

void cli_fill_nan(lgh_dtype_t dt, void *buf, int64_t count)
{
    if (dt == LGH_DTYPE_FLOAT32) {
        for (int64_t i = 0; i < count; ++i) ((float *)buf)[i] = NAN;
    } else {
        const uint16_t nan16 = dt == LGH_DTYPE_BFLOAT16 ? 0x7fc0 : 0x7e00;
        for (int64_t i = 0; i < count; ++i) ((uint16_t *)buf)[i] = nan16;
    }
}
