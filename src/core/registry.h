/*
 * The engine registry: which engines this build has, found by id or walked in table
 * order. Internal to src/core.
 *
 * Layering (docs/ARCHITECTURE.md, "The core's layers"): the bottom of the core. It uses
 * only engine.h (the engines' ops constants) and calls into no other core file; the
 * context (freeing engine state), the tuner (timing engines) and dispatch (choosing one)
 * all reach the engines through it.
 */
#ifndef LGH_CORE_REGISTRY_H
#define LGH_CORE_REGISTRY_H

#include "engine.h"

/* Engines built in (whether or not they run on a given device). */
int lgh_engine_count(void);

/* The i-th engine of the table, 0 <= i < lgh_engine_count(). Table order breaks ties of
 * AUTO's preference (dispatch.c), so it is part of the behaviour. */
const lgh_engine_ops_t *lgh_engine_at(int i);

/* The engine with this id in the build's table, or NULL (not built in, or AUTO). */
const lgh_engine_ops_t *lgh_find_engine(lgh_engine_t id);

#endif
