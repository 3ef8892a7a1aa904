// placeholder: replaced by the sm90 engine
#include "core/engine.h"
static bool available(const struct lgh_context *ctx) { return false; }
static lgh_status_t can(struct lgh_context *c, const lgh_problem_t *p, char *w, size_t n) { return LGH_STATUS_NOT_SUPPORTED; }
static size_t ws(struct lgh_context *c, const lgh_problem_t *p) { return 0; }
static lgh_status_t run(struct lgh_context *c, const lgh_problem_t *p, void *w, size_t b, void *s) { return LGH_STATUS_NOT_SUPPORTED; }
extern "C" const lgh_engine_ops_t lgh_engine_sm90 = {LGH_ENGINE_SM90, "sm90", true, available, can, ws, run, NULL, NULL};
