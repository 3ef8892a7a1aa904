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
    const lgh_args_t *a;
    const int64_t *rows;
    int64_t first, count; /* positions in rows[] */
    double *ref;          /* [count of all rows, n] */
    int rc;
} job_t;

static void *worker(void *p)
{
    job_t *j = p;
    j->rc = 0;
    for (int64_t i = j->first; i < j->first + j->count && j->rc == 0; ++i) {
        /* Consecutive ids form one range: the reference then reads W once for them. */
        int64_t end = i + 1;
        while (end < j->first + j->count && j->rows[end] == j->rows[end - 1] + 1) ++end;
        j->rc = lgh_reference_rows(j->a, j->rows[i], j->rows[end - 1] + 1, j->ref + i * j->a->n,
                                   NULL, NULL);
        i = end - 1;
    }
    return NULL;
}

int cli_check_rows(const lgh_args_t *a, const int64_t *row_ids, int64_t rows, const void *y,
                   double *rel, double *max_abs, int64_t *nonfinite)
{
    const int64_t n = a->n;
    double *ref = malloc((size_t)(rows * n) * sizeof(double));
    if (!ref) return -1;

    enum { MAX_THREADS = 64 };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (int)ncpu;
    if (nt > rows) nt = (int)rows;
    job_t jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < nt; ++t) {
        int64_t b = rows * t / nt, e = rows * (t + 1) / nt;
        jobs[t] = (job_t){a, row_ids, b, e - b, ref, 0};
        if (t > 0) started[t] = pthread_create(&th[t], NULL, worker, &jobs[t]) == 0;
        if (t > 0 && !started[t]) worker(&jobs[t]);
    }
    worker(&jobs[0]);
    int rc = jobs[0].rc;
    for (int t = 1; t < nt; ++t) {
        if (started[t]) pthread_join(th[t], NULL);
        if (jobs[t].rc) rc = jobs[t].rc;
    }
    if (rc) {
        free(ref);
        return -1;
    }

    /* y holds the sampled rows packed: compare them as a problem of `rows` rows. */
    lgh_args_t packed = *a;
    packed.m = rows;
    packed.y = (void *)y;
    packed.ldy = 0;
    *nonfinite = 0;
    const size_t eb = a->dtype == LGH_DTYPE_FLOAT32 ? 4 : 2;
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
