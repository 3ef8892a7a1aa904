/*
 * The cublaslt engine's backward (backward_cublaslt.c): lgh's norm backward kernels
 * (epilogue/norm_backward.h), then dx = dh·W and dW = dhᵀ·x as cuBLASLt products. The
 * sm90 engine reuses it with its own products for 3xtf32 (lgh_gpu_bwd_products_fn).
 */
#ifndef LGH_CUBLASLT_BACKWARD_CUBLASLT_H
#define LGH_CUBLASLT_BACKWARD_CUBLASLT_H

#include <stddef.h>

#include "core/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Products other than cuBLASLt's (the sm90 engine's float32-accurate ones): scratch
 * bytes they need in the workspace, and a run that computes p->dx = dh·W and p->dw =
 * dhᵀ·x (whichever are asked) from dh [m, n] packed, in the data's dtype. recompute_h
 * (may be NULL): h = x·Wᵀ + b into h [m, n] (leading dimension ldh) when the forward saved
 * none, in the forward's own arithmetic; it returns LGH_STATUS_NOT_SUPPORTED, setting no
 * message, where it cannot (then the forward's cuBLASLt plan recomputes h). */
typedef struct lgh_bwd_products {
    size_t (*scratch_bytes)(struct lgh_context *ctx, const lgh_bwd_problem_t *p);
    lgh_status_t (*run)(struct lgh_context *ctx, const lgh_bwd_problem_t *p, const void *dh,
                        void *scratch, void *stream);
    lgh_status_t (*recompute_h)(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *h, int64_t ldh,
                                void *stream);
} lgh_bwd_products_t;

/* The backward with the products of prod (NULL: cuBLASLt's). */
size_t lgh_gpu_bwd_workspace_size(struct lgh_context *ctx, const lgh_bwd_problem_t *p,
                                  const lgh_bwd_products_t *prod);
lgh_status_t lgh_gpu_bwd_run(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *ws,
                             size_t ws_bytes, void *stream, const lgh_bwd_products_t *prod);

lgh_status_t lgh_cublaslt_bwd_can_implement(struct lgh_context *ctx, const lgh_bwd_problem_t *p,
                                            char *why, size_t why_len);
size_t lgh_cublaslt_bwd_workspace_size(struct lgh_context *ctx, const lgh_bwd_problem_t *p);
lgh_status_t lgh_cublaslt_bwd_run(struct lgh_context *ctx, const lgh_bwd_problem_t *p, void *ws,
                                  size_t ws_bytes, void *stream);

#ifdef __cplusplus
}
#endif

#endif
