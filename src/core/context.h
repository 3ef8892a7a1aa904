/* The context: what an lgh_context_t owns. Internal to src/core. */
#ifndef LGH_CORE_CONTEXT_H
#define LGH_CORE_CONTEXT_H

#include "engine.h"

#define LGH_MESSAGE_BYTES 512

struct lgh_context {
    lgh_device_props_t props;
    char description[256];
    lgh_engine_t env_engine; /* from LGH_ENGINE at creation; AUTO when unset */
    void *engine_state[LGH_ENGINE_COUNT];
    void *workspace; /* context-owned workspace (device memory on GPU contexts) */
    size_t workspace_bytes;
    struct lgh_tune_cache *tune; /* tuned engine choices (tune.c); NULL until first needed */
    int run_variant; /* lgh_engine_variant() for the run in progress; -1 outside one */
    char message[LGH_MESSAGE_BYTES];
};

/* Grows the context-owned workspace to at least bytes (device memory on GPU contexts). */
lgh_status_t lgh_context_workspace(struct lgh_context *ctx, size_t bytes, void **ws);

/* Makes the context's device current for a stretch of calls and puts the previous one
 * back after: the entry points wrap every engine call in it (run, kernel_info, the tuning
 * timer), so an engine may launch, allocate and query on the current device. A no-op for
 * CPU contexts. */
typedef struct lgh_device_scope {
    int previous;
    int switched;
} lgh_device_scope_t;
lgh_status_t lgh_device_enter(struct lgh_context *ctx, lgh_device_scope_t *scope);
void lgh_device_leave(const lgh_device_scope_t *scope);

/* The engine with this id in the build's table, or NULL (dispatch.c). */
const lgh_engine_ops_t *lgh_find_engine(lgh_engine_t id);

#endif
