/*
 * Timing an engine on a problem (tune_time.c), for the tuner (tune.c).
 *
 * Layering (docs/ARCHITECTURE.md): uses the context (workspaces, the run's variant,
 * messages) and the engine it is handed; it never looks engines up or records anything:
 * which engines to time and what to keep is tune.c's.
 */
#ifndef LGH_CORE_TUNE_TIME_H
#define LGH_CORE_TUNE_TIME_H

#include "engine.h"

/* e's time for p in milliseconds (the median of several calls after warm-up, on the
 * caller's stream for a GPU engine): its only one, or its fastest variant's (*variant gets
 * that variant's id; -1 for an engine without variants). Fails only when every variant
 * fails, with the first failure's status and message. Called with the context's lock
 * held for the whole timing (lgh_tune synchronises anyway) and its device current. */
lgh_status_t lgh_tune_time_engine(struct lgh_context *ctx, const lgh_engine_ops_t *e,
                                  const lgh_problem_t *p, void *stream, float *ms, int *variant);

#endif
