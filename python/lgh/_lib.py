"""ctypes binding of liblgh: finding and loading the library, the C structures, the
function prototypes, status-to-exception mapping, and the per-device context cache.

Used by ops.py; nothing here needs PyTorch. The structures mirror include/lgh.h field by
field (tests/python/test_lib.py compares their layout with the header, compiled):
lgh_args_t (the forward, with its optional mean / rstd / h outputs), lgh_backward_args_t
(lgh_backward's problem) and lgh_kernel_info_t.

Library lookup, first match wins:
  1. the LGH_LIBRARY environment variable (a path to liblgh.so); if set, it must load;
  2. liblgh.so next to this file (a wheel built by `pip install .` bundles it there);
  3. <repository>/build/liblgh.so (this file lives in <repository>/python/lgh/).
"""

import atexit
import ctypes
import os
import threading

# ---------------------------------------------------------------------------------------
# Enums and status codes, as in include/lgh.h (values are stable, only ever appended).

STATUS_NAMES = (
    "LGH_STATUS_SUCCESS",
    "LGH_STATUS_NULL_POINTER",
    "LGH_STATUS_INVALID_SIZE",
    "LGH_STATUS_GROUPS_MISMATCH",
    "LGH_STATUS_INVALID_EPS",
    "LGH_STATUS_INVALID_CLAMP",
    "LGH_STATUS_INVALID_LEADING_DIM",
    "LGH_STATUS_SIZE_OVERFLOW",
    "LGH_STATUS_WRONG_MEMORY_SPACE",
    "LGH_STATUS_INVALID_VALUE",
    "LGH_STATUS_NOT_SUPPORTED",
    "LGH_STATUS_ENGINE_UNAVAILABLE",
    "LGH_STATUS_ALLOC_FAILED",
    "LGH_STATUS_CUDA_ERROR",
    "LGH_STATUS_CUBLAS_ERROR",
    "LGH_STATUS_NO_DEVICE",
    "LGH_STATUS_WORKSPACE_TOO_SMALL",
    "LGH_STATUS_INTERNAL_ERROR",
)
STATUS_SUCCESS = 0
STATUS_NOT_SUPPORTED = 10

# Statuses that mean "the caller's arguments are wrong": they become ValueError. The rest
# (engine cannot run it, no device, CUDA or cuBLASLt failure, out of memory, internal)
# become RuntimeError.
_ARGUMENT_STATUSES = frozenset((1, 2, 3, 4, 5, 6, 7, 8, 9))

DTYPE_FLOAT32, DTYPE_BFLOAT16, DTYPE_FLOAT16 = 0, 1, 2

MATH_DEFAULT, MATH_FP32, MATH_TF32, MATH_3XTF32, MATH_ACCURATE = 0, 1, 2, 3, 4
# "accurate": float32 accuracy by fp32 or 3xtf32, whichever is faster on the device (lgh.h).
MATH_BY_NAME = {"fp32": MATH_FP32, "tf32": MATH_TF32, "3xtf32": MATH_3XTF32,
                "accurate": MATH_ACCURATE}

ENGINE_AUTO = 0
DEVICE_CPU = -1


class lgh_args_t(ctypes.Structure):
    """struct lgh_args (include/lgh.h). C enums are int-sized on every ABI lgh targets."""

    _fields_ = (
        ("m", ctypes.c_int64),
        ("k", ctypes.c_int64),
        ("n", ctypes.c_int64),
        ("groups", ctypes.c_int64),
        ("dtype", ctypes.c_int),
        ("math", ctypes.c_int),
        ("engine", ctypes.c_int),
        ("eps", ctypes.c_float),
        ("lo", ctypes.c_float),
        ("hi", ctypes.c_float),
        ("x", ctypes.c_void_p),
        ("ldx", ctypes.c_int64),
        ("w", ctypes.c_void_p),
        ("ldw", ctypes.c_int64),
        ("bias", ctypes.c_void_p),
        ("gamma", ctypes.c_void_p),
        ("beta", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        ("ldy", ctypes.c_int64),
        ("mean", ctypes.c_void_p),
        ("rstd", ctypes.c_void_p),
        ("h", ctypes.c_void_p),
        ("ldh", ctypes.c_int64),
    )


class lgh_backward_args_t(ctypes.Structure):
    """struct lgh_backward_args (include/lgh.h): the forward problem, dy, what the forward
    saved (mean, rstd, optionally h) and the wanted gradients (NULL for the others)."""

    _fields_ = (
        ("fwd", lgh_args_t),
        ("dy", ctypes.c_void_p),
        ("lddy", ctypes.c_int64),
        ("mean", ctypes.c_void_p),
        ("rstd", ctypes.c_void_p),
        ("h", ctypes.c_void_p),
        ("ldh", ctypes.c_int64),
        ("dx", ctypes.c_void_p),
        ("lddx", ctypes.c_int64),
        ("dw", ctypes.c_void_p),
        ("lddw", ctypes.c_int64),
        ("dbias", ctypes.c_void_p),
        ("dgamma", ctypes.c_void_p),
        ("dbeta", ctypes.c_void_p),
    )


class lgh_kernel_info_t(ctypes.Structure):
    """struct lgh_kernel_info (include/lgh.h)."""

    _fields_ = (
        ("name", ctypes.c_char * 96),
        ("engine", ctypes.c_int),
        ("registers", ctypes.c_int),
        ("shared_bytes", ctypes.c_int),
        ("local_bytes", ctypes.c_int),
        ("threads_per_block", ctypes.c_int),
        ("blocks_per_sm", ctypes.c_int),
    )


# ---------------------------------------------------------------------------------------
# Exceptions: every failure of the C library carries its status and lgh_last_error().


class LghError(Exception):
    """A call into liblgh failed. `status` is the lgh_status_t value, `status_name` its
    name; the message is the library's own description of what was wrong."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status
        self.status_name = STATUS_NAMES[status] if status is not None and 0 <= status < len(
            STATUS_NAMES) else None


class LghValueError(LghError, ValueError):
    """The library refused the arguments (sizes, groups, eps, clamp, leading dims, ...)."""


class LghRuntimeError(LghError, RuntimeError):
    """The library could not run the call (engine, device, CUDA, memory, internal)."""


def error_for(status, what, message):
    """The exception for a failing status; `what` names the call, `message` is
    lgh_last_error()'s text."""
    name = STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else "status %d" % status
    text = "lgh: %s failed (%s): %s" % (what, name, message or "no message")
    cls = LghValueError if status in _ARGUMENT_STATUSES else LghRuntimeError
    return cls(text, status)


# ---------------------------------------------------------------------------------------
# Loading.

# The C library this binding was written for: same major version, and while the major
# is 0, the same minor too (0.x layouts may still change).
_EXPECTED_MAJOR, _EXPECTED_MINOR = 0, 1

_load_lock = threading.Lock()
_lib = None
_lib_path = None


def candidate_paths():
    """Where the library is looked for, in order (see the module docstring)."""
    env = os.environ.get("LGH_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    return [
        os.path.join(here, "liblgh.so"),
        os.path.join(os.path.dirname(os.path.dirname(here)), "build", "liblgh.so"),
    ]


def _declare(lib):
    """Sets the argument and result types of every function the binding uses."""
    c_int, c_void_p, c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
    c_size_t = ctypes.c_size_t
    args_p = ctypes.POINTER(lgh_args_t)
    protos = {
        "lgh_version": (c_int, ()),
        "lgh_status_string": (c_char_p, (c_int,)),
        "lgh_dtype_name": (c_char_p, (c_int,)),
        "lgh_math_name": (c_char_p, (c_int,)),
        "lgh_engine_name": (c_char_p, (c_int,)),
        "lgh_engine_from_name": (c_int, (c_char_p, ctypes.POINTER(c_int))),
        "lgh_create": (c_int, (ctypes.POINTER(c_void_p), c_int)),
        "lgh_destroy": (c_int, (c_void_p,)),
        "lgh_last_error": (c_char_p, (c_void_p,)),
        "lgh_context_device": (c_int, (c_void_p,)),
        "lgh_engine_available": (c_int, (c_void_p, c_int)),
        "lgh_plan": (c_int, (c_void_p, args_p, ctypes.POINTER(c_int), ctypes.POINTER(c_size_t))),
        "lgh_forward": (c_int, (c_void_p, args_p, c_void_p, c_size_t, c_void_p)),
        "lgh_kernel_info": (c_int, (c_void_p, ctypes.POINTER(lgh_kernel_info_t), c_int,
                                    ctypes.POINTER(c_int))),
        "lgh_device_description": (c_char_p, (c_void_p,)),
        "lgh_cpu_blas_name": (c_char_p, ()),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    # The backward (training) entry points. A liblgh.so without them still serves the
    # forward; has_backward() says which, and the autograd formula raises a clear error.
    bwd_p = ctypes.POINTER(lgh_backward_args_t)
    c_int64 = ctypes.c_int64
    optional = {
        "lgh_backward_args_init": (None, (bwd_p, c_int64, c_int64, c_int64, c_int64)),
        "lgh_backward_plan": (c_int, (c_void_p, bwd_p, ctypes.POINTER(c_int),
                                      ctypes.POINTER(c_size_t))),
        "lgh_backward": (c_int, (c_void_p, bwd_p, c_void_p, c_size_t, c_void_p)),
        "lgh_plan_math": (c_int, (c_void_p, args_p, ctypes.POINTER(c_int))),
    }
    for name, (restype, argtypes) in optional.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = restype
            fn.argtypes = argtypes


def lib():
    """The loaded library (loads it on first use). Raises OSError saying where it looked."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _load_lock:
        if _lib is not None:
            return _lib
        tried = []
        for path in candidate_paths():
            if not os.path.exists(path):
                tried.append("%s (not found)" % path)
                continue
            try:
                handle = ctypes.CDLL(path)
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
                continue
            try:
                _declare(handle)
            except AttributeError as e:
                tried.append("%s (not liblgh: %s)" % (path, e))
                continue
            v = handle.lgh_version()
            major, minor = v // 10000, (v // 100) % 100
            if major != _EXPECTED_MAJOR or (major == 0 and minor != _EXPECTED_MINOR):
                tried.append("%s (version %d.%d.%d, this package needs %d.%d)" % (
                    path, major, minor, v % 100, _EXPECTED_MAJOR, _EXPECTED_MINOR))
                continue
            _lib, _lib_path = handle, os.path.abspath(path)
            return _lib
        hint = ("set LGH_LIBRARY to the path of liblgh.so, or build it: "
                "cmake -S . -B build && cmake --build build")
        raise OSError("lgh: cannot load liblgh.so; tried: %s; %s" % ("; ".join(tried), hint))


def library_path():
    """Absolute path of the loaded liblgh.so."""
    lib()
    return _lib_path


def has_backward():
    """Whether the loaded liblgh.so has lgh_backward (training)."""
    return getattr(lib(), "lgh_backward", None) is not None


def _str(b):
    return b.decode("utf-8", "replace") if b else ""


def engine_name(engine_id):
    return _str(lib().lgh_engine_name(engine_id))


def engine_from_name(name):
    """lgh_engine_t for "auto", "cpu", "cublaslt", "sm80", "sm90" (as the C library
    parses them); ValueError otherwise."""
    out = ctypes.c_int(0)
    s = lib().lgh_engine_from_name(str(name).encode(), ctypes.byref(out))
    if s != STATUS_SUCCESS:
        raise ValueError("lgh: engine %r is not an engine (auto, cpu, cublaslt, sm80, sm90)" %
                         (name,))
    return out.value


# ---------------------------------------------------------------------------------------
# Contexts: one per device (CUDA ordinal, or DEVICE_CPU), created on first use, destroyed
# at exit. A C context serves one host thread at a time, so each carries a lock held for
# every call on it.


class Context:
    __slots__ = ("handle", "device", "lock")

    def __init__(self, handle, device):
        self.handle = handle
        self.device = device
        self.lock = threading.Lock()

    def last_error(self):
        return _str(lib().lgh_last_error(self.handle))

    def check(self, status, what):
        """Raises the exception for a failing status, with the context's message."""
        if status != STATUS_SUCCESS:
            raise error_for(status, what, self.last_error())


_contexts = {}
_contexts_lock = threading.Lock()


def context(device):
    """The cached context of `device` (a CUDA ordinal, or DEVICE_CPU). For a CUDA device
    the caller makes that device current first (lgh_create runs on the calling thread)."""
    ctx = _contexts.get(device)
    if ctx is not None:
        return ctx
    with _contexts_lock:
        ctx = _contexts.get(device)
        if ctx is None:
            L = lib()
            handle = ctypes.c_void_p()
            s = L.lgh_create(ctypes.byref(handle), int(device))
            if s != STATUS_SUCCESS:
                where = "the CPU" if device == DEVICE_CPU else "CUDA device %d" % device
                raise error_for(s, "lgh_create on " + where, _str(L.lgh_last_error(None)))
            ctx = Context(handle.value, device)
            _contexts[device] = ctx
    return ctx


def destroy_contexts():
    """Destroys every cached context (at exit; also usable by tests)."""
    with _contexts_lock:
        items = list(_contexts.values())
        _contexts.clear()
    for ctx in items:
        with ctx.lock:
            lib().lgh_destroy(ctx.handle)


def _forget_contexts_in_child():
    # A forked child must not use its parent's CUDA state; it creates its own contexts.
    # The parent's handles are leaked in the child on purpose (destroying them there
    # would free memory the child does not own).
    _contexts.clear()


atexit.register(destroy_contexts)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_contexts_in_child)
