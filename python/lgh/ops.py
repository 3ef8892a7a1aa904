"""The functional layer over liblgh for PyTorch tensors, and its registration as the
PyTorch custom operator torch.ops.lgh.linear_groupnorm_hardtanh.

    y = hardtanh(group_norm(x @ weight.T + bias, num_groups, gamma, beta, eps), lo, hi)

linear_groupnorm_hardtanh() is what users call. With torch >= 2.4 it goes through a
torch.library custom operator with a fake (meta) implementation and an autograd formula,
so torch.compile traces it without graph breaks and CUDA graphs capture it; on older
torch (HAS_CUSTOM_OP False) it is a torch.autograd.Function around the same code.

The forward runs in liblgh (CPU engine for CPU tensors; the GPU engines on the current
CUDA device and stream). The backward is written with ordinary torch operations: it
recomputes x @ W.T + b with torch and applies the GroupNorm and HardTanh derivatives, so
training works wherever the forward does.
"""

import ctypes
import operator
import threading

import torch
import torch.nn.functional as F

from . import _lib

_DTYPES = {
    torch.float32: _lib.DTYPE_FLOAT32,
    torch.bfloat16: _lib.DTYPE_BFLOAT16,
    torch.float16: _lib.DTYPE_FLOAT16,
}

_SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

MATH_MODES = ("auto", "fp32", "tf32", "3xtf32")

HAS_CUSTOM_OP = hasattr(torch, "library") and hasattr(torch.library, "custom_op") and hasattr(
    torch.library, "register_fake")

# lgh_plan is given this address for y when no y exists yet: it never touches memory, and
# PyTorch's allocators return blocks at least this aligned, so the engine it names is the
# one a real call would run.
_PLACEHOLDER_ADDRESS = 1 << 20


# ---------------------------------------------------------------------------------------
# Argument handling shared by the real and the fake implementation (only shapes, dtypes
# and devices are read, so it works on fake tensors too).


def _check_inputs(x, weight, bias, gamma, beta):
    """Checks types, dtypes, devices and shapes; returns (K, N). TypeError for a wrong
    type or dtype, ValueError for wrong shapes or devices."""
    named = (("x", x), ("weight", weight), ("bias", bias), ("gamma", gamma), ("beta", beta))
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise TypeError("lgh: %s must be a torch.Tensor, got %s" % (name, type(t).__name__))
    if x.dtype not in _SUPPORTED_DTYPES:
        raise TypeError("lgh: x has dtype %s; lgh computes float32, bfloat16 and float16" % x.dtype)
    for name, t in named[1:]:
        if t.dtype != x.dtype:
            raise TypeError("lgh: all tensors must share x's dtype %s, but %s is %s" % (
                x.dtype, name, t.dtype))
    if x.device.type not in ("cpu", "cuda"):
        raise ValueError("lgh: runs on CPU and CUDA tensors; x is on %s" % x.device)
    for name, t in named[1:]:
        if t.device != x.device:
            raise ValueError("lgh: all tensors must be on x's device %s, but %s is on %s" % (
                x.device, name, t.device))
    if x.dim() < 1:
        raise ValueError("lgh: x must have at least one dimension [*, K], got a scalar")
    if weight.dim() != 2:
        raise ValueError("lgh: weight must be [N, K] (the nn.Linear layout), got shape %s" % (
            list(weight.shape),))
    n, k = weight.shape
    if x.shape[-1] != k:
        raise ValueError("lgh: x has %d features in its last dimension (shape %s) but weight "
                         "is [N=%d, K=%d]: K must match" % (x.shape[-1], list(x.shape), n, k))
    for name, t in named[2:]:
        if t.dim() != 1 or t.shape[0] != n:
            raise ValueError("lgh: %s must be [N=%d], got shape %s" % (name, n, list(t.shape)))
    return k, n


def _math_id(math):
    """lgh_math_t for a math name; "auto" follows torch.get_float32_matmul_precision():
    "highest" -> 3xtf32 (float32 accuracy), "high" / "medium" -> tf32."""
    if math == "auto":
        highest = torch.get_float32_matmul_precision() == "highest"
        return _lib.MATH_3XTF32 if highest else _lib.MATH_TF32
    return _lib.MATH_BY_NAME[math]


def _math_name(math):
    """Validated math name ("auto" for None)."""
    if math is None:
        return "auto"
    if isinstance(math, str) and math.lower() in MATH_MODES:
        return math.lower()
    raise ValueError("lgh: math must be None, 'auto', 'fp32', 'tf32' or '3xtf32', got %r" % (math,))


def _groups(num_groups):
    if isinstance(num_groups, int) and not isinstance(num_groups, bool):
        return num_groups  # the common case, kept simple for torch.compile to trace
    if isinstance(num_groups, bool):
        raise TypeError("lgh: num_groups must be an int, got %r" % (num_groups,))
    try:
        return operator.index(num_groups)
    except TypeError:
        raise TypeError("lgh: num_groups must be an int, got %r" % (num_groups,)) from None


def _engine_name(engine):
    if engine is None:
        return "auto"
    if not isinstance(engine, str):
        raise TypeError("lgh: engine must be a name such as 'cpu' or 'sm90', got %r" % (engine,))
    return engine.lower()


_engine_ids = {}
_engine_ids_lock = threading.Lock()


def _engine_id(name):
    e = _engine_ids.get(name)
    if e is None:
        e = _lib.engine_from_name(name)  # ValueError for an unknown name
        with _engine_ids_lock:
            _engine_ids[name] = e
    return e


def _matrix(t, cols):
    """(tensor, leading dimension) for a 2-D tensor the C API can read: rows of `cols`
    contiguous elements at a fixed row stride >= cols. Anything else is copied."""
    rows = t.shape[0]
    if t.stride(1) == 1 or cols == 1:
        if rows <= 1:
            return t, cols
        if t.stride(0) >= cols:
            return t, t.stride(0)
    t = t.contiguous()
    return t, cols


def _vector(t):
    return t if t.stride(0) == 1 or t.shape[0] <= 1 else t.contiguous()


def _device_index(device):
    if device.type == "cpu":
        return _lib.DEVICE_CPU
    return device.index if device.index is not None else torch.cuda.current_device()


def _fill_args(x2, ldx, w2, ldw, bias, gamma, beta, m, k, n, num_groups, eps, lo, hi, dtype_id,
               math_id, engine_id):
    a = _lib.lgh_args_t()
    a.m, a.k, a.n, a.groups = m, k, n, num_groups
    a.dtype, a.math, a.engine = dtype_id, math_id, engine_id
    a.eps, a.lo, a.hi = eps, lo, hi
    a.x, a.ldx = x2.data_ptr(), ldx
    a.w, a.ldw = w2.data_ptr(), ldw
    a.bias, a.gamma, a.beta = bias.data_ptr(), gamma.data_ptr(), beta.data_ptr()
    return a


class _DeviceGuard:
    """Makes a CUDA device current for the call (and restores the previous one); a no-op
    for the CPU."""

    def __init__(self, device):
        self.guard = torch.cuda.device(device) if device.type == "cuda" else None

    def __enter__(self):
        if self.guard is not None:
            self.guard.__enter__()

    def __exit__(self, *exc):
        if self.guard is not None:
            return self.guard.__exit__(*exc)
        return False


def _forward(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine,
             want_stats=False):
    """Runs lgh_forward; returns y [*, N] (and mean, rstd [M, G] float32 if want_stats)."""
    k, n = _check_inputs(x, weight, bias, gamma, beta)
    lead = tuple(x.shape[:-1])
    m = 1
    for d in lead:
        m *= d
    dev = x.device
    y = torch.empty(lead + (n,), dtype=x.dtype, device=dev)
    mean = rstd = None
    if want_stats:
        g = max(num_groups, 0)
        mean = torch.empty((m, g), dtype=torch.float32, device=dev)
        rstd = torch.empty((m, g), dtype=torch.float32, device=dev)

    x2, ldx = _matrix(x.reshape(m, k), k)
    w2, ldw = _matrix(weight, k)
    bias, gamma, beta = _vector(bias), _vector(gamma), _vector(beta)
    idx = _device_index(dev)

    with _DeviceGuard(dev):
        ctx = _lib.context(idx)
        a = _fill_args(x2, ldx, w2, ldw, bias, gamma, beta, m, k, n, num_groups, eps, lo, hi,
                       _DTYPES[x.dtype], _math_id(math), _engine_id(engine))
        if m == 0:
            # Nothing to compute, but the arguments are still checked by the library
            # (one placeholder row; lgh_plan reads no memory).
            a.m = 1
            a.x = a.x or _PLACEHOLDER_ADDRESS
            a.bias, a.gamma, a.beta = (p or _PLACEHOLDER_ADDRESS for p in (a.bias, a.gamma, a.beta))
            a.w = a.w or _PLACEHOLDER_ADDRESS
            a.y = _PLACEHOLDER_ADDRESS
            with ctx.lock:
                ctx.check(_lib.lib().lgh_plan(ctx.handle, ctypes.byref(a), None, None), "lgh_plan")
            return (y, mean, rstd) if want_stats else y
        a.y, a.ldy = y.data_ptr(), n
        if want_stats:
            a.mean, a.rstd = mean.data_ptr(), rstd.data_ptr()
        stream = torch.cuda.current_stream(idx).cuda_stream if dev.type == "cuda" else None
        with ctx.lock:
            s = _lib.lib().lgh_forward(ctx.handle, ctypes.byref(a), None, 0, stream)
            ctx.check(s, "lgh_forward")
    return (y, mean, rstd) if want_stats else y


# ---------------------------------------------------------------------------------------
# Backward, in torch operations (traceable by AOTAutograd).


def _grads(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, dy, needs):
    """Gradients of y with respect to (x, weight, bias, gamma, beta); None where `needs`
    says a gradient is not wanted. Normalisation math in float32."""
    k, n = weight.shape[1], weight.shape[0]
    c = n // num_groups
    x2 = x.reshape(-1, k)
    h = F.linear(x2, weight, bias).float()
    m = h.shape[0]
    hg = h.view(m, num_groups, c)
    mu = hg.mean(-1, keepdim=True)
    centred = hg - mu
    rstd = torch.rsqrt((centred * centred).mean(-1, keepdim=True) + eps)
    xhat = centred * rstd
    gf = gamma.float().view(num_groups, c)
    z = xhat * gf + beta.float().view(num_groups, c)
    dz = dy.reshape(m, num_groups, c).float() * ((z > lo) & (z < hi))
    dgamma = (dz * xhat).sum(0).reshape(n).to(gamma.dtype) if needs[3] else None
    dbeta = dz.sum(0).reshape(n).to(beta.dtype) if needs[4] else None
    dx = dw = db = None
    if needs[0] or needs[1] or needs[2]:
        g = dz * gf
        dh = rstd * (g - g.mean(-1, keepdim=True) - xhat * (g * xhat).mean(-1, keepdim=True))
        dh = dh.reshape(m, n)
        if needs[2]:
            db = dh.sum(0).to(bias.dtype)
        dh = dh.to(x.dtype)
        if needs[0]:
            dx = (dh @ weight).reshape(x.shape)
        if needs[1]:
            dw = dh.t() @ x2
    return dx, dw, db, dgamma, dbeta


def _setup_context(ctx, inputs, output):
    x, weight, bias, gamma, beta, num_groups, eps, lo, hi = inputs[:9]
    ctx.save_for_backward(x, weight, bias, gamma, beta)
    ctx.lgh_scalars = (num_groups, eps, lo, hi)


def _backward(ctx, dy):
    x, weight, bias, gamma, beta = ctx.saved_tensors
    num_groups, eps, lo, hi = ctx.lgh_scalars
    grads = _grads(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, dy,
                   ctx.needs_input_grad[:5])
    return grads + (None,) * 6


# ---------------------------------------------------------------------------------------
# Registration.

if HAS_CUSTOM_OP:

    @torch.library.custom_op("lgh::linear_groupnorm_hardtanh", mutates_args=())
    def _op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gamma: torch.Tensor,
            beta: torch.Tensor, num_groups: int, eps: float, lo: float, hi: float, math: str,
            engine: str) -> torch.Tensor:
        return _forward(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine)

    @_op.register_fake
    def _op_fake(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine):
        _, n = _check_inputs(x, weight, bias, gamma, beta)
        return x.new_empty(tuple(x.shape[:-1]) + (n,))

    _op.register_autograd(_backward, setup_context=_setup_context)

else:

    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine):
            y = _forward(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine)
            _setup_context(ctx, (x, weight, bias, gamma, beta, num_groups, eps, lo, hi), y)
            return y

        @staticmethod
        def backward(ctx, dy):
            return _backward(ctx, dy)

    _op = _Function.apply


# ---------------------------------------------------------------------------------------
# Public functions.


def linear_groupnorm_hardtanh(x, weight, bias, gamma, beta, num_groups, eps=1e-5, lo=-1.0,
                              hi=1.0, math=None, engine=None):
    """hardtanh(group_norm(x @ weight.T + bias, num_groups, gamma, beta, eps), lo, hi).

    x: [*, K]; weight: [N, K]; bias, gamma, beta: [N]; all float32, bfloat16 or float16
    (one dtype), all on one device (CPU or CUDA). Returns [*, N] in x's dtype. Each row of
    x is one sample: its N outputs form num_groups groups of N / num_groups channels.

    math (float32 only): None or "auto" follows torch.get_float32_matmul_precision()
    ("highest" -> "3xtf32", "high"/"medium" -> "tf32"); or "fp32", "tf32", "3xtf32".
    engine: None/"auto" (the LGH_ENGINE environment variable, read when the device's
    context is created, can force one), or "cpu", "cublaslt", "sm80", "sm90".

    Raises TypeError for wrong types/dtypes, ValueError for wrong shapes, devices or
    arguments the library refuses (lgh.LghValueError), RuntimeError when the library
    cannot run the call (lgh.LghRuntimeError); both carry the library's message.
    """
    _check_inputs(x, weight, bias, gamma, beta)
    return _op(x, weight, bias, gamma, beta, _groups(num_groups), float(eps), float(lo), float(hi),
               _math_name(math), _engine_name(engine))


def linear_groupnorm_hardtanh_with_stats(x, weight, bias, gamma, beta, num_groups, eps=1e-5,
                                         lo=-1.0, hi=1.0, math=None, engine=None):
    """As linear_groupnorm_hardtanh, and also returns the per-(row, group) mean and
    1/sqrt(var + eps) it normalised with: (y [*, N], mean [M, G], rstd [M, G]) with
    M the number of rows of x and float32 statistics. Eager only, and not recorded by
    autograd (the outputs do not require grad)."""
    with torch.no_grad():
        return _forward(x, weight, bias, gamma, beta, _groups(num_groups), float(eps), float(lo),
                        float(hi), _math_name(math), _engine_name(engine), want_stats=True)


def engine_for(x, weight, bias, gamma, beta, num_groups, eps=1e-5, lo=-1.0, hi=1.0, math=None,
               engine=None):
    """Name of the engine ("cpu", "cublaslt", "sm80", "sm90") that
    linear_groupnorm_hardtanh would run for these arguments now (lgh_plan: arguments
    checked as for the call, no memory read, nothing run)."""
    k, n = _check_inputs(x, weight, bias, gamma, beta)
    m = 1
    for d in x.shape[:-1]:
        m *= d
    x2, ldx = _matrix(x.reshape(m, k), k)
    w2, ldw = _matrix(weight, k)
    bias, gamma, beta = _vector(bias), _vector(gamma), _vector(beta)
    dev = x.device
    idx = _device_index(dev)
    with _DeviceGuard(dev):
        ctx = _lib.context(idx)
        a = _fill_args(x2, ldx, w2, ldw, bias, gamma, beta, max(m, 1), k, n, _groups(num_groups),
                       float(eps), float(lo), float(hi), _DTYPES[x.dtype],
                       _math_id(_math_name(math)), _engine_id(_engine_name(engine)))
        for f in ("x", "w", "bias", "gamma", "beta"):
            if not getattr(a, f):
                setattr(a, f, _PLACEHOLDER_ADDRESS)
        a.y, a.ldy = _PLACEHOLDER_ADDRESS, n
        out = ctypes.c_int(0)
        with ctx.lock:
            ctx.check(_lib.lib().lgh_plan(ctx.handle, ctypes.byref(a), ctypes.byref(out), None),
                      "lgh_plan")
    return _lib.engine_name(out.value)


def math_mode(math=None):
    """The lgh math mode a float32 call with this `math` argument runs now: "fp32",
    "tf32" or "3xtf32" (None follows torch.get_float32_matmul_precision())."""
    names = {v: k for k, v in _lib.MATH_BY_NAME.items()}
    return names[_math_id(_math_name(math))]
