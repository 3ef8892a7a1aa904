"""The C tests' backward oracle (lgh_reference_backward, src/cpu/reference.c) against torch
autograd in float64: nn.Linear -> nn.GroupNorm -> the clamp, on the same inputs rounded to
each lgh dtype. Also lgh_reference_near_clamp against torch's z.

The oracle is compiled here into a small shared library with the C compiler ($CC, else
cc); the test is skipped when there is none. The clamp's backward is written out as
lgh.h states it (dz = dy unless z <= lo or z >= hi, so a NaN z passes the gradient), which
is torch's rule in its scalar CPU and CUDA kernels; torch's vectorised CPU kernel zeroes
the gradient at a NaN z, so torch's own F.hardtanh backward is compared only where z is
finite. The z the clamp's backward sees is written out as lgh forms it,
(h - mean) * rstd * gamma + beta (torch's CUDA GroupNorm on [M, N] input); torch's CPU
GroupNorm forms h * a + (beta - a * mean), a = rstd * gamma, which for gamma = +-Inf is NaN
where h and the mean share a sign. torch's GroupNorm backward does not depend on how z was
formed.
"""

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO


class Args(ctypes.Structure):
    _fields_ = [("m", ctypes.c_int64), ("k", ctypes.c_int64), ("n", ctypes.c_int64),
                ("groups", ctypes.c_int64), ("dtype", ctypes.c_int), ("math", ctypes.c_int),
                ("engine", ctypes.c_int), ("eps", ctypes.c_float), ("lo", ctypes.c_float),
                ("hi", ctypes.c_float), ("x", ctypes.c_void_p), ("ldx", ctypes.c_int64),
                ("w", ctypes.c_void_p), ("ldw", ctypes.c_int64), ("bias", ctypes.c_void_p),
                ("gamma", ctypes.c_void_p), ("beta", ctypes.c_void_p), ("y", ctypes.c_void_p),
                ("ldy", ctypes.c_int64), ("mean", ctypes.c_void_p), ("rstd", ctypes.c_void_p),
                ("h", ctypes.c_void_p), ("ldh", ctypes.c_int64)]


class BackwardArgs(ctypes.Structure):
    _fields_ = [("fwd", Args), ("dy", ctypes.c_void_p), ("lddy", ctypes.c_int64),
                ("mean", ctypes.c_void_p), ("rstd", ctypes.c_void_p), ("h", ctypes.c_void_p),
                ("ldh", ctypes.c_int64), ("dx", ctypes.c_void_p), ("lddx", ctypes.c_int64),
                ("dw", ctypes.c_void_p), ("lddw", ctypes.c_int64), ("dbias", ctypes.c_void_p),
                ("dgamma", ctypes.c_void_p), ("dbeta", ctypes.c_void_p)]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the reference")
    out = str(tmp_path_factory.mktemp("ref") / "libref.so")
    cmd = [cc, "-O2", "-std=c11", "-shared", "-fPIC", "-I", os.path.join(REPO, "include"),
           "-I", os.path.join(REPO, "src"), os.path.join(REPO, "src", "cpu", "reference.c"),
           "-o", out, "-lm"]
    subprocess.run(cmd, check=True)
    lib = ctypes.CDLL(out)
    p = ctypes.c_void_p
    lib.lgh_reference_backward.argtypes = [ctypes.POINTER(BackwardArgs), p, p, p, p, p]
    lib.lgh_reference_near_clamp.argtypes = [ctypes.POINTER(Args), ctypes.c_double, p,
                                             ctypes.POINTER(ctypes.c_int64)]
    return lib


# lgh_dtype_t: the storage numpy hands to C, and the float64 values it holds.
def _to_dtype(a, dt):
    if dt == 0:
        s = a.astype(np.float32)
        return s, s.astype(np.float64)
    if dt == 2:
        s = a.astype(np.float16)
        return s.view(np.uint16), s.astype(np.float64)
    t = torch.from_numpy(a).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16).copy(), t.to(torch.float64).numpy()


def _ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


GRADS = ("dx", "dW", "db", "dgamma", "dbeta")


def _run(lib, m, k, n, groups, dt, lo, hi, eps, seed, pad=0, gamma0=None, want=(1,) * 5):
    """The oracle and torch on one problem: (oracle outputs, torch grads, z, near, count)."""
    rng = np.random.default_rng(seed)
    ldx, ldw, lddy = k + pad, k + 2 * pad, n + pad
    xs, xv = _to_dtype(rng.uniform(0, 1, (m, ldx)), dt)
    ws, wv = _to_dtype(rng.uniform(-1, 1, (n, ldw)) / np.sqrt(k), dt)
    bs, bv = _to_dtype(rng.uniform(-0.5, 0.5, n), dt)
    g = rng.uniform(0.5, 1.5, n)
    if gamma0 is not None:
        g[0] = gamma0
    gs, gv = _to_dtype(g, dt)
    bes, bev = _to_dtype(rng.uniform(-0.5, 0.5, n), dt)
    dys, dyv = _to_dtype(rng.normal(size=(m, lddy)), dt)

    a = BackwardArgs()
    f = a.fwd
    f.m, f.k, f.n, f.groups, f.dtype = m, k, n, groups, dt
    f.eps, f.lo, f.hi = eps, lo, hi
    f.x, f.ldx, f.w, f.ldw = _ptr(xs), ldx, _ptr(ws), ldw
    f.bias, f.gamma, f.beta = _ptr(bs), _ptr(gs), _ptr(bes)
    a.dy, a.lddy = _ptr(dys), lddy
    outs = [np.full((m, k), np.nan), np.full((n, k), np.nan)] + [np.full(n, np.nan) for _ in range(3)]
    assert lib.lgh_reference_backward(
        ctypes.byref(a), *[_ptr(o) if w else None for o, w in zip(outs, want)]) == 0

    lo32, hi32, eps32 = (float(np.float32(v)) for v in (lo, hi, eps))
    x = torch.tensor(xv[:, :k], requires_grad=True)
    w = torch.tensor(wv[:, :k], requires_grad=True)
    b = torch.tensor(bv, requires_grad=True)
    ga = torch.tensor(gv, requires_grad=True)
    be = torch.tensor(bev, requires_grad=True)
    h = F.linear(x, w, b)
    z = F.group_norm(h, groups, ga, be, eps32)
    dy = torch.tensor(dyv[:, :n])
    hg = h.detach().view(m, groups, n // groups)
    mean = hg.mean(dim=2, keepdim=True)
    rstd = (((hg - mean) ** 2).mean(dim=2, keepdim=True) + eps32).rsqrt()
    zd = ((hg - mean) * rstd).view(m, n) * ga.detach() + be.detach()
    dz = torch.where((zd <= lo32) | (zd >= hi32), torch.zeros_like(dy), dy)
    if not torch.isnan(zd).any():
        zz = zd.clone().requires_grad_()
        F.hardtanh(zz, lo32, hi32).backward(dy)
        assert torch.equal(zz.grad, dz)
    z.backward(dz)
    grads = [t.grad.numpy() for t in (x, w, b, ga, be)]

    near = np.zeros((m, n), np.uint8)
    count = ctypes.c_int64()
    assert lib.lgh_reference_near_clamp(ctypes.byref(f), 1e-3, _ptr(near), ctypes.byref(count)) == 0
    return outs, grads, zd.numpy(), near, count.value, dyv[:, :n], (lo32, hi32)


SHAPES = [(1, 8, 8, 1), (7, 100, 24, 3), (5, 16, 3, 3), (33, 40, 64, 4), (100, 256, 144, 3),
          (64, 300, 512, 1), (9, 7, 10, 5)]
CLAMPS = [(-2.0, 2.0), (-1.0, 0.75), (-0.5, 3.0)]


@pytest.mark.parametrize("dt", [0, 1, 2], ids=["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_oracle_matches_autograd(ref, dt, shape):
    seed = hash((dt,) + shape) & 0xffff
    for i, (lo, hi) in enumerate(CLAMPS):
        outs, grads, z, near, count, dy, (lo32, hi32) = _run(
            ref, *shape, dt, lo, hi, 1e-2 if i == 1 else 1e-5, seed + i, pad=3 * (i % 2))
        for name, o, g in zip(GRADS, outs, grads):
            # Relative to the larger of the gradient and dy: with groups of one channel
            # the gradients of x, W, b and γ are 0 in exact arithmetic, exactly 0 here
            # and ~1e-14 in torch.
            den = max(np.linalg.norm(g), np.linalg.norm(dy))
            assert np.linalg.norm(o - g) / den < 1e-12, (name, lo, hi)
        tol = 1e-3 * max(1.0, abs(lo32), abs(hi32))
        want = (np.abs(z - lo32) <= tol) | (np.abs(z - hi32) <= tol)
        assert np.array_equal(near.astype(bool), want) and count == want.sum()


@pytest.mark.parametrize("want", [(1, 0, 0, 0, 0), (0, 0, 0, 1, 1), (0, 1, 1, 0, 0), (0, 0, 1, 0, 0)])
def test_oracle_subsets(ref, want):
    """A NULL output is skipped (left untouched); the others are unchanged."""
    outs, grads, *_ = _run(ref, 7, 100, 24, 3, 0, -1.0, 0.75, 1e-5, 99, pad=2, want=want)
    for name, w, o, g in zip(GRADS, want, outs, grads):
        if not w:
            assert np.isnan(o).all(), name
        else:
            assert np.linalg.norm(o - g) / np.linalg.norm(g) < 1e-12, name


@pytest.mark.parametrize("gamma0", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
def test_oracle_nonfinite_gamma(ref, gamma0):
    """A non-finite γ: z as the forward computes it ((h − mean)·rstd·γ + β: ±Inf, clamped,
    for γ = ±Inf; NaN, passing the gradient, for γ = NaN). Non-finite gradients sit where
    torch's do; torch's GroupNorm backward folds its terms differently, so where one has
    ±Inf the other may have NaN."""
    outs, grads, *_ = _run(ref, 4, 16, 8, 2, 0, -2.0, 2.0, 1e-5, 7, gamma0=gamma0)
    for name, o, g in zip(GRADS, outs, grads):
        assert np.array_equal(np.isfinite(o), np.isfinite(g)), name
        fin = np.isfinite(g)
        assert np.allclose(o[fin], g[fin], rtol=1e-12, atol=1e-12), name
