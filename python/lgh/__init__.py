"""lgh for PyTorch: y = hardtanh(group_norm(x @ W.T + b)), fused, on CUDA and on the CPU.

    import torch, lgh
    model = lgh.ModelNew(8192, 8192, num_groups=16, hardtanh_min=-2.0, hardtanh_max=2.0).cuda()
    y = model(torch.rand(1024, 8192, device="cuda"))
    # or, functional (a torch.ops.lgh.linear_groupnorm_hardtanh custom operator):
    y = lgh.linear_groupnorm_hardtanh(x, w, b, gamma, beta, 16, eps=1e-5, lo=-2.0, hi=2.0)

Both train: the backward is lgh_backward too. By default the forward keeps the pre-norm
x @ W.T + b for it (as torch's GroupNorm does); save_prenorm=False (function argument or
ModelNew attribute) or LGH_SAVE_PRENORM=0 in the environment keeps only the per-group
statistics and recomputes it in the backward (see lgh.ops).

The C library liblgh.so is found through LGH_LIBRARY, next to this package (wheels), or
in <repository>/build (see _lib.py); it is loaded on first use.
"""

import torch

from . import _lib
from ._lib import LghError, LghRuntimeError, LghValueError
from .model import Model, ModelNew
from .ops import (HAS_CUSTOM_OP, MATH_MODES, engine_for, linear_groupnorm_hardtanh,
                  linear_groupnorm_hardtanh_backward, linear_groupnorm_hardtanh_with_stats,
                  math_for, math_mode)

__version__ = "0.1.0"

__all__ = [
    "HAS_CUSTOM_OP", "MATH_MODES", "LghError", "LghRuntimeError", "LghValueError", "Model",
    "ModelNew", "cpu_blas_name", "device_description", "engine_for", "engines_available",
    "kernel_info", "library_path", "linear_groupnorm_hardtanh",
    "linear_groupnorm_hardtanh_backward", "linear_groupnorm_hardtanh_with_stats", "math_for",
    "math_mode",
    "version",
]

_ENGINE_NAMES = ("cpu", "cublaslt", "sm80", "sm90")


def version():
    """Version of the loaded C library, "MAJOR.MINOR.PATCH"."""
    v = _lib.lib().lgh_version()
    return "%d.%d.%d" % (v // 10000, (v // 100) % 100, v % 100)


def library_path():
    """Absolute path of the liblgh.so in use (loads it if needed)."""
    return _lib.library_path()


def _context(device):
    device = torch.device(device) if not isinstance(device, torch.device) else device
    if device.type == "cpu":
        return _lib.context(_lib.DEVICE_CPU)
    if device.type != "cuda":
        raise ValueError("lgh: runs on CPU and CUDA devices, not %s" % device)
    idx = device.index if device.index is not None else torch.cuda.current_device()
    with torch.cuda.device(idx):
        return _lib.context(idx)


def engines_available(device="cpu"):
    """Names of the engines built in and able to run on `device` ("cpu", "cuda", "cuda:1",
    a torch.device or a CUDA ordinal)."""
    ctx = _context(device if not isinstance(device, int) else torch.device("cuda", device))
    L = _lib.lib()
    return [name for name in _ENGINE_NAMES
            if L.lgh_engine_available(ctx.handle, _lib.engine_from_name(name))]


def device_description(device="cpu"):
    """The library's description of the device (GPU name, SMs, memory; or CPU and BLAS)."""
    ctx = _context(device if not isinstance(device, int) else torch.device("cuda", device))
    return _lib._str(_lib.lib().lgh_device_description(ctx.handle))


def kernel_info(device="cuda"):
    """The compiled kernels of the device's engines: a list of dicts with name, engine,
    registers, shared_bytes, local_bytes (spills), threads_per_block, blocks_per_sm."""
    import ctypes

    ctx = _context(device if not isinstance(device, int) else torch.device("cuda", device))
    L = _lib.lib()
    count = ctypes.c_int(0)
    with ctx.lock:
        ctx.check(L.lgh_kernel_info(ctx.handle, None, 0, ctypes.byref(count)), "lgh_kernel_info")
        buf = (_lib.lgh_kernel_info_t * max(count.value, 1))()
        ctx.check(L.lgh_kernel_info(ctx.handle, buf, count.value, ctypes.byref(count)),
                  "lgh_kernel_info")
    fields = ("registers", "shared_bytes", "local_bytes", "threads_per_block", "blocks_per_sm")
    out = []
    for info in buf[:min(count.value, len(buf))]:
        d = {"name": _lib._str(info.name), "engine": _lib.engine_name(info.engine)}
        d.update((f, getattr(info, f)) for f in fields)
        out.append(d)
    return out


def cpu_blas_name():
    """The BLAS the CPU engine uses ("OpenBLAS ..." or the built-in blocked GEMM)."""
    return _lib._str(_lib.lib().lgh_cpu_blas_name())
