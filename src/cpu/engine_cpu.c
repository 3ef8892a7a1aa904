/* placeholder: replaced by the CPU engine */
#include "core/engine.h"
#include "core/context.h"
static bool available(const struct lgh_context *ctx) { return ctx->props.ordinal == LGH_DEVICE_CPU; }
static lgh_status_t can(struct lgh_context *c, const lgh_problem_t *p, char *w, size_t n) { return LGH_STATUS_SUCCESS; }
static size_t ws(struct lgh_context *c, const lgh_problem_t *p) { return 0; }
static lgh_status_t run(struct lgh_context *c, const lgh_problem_t *p, void *w, size_t b, void *s) { return lgh_set_error(c, LGH_STATUS_INTERNAL_ERROR, "cpu engine not written"); }
const char *lgh_cpu_blas_name(void) { return "none"; }
const lgh_engine_ops_t lgh_engine_cpu = {LGH_ENGINE_CPU, "cpu", false, available, can, ws, run, NULL, NULL};
