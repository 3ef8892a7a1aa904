/*
 * The engine targets of the test programs (test_matrix, test_special, test_backward):
 * one way to open the context a target runs on and to decide whether a missing engine is
 * a skip or a failure (tst.h, tst_open_target).
 */
#include <stdio.h>

#include "support/tst.h"

/* Device 0's context (tst.h), opened on the first call of tst_open_target (into *shared
 * when sharing). */
lgh_context_t tst_open_gpu(void)
{
    lgh_context_t ctx = NULL;
    const lgh_status_t s = lgh_create(&ctx, 0);
    if (s != LGH_STATUS_SUCCESS) {
        printf("GPU tier: skipped (no CUDA device: %s)\n", lgh_last_error(NULL));
        return NULL;
    }
    if (!tst_have_cuda()) {
        printf("GPU tier: skipped (the tests were built without the CUDA runtime)\n");
        lgh_destroy(ctx);
        return NULL;
    }
    printf("GPU tier: device 0 = %s\n", lgh_device_description(ctx));
    return ctx;
}

tst_setup_t tst_open_target(const char *name, lgh_engine_t engine, int on_gpu, lgh_context_t *ctx,
                            tst_gpu_t *shared)
{
    *ctx = NULL;
    if (!on_gpu) {
        const lgh_status_t s = lgh_create(ctx, LGH_DEVICE_CPU);
        if (s != LGH_STATUS_SUCCESS) {
            printf("FAIL: lgh_create(LGH_DEVICE_CPU): %s: %s\n", lgh_status_string(s),
                   lgh_last_error(NULL));
            return TST_SETUP_FAIL;
        }
        if (!lgh_engine_available(*ctx, LGH_ENGINE_CPU)) {
            printf("FAIL: the cpu engine is not available on a CPU context\n");
            return TST_SETUP_FAIL;
        }
        return TST_SETUP_OK;
    }
    if (shared != NULL) {
        if (!shared->tried) {
            shared->tried = 1;
            shared->ctx = tst_open_gpu();
        }
        *ctx = shared->ctx;
    } else {
        *ctx = tst_open_gpu();
    }
    if (*ctx == NULL) return TST_SETUP_SKIP;
    if (engine == LGH_ENGINE_AUTO || lgh_engine_available(*ctx, engine)) return TST_SETUP_OK;

    /* Not available: say why (lgh_plan's message), and whether that is allowed here:
     * cublaslt runs on every supported GPU and sm90 on every sm_90 device. */
    lgh_args_t probe;
    lgh_args_init(&probe, 1, 1, 1, 1);
    probe.engine = engine;
    probe.x = probe.w = probe.bias = probe.gamma = probe.beta = probe.y = &probe;
    lgh_plan(*ctx, &probe, NULL, NULL);
    const int cc = tst_dev_cc(0);
    const int must = engine == LGH_ENGINE_CUBLASLT || (engine == LGH_ENGINE_SM90 && cc == 90);
    if (must) {
        printf("FAIL: engine %s must be available on this device (sm_%d): %s\n", name, cc,
               lgh_last_error(*ctx));
    } else {
        printf("%s: skipped (engine not available here, sm_%d: %s)\n", name, cc, lgh_last_error(*ctx));
    }
    if (shared == NULL) {
        lgh_destroy(*ctx);
        *ctx = NULL;
    }
    return must ? TST_SETUP_FAIL : TST_SETUP_SKIP;
}
