/*
 * The lgh program's CUDA helpers: device buffers, a stream, event timing. The program
 * links the CUDA runtime itself for these (liblgh carries its own static copy); built
 * without CUDA, every helper fails with "built without CUDA" and `lgh run` uses the CPU.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

#ifdef LGH_CLI_HAVE_CUDA
#include <cuda_runtime_api.h>

static int cuda_fail(cudaError_t e, const char *what, char *err, size_t len)
{
    if (err) snprintf(err, len, "%s: %s", what, cudaGetErrorString(e));
    return -1;
}

int cli_gpu_built(void) { return 1; }

int cli_gpu_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

int cli_gpu_alloc(int device, void **p, size_t bytes, char *err, size_t len)
{
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return cuda_fail(e, "cudaSetDevice", err, len);
    e = cudaMalloc(p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        *p = NULL;
        return cuda_fail(e, "cudaMalloc", err, len);
    }
    return 0;
}

void cli_gpu_free(void *p)
{
    if (p) cudaFree(p);
}

int cli_gpu_upload(void *dst, const void *src, size_t bytes, char *err, size_t len)
{
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? 0 : cuda_fail(e, "cudaMemcpy host->device", err, len);
}

int cli_gpu_download(void *dst, const void *src, size_t bytes, char *err, size_t len)
{
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? 0 : cuda_fail(e, "cudaMemcpy device->host", err, len);
}

int cli_gpu_stream_create(int device, void **stream, char *err, size_t len)
{
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return cuda_fail(e, "cudaSetDevice", err, len);
    cudaStream_t s;
    /* A blocking stream: it waits for the legacy stream, which the (pageable, possibly
     * still in flight) cudaMemcpy uploads use. */
    e = cudaStreamCreate(&s);
    if (e != cudaSuccess) return cuda_fail(e, "cudaStreamCreate", err, len);
    *stream = s;
    return 0;
}

void cli_gpu_stream_destroy(void *stream)
{
    if (stream) cudaStreamDestroy((cudaStream_t)stream);
}

int cli_gpu_sync(void *stream, char *err, size_t len)
{
    /* The whole device: the stream's work and any copy on the legacy stream. */
    cudaError_t e = cudaStreamSynchronize((cudaStream_t)stream);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    return e == cudaSuccess ? 0 : cuda_fail(e, "after lgh_forward", err, len);
}

int cli_gpu_time(void *stream, int iters, cli_call_fn fn, void *arg, float *ms,
                 lgh_status_t *status, char *err, size_t len)
{
    cudaStream_t s = (cudaStream_t)stream;
    cudaEvent_t *ev = calloc((size_t)iters * 2, sizeof *ev);
    int made = 0, rc = 0;
    *status = LGH_STATUS_SUCCESS;
    if (!ev) {
        snprintf(err, len, "out of host memory for %d events", iters * 2);
        return -1;
    }
    for (; made < iters * 2; ++made) {
        cudaError_t e = cudaEventCreate(&ev[made]);
        if (e != cudaSuccess) {
            rc = cuda_fail(e, "cudaEventCreate", err, len);
            goto out;
        }
    }
    /* Back to back, no host synchronisation in between: what a training loop sees. */
    for (int i = 0; i < iters; ++i) {
        cudaEventRecord(ev[2 * i], s);
        *status = fn(arg);
        cudaEventRecord(ev[2 * i + 1], s);
        if (*status != LGH_STATUS_SUCCESS) {
            rc = -1;
            goto out;
        }
    }
    cudaError_t e = cudaEventSynchronize(ev[2 * iters - 1]);
    if (e != cudaSuccess) {
        rc = cuda_fail(e, "while timing", err, len);
        goto out;
    }
    for (int i = 0; i < iters; ++i) {
        e = cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]);
        if (e != cudaSuccess) {
            rc = cuda_fail(e, "cudaEventElapsedTime", err, len);
            goto out;
        }
    }
out:
    if (rc) cudaStreamSynchronize(s);
    for (int i = 0; i < made; ++i) cudaEventDestroy(ev[i]);
    free(ev);
    return rc;
}

#else /* built without CUDA */

static int none(char *err, size_t len)
{
    if (err) snprintf(err, len, "lgh was built without CUDA");
    return -1;
}

int cli_gpu_built(void) { return 0; }
int cli_gpu_device_count(void) { return 0; }
int cli_gpu_alloc(int device, void **p, size_t bytes, char *err, size_t len)
{
    (void)device, (void)bytes;
    *p = NULL;
    return none(err, len);
}
void cli_gpu_free(void *p) { (void)p; }
int cli_gpu_upload(void *dst, const void *src, size_t bytes, char *err, size_t len)
{
    (void)dst, (void)src, (void)bytes;
    return none(err, len);
}
int cli_gpu_download(void *dst, const void *src, size_t bytes, char *err, size_t len)
{
    (void)dst, (void)src, (void)bytes;
    return none(err, len);
}
int cli_gpu_stream_create(int device, void **stream, char *err, size_t len)
{
    (void)device;
    *stream = NULL;
    return none(err, len);
}
void cli_gpu_stream_destroy(void *stream) { (void)stream; }
int cli_gpu_sync(void *stream, char *err, size_t len)
{
    (void)stream;
    return none(err, len);
}
int cli_gpu_time(void *stream, int iters, cli_call_fn fn, void *arg, float *ms,
                 lgh_status_t *status, char *err, size_t len)
{
    (void)stream, (void)iters, (void)fn, (void)arg, (void)ms;
    *status = LGH_STATUS_NO_DEVICE;
    return none(err, len);
}

#endif
