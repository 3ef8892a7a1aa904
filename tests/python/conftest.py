"""Shared pieces of the Python tests: import of lgh from the repository when it is not
installed, the float64 reference (torch.nn.functional in double precision), the relative
error, random problems, and a fixture that restores PyTorch's float32 matmul precision.

Run: LGH_LIBRARY=$PWD/build/liblgh.so PYTHONPATH=python python -m pytest -q tests/python
"""

import os
import sys

import pytest
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import lgh  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:
    sys.path.insert(0, os.path.join(REPO, "python"))
    import lgh  # noqa: F401

# docs/PRECISION.md's bounds on ||y - ref|| / ||ref|| against the double-precision reference.
BOUND = {"fp32": 1e-5, "3xtf32": 1e-5, "accurate": 1e-5, "tf32": 1e-3, torch.bfloat16: 1e-2,
         torch.float16: 1e-2}

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def bound(dtype, math):
    """The relative-error bound for a dtype and (float32) math mode."""
    return BOUND[math] if dtype == torch.float32 else BOUND[dtype]


def reference(x, w, b, g, be, groups, eps, lo, hi):
    """torch.nn's layer in float64 on x [*, K]: [*, N], each row normalised on its own."""
    k, n = w.shape[1], w.shape[0]
    h = F.linear(x.double().reshape(-1, k), w.double(), b.double())
    y = F.hardtanh(F.group_norm(h, groups, g.double(), be.double(), eps), lo, hi)
    return y.reshape(tuple(x.shape[:-1]) + (n,))


def rel_err(y, ref):
    """||y - ref|| / ||ref|| (Frobenius), in float64."""
    d = (y.double() - ref.double()).norm()
    r = ref.double().norm()
    return (d / r).item() if r > 0 else d.item()


def make_problem(m, k, n, groups, dtype=torch.float32, device="cpu", gen=None, x_shape=None):
    """Fresh random x (U[0,1) as KernelBench), nn.Linear-like W, b, and gamma / beta away
    from (1, 0) so that a mixed-up parameter shows. Never zeros. Drawn in float64 on the
    device (gen, if given, must be a generator of that device), then cast to dtype."""
    device = torch.device(device)
    if gen is None:
        gen = torch.Generator(device=device)
        gen.seed()
    bound_w = 1.0 / k ** 0.5

    def rand(*shape):
        return torch.rand(shape, generator=gen, dtype=torch.float64, device=device)

    x = rand(*(x_shape or (m, k)))
    w = (rand(n, k) * 2 - 1) * bound_w
    b = (rand(n) * 2 - 1) * bound_w
    g = 0.5 + rand(n)
    be = rand(n) - 0.5
    return [t.to(dtype) for t in (x, w, b, g, be)]


@pytest.fixture
def matmul_precision():
    """Restores torch's float32 matmul precision after the test."""
    saved = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(saved)
