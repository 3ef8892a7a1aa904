/* cuBLASLt handle, descriptors and heuristic choice, cached per problem (lt_plan.h). */
#include "cublaslt/lt_plan.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int alignment_of(const void *ptr)
{
    uintptr_t a = (uintptr_t)ptr;
    if (a == 0) return 256;
    a &= ~a + 1u; /* lowest set bit */
    return a >= 256 ? 256 : (int)a;
}

void lgh_lt_key_of(const lgh_problem_t *p, const void *bias, lgh_lt_key_t *key)
{
    const lgh_args_t *a = &p->a;
    memset(key, 0, sizeof *key);
    key->m = a->m;
    key->n = a->n;
    key->k = a->k;
    key->ldx = a->ldx;
    key->ldw = a->ldw;
    key->ldy = a->ldy;
    key->dtype = (int)a->dtype;
    /* 3xtf32 runs as fp32 in this engine (same accuracy, slower): one plan for both. */
    key->math = a->dtype != LGH_DTYPE_FLOAT32 ? 0
                : a->math == LGH_MATH_TF32    ? (int)LGH_MATH_TF32
                                              : (int)LGH_MATH_FP32;
    key->align_x = alignment_of(a->x);
    key->align_w = alignment_of(a->w);
    key->align_y = alignment_of(a->y);
    key->align_bias = alignment_of(bias);
}

void lgh_lt_key_backward(const lgh_problem_t *p, int op, const void *a, int64_t lda, const void *b,
                         int64_t ldb, const void *d, int64_t ldd, lgh_lt_key_t *key)
{
    lgh_lt_key_of(p, NULL, key);
    key->op = op;
    key->ldw = lda, key->ldx = ldb, key->ldy = ldd;
    key->align_w = alignment_of(a);
    key->align_x = alignment_of(b);
    key->align_y = alignment_of(d);
    key->align_bias = 0;
}

static int key_equal(const lgh_lt_key_t *a, const lgh_lt_key_t *b)
{
    return a->op == b->op && a->d_f32 == b->d_f32 && a->m == b->m && a->n == b->n && a->k == b->k && a->ldx == b->ldx &&
           a->ldw == b->ldw && a->ldy == b->ldy && a->dtype == b->dtype && a->math == b->math &&
           a->align_x == b->align_x && a->align_w == b->align_w && a->align_y == b->align_y &&
           a->align_bias == b->align_bias;
}

static lgh_status_t lt_error(struct lgh_context *ctx, const char *what, cublasStatus_t s,
                             const lgh_lt_key_t *k)
{
    return lgh_set_error(ctx, LGH_STATUS_CUBLAS_ERROR,
                         "%s failed: %s (%s) for M=%lld N=%lld K=%lld ldx=%lld ldw=%lld ldy=%lld "
                         "%s",
                         what, cublasLtGetStatusName(s), cublasLtGetStatusString(s),
                         (long long)k->m, (long long)k->n, (long long)k->k, (long long)k->ldx,
                         (long long)k->ldw, (long long)k->ldy,
                         lgh_dtype_name((lgh_dtype_t)k->dtype));
}

static void plan_release(lgh_lt_plan_t *p)
{
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

lgh_status_t lgh_lt_cache_create(struct lgh_context *ctx, lgh_lt_cache_t **out)
{
    *out = NULL;
    lgh_lt_cache_t *c = calloc(1, sizeof *c);
    if (!c) return lgh_set_error(ctx, LGH_STATUS_ALLOC_FAILED, "cublaslt engine: out of host memory");
    cublasStatus_t s = cublasLtCreate(&c->handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
        free(c);
        return lgh_set_error(ctx, LGH_STATUS_CUBLAS_ERROR, "cublasLtCreate failed: %s (%s)",
                             cublasLtGetStatusName(s), cublasLtGetStatusString(s));
    }
    *out = c;
    return LGH_STATUS_SUCCESS;
}

void lgh_lt_cache_destroy(lgh_lt_cache_t *c)
{
    if (!c) return;
    for (int i = 0; i < LGH_LT_PLAN_SLOTS; ++i)
        if (c->plans[i].in_use) plan_release(&c->plans[i]);
    if (c->handle) cublasLtDestroy(c->handle);
    free(c);
}

static cudaDataType_t data_type(int dtype)
{
    return dtype == LGH_DTYPE_FLOAT32    ? CUDA_R_32F
           : dtype == LGH_DTYPE_BFLOAT16 ? CUDA_R_16BF
                                         : CUDA_R_16F;
}

/* Fills descriptors and the algorithm of *p for *k. On failure the caller releases p. */
static lgh_status_t plan_build(struct lgh_context *ctx, cublasLtHandle_t handle,
                               const lgh_lt_key_t *k, const void *bias, lgh_lt_plan_t *p)
{
    cublasStatus_t s;
    const cudaDataType_t t = data_type(k->dtype);
    /* tf32 → fast-TF32 tensor cores; fp32 and 3xtf32 → exact float32; 16-bit data →
     * tensor cores with float32 accumulation. */
    const cublasComputeType_t compute =
        k->math == LGH_MATH_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;

    s = cublasLtMatmulDescCreate(&p->op, compute, CUDA_R_32F);
    if (s != CUBLAS_STATUS_SUCCESS) return lt_error(ctx, "cublasLtMatmulDescCreate", s, k);
    const bool fwd = k->op == LGH_LT_FORWARD;
    const int32_t trans_a = fwd ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int32_t trans_b = k->op == LGH_LT_WGRAD ? CUBLAS_OP_T : CUBLAS_OP_N;
    const uint32_t epilogue = fwd ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    const cudaDataType_t td = k->d_f32 ? CUDA_R_32F : t; /* D (= C) and the bias */
    const int32_t bias_type = (int32_t)td;
    struct {
        cublasLtMatmulDescAttributes_t attr;
        const void *value;
        size_t bytes;
    } attrs[] = {
        {CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a},
        {CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b},
        {CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue},
        {CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type},
        {CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias},
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0] - (fwd ? 0 : 2); ++i) {
        s = cublasLtMatmulDescSetAttribute(p->op, attrs[i].attr, attrs[i].value, attrs[i].bytes);
        if (s != CUBLAS_STATUS_SUCCESS) return lt_error(ctx, "cublasLtMatmulDescSetAttribute", s, k);
    }

    /* Column-major views (lt_plan.h), rows x columns and leading dimension of A, B, D. */
    uint64_t ar, ac, br, bc, dr, dc;
    switch (k->op) {
    case LGH_LT_DGRAD: /* A = W [K, N], B = dhᵀ [N, M], D = dxᵀ [K, M] */
        ar = (uint64_t)k->k, ac = (uint64_t)k->n, br = (uint64_t)k->n, bc = (uint64_t)k->m;
        dr = (uint64_t)k->k, dc = (uint64_t)k->m;
        break;
    case LGH_LT_WGRAD: /* A = xᵀ [K, M], B = dhᵀ [N, M] (transposed by the op), D = dWᵀ [K, N] */
        ar = (uint64_t)k->k, ac = (uint64_t)k->m, br = (uint64_t)k->n, bc = (uint64_t)k->m;
        dr = (uint64_t)k->k, dc = (uint64_t)k->n;
        break;
    case LGH_LT_WGRAD_DHT: /* A = xᵀ [K, M], B = dh [M, N] (the dhᵀ copy's view), D = dWᵀ [K, N] */
        ar = (uint64_t)k->k, ac = (uint64_t)k->m, br = (uint64_t)k->m, bc = (uint64_t)k->n;
        dr = (uint64_t)k->k, dc = (uint64_t)k->n;
        break;
    default: /* FORWARD: A = W [K, N] (transposed by the op), B = xᵀ [K, M], D = C = yᵀ [N, M] */
        ar = (uint64_t)k->k, ac = (uint64_t)k->n, br = (uint64_t)k->k, bc = (uint64_t)k->m;
        dr = (uint64_t)k->n, dc = (uint64_t)k->m;
        break;
    }
    s = cublasLtMatrixLayoutCreate(&p->a, t, ar, ac, k->ldw);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&p->b, t, br, bc, k->ldx);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&p->d, td, dr, dc, k->ldy);
    if (s != CUBLAS_STATUS_SUCCESS) return lt_error(ctx, "cublasLtMatrixLayoutCreate", s, k);

    cublasLtMatmulPreference_t pref = NULL;
    s = cublasLtMatmulPreferenceCreate(&pref);
    if (s != CUBLAS_STATUS_SUCCESS) return lt_error(ctx, "cublasLtMatmulPreferenceCreate", s, k);
    const uint64_t max_ws = LGH_LT_VENDOR_WORKSPACE;
    const uint32_t al_a = (uint32_t)k->align_w, al_b = (uint32_t)k->align_x,
                   al_cd = (uint32_t)k->align_y;
    struct {
        cublasLtMatmulPreferenceAttributes_t attr;
        const void *value;
        size_t bytes;
    } prefs[] = {
        {CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof max_ws},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_cd, sizeof al_cd},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_cd, sizeof al_cd},
    };
    for (size_t i = 0; i < sizeof prefs / sizeof prefs[0] && s == CUBLAS_STATUS_SUCCESS; ++i)
        s = cublasLtMatmulPreferenceSetAttribute(pref, prefs[i].attr, prefs[i].value,
                                                 prefs[i].bytes);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cublasLtMatmulPreferenceDestroy(pref);
        return lt_error(ctx, "cublasLtMatmulPreferenceSetAttribute", s, k);
    }

    cublasLtMatmulHeuristicResult_t found[8];
    int count = 0;
    s = cublasLtMatmulAlgoGetHeuristic(handle, p->op, p->a, p->b, p->d, p->d, pref, 8, found,
                                       &count);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS) return lt_error(ctx, "cublasLtMatmulAlgoGetHeuristic", s, k);
    for (int i = 0; i < count; ++i) {
        if (found[i].state == CUBLAS_STATUS_SUCCESS && found[i].workspaceSize <= max_ws) {
            p->algo = found[i].algo;
            p->algo_workspace = found[i].workspaceSize;
            return LGH_STATUS_SUCCESS;
        }
    }
    return lgh_set_error(ctx, LGH_STATUS_CUBLAS_ERROR,
                         "cuBLASLt has no algorithm with a bias epilogue for M=%lld N=%lld K=%lld "
                         "ldx=%lld ldw=%lld ldy=%lld %s (alignments x %d, W %d, y %d, bias %d "
                         "bytes)",
                         (long long)k->m, (long long)k->n, (long long)k->k, (long long)k->ldx,
                         (long long)k->ldw, (long long)k->ldy,
                         lgh_dtype_name((lgh_dtype_t)k->dtype), k->align_x, k->align_w,
                         k->align_y, k->align_bias);
}

lgh_status_t lgh_lt_plan_get(struct lgh_context *ctx, lgh_lt_cache_t *c, const lgh_lt_key_t *key,
                             const void *bias, lgh_lt_plan_t **out)
{
    *out = NULL;
    for (int i = 0; i < LGH_LT_PLAN_SLOTS; ++i) {
        if (c->plans[i].in_use && key_equal(&c->plans[i].key, key)) {
            *out = &c->plans[i];
            return LGH_STATUS_SUCCESS;
        }
    }
    lgh_lt_plan_t *p = &c->plans[c->next_victim];
    c->next_victim = (c->next_victim + 1) % LGH_LT_PLAN_SLOTS;
    if (p->in_use) plan_release(p);
    lgh_status_t st = plan_build(ctx, c->handle, key, bias, p);
    if (st != LGH_STATUS_SUCCESS) {
        plan_release(p);
        return st;
    }
    p->key = *key;
    p->in_use = 1;
    *out = p;
    return LGH_STATUS_SUCCESS;
}

lgh_status_t lgh_lt_context_cache(struct lgh_context *ctx, lgh_lt_cache_t **cache)
{
    void **slot = lgh_engine_state(ctx, LGH_ENGINE_CUBLASLT);
    if (!*slot) {
        lgh_lt_cache_t *c = NULL;
        lgh_status_t s = lgh_lt_cache_create(ctx, &c);
        if (s != LGH_STATUS_SUCCESS) return s;
        *slot = c;
    }
    *cache = (lgh_lt_cache_t *)*slot;
    return LGH_STATUS_SUCCESS;
}
