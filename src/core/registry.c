/*
 * The engine table: the one place that lists the engines of the build (registry.h for
 * the layering). It depends on the engines' ops constants only; the core's other files
 * reach the engines through the three functions below, so adding an engine touches this
 * table and none of its users.
 */
#include "registry.h"

/* Table order is the tie-break between engines AUTO ranks equally (dispatch.c). */
static const lgh_engine_ops_t *const engine_table[] = {
#ifdef LGH_HAVE_CUDA
    &lgh_engine_sm90,
    &lgh_engine_cublaslt,
    &lgh_engine_sm80,
#endif
    &lgh_engine_cpu,
};
#define ENGINE_COUNT ((int)(sizeof engine_table / sizeof engine_table[0]))

int lgh_engine_count(void) { return ENGINE_COUNT; }

const lgh_engine_ops_t *lgh_engine_at(int i)
{
    return i >= 0 && i < ENGINE_COUNT ? engine_table[i] : NULL;
}

const lgh_engine_ops_t *lgh_find_engine(lgh_engine_t id)
{
    for (int i = 0; i < ENGINE_COUNT; ++i)
        if (engine_table[i]->id == id) return engine_table[i];
    return NULL;
}

/* Public (lgh.h): asks the engine itself, through its ops, whether ctx's device runs it. */
int lgh_engine_available(lgh_context_t ctx, lgh_engine_t id)
{
    if (!ctx) return 0;
    const lgh_engine_ops_t *e = lgh_find_engine(id);
    return e && e->available(ctx);
}
