/*
 * Device side of the test support (see tst.h): allocation, copies and synchronisation
 * through the CUDA runtime, used only by the GPU tier. Built without CUDA, every call
 * fails with "built without CUDA", and the tests skip their GPU tier before calling.
 * In staged-host mode every call works on host memory instead (tst_set_staged_host).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tst.h"

/* Staged-host mode: host memory stands in for the device (see tst.h). */
static int staged;
void tst_set_staged_host(int on) { staged = on; }

static int staged_alloc(void **p, size_t bytes, char *msg, size_t len)
{
    *p = malloc(bytes);
    if (!*p && msg) snprintf(msg, len, "malloc(%zu) for a staged buffer failed", bytes);
    return *p ? 0 : -1;
}

#define STAGED_DISPATCH_ALLOC(p, bytes, msg, len)                                            \
    if (staged) return staged_alloc(p, bytes, msg, len)
#define STAGED_DISPATCH_FREE(p)                                                              \
    if (staged) {                                                                            \
        free(p);                                                                             \
        return 0;                                                                            \
    }
#define STAGED_DISPATCH_COPY(dst, src, bytes)                                                \
    if (staged) {                                                                            \
        memcpy(dst, src, bytes);                                                             \
        return 0;                                                                            \
    }
#define STAGED_DISPATCH_SYNC()                                                               \
    if (staged) return 0

#ifdef LGH_TEST_HAVE_CUDA
#include <cuda_runtime_api.h>

static int fail(cudaError_t e, const char *what, char *msg, size_t len)
{
    if (msg) snprintf(msg, len, "%s: %s", what, cudaGetErrorString(e));
    return -1;
}

int tst_have_cuda(void) { return 1; }

int tst_dev_alloc(void **p, size_t bytes, char *msg, size_t len)
{
    STAGED_DISPATCH_ALLOC(p, bytes, msg, len);
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        return fail(e, "cudaMalloc", msg, len);
    }
    return 0;
}

int tst_dev_free(void *p)
{
    STAGED_DISPATCH_FREE(p);
    return cudaFree(p) == cudaSuccess ? 0 : -1;
}

int tst_h2d(void *dst, const void *src, size_t bytes, char *msg, size_t len)
{
    STAGED_DISPATCH_COPY(dst, src, bytes);
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? 0 : fail(e, "cudaMemcpy host->device", msg, len);
}

int tst_d2h(void *dst, const void *src, size_t bytes, char *msg, size_t len)
{
    STAGED_DISPATCH_COPY(dst, src, bytes);
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? 0 : fail(e, "cudaMemcpy device->host", msg, len);
}

int tst_dev_sync(char *msg, size_t len)
{
    STAGED_DISPATCH_SYNC();
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    return e == cudaSuccess ? 0 : fail(e, "after lgh_forward", msg, len);
}

int tst_dev_cc(int dev)
{
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return major * 10 + minor;
}

int tst_stream_create(void **stream, char *msg, size_t len)
{
    cudaStream_t s = NULL;
    cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    *stream = s;
    return e == cudaSuccess ? 0 : fail(e, "cudaStreamCreateWithFlags", msg, len);
}

void tst_stream_destroy(void *stream)
{
    if (stream && stream != (void *)cudaStreamPerThread) cudaStreamDestroy((cudaStream_t)stream);
}

void *tst_stream_per_thread(void) { return (void *)cudaStreamPerThread; }

int tst_stream_sync(void *stream, char *msg, size_t len)
{
    cudaError_t e = cudaStreamSynchronize((cudaStream_t)stream);
    if (e == cudaSuccess) e = cudaGetLastError();
    return e == cudaSuccess ? 0 : fail(e, "cudaStreamSynchronize", msg, len);
}

int tst_h2d_async(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len)
{
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream);
    return e == cudaSuccess ? 0 : fail(e, "cudaMemcpyAsync host->device", msg, len);
}

int tst_d2h_async(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len)
{
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)stream);
    return e == cudaSuccess ? 0 : fail(e, "cudaMemcpyAsync device->host", msg, len);
}

int tst_memset_async(void *dst, int byte, size_t bytes, void *stream, char *msg, size_t len)
{
    cudaError_t e = cudaMemsetAsync(dst, byte, bytes, (cudaStream_t)stream);
    return e == cudaSuccess ? 0 : fail(e, "cudaMemsetAsync", msg, len);
}

int tst_capture_begin(void *stream, char *msg, size_t len)
{
    cudaError_t e = cudaStreamBeginCapture((cudaStream_t)stream, cudaStreamCaptureModeGlobal);
    return e == cudaSuccess ? 0 : fail(e, "cudaStreamBeginCapture", msg, len);
}

int tst_capture_end(void *stream, void **exec, char *msg, size_t len)
{
    cudaGraph_t graph = NULL;
    cudaGraphExec_t ge = NULL;
    *exec = NULL;
    cudaError_t e = cudaStreamEndCapture((cudaStream_t)stream, &graph);
    if (e != cudaSuccess) return fail(e, "cudaStreamEndCapture", msg, len);
    e = cudaGraphInstantiate(&ge, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return fail(e, "cudaGraphInstantiate", msg, len);
    *exec = ge;
    return 0;
}

int tst_graph_launch(void *exec, void *stream, char *msg, size_t len)
{
    cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)exec, (cudaStream_t)stream);
    return e == cudaSuccess ? 0 : fail(e, "cudaGraphLaunch", msg, len);
}

void tst_graph_destroy(void *exec)
{
    if (exec) cudaGraphExecDestroy((cudaGraphExec_t)exec);
}

#else /* built without CUDA */

static int none(char *msg, size_t len)
{
    if (msg) snprintf(msg, len, "the tests were built without the CUDA runtime");
    return -1;
}

int tst_have_cuda(void) { return 0; }
int tst_dev_alloc(void **p, size_t bytes, char *msg, size_t len)
{
    STAGED_DISPATCH_ALLOC(p, bytes, msg, len);
    *p = NULL;
    return none(msg, len);
}
int tst_dev_free(void *p)
{
    STAGED_DISPATCH_FREE(p);
    return -1;
}
int tst_h2d(void *dst, const void *src, size_t bytes, char *msg, size_t len)
{
    STAGED_DISPATCH_COPY(dst, src, bytes);
    return none(msg, len);
}
int tst_d2h(void *dst, const void *src, size_t bytes, char *msg, size_t len)
{
    STAGED_DISPATCH_COPY(dst, src, bytes);
    return none(msg, len);
}
int tst_dev_sync(char *msg, size_t len)
{
    STAGED_DISPATCH_SYNC();
    return none(msg, len);
}
int tst_dev_cc(int dev)
{
    (void)dev;
    return -1;
}
int tst_stream_create(void **stream, char *msg, size_t len)
{
    *stream = NULL;
    return none(msg, len);
}
void tst_stream_destroy(void *stream) { (void)stream; }
void *tst_stream_per_thread(void) { return NULL; }
int tst_stream_sync(void *stream, char *msg, size_t len)
{
    (void)stream;
    return none(msg, len);
}
int tst_h2d_async(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len)
{
    (void)dst, (void)src, (void)bytes, (void)stream;
    return none(msg, len);
}
int tst_d2h_async(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len)
{
    (void)dst, (void)src, (void)bytes, (void)stream;
    return none(msg, len);
}
int tst_memset_async(void *dst, int byte, size_t bytes, void *stream, char *msg, size_t len)
{
    (void)dst, (void)byte, (void)bytes, (void)stream;
    return none(msg, len);
}
int tst_capture_begin(void *stream, char *msg, size_t len)
{
    (void)stream;
    return none(msg, len);
}
int tst_capture_end(void *stream, void **exec, char *msg, size_t len)
{
    (void)stream;
    *exec = NULL;
    return none(msg, len);
}
int tst_graph_launch(void *exec, void *stream, char *msg, size_t len)
{
    (void)exec, (void)stream;
    return none(msg, len);
}
void tst_graph_destroy(void *exec) { (void)exec; }

#endif
