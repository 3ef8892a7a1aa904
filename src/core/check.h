/* Argument checks: everything lgh_forward refuses before anything is written. */
#ifndef LGH_CORE_CHECK_H
#define LGH_CORE_CHECK_H

#include "engine.h"

/* Validates args into *p (leading dims and math resolved). Does not look at memory
 * spaces; see lgh_check_memory. */
lgh_status_t lgh_check_args(struct lgh_context *ctx, const lgh_args_t *args, lgh_problem_t *p);

/* INVALID_VALUE (with the message set) for a dtype or math outside its enum. */
lgh_status_t lgh_check_dtype_math(struct lgh_context *ctx, lgh_dtype_t dtype, lgh_math_t math);

/* Checks every pointer of p is usable by ctx's device (device or managed memory on a
 * GPU context; host or managed memory on the CPU). */
lgh_status_t lgh_check_memory(struct lgh_context *ctx, const lgh_problem_t *p);

/* Validates a backward call into *p: the forward part as lgh_check_args (y not needed),
 * then dy, the saved mean / rstd (required) and h (optional), and the gradients (at least
 * one). */
lgh_status_t lgh_check_backward(struct lgh_context *ctx, const lgh_backward_args_t *args,
                                lgh_bwd_problem_t *p);

/* lgh_check_memory for a backward problem: every pointer it carries. */
lgh_status_t lgh_check_backward_memory(struct lgh_context *ctx, const lgh_bwd_problem_t *p);

#endif
