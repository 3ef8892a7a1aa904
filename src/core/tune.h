/*
 * The tuner: AUTO's engine choice (and that engine's variant) measured per problem
 * (lgh_tune, or the first AUTO lgh_forward of a problem when LGH_TUNE=1), kept in a
 * small table the context owns and in a text file under the user's cache directory.
 * dispatch.c asks lgh_tune_lookup() before its static preference (and for the variant
 * of the engine that runs). The functions below are called with the context's lock held
 * (context.h); the public lgh_tune* entry points take it. Internal to src/core.
 *
 * Layering (docs/ARCHITECTURE.md): this is the tuner's whole interface to dispatch.c,
 * the only core file above it. The tuner reaches engines through the registry, never
 * through dispatch.c; the context frees the table through ctx->tune_free.
 */
#ifndef LGH_CORE_TUNE_H
#define LGH_CORE_TUNE_H

#include "engine.h"

struct lgh_tune_cache;

/* The engine tuned for p on ctx (reading the cache file on first use, unless
 * LGH_CACHE=0), or LGH_ENGINE_AUTO when p is not tuned; *variant (may be NULL) gets the
 * engine's tuned variant, or -1. The caller still checks that the engine is available
 * and can implement p. */
lgh_engine_t lgh_tune_lookup(struct lgh_context *ctx, const lgh_problem_t *p, int *variant);

/* Whether LGH_TUNE=1 asks lgh_forward to tune an untuned AUTO problem first. */
int lgh_tune_on_forward(struct lgh_context *ctx);

/* Times every engine that can run p (checked problem, usable pointers), each variant of
 * the tunable ones, and records the fastest in the table and the cache file. Outputs as lgh_tune's; any may be NULL. */
lgh_status_t lgh_tune_problem(struct lgh_context *ctx, const lgh_problem_t *p, void *stream,
                              lgh_tune_progress_fn progress, void *user, lgh_engine_t *chosen,
                              lgh_tune_result_t *results, int capacity, int *count);

#endif
