/*
 * The cuBLASLt side of the cublaslt engine: one handle per context and a small cache of
 * "plans" (matmul descriptor, A/B/D layouts, the heuristic's algorithm), one per problem
 * shape. A plan is built on the first call for its key; later calls only set the bias
 * pointer (a host-side descriptor write) and run cublasLtMatmul, so they allocate nothing
 * and do not synchronise.
 *
 * The product: y (row-major [M, N], ldy) = x · Wᵀ + b, in cuBLASLt's column-major terms
 *     D = yᵀ [N, M] (ld ldy) = op_T(A) · B + bias,  A = W as col-major [K, N] (ld ldw),
 *     B = xᵀ as col-major [K, M] (ld ldx), bias of length N broadcast over D's columns,
 * with C = D = y and beta = 0 (y is never read).
 */
#ifndef LGH_CUBLASLT_LT_PLAN_H
#define LGH_CUBLASLT_LT_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include <cublasLt.h>

#include "core/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Vendor workspace the heuristic may use: the library bounds it to 32 MB (its memory rule). */
#define LGH_LT_VENDOR_WORKSPACE ((size_t)32 << 20)

/* Plans kept per context; the oldest is replaced when full. */
#define LGH_LT_PLAN_SLOTS 16

/* The products the plans compute, all row-major in lgh's terms:
 *   FORWARD  y[M, N]  = x[M, K]·W[N, K]ᵀ + b   (A = W, B = x, D = y; bias epilogue)
 *   DGRAD    dx[M, K] = dh[M, N]·W[N, K]       (A = W, B = dh, D = dx)
 *   WGRAD    dW[N, K] = dh[M, N]ᵀ·x[M, K]      (A = x, B = dh, D = dW)
 *   WGRAD_DHT dW[N, K] = dht[N, M]·x[M, K]     (A = x, B = dht = a dhᵀ copy, D = dW)
 * In cuBLASLt's column-major views: FORWARD D = yᵀ = op_T(W as [K, N])·(xᵀ as [K, M]);
 * DGRAD D = dxᵀ = (W as [K, N])·(dhᵀ as [N, M]); WGRAD D = dWᵀ = (x as [K, M])·op_T(dhᵀ
 * as [N, M]); WGRAD_DHT D = dWᵀ = (x as [K, M])·(dh as [M, N]).
 * WGRAD reduces both operands along their strided dimension, which tf32 tensor cores do
 * not read directly: cuBLASLt's tf32 WGRAD measured 1.7x the forward's time. WGRAD_DHT
 * reads dh from a transposed copy, so that one operand (dh) is K-major, as in DGRAD. */
enum lgh_lt_op { LGH_LT_FORWARD = 0, LGH_LT_DGRAD = 1, LGH_LT_WGRAD = 2, LGH_LT_WGRAD_DHT = 3 };

/* Everything the heuristic's answer depends on. Pointer alignments (bytes, capped at
 * 256) are part of it: cuBLASLt picks kernels by the alignment of the pointers it sees.
 * m, n, k are the layer's sizes; ldw / ldx / ldy are the leading dimensions of the A, B
 * and D operands above (W, x, y for the forward), align_w / align_x / align_y theirs. */
typedef struct lgh_lt_key {
    int op; /* enum lgh_lt_op */
    int64_t m, n, k, ldx, ldw, ldy;
    int dtype;
    int math; /* LGH_MATH_TF32 or LGH_MATH_FP32 for float32 data; 0 for 16-bit data */
    int align_x, align_w, align_y, align_bias;
    int d_f32; /* FORWARD of 16-bit data: D and the bias in float32 (the pre-norm kept beyond
                  float16's range) */
} lgh_lt_key_t;

typedef struct lgh_lt_plan {
    lgh_lt_key_t key;
    int in_use;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
    size_t algo_workspace; /* what the chosen algorithm needs (<= LGH_LT_VENDOR_WORKSPACE) */
} lgh_lt_plan_t;

typedef struct lgh_lt_cache {
    cublasLtHandle_t handle;
    lgh_lt_plan_t plans[LGH_LT_PLAN_SLOTS];
    int next_victim;
} lgh_lt_cache_t;

/* The key of problem p with the given bias pointer (the one cuBLASLt will read). */
void lgh_lt_key_of(const lgh_problem_t *p, const void *bias, lgh_lt_key_t *key);

/* The key of a backward product (LGH_LT_DGRAD, LGH_LT_WGRAD or LGH_LT_WGRAD_DHT) of
 * problem p: A, B and D pointers with their leading dimensions; math as the forward's
 * (3xtf32 plans fp32). */
void lgh_lt_key_backward(const lgh_problem_t *p, int op, const void *a, int64_t lda, const void *b,
                         int64_t ldb, const void *d, int64_t ldd, lgh_lt_key_t *key);

/* Creates the handle and an empty cache. */
lgh_status_t lgh_lt_cache_create(struct lgh_context *ctx, lgh_lt_cache_t **out);

/* The context's cache (its cublaslt engine state), created on first use. */
lgh_status_t lgh_lt_context_cache(struct lgh_context *ctx, lgh_lt_cache_t **cache);

/* Destroys every plan and the handle. */
void lgh_lt_cache_destroy(lgh_lt_cache_t *cache);

/* The plan for *key, built (descriptors + heuristic, with `bias` set as the bias pointer
 * the heuristic sees) when not cached yet. */
lgh_status_t lgh_lt_plan_get(struct lgh_context *ctx, lgh_lt_cache_t *cache,
                             const lgh_lt_key_t *key, const void *bias, lgh_lt_plan_t **out);

#ifdef __cplusplus
}
#endif

#endif /* LGH_CUBLASLT_LT_PLAN_H */
