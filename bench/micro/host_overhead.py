"""Host time per call of the Python layer, next to PyTorch's own: a tiny problem (the GPU
work is a few microseconds), calls back to back, so the wall time per call is what the
host spends. Run on the GPU machine:

    LGH_LIBRARY=build/liblgh.so PYTHONPATH=python python3 bench/micro/host_overhead.py

Prints microseconds per call for addmm, PyTorch's three modules, lgh's functional call,
ModelNew, and the bare C call (ctypes, arguments built once), then a profile of the
functional call's Python time.
"""
import cProfile
import ctypes
import pstats
import sys
import time

import torch

import lgh
from lgh import _lib, ops


def per_call_us(fn, n=3000):
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e6


def main():
    dev = torch.device("cuda")
    m, k, n, g = 1, 256, 256, 16
    dt = torch.bfloat16 if "--f32" not in sys.argv else torch.float32
    x = torch.randn(m, k, device=dev, dtype=dt)
    w = torch.randn(n, k, device=dev, dtype=dt)
    b, gam, bet = (torch.randn(n, device=dev, dtype=dt) for _ in range(3))
    model = torch.nn.Sequential(torch.nn.Linear(k, n), torch.nn.GroupNorm(g, n), torch.nn.Hardtanh()).to(dev, dt)
    new = lgh.ModelNew(k, n, g, -1.0, 1.0).to(dev, dt)
    a = ops._fill_args(x, k, w, k, b, gam, bet, m, k, n, g, 1e-5, -1.0, 1.0, ops._DTYPES[dt],
                       _lib.MATH_TF32, ops._engine_id("auto"))
    y = torch.empty(m, n, device=dev, dtype=dt)
    a.y, a.ldy = y.data_ptr(), n
    ctx = _lib.context(0)
    fwd = _lib.lib().lgh_forward
    stream = torch.cuda.current_stream().cuda_stream
    rows = []
    with torch.no_grad():
        rows.append(("torch addmm", per_call_us(lambda: torch.addmm(b, x, w.t()))))
        rows.append(("torch Linear+GroupNorm+Hardtanh", per_call_us(lambda: model(x))))
        rows.append(("lgh.linear_groupnorm_hardtanh", per_call_us(
            lambda: lgh.linear_groupnorm_hardtanh(x, w, b, gam, bet, g))))
        rows.append(("lgh.ModelNew", per_call_us(lambda: new(x))))
        rows.append(("C lgh_forward (ctypes, args built once)", per_call_us(
            lambda: fwd(ctx.handle, ctypes.byref(a), None, 0, stream))))
        plan = _lib.lib().lgh_plan
        ws, eng = ctypes.c_size_t(0), ctypes.c_int(0)
        rows.append(("C lgh_plan (checks, engine choice; no pointers, no launch)", per_call_us(
            lambda: plan(ctx.handle, ctypes.byref(a), ctypes.byref(eng), ctypes.byref(ws)))))
    print("%-44s %8s" % ("host time per call", "us"))
    for name, us in rows:
        print("%-44s %8.2f" % (name, us))
    with torch.no_grad():
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(2000):
            lgh.linear_groupnorm_hardtanh(x, w, b, gam, bet, g)
        pr.disable()
    torch.cuda.synchronize()
    pstats.Stats(pr).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    main()
