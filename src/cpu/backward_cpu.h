/*
 * The CPU engine's backward (backward_cpu.c): the three backward operations of
 * lgh_engine_ops_t, hooked into lgh_engine_cpu (engine_cpu.c).
 */
#ifndef LGH_CPU_BACKWARD_CPU_H
#define LGH_CPU_BACKWARD_CPU_H

#include <stddef.h>

#include "core/engine.h"

lgh_status_t lgh_cpu_bwd_can_implement(struct lgh_context *ctx, const lgh_bwd_problem_t *p,
                                       char *why, size_t why_len);
size_t lgh_cpu_bwd_workspace_size(struct lgh_context *ctx, const lgh_bwd_problem_t *p);
lgh_status_t lgh_cpu_bwd_run(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *ws,
                             size_t ws_bytes, void *stream);

#endif
