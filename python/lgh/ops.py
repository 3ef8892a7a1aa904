"""The functional layer over liblgh for PyTorch tensors, and its registration as PyTorch
custom operators.

    y = hardtanh(group_norm(x @ weight.T + bias, num_groups, gamma, beta, eps), lo, hi)

linear_groupnorm_hardtanh() is what users call. Forward and backward both run in liblgh
(lgh_forward, lgh_backward): the CPU engine for CPU tensors, the GPU engines on the
current CUDA device and stream.

With torch >= 2.4 (HAS_CUSTOM_OP) three torch.library custom operators carry it, each with
a fake (meta) implementation, so torch.compile(fullgraph=True) traces forward and backward
without graph breaks and CUDA graphs capture them:

  lgh::linear_groupnorm_hardtanh(x, weight, bias, gamma, beta, num_groups, eps, lo, hi,
      math, engine) -> y
      inference; used when no gradient is wanted. Differentiable too (its backward
      recomputes the statistics with one more forward), for callers of torch.ops.
  lgh::linear_groupnorm_hardtanh_train(..., save_prenorm) -> (y, mean, rstd, h)
      used when autograd records the call: also returns the per-(row, group) mean and
      rstd [M, G] float32 and, if save_prenorm, the pre-norm h = x @ weight.T + bias
      [M, N] in the data's dtype (else an empty tensor); its autograd formula saves them.
  lgh::linear_groupnorm_hardtanh_backward(dy, x, weight, bias, gamma, beta, mean, rstd,
      h, num_groups, eps, lo, hi, math, engine, needs) -> (dx, dw, db, dgamma, dbeta)
      lgh_backward; computes only the gradients `needs` asks for (the others come back
      as empty tensors).

On older torch the training path is a torch.autograd.Function that calls the same two C
entry points.

What the backward keeps (save_prenorm): by default the forward saves h, so the backward
skips recomputing x @ weight.T + b (one GEMM, as much as the forward's) at the price of
M*N elements kept per call between forward and backward - what torch's own
Linear + GroupNorm keep. save_prenorm=False (the function's argument, ModelNew's
save_prenorm attribute, or LGH_SAVE_PRENORM=0 in the environment when lgh is imported,
which sets the default SAVE_PRENORM) keeps only mean and rstd (M*G floats) and recomputes
h in the backward. Both give the same gradients up to rounding.
"""

import ctypes
import operator
import os
import threading
from typing import List, Optional, Tuple

import torch

from . import _lib

_DTYPES = {
    torch.float32: _lib.DTYPE_FLOAT32,
    torch.bfloat16: _lib.DTYPE_BFLOAT16,
    torch.float16: _lib.DTYPE_FLOAT16,
}

_SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

MATH_MODES = ("auto", "fp32", "tf32", "3xtf32", "accurate")

HAS_CUSTOM_OP = hasattr(torch, "library") and hasattr(torch.library, "custom_op") and hasattr(
    torch.library, "register_fake")

def _env_flag(name, default):
    v = os.environ.get(name, "").strip().lower()
    if v in ("0", "false", "no", "off"):
        return False
    if v in ("1", "true", "yes", "on"):
        return True
    return default


# The default of save_prenorm (see the module docstring): True unless LGH_SAVE_PRENORM=0
# when lgh is imported. Assign lgh.ops.SAVE_PRENORM to change it for later calls.
SAVE_PRENORM = _env_flag("LGH_SAVE_PRENORM", True)

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
    "highest" -> accurate (float32 accuracy, by fp32 or 3xtf32, whichever the device runs
    faster), "high" / "medium" -> tf32."""
    if math == "auto":
        highest = torch.get_float32_matmul_precision() == "highest"
        return _lib.MATH_ACCURATE if highest else _lib.MATH_TF32
    return _lib.MATH_BY_NAME[math]


def _math_name(math):
    """Validated math name ("auto" for None)."""
    if math is None:
        return "auto"
    if isinstance(math, str) and math.lower() in MATH_MODES:
        return math.lower()
    raise ValueError("lgh: math must be None, 'auto', 'fp32', 'tf32', '3xtf32' or 'accurate', "
                     "got %r" % (math,))


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
    for the CPU and when the device is already current (the common case: the switch costs
    microseconds of host time per call)."""

    def __init__(self, device):
        self.guard = None
        if device.type == "cuda" and device.index is not None and device.index != _current_device():
            self.guard = torch.cuda.device(device)

    def __enter__(self):
        if self.guard is not None:
            self.guard.__enter__()

    def __exit__(self, *exc):
        if self.guard is not None:
            return self.guard.__exit__(*exc)
        return False


_current_device = getattr(torch._C, "_cuda_getDevice", None) or torch.cuda.current_device
# The raw cudaStream_t of the current stream without building a torch.cuda.Stream object
# (what torch's own generated kernels call); torch.cuda.current_stream() where it is absent.
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _current_stream(idx):
    if _raw_stream is not None:
        return _raw_stream(idx)
    return torch.cuda.current_stream(idx).cuda_stream


def _rows(x):
    m = 1
    for d in x.shape[:-1]:
        m *= d
    return m


def _forward(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine,
             want_stats=False, want_h=None, checked=None):
    """Runs lgh_forward; returns y [*, N], or (y, mean, rstd) with the [M, G] float32
    statistics if want_stats; with want_h True or False (not None), (y, mean, rstd, h)
    with the pre-norm h [M, N] in the data's dtype if want_h, else h None. checked: (K, N)
    when the caller has run _check_inputs already."""
    k, n = checked if checked is not None else _check_inputs(x, weight, bias, gamma, beta)
    lead = tuple(x.shape[:-1])
    m = _rows(x)
    dev = x.device
    y = torch.empty(lead + (n,), dtype=x.dtype, device=dev)
    mean = rstd = h = None
    if want_stats or want_h is not None:
        g = max(num_groups, 0)
        mean = torch.empty((m, g), dtype=torch.float32, device=dev)
        rstd = torch.empty((m, g), dtype=torch.float32, device=dev)
    if want_h:
        h = torch.empty((m, n), dtype=x.dtype, device=dev)

    def result():
        if want_h is not None:
            return y, mean, rstd, h
        return (y, mean, rstd) if want_stats else y

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
            _plan_placeholder(ctx, a)
            return result()
        a.y, a.ldy = y.data_ptr(), n
        if mean is not None:
            a.mean, a.rstd = mean.data_ptr(), rstd.data_ptr()
        if h is not None:
            a.h, a.ldh = h.data_ptr(), n
        stream = _current_stream(idx) if dev.type == "cuda" else None
        with ctx.lock:
            s = _lib.lib().lgh_forward(ctx.handle, ctypes.byref(a), None, 0, stream)
            ctx.check(s, "lgh_forward")
    return result()


def _plan_placeholder(ctx, a):
    """lgh_plan on a one-row stand-in of *a (placeholder addresses where a pointer is
    NULL): the library checks the arguments of a call that has nothing to compute."""
    a.m = 1
    for f in ("x", "w", "bias", "gamma", "beta"):
        if not getattr(a, f):
            setattr(a, f, _PLACEHOLDER_ADDRESS)
    a.y, a.ldy = _PLACEHOLDER_ADDRESS, a.n
    a.mean = a.rstd = a.h = None
    with ctx.lock:
        ctx.check(_lib.lib().lgh_plan(ctx.handle, ctypes.byref(a), None, None), "lgh_plan")


# ---------------------------------------------------------------------------------------
# Backward: lgh_backward.


def _backward_impl(dy, x, weight, bias, gamma, beta, mean, rstd, h, num_groups, eps, lo, hi,
                   math, engine, needs, checked=None):
    """Runs lgh_backward: the gradients of y with respect to (x, weight, bias, gamma,
    beta), each None where `needs` (five booleans) does not ask for it. mean and rstd are
    the forward's [M, G] float32 statistics; h its pre-norm [M, N] (data dtype), or None
    (or empty) to have lgh recompute it. Gradients are contiguous, in the data's dtype;
    dx has x's shape. checked: (K, N) when the inputs were checked already (the forward
    saved them)."""
    k, n = checked if checked is not None else _check_inputs(x, weight, bias, gamma, beta)
    m = _rows(x)
    dev, dt = x.device, x.dtype
    need = tuple(bool(v) for v in needs)
    if len(need) != 5:
        raise ValueError("lgh: needs must give five flags (x, weight, bias, gamma, beta)")
    dx = torch.empty(x.shape, dtype=dt, device=dev) if need[0] else None
    dw = torch.empty((n, k), dtype=dt, device=dev) if need[1] else None
    db, dg, dbe = (torch.empty((n,), dtype=dt, device=dev) if f else None for f in need[2:])
    if not any(need):
        return dx, dw, db, dg, dbe
    if m == 0:
        # No rows: the parameter gradients are sums over nothing.
        for t in (dw, db, dg, dbe):
            if t is not None:
                t.zero_()
        return dx, dw, db, dg, dbe
    g = num_groups
    if tuple(mean.shape) != (m, g) or tuple(rstd.shape) != (m, g):
        raise ValueError("lgh: mean and rstd must be [M=%d, G=%d], got %s and %s" % (
            m, g, list(mean.shape), list(rstd.shape)))
    if mean.dtype != torch.float32 or rstd.dtype != torch.float32:
        raise TypeError("lgh: mean and rstd must be float32")
    if dy.dtype != dt:
        dy = dy.to(dt)
    if tuple(dy.shape) != tuple(x.shape[:-1]) + (n,):
        raise ValueError("lgh: dy must have y's shape %s, got %s" % (
            list(x.shape[:-1]) + [n], list(dy.shape)))
    for name, t in (("dy", dy), ("mean", mean), ("rstd", rstd)) + (
            (("h", h),) if h is not None else ()):
        if t.device != dev:
            raise ValueError("lgh: %s is on %s, not on x's device %s" % (name, t.device, dev))

    x2, ldx = _matrix(x.reshape(m, k), k)
    w2, ldw = _matrix(weight, k)
    bias, gamma, beta = _vector(bias), _vector(gamma), _vector(beta)
    dy2, lddy = _matrix(dy.reshape(m, n), n)
    mean, rstd = mean.contiguous(), rstd.contiguous()
    h2 = None
    if h is not None and h.numel() > 0:
        if h.dtype != dt or h.numel() != m * n:
            raise ValueError("lgh: the saved h must be [M=%d, N=%d] of dtype %s" % (m, n, dt))
        h2, ldh = _matrix(h.reshape(m, n), n)
    idx = _device_index(dev)

    with _DeviceGuard(dev):
        ctx = _lib.context(idx)
        L = _lib.lib()
        if not _lib.has_backward():
            raise _lib.LghRuntimeError(
                "lgh: the loaded %s has no lgh_backward (a library older than the training "
                "API); rebuild it" % _lib.library_path(), _lib.STATUS_NOT_SUPPORTED)
        b = _lib.lgh_backward_args_t()
        b.fwd = _fill_args(x2, ldx, w2, ldw, bias, gamma, beta, m, k, n, g, eps, lo, hi,
                           _DTYPES[dt], _math_id(math), _engine_id(engine))
        b.dy, b.lddy = dy2.data_ptr(), lddy
        b.mean, b.rstd = mean.data_ptr(), rstd.data_ptr()
        if h2 is not None:
            b.h, b.ldh = h2.data_ptr(), ldh
        if dx is not None:
            b.dx, b.lddx = dx.data_ptr(), k
        if dw is not None:
            b.dw, b.lddw = dw.data_ptr(), k
        if db is not None:
            b.dbias = db.data_ptr()
        if dg is not None:
            b.dgamma = dg.data_ptr()
        if dbe is not None:
            b.dbeta = dbe.data_ptr()
        stream = _current_stream(idx) if dev.type == "cuda" else None
        with ctx.lock:
            ctx.check(L.lgh_backward(ctx.handle, ctypes.byref(b), None, 0, stream),
                      "lgh_backward")
    return dx, dw, db, dg, dbe


def _zeros_for_missing_dy(dy, x, n):
    if dy is None:
        return torch.zeros(tuple(x.shape[:-1]) + (n,), dtype=x.dtype, device=x.device)
    return dy


# ---------------------------------------------------------------------------------------
# The eager training path: one torch.autograd.Function around the two C calls. Outside
# torch.compile it is used even where custom operators exist: each custom-op call goes
# through the dispatcher and a Python kernel, and at the reference problem's bf16 step
# (0.6 ms of GPU work) that host time left the GPU idle for a third of the step.


def _is_compiling():
    f = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    if f is None:
        dyn = getattr(torch, "_dynamo", None)
        f = getattr(dyn, "is_compiling", None) if dyn is not None else None
    return bool(f()) if f is not None else False


class _TrainFunction(torch.autograd.Function):
    """The eager training path (the only one on torch without torch.library.custom_op):
    lgh_forward saving mean / rstd (and h), then lgh_backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine,
                save):
        kn = _check_inputs(x, weight, bias, gamma, beta)
        y, mean, rstd, h = _forward(x, weight, bias, gamma, beta, num_groups, eps, lo, hi,
                                    math, engine, want_stats=True, want_h=bool(save), checked=kn)
        ctx.save_for_backward(x, weight, bias, gamma, beta, mean, rstd, h)
        ctx.lgh_scalars = (num_groups, eps, lo, hi, math, engine)
        ctx.lgh_checked = kn  # the saved tensors cannot change shape (autograd's version check)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias, gamma, beta, mean, rstd, h = ctx.saved_tensors
        num_groups, eps, lo, hi, math, engine = ctx.lgh_scalars
        dy = _zeros_for_missing_dy(dy, x, weight.shape[0])
        grads = _backward_impl(dy, x, weight, bias, gamma, beta, mean, rstd, h, num_groups,
                               eps, lo, hi, math, engine, ctx.needs_input_grad[:5],
                               checked=ctx.lgh_checked)
        return grads + (None,) * 7


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

    @torch.library.custom_op("lgh::linear_groupnorm_hardtanh_train", mutates_args=())
    def _train_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  gamma: torch.Tensor, beta: torch.Tensor, num_groups: int, eps: float,
                  lo: float, hi: float, math: str, engine: str, save_prenorm: bool
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        y, mean, rstd, h = _forward(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math,
                                    engine, want_stats=True, want_h=bool(save_prenorm))
        if h is None:
            h = x.new_empty((0,))
        return y, mean, rstd, h

    @_train_op.register_fake
    def _train_op_fake(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine,
                       save_prenorm):
        _, n = _check_inputs(x, weight, bias, gamma, beta)
        m = _rows(x)
        g = max(num_groups, 0)
        y = x.new_empty(tuple(x.shape[:-1]) + (n,))
        mean = x.new_empty((m, g), dtype=torch.float32)
        rstd = x.new_empty((m, g), dtype=torch.float32)
        h = x.new_empty((m, n)) if save_prenorm else x.new_empty((0,))
        return y, mean, rstd, h

    @torch.library.custom_op("lgh::linear_groupnorm_hardtanh_backward", mutates_args=())
    def _backward_op(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                     mean: torch.Tensor, rstd: torch.Tensor, h: Optional[torch.Tensor],
                     num_groups: int, eps: float, lo: float, hi: float, math: str, engine: str,
                     needs: List[bool]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 torch.Tensor, torch.Tensor]:
        grads = _backward_impl(dy, x, weight, bias, gamma, beta, mean, rstd, h, num_groups, eps,
                               lo, hi, math, engine, needs)
        return tuple(t if t is not None else x.new_empty((0,)) for t in grads)

    @_backward_op.register_fake
    def _backward_op_fake(dy, x, weight, bias, gamma, beta, mean, rstd, h, num_groups, eps, lo,
                          hi, math, engine, needs):
        k, n = _check_inputs(x, weight, bias, gamma, beta)
        shapes = (tuple(x.shape), (n, k), (n,), (n,), (n,))
        return tuple(x.new_empty(s if f else (0,)) for s, f in zip(shapes, needs))

    def _grads_or_none(grads, needs):
        return tuple(t if f else None for t, f in zip(grads, needs))

    def _setup_context_train(ctx, inputs, output):
        x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine, save = inputs
        _, mean, rstd, h = output
        ctx.save_for_backward(x, weight, bias, gamma, beta, mean, rstd, h if save else None)
        ctx.lgh_scalars = (num_groups, eps, lo, hi, math, engine)

    def _backward_train(ctx, dy, dmean, drstd, dh):
        x, weight, bias, gamma, beta, mean, rstd, h = ctx.saved_tensors
        num_groups, eps, lo, hi, math, engine = ctx.lgh_scalars
        needs = [bool(f) for f in ctx.needs_input_grad[:5]]
        if not any(needs):
            return (None,) * 12
        dy = _zeros_for_missing_dy(dy, x, weight.shape[0])
        grads = torch.ops.lgh.linear_groupnorm_hardtanh_backward(
            dy, x, weight, bias, gamma, beta, mean, rstd, h, num_groups, eps, lo, hi, math,
            engine, needs)
        return _grads_or_none(grads, needs) + (None,) * 7

    _train_op.register_autograd(_backward_train, setup_context=_setup_context_train)

    def _setup_context(ctx, inputs, output):
        x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine = inputs
        ctx.save_for_backward(x, weight, bias, gamma, beta)
        ctx.lgh_scalars = (num_groups, eps, lo, hi, math, engine)

    def _backward(ctx, dy):
        # The inference op saved no statistics: one more forward gets them (h is then
        # recomputed by lgh_backward).
        x, weight, bias, gamma, beta = ctx.saved_tensors
        num_groups, eps, lo, hi, math, engine = ctx.lgh_scalars
        needs = [bool(f) for f in ctx.needs_input_grad[:5]]
        if not any(needs):
            return (None,) * 11
        _, mean, rstd, _ = torch.ops.lgh.linear_groupnorm_hardtanh_train(
            x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine, False)
        grads = torch.ops.lgh.linear_groupnorm_hardtanh_backward(
            dy, x, weight, bias, gamma, beta, mean, rstd, None, num_groups, eps, lo, hi, math,
            engine, needs)
        return _grads_or_none(grads, needs) + (None,) * 6

    _op.register_autograd(_backward, setup_context=_setup_context)

    def _train(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine, save):
        if not _is_compiling():
            return _TrainFunction.apply(x, weight, bias, gamma, beta, num_groups, eps, lo, hi,
                                        math, engine, save)
        return torch.ops.lgh.linear_groupnorm_hardtanh_train(
            x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine, save)[0]

    def _infer(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine):
        if not _is_compiling():
            return _forward(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine)
        return _op(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine)

else:

    def _op(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine):
        if torch.is_grad_enabled() and any(
                t.requires_grad for t in (x, weight, bias, gamma, beta)):
            return _TrainFunction.apply(x, weight, bias, gamma, beta, num_groups, eps, lo, hi,
                                        math, engine, False)
        return _forward(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine)

    _train = _TrainFunction.apply
    _infer = _op


# ---------------------------------------------------------------------------------------
# Public functions.


def linear_groupnorm_hardtanh(x, weight, bias, gamma, beta, num_groups, eps=1e-5, lo=-1.0,
                              hi=1.0, math=None, engine=None, save_prenorm=None):
    """hardtanh(group_norm(x @ weight.T + bias, num_groups, gamma, beta, eps), lo, hi).

    x: [*, K]; weight: [N, K]; bias, gamma, beta: [N]; all float32, bfloat16 or float16
    (one dtype), all on one device (CPU or CUDA). Returns [*, N] in x's dtype. Each row of
    x is one sample: its N outputs form num_groups groups of N / num_groups channels.

    math (float32 only): None or "auto" follows torch.get_float32_matmul_precision()
    ("highest" -> "accurate", "high"/"medium" -> "tf32"); or "fp32", "tf32", "3xtf32",
    "accurate". "accurate" asks for float32 accuracy and runs fp32 or 3xtf32, whichever is
    faster on the device (or was measured faster by lgh tune); math_for() says which.
    The backward's two products use the same mode.
    engine: None/"auto" (the LGH_ENGINE environment variable, read when the device's
    context is created, can force one), or "cpu", "cublaslt", "sm80", "sm90"; a forced
    engine runs the backward too.

    Differentiable with respect to every tensor argument: when autograd records the call
    (grad mode on and an input requiring grad), the forward also saves the statistics
    and the backward is lgh_backward. save_prenorm: whether the forward also keeps the
    pre-norm x @ weight.T + bias [M, N] for the backward (faster backward: no second
    GEMM) or only the statistics (less memory: the backward recomputes it). None follows
    lgh.ops.SAVE_PRENORM (True unless LGH_SAVE_PRENORM=0 when lgh was imported). Ignored
    when nothing needs gradients.

    Raises TypeError for wrong types/dtypes, ValueError for wrong shapes, devices or
    arguments the library refuses (lgh.LghValueError), RuntimeError when the library
    cannot run the call (lgh.LghRuntimeError); both carry the library's message.
    """
    if type(weight).__name__ == "DTensor":  # parameters sharded over a device mesh
        from . import parallel
        if parallel.is_dtensor(weight):
            return parallel.dtensor_forward(x, weight, bias, gamma, beta, _groups(num_groups), eps,
                                            lo, hi, math, engine)
    kn = _check_inputs(x, weight, bias, gamma, beta)
    args = (x, weight, bias, gamma, beta, _groups(num_groups), float(eps), float(lo), float(hi),
            _math_name(math), _engine_name(engine))
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or
                                    bias.requires_grad or gamma.requires_grad or
                                    beta.requires_grad):
        save = SAVE_PRENORM if save_prenorm is None else bool(save_prenorm)
        return _train(*args, save)
    if not _is_compiling():  # eager inference: straight to the C call, inputs checked once
        return _forward(*args, checked=kn)
    return _infer(*args)


def linear_groupnorm_hardtanh_with_stats(x, weight, bias, gamma, beta, num_groups, eps=1e-5,
                                         lo=-1.0, hi=1.0, math=None, engine=None,
                                         return_prenorm=False):
    """As linear_groupnorm_hardtanh, and also returns the per-(row, group) mean and
    1/sqrt(var + eps) it normalised with: (y [*, N], mean [M, G], rstd [M, G]) with
    M the number of rows of x and float32 statistics; with return_prenorm, also the
    pre-norm h = x @ weight.T + bias [M, N] in the data's dtype: (y, mean, rstd, h).
    These are what linear_groupnorm_hardtanh_backward takes. Eager only, and not
    recorded by autograd (the outputs do not require grad)."""
    with torch.no_grad():
        return _forward(x, weight, bias, gamma, beta, _groups(num_groups), float(eps), float(lo),
                        float(hi), _math_name(math), _engine_name(engine), want_stats=True,
                        want_h=True if return_prenorm else None)


def linear_groupnorm_hardtanh_backward(dy, x, weight, bias, gamma, beta, num_groups, mean, rstd,
                                       h=None, eps=1e-5, lo=-1.0, hi=1.0, math=None,
                                       engine=None, needs=(True, True, True, True, True)):
    """The gradients (dx, dweight, dbias, dgamma, dbeta) of linear_groupnorm_hardtanh
    for the output gradient dy [*, N], computed by lgh_backward from what the forward
    saved (see linear_groupnorm_hardtanh_with_stats): mean, rstd [M, G] float32 and
    optionally the pre-norm h [M, N] (None: lgh recomputes it). needs: five flags, one
    per gradient; a gradient not asked for is None (and not computed). The arguments
    after num_groups other than mean / rstd / h must be the forward's. Eager only, not
    recorded by autograd."""
    _check_inputs(x, weight, bias, gamma, beta)
    with torch.no_grad():
        return _backward_impl(dy, x, weight, bias, gamma, beta, mean, rstd, h,
                              _groups(num_groups), float(eps), float(lo), float(hi),
                              _math_name(math), _engine_name(engine), tuple(needs))


def engine_for(x, weight, bias, gamma, beta, num_groups, eps=1e-5, lo=-1.0, hi=1.0, math=None,
               engine=None):
    """Name of the engine ("cpu", "cublaslt", "sm80", "sm90") that
    linear_groupnorm_hardtanh would run for these arguments now (lgh_plan: arguments
    checked as for the call, no memory read, nothing run)."""
    return _plan(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine, False)


def math_for(x, weight, bias, gamma, beta, num_groups, eps=1e-5, lo=-1.0, hi=1.0, math=None,
             engine=None):
    """The math mode ("fp32", "tf32" or "3xtf32"; None for 16-bit data, which ignores it)
    that linear_groupnorm_hardtanh would run for these arguments now, "accurate" and
    "auto" resolved on the device (lgh_plan_math; checked as engine_for)."""
    return _plan(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine, True)


def _plan(x, weight, bias, gamma, beta, num_groups, eps, lo, hi, math, engine, want_math):
    """engine_for (want_math False) and math_for."""
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
            if want_math:
                ctx.check(_lib.lib().lgh_plan_math(ctx.handle, ctypes.byref(a),
                                                    ctypes.byref(out)), "lgh_plan_math")
            else:
                ctx.check(_lib.lib().lgh_plan(ctx.handle, ctypes.byref(a), ctypes.byref(out),
                                              None), "lgh_plan")
    if not want_math:
        return _lib.engine_name(out.value)
    names = {v: k for k, v in _lib.MATH_BY_NAME.items()}
    return names.get(out.value)


def math_mode(math=None):
    """The lgh math mode a float32 call with this `math` argument asks for now: "fp32",
    "tf32", "3xtf32" or "accurate" (None follows torch.get_float32_matmul_precision();
    math_for() says which concrete mode "accurate" runs on a device)."""
    names = {v: k for k, v in _lib.MATH_BY_NAME.items()}
    return names[_math_id(_math_name(math))]
