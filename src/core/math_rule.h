/*
 * Math modes: how a requested mode becomes the concrete one an engine runs (FP32, TF32 or
 * 3XTF32 for float32 data). DEFAULT is TF32 everywhere; ACCURATE (include/lgh.h) is
 * resolved per device by the rule below, then settled for the engine that runs it
 * (dispatch.c, tune.c). Engines only ever see concrete modes. Internal to src/core.
 *
 * Layering (docs/ARCHITECTURE.md): device facts and lgh.h's enums in, a mode out; no
 * context, registry or tuner, so the rule can be tested on made-up devices
 * (tests/test_math_rule.c compiles this file on its own).
 */
#ifndef LGH_CORE_MATH_RULE_H
#define LGH_CORE_MATH_RULE_H

#include "engine.h"

/* NVIDIA's published dense tf32 tensor-core rate over the fp32 SIMT rate for the compute
 * capability major.minor; 0 when the table does not list it. */
double lgh_math_tf32_ratio(int cc_major, int cc_minor);

/* The concrete mode `math` resolves to on the device `props` describes, nothing tuned and
 * no engine forced: DEFAULT -> TF32; ACCURATE -> 3XTF32 where tf32 runs at least 4 times
 * the fp32 rate, else FP32 (the CPU: FP32); FP32, TF32, 3XTF32 unchanged. For 16-bit data,
 * whose math is ignored, DEFAULT and ACCURATE both record TF32. math must be in range. */
lgh_math_t lgh_math_for_device(const lgh_device_props_t *props, lgh_dtype_t dtype, lgh_math_t math);

/* The float32-accurate mode engine `id` runs: 3XTF32 on the tensor-core engines (sm80,
 * sm90: they refuse FP32), FP32 on cublaslt and cpu (cublaslt runs 3XTF32 as its FP32
 * SIMT path anyway, and the CPU computes float32 products in every mode, so FP32 is what
 * they run and what is reported). */
lgh_math_t lgh_math_accurate_for_engine(lgh_engine_t id);

/* Settles a float32-accurate request (p->accurate) on the engine that is to run it or be
 * timed on it: p->a.math becomes that engine's accurate mode. Other problems stay as
 * they are. */
void lgh_math_settle(lgh_problem_t *p, lgh_engine_t id);

#endif
