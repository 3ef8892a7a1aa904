/* placeholder: replaced by the cuBLASLt engine */
#include "core/engine.h"
#include "core/context.h"
static bool available(const struct lgh_context *ctx) { return ctx->props.ordinal != LGH_DEVICE_CPU; }
static lgh_status_t can(struct lgh_context *c, const lgh_problem_t *p, char *w, size_t n) { return LGH_STATUS_SUCCESS; }
static size_t ws(struct lgh_context *c, const lgh_problem_t *p) { return 0; }
static lgh_status_t run(struct lgh_context *c, const lgh_problem_t *p, void *w, size_t b, void *s) { return lgh_set_error(c, LGH_STATUS_INTERNAL_ERROR, "cublaslt engine not written"); }
const lgh_engine_ops_t lgh_engine_cublaslt = {LGH_ENGINE_CUBLASLT, "cublaslt", true, available, can, ws, run, NULL, NULL};
