/*
 * The error of `lgh run` against the double-precision reference (lgh_reference_rows),
 * on all rows or on a sample of them, the sampled rows spread over the CPU's threads so
 * that checking the reference problem takes a second, not minutes.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cpu/reference.h"

double cli_bound(lgh_dtype_t dt, lgh_math_t math)
{
    if (dt != LGH_DTYPE_FLOAT32) return 1e-2;
    return (math == LGH_MATH_FP32 || math == LGH_MATH_3XTF32) ? 1e-5 : 1e-3;
}

typedef struct job {
    const lgh_args_t *a; /* the sampled rows as a problem of their own */
    int64_t begin, end;
    double *ref; /* [rows, n] */
    int rc;
} job_t;

static void *worker(void *p)
{
    job_t *j = p;
    j->rc = j->begin < j->end ? lgh_reference_rows(j->a, j->begin, j->end,
                                                   j->ref + j->begin * j->a->n, NULL, NULL)
                              : 0;
    return NULL;
}

int cli_check_rows(const lgh_args_t *a, const int64_t *row_ids, int64_t rows, const void *y,
                   double *rel, double *max_abs, int64_t *nonfinite)
{
    const int64_t n = a->n, k = a->k;
    const size_t eb = a->dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
    const int64_t ldx = a->ldx ? a->ldx : k;

    /* The sampled rows of x, packed: the reference then reads W once per thread, not
     * once per sampled row. */
    void *xs = malloc((size_t)(rows * k) * eb);
    double *ref = malloc((size_t)(rows * n) * sizeof(double));
    if (!xs || !ref) {
        free(xs);
        free(ref);
        return -1;
    }
    for (int64_t i = 0; i < rows; ++i)
        memcpy((char *)xs + (size_t)(i * k) * eb,
               (const char *)a->x + (size_t)(row_ids[i] * ldx) * eb, (size_t)k * eb);
    lgh_args_t sample = *a;
    sample.m = rows;
    sample.x = xs;
    sample.ldx = 0;

    enum { MAX_THREADS = 64 };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (int)ncpu;
    if (nt > rows) nt = (int)rows;
    job_t jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < nt; ++t) {
        jobs[t] = (job_t){&sample, rows * t / nt, rows * (t + 1) / nt, ref, 0};
        if (t > 0) started[t] = pthread_create(&th[t], NULL, worker, &jobs[t]) == 0;
        if (t > 0 && !started[t]) worker(&jobs[t]);
    }
    worker(&jobs[0]);
    int rc = jobs[0].rc;
    for (int t = 1; t < nt; ++t) {
        if (started[t]) pthread_join(th[t], NULL);
        if (jobs[t].rc) rc = jobs[t].rc;
    }
    free(xs);
    if (rc) {
        free(ref);
        return -1;
    }

    /* y holds the sampled rows packed: compare them as a problem of `rows` rows. */
    lgh_args_t packed = sample;
    packed.y = (void *)y;
    packed.ldy = 0;
    *nonfinite = 0;
    for (int64_t i = 0; i < rows * n; ++i) {
        float v;
        if (eb == 4) {
            memcpy(&v, (const char *)y + 4 * i, 4);
        } else {
            /* NaN / inf in 16 bits: exponent all ones (bf16: 0x7f80, fp16: 0x7c00). */
            uint16_t h;
            memcpy(&h, (const char *)y + 2 * i, 2);
            const uint16_t mask = a->dtype == LGH_DTYPE_BFLOAT16 ? 0x7f80 : 0x7c00;
            v = (h & mask) == mask ? NAN : 0.0f;
        }
        if (!isfinite(v)) ++*nonfinite;
    }
    *rel = lgh_reference_error(&packed, 0, rows, ref, max_abs);
    free(ref);
    return 0;
}
