/*
 * lgh — Linear -> GroupNorm -> HardTanh, fused.
 *
 *     y = hardtanh( groupnorm( x · Wᵀ + b ; G groups, γ, β, eps ) ; lo, hi )
 *
 * x is [M, K], W is [N, K] (the nn.Linear layout), b, γ, β are [N], y is [M, N], all
 * row-major with leading dimensions (row strides, in elements) ldx >= K, ldw >= K,
 * ldy >= N. The N channels form G contiguous groups of N/G channels; each (row, group)
 * is normalised by its own biased mean and variance, as torch.nn.GroupNorm does.
 *
 * The whole public API is this C11 header. Every call returns an lgh_status_t;
 * lgh_status_string() names a status and lgh_last_error() says in words what was wrong
 * with the calling thread's last failing call on a context. Nothing is written to y (or to the optional
 * mean / rstd outputs) when a call is refused.
 *
 * A context is bound to one device (a CUDA device ordinal, or LGH_DEVICE_CPU). It owns
 * the vendor handles, reusable workspaces and the per-shape plan cache.
 *
 * Threads: any number of host threads may call lgh on one context at the same time, and
 * each call gives what it gives when the calls are made one after the other. A mutex in
 * the context guards what it owns (vendor handles, plans, the tuning table, workspaces);
 * the CPU engine computes outside it, so CPU calls on one context run side by side.
 * lgh_last_error() is per thread. Only lgh_destroy must not overlap another call on the
 * context. A workspace passed in by the caller belongs to the caller: two calls whose
 * work may overlap (on two threads, or on two CUDA streams) need two.
 *
 * lgh_forward() on a CUDA context is stream-ordered: it does no host synchronisation, and
 * after the first call for a given problem on a given stream it allocates nothing. Since
 * kernels run after the call returns, a GPU context keeps one workspace per stream (the
 * stream handle; cudaStreamPerThread counts once per thread), so calls on different
 * streams may overlap on the device, and calls on one stream run in its order. A
 * context keeps the workspaces of its 32 most recently used streams; a 33rd stream's first
 * call frees the one used longest ago (cudaFree waits for the device).
 *
 * CUDA graphs: a call can be captured once one call of the problem has run on the context,
 * on any stream (that builds the engine's plans). When the capturing stream has no
 * workspace large enough yet, one is allocated during the capture (outside the graph, in
 * relaxed capture mode on the calling thread); one replaced during a capture is kept until
 * lgh_destroy. A graph uses the workspace of the stream it was captured on: replay it in
 * order with the other lgh calls on that stream (or capture with a workspace of your own).
 * An uncaptured call of a larger problem on that stream later replaces its workspace (as
 * does the 32-stream limit when that stream's turn comes), and graphs captured on that
 * stream before must then be captured again. The first call of a problem on a stream also must not
 * run while another thread captures in cudaStreamCaptureModeGlobal (it allocates).
 */
#ifndef LGH_H
#define LGH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LGH_VERSION_MAJOR 0
#define LGH_VERSION_MINOR 1
#define LGH_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, as compiled into the caller. */
#define LGH_VERSION (LGH_VERSION_MAJOR * 10000 + LGH_VERSION_MINOR * 100 + LGH_VERSION_PATCH)

#if defined(_WIN32)
#define LGH_API __declspec(dllimport)
#elif defined(__GNUC__)
#define LGH_API __attribute__((visibility("default")))
#else
#define LGH_API
#endif

/* Status codes. Values are stable: new codes are only ever appended. */
typedef enum lgh_status {
    LGH_STATUS_SUCCESS = 0,
    LGH_STATUS_NULL_POINTER = 1,        /* a required pointer is NULL */
    LGH_STATUS_INVALID_SIZE = 2,        /* M, K, N or G is zero or negative */
    LGH_STATUS_GROUPS_MISMATCH = 3,     /* N is not a multiple of G */
    LGH_STATUS_INVALID_EPS = 4,         /* eps <= 0, NaN or infinite */
    LGH_STATUS_INVALID_CLAMP = 5,       /* lo > hi, or lo / hi NaN */
    LGH_STATUS_INVALID_LEADING_DIM = 6, /* ldx < K, ldw < K or ldy < N */
    LGH_STATUS_SIZE_OVERFLOW = 7,       /* a size or byte count overflows int64 */
    LGH_STATUS_WRONG_MEMORY_SPACE = 8,  /* host pointer on a GPU context, or the reverse */
    LGH_STATUS_INVALID_VALUE = 9,       /* an enum value out of range, or a bad argument */
    LGH_STATUS_NOT_SUPPORTED = 10,      /* the forced engine cannot run this problem */
    LGH_STATUS_ENGINE_UNAVAILABLE = 11, /* the engine is not built in or not on this device */
    LGH_STATUS_ALLOC_FAILED = 12,       /* host or device memory could not be allocated */
    LGH_STATUS_CUDA_ERROR = 13,         /* the CUDA runtime reported an error */
    LGH_STATUS_CUBLAS_ERROR = 14,       /* cuBLASLt reported an error */
    LGH_STATUS_NO_DEVICE = 15,          /* no such CUDA device, or no CUDA driver */
    LGH_STATUS_WORKSPACE_TOO_SMALL = 16, /* caller's workspace below lgh_workspace_size() */
    LGH_STATUS_INTERNAL_ERROR = 17
} lgh_status_t;

/* Element type of x, W, b, γ, β and y (all six share it). Statistics and accumulation
 * are always float32 or wider. */
typedef enum lgh_dtype {
    LGH_DTYPE_FLOAT32 = 0,
    LGH_DTYPE_BFLOAT16 = 1,
    LGH_DTYPE_FLOAT16 = 2
} lgh_dtype_t;

/* Math mode for float32 data (ignored for bfloat16 / float16, which always use their
 * tensor-core mode with float32 accumulation).
 *   FP32:     exact float32 products (SIMT on GPUs): ~1e-6 relative error.
 *   TF32:     tensor cores on tf32-rounded operands: fastest, ~3e-4 relative error.
 *   3XTF32:   each operand split into tf32 high + low parts, three products:
 *             float32 accuracy on tensor cores.
 *   ACCURATE: float32 accuracy by whichever of FP32 and 3XTF32 is faster on the device.
 * An engine without a tensor-core path computes TF32 and 3XTF32 in float32 (never less
 * accurate than asked).
 *
 * ACCURATE is a request, not a mode an engine runs: each call resolves it to FP32 or
 * 3XTF32 (lgh_plan_math says which).
 *   - AUTO, problem not tuned: the device's rule (lgh_resolve_math), from NVIDIA's
 *     published dense rates: 3XTF32 where the tf32 tensor-core rate is at least 4 times
 *     the fp32 SIMT rate (3xtf32 costs 2 to 3 tf32 products), else FP32:
 *         cc 8.0 (A100)   tf32 156 / fp32 19.5 TFLOPS = 8     -> 3XTF32
 *         cc 8.6 (RTX 3090)     35.6 / 35.6           = 1     -> FP32
 *         cc 8.9 (RTX 4090)     82.6 / 82.6           = 1     -> FP32
 *         cc 9.0 (H100 SXM)      495 / 67             = 7.4   -> 3XTF32
 *         cc 10.0 (B200)        1100 / 75             = 14.7  -> 3XTF32
 *         cc 12.0 (RTX 5090)     105 / 105            = 1     -> FP32
 *     below cc 8.0 (no tf32 tensor cores) and the CPU: FP32. Any other capability is
 *     told by its SM's family: the data-centre SM, whose tensor cores ran at 7 to 15 times
 *     the fp32 rate in every generation so far (A100, H100, B200), is the one with 160 KB
 *     or more of shared memory per block; the GeForce SM (equal rates) has about 100 KB.
 *     So: 3XTF32 where the device's opt-in shared memory per block is >= 160 KB, else
 *     FP32 (Jetson Orin, cc 8.7, has the data-centre SM: 3XTF32).
 *   - AUTO, problem tuned (lgh_tune): the engine and mode measured fastest, FP32 and
 *     3XTF32 timed side by side.
 *   - A forced engine: its own float32-accurate mode: 3XTF32 on sm80 and sm90, FP32 on
 *     cublaslt and cpu.
 * The backward resolves it the same way (not tuned). */
typedef enum lgh_math {
    LGH_MATH_DEFAULT = 0, /* TF32 */
    LGH_MATH_FP32 = 1,
    LGH_MATH_TF32 = 2,
    LGH_MATH_3XTF32 = 3,
    LGH_MATH_ACCURATE = 4
} lgh_math_t;

/* Engines. AUTO picks the fastest engine that can implement the problem on the
 * context's device; the LGH_ENGINE environment variable (cpu, cublaslt, sm80, sm90),
 * read when the context is created, replaces AUTO with a forced engine. A forced engine
 * that cannot run the problem fails with LGH_STATUS_NOT_SUPPORTED or
 * LGH_STATUS_ENGINE_UNAVAILABLE; it never silently falls back. */
typedef enum lgh_engine {
    LGH_ENGINE_AUTO = 0,
    LGH_ENGINE_CPU = 1,      /* BLAS sgemm + one fused threaded pass; CPU contexts */
    LGH_ENGINE_CUBLASLT = 2, /* cuBLASLt GEMM + bias, then one norm+clamp kernel */
    LGH_ENGINE_SM80 = 3,     /* fused mma.sync kernel (Ampere, Ada, Hopper) */
    LGH_ENGINE_SM90 = 4,     /* fused wgmma + TMA kernel (Hopper) */
    LGH_ENGINE_COUNT = 5
} lgh_engine_t;

#define LGH_DEVICE_CPU (-1)

typedef struct lgh_context *lgh_context_t;

/* One forward problem: sizes, parameters and pointers. Zero-initialise it (or use
 * lgh_args_init) and fill in what you need; unknown future fields stay zero. */
typedef struct lgh_args {
    int64_t m, k, n, groups;
    lgh_dtype_t dtype;
    lgh_math_t math;
    lgh_engine_t engine; /* LGH_ENGINE_AUTO unless forcing one */
    float eps, lo, hi;

    const void *x;
    int64_t ldx; /* >= k; 0 means k */
    const void *w;
    int64_t ldw; /* >= k; 0 means k */
    const void *bias;  /* [n] */
    const void *gamma; /* [n] */
    const void *beta;  /* [n] */
    void *y;
    int64_t ldy; /* >= n; 0 means n */

    /* Optional float32 outputs [m, groups] (row-major, contiguous): the per-(row, group)
     * mean and 1/sqrt(var + eps) used for normalisation. NULL to skip; give both or
     * neither. */
    float *mean;
    float *rstd;

    /* Optional output [m, n] in the data's dtype at leading dimension ldh (>= n; 0 means
     * n): the pre-norm h = x·Wᵀ + b, which lgh_backward can reuse instead of recomputing
     * it (it is what PyTorch's GroupNorm keeps for its backward). NULL to skip. */
    void *h;
    int64_t ldh;
} lgh_args_t;

/* Fills *args with the reference problem's scalars (eps 1e-5, lo -2, hi 2, float32,
 * default math, AUTO engine) and the given sizes; pointers NULL, leading dims 0. */
LGH_API void lgh_args_init(lgh_args_t *args, int64_t m, int64_t k, int64_t n, int64_t groups);

/* Version of the library actually loaded (compare with LGH_VERSION). */
LGH_API int lgh_version(void);

LGH_API const char *lgh_status_string(lgh_status_t status);
LGH_API const char *lgh_dtype_name(lgh_dtype_t dtype);
LGH_API const char *lgh_math_name(lgh_math_t math);
LGH_API const char *lgh_engine_name(lgh_engine_t engine);
/* Parses "cpu", "cublaslt", "sm80", "sm90", "auto"; INVALID_VALUE otherwise. */
LGH_API lgh_status_t lgh_engine_from_name(const char *name, lgh_engine_t *engine);

/* Creates a context on a CUDA device ordinal or on LGH_DEVICE_CPU. */
LGH_API lgh_status_t lgh_create(lgh_context_t *ctx, int device);
LGH_API lgh_status_t lgh_destroy(lgh_context_t ctx);

/* The message of the calling thread's last call on ctx if it failed ("" if it succeeded,
 * or there was none): a call on another thread never changes it. Valid until the calling
 * thread's next call on ctx. A thread keeps the messages of the 8 contexts it used last
 * ("" for older ones). With ctx NULL, the message of the last failing lgh_create on this
 * thread. */
LGH_API const char *lgh_last_error(lgh_context_t ctx);

/* The device the context is bound to (LGH_DEVICE_CPU for the CPU). */
LGH_API int lgh_context_device(lgh_context_t ctx);

/* Whether an engine is built in and can run on the context's device. */
LGH_API int lgh_engine_available(lgh_context_t ctx, lgh_engine_t engine);

/* Which engine lgh_forward would run for *args (after AUTO / LGH_ENGINE resolution),
 * and the workspace it needs. Checks the arguments as lgh_forward does, but does not
 * touch the pointed-to memory. Either output pointer may be NULL. */
LGH_API lgh_status_t lgh_plan(lgh_context_t ctx, const lgh_args_t *args,
                              lgh_engine_t *engine, size_t *workspace_bytes);

/* The math mode lgh_forward would run for *args, as lgh_plan chooses its engine: FP32,
 * TF32 or 3XTF32 for float32 data (DEFAULT is TF32; ACCURATE resolved as described at
 * lgh_math_t), LGH_MATH_DEFAULT for bfloat16 / float16 data (their math is ignored).
 * Checks args as lgh_plan does. */
LGH_API lgh_status_t lgh_plan_math(lgh_context_t ctx, const lgh_args_t *args, lgh_math_t *math);

/* The device's rule alone (no engine forced, nothing tuned): the mode `math` resolves to
 * for `dtype` on ctx's device, as lgh_plan_math answers it (DEFAULT for 16-bit data).
 * INVALID_VALUE for a dtype or math out of range. */
LGH_API lgh_status_t lgh_resolve_math(lgh_context_t ctx, lgh_dtype_t dtype, lgh_math_t math,
                                      lgh_math_t *resolved);

/* Runs the layer. workspace may be NULL: the context then uses (and on the first call
 * for a shape on the stream, allocates) its own. Otherwise it must be device memory (host
 * memory on a CPU context) of at least lgh_plan()'s workspace_bytes, not used
 * concurrently.
 * stream is a cudaStream_t (NULL: the legacy default stream); ignored on the CPU. */
LGH_API lgh_status_t lgh_forward(lgh_context_t ctx, const lgh_args_t *args,
                                 void *workspace, size_t workspace_bytes, void *stream);

/* ---- backward (training) ---------------------------------------------------------------
 *
 * The gradients of the layer with respect to any subset of x, W, b, γ, β, given the
 * gradient dy of its output and what the forward saved:
 *
 *     z  = γ·x̂ + β  with  x̂ = (h − mean)·rstd           (h = x·Wᵀ + b, pre-norm)
 *     dz = dy where lo < z < hi (and where z is NaN), else 0   (torch.nn.Hardtanh's rule)
 *     dβ = Σ_rows dz,   dγ = Σ_rows dz·x̂
 *     dh = rstd·(dz·γ − mean_group(dz·γ) − x̂·mean_group(dz·γ·x̂))
 *     db = Σ_rows dh,   dx = dh·W,   dW = dhᵀ·x
 *
 * The forward may have saved h (lgh_args_t.h), which spares the backward one product
 * (recomputing h costs as much as the forward's GEMM), and mean and rstd (lgh_args_t.mean
 * / .rstd). z, the clamp mask and x̂ are recomputed from h with the forward's own formula.
 * Statistics: for float32 data with h saved, the forward's mean and rstd are used when
 * given (h and the statistics then come from the same float32 values, so the mask is the
 * forward's); otherwise the backward computes them from the h it uses — a saved h is rounded to the data's dtype, and the gradient is then the exact
 * gradient at that h, as in PyTorch's 16-bit GroupNorm (which keeps its 16-bit input):
 * statistics of the float32 values with an h rounded to 16 bits would make x̂ noise
 * where a group's spread is near the rounding (a group of one channel, a large mean).
 *
 * Conventions as lgh_forward: checked before anything is written (a refused call writes
 * no gradient), stream-ordered, no allocation after the first call for a shape on the
 * stream when the context's workspace is used, graph-capturable, thread-safe. dW, db, dγ and dβ are deterministic:
 * bitwise equal from run to run (no floating-point atomics). The math mode of fwd
 * applies to both products (3XTF32: float32 accuracy; ACCURATE resolved as for the
 * forward, by the device's rule or the forced engine). Gradients have the data's dtype;
 * every reduction runs in float32 or wider.
 */
typedef struct lgh_backward_args {
    /* The forward problem as given to lgh_forward: sizes, dtype, math, engine, eps, lo,
     * hi, x / ldx, w / ldw, bias, gamma, beta. Its y, mean, rstd and h are ignored. */
    lgh_args_t fwd;

    const void *dy; /* [m, n], dtype */
    int64_t lddy;   /* >= n; 0 means n */

    /* What the forward saved, all optional: mean and rstd [m, groups] float32 (both or
     * neither; used for float32 data with h), h [m, n] in the data's dtype (NULL
     * recomputes x·Wᵀ + b). */
    const float *mean;
    const float *rstd;
    const void *h;
    int64_t ldh; /* >= n; 0 means n */

    /* Gradients, in the data's dtype; NULL for any that is not wanted (at least one). */
    void *dx;       /* [m, k] */
    int64_t lddx;   /* >= k; 0 means k */
    void *dw;       /* [n, k] */
    int64_t lddw;   /* >= k; 0 means k */
    void *dbias;    /* [n] */
    void *dgamma;   /* [n] */
    void *dbeta;    /* [n] */
} lgh_backward_args_t;

/* Zeroes *args and fills args->fwd as lgh_args_init does. */
LGH_API void lgh_backward_args_init(lgh_backward_args_t *args, int64_t m, int64_t k, int64_t n,
                                    int64_t groups);

/* Which engine lgh_backward would run for *args and the workspace it needs (as
 * lgh_plan). An engine without a backward answers LGH_STATUS_NOT_SUPPORTED when forced. */
LGH_API lgh_status_t lgh_backward_plan(lgh_context_t ctx, const lgh_backward_args_t *args,
                                       lgh_engine_t *engine, size_t *workspace_bytes);

/* The math mode lgh_backward would run its products in for *args (as lgh_plan_math). */
LGH_API lgh_status_t lgh_backward_plan_math(lgh_context_t ctx, const lgh_backward_args_t *args,
                                            lgh_math_t *math);

/* Computes the requested gradients. workspace and stream as for lgh_forward. */
LGH_API lgh_status_t lgh_backward(lgh_context_t ctx, const lgh_backward_args_t *args,
                                  void *workspace, size_t workspace_bytes, void *stream);

/* The compiled kernels of the context's engines, as the device sees them: registers per
 * thread, static + dynamic shared memory, and local memory (spill) bytes per thread. */
typedef struct lgh_kernel_info {
    char name[96];
    lgh_engine_t engine;
    int registers;
    int shared_bytes;      /* static + dynamic shared memory per block */
    int local_bytes;       /* local memory per thread (spills, stack arrays) */
    int threads_per_block; /* as launched */
    int blocks_per_sm;     /* theoretical occupancy on the context's device */
} lgh_kernel_info_t;

/* Writes up to `capacity` entries to `out` and sets *count to the number available. */
LGH_API lgh_status_t lgh_kernel_info(lgh_context_t ctx, lgh_kernel_info_t *out, int capacity,
                                     int *count);

/* Human-readable description of the context's device ("NVIDIA H100 80GB HBM3, sm_90,
 * 132 SMs" or the CPU and its BLAS). */
LGH_API const char *lgh_device_description(lgh_context_t ctx);

/* The BLAS the CPU engine uses ("OpenBLAS 0.3.21" or "built-in blocked GEMM"). */
LGH_API const char *lgh_cpu_blas_name(void);

/* ---- tuning: AUTO's choice measured per problem, cached in memory and on disk ----------
 *
 * lgh_tune() runs every engine that is available on the context's device and can
 * implement *args (args->engine is ignored), a few warm-up calls and then ~10 timed
 * calls each (CUDA events on `stream` on a GPU context, the monotonic clock on the CPU),
 * and records the engine with the lowest median time. From then on AUTO on this context
 * runs that engine for every problem with the same m, k, n, groups, dtype, math and
 * leading-dimension alignment (if it can still implement it). For LGH_MATH_ACCURATE each
 * engine is timed in its float32-accurate mode (3XTF32 on sm80 and sm90, FP32 on cublaslt
 * and cpu), so FP32 and 3XTF32 are measured side by side and AUTO then runs the fastest
 * engine with its mode. The choice is also saved
 * to a text file under $XDG_CACHE_HOME/lgh (else ~/.cache/lgh), one file per GPU model,
 * driver and lgh version, which every new context reads once, lazily. LGH_CACHE=0 turns
 * reading and writing the file off; a corrupt or stale file is ignored.
 *
 * Unlike lgh_forward, lgh_tune synchronises the host with the device and may allocate.
 * It needs real inputs (x, w, ... y as for lgh_forward; y is overwritten). With the
 * environment variable LGH_TUNE=1, the first AUTO lgh_forward for an untuned problem
 * tunes it first (that call synchronises and allocates). While it measures, lgh_tune
 * holds the context's mutex: other threads' calls on the context wait for it (the
 * progress callback runs without it, and may call lgh).
 */
typedef struct lgh_tune_result {
    lgh_engine_t engine;
    lgh_status_t status; /* LGH_STATUS_SUCCESS, or why this engine could not be timed */
    float ms;            /* median milliseconds of one call (when status is SUCCESS) */
} lgh_tune_result_t;

/* Called by lgh_tune before it times each engine (index from 1 to total). */
typedef void (*lgh_tune_progress_fn)(void *user, lgh_engine_t engine, int index, int total);

/* Tunes *args as described above. *chosen (may be NULL) gets the fastest engine;
 * results (may be NULL) gets up to `capacity` per-engine entries and *count (may be
 * NULL) the number of engines tried. progress may be NULL. */
LGH_API lgh_status_t lgh_tune(lgh_context_t ctx, const lgh_args_t *args, void *stream,
                              lgh_tune_progress_fn progress, void *user, lgh_engine_t *chosen,
                              lgh_tune_result_t *results, int capacity, int *count);

/* The cached choice for *args on ctx (after reading the cache file, if enabled):
 * *engine gets it and *ms (may be NULL) its median time, or LGH_ENGINE_AUTO and 0 when
 * the problem is not tuned. args is checked as lgh_plan checks it; the memory it
 * points to is not touched. */
LGH_API lgh_status_t lgh_tune_cached(lgh_context_t ctx, const lgh_args_t *args,
                                     lgh_engine_t *engine, float *ms);

/* The path of ctx's cache file (written or not) into path[len]; "" and
 * LGH_STATUS_NOT_SUPPORTED when LGH_CACHE=0 or no cache directory is known. */
LGH_API lgh_status_t lgh_tune_cache_file(lgh_context_t ctx, char *path, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* LGH_H */
