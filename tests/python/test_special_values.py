"""Special values (NaN, +Inf, -Inf) against PyTorch's own modules: lgh's output must have
the NaN pattern of nn.Linear -> nn.GroupNorm -> nn.Hardtanh, and the same finite values.

One special value is planted per call, at x (first, middle and last row x first and last
k), W (k = 0), b, gamma and beta (first and last channel of the first and last group).
Expected (docs/PRECISION.md, "Special values"): a special x[r, k] makes row r NaN; a
special W[n, k] or b[n] makes n's group NaN in every row; gamma[n] or beta[n] NaN makes
channel n NaN; beta[n] = +-Inf gives hi / lo; gamma[n] = +-Inf gives hi or lo per element,
from the sign of (h - mean) * gamma (h = x.W^T + b; NaN only where h equals the mean).

lgh computes (h - mean) * (rstd * gamma) + beta for every gamma, which is what torch's CUDA
GroupNorm computes for [M, N] input ((x - mean) * rstd * gamma + beta). torch's CPU
GroupNorm computes h * a + (beta - a * mean), a = rstd * gamma, instead: the same to
rounding for a finite gamma, but for gamma = +-Inf NaN (Inf - Inf) where h and the mean
share a sign. So:

CPU: float32 on the CPU engine against torch's CPU modules in float32, except gamma =
+-Inf, compared with torch's CUDA formula emulated on the CPU in float64
((h - mean) * rstd * gamma + beta, then hardtanh). CUDA (skipped without a device or a CUDA
build of liblgh.so): each engine in ("cublaslt", "sm80", "sm90"), float32 in fp32 / tf32 /
3xtf32 and bfloat16 / float16, against torch's CUDA modules in float32 on the same
(rounded) inputs, every case, gamma = +-Inf included; an engine that declines a shape is a
skip. NaN masks must be equal; where torch gives +-Inf lgh gives the same; the finite
elements agree within a relative Frobenius error of 1e-5 (fp32, 3xtf32), 1e-3 (tf32; or
1.5 times the error tf32-rounded operands cause, for badly conditioned inputs) and 1e-2
(16-bit).

One allowance, as tests/test_special.c: with gamma = +-Inf the result follows the sign of
h - mean, so where |h - mean| lies within the rounding of h and of the mean (tf32 or
float32 accumulation, bounded from sum |x.w| + |b|; for the 16-bit dtypes also h rounded
to the dtype) lgh may see the other sign, or h equal to the mean, than the reference:
such elements may be NaN, lo or hi. Every other element of that channel must be exactly
the reference's lo / hi (or +-Inf with an infinite clamp).
"""

import os

import pytest
import torch

import lgh

INF = float("inf")
NAN = float("nan")
VALUES = {"nan": NAN, "+inf": INF, "-inf": -INF}
WHERE = ("x", "weight", "bias", "gamma", "beta")
EPS = 1e-5

# (M, K, N, groups, lo, hi)
SHAPES = [
    (9, 16, 48, 3, -2.0, 2.0),
    (70, 40, 128, 4, -1.0, 0.75),
    (33, 24, 1024, 1, -2.0, 2.0),    # a group of 1024 channels (sm90: a cluster)
    (5, 8, 2048, 1, -0.5, 3.0),      # a group of 2048 (sm90: tile after tile)
    (9, 16, 48, 3, -INF, INF),       # infinite clamp: the output itself can be +-Inf
]

# Relative Frobenius bound of the finite elements, the product's rounding relative to
# sum |x.w| + |b| (for the gamma = +-Inf allowance), per mode, and the relative rounding of
# an h held in a 16-bit dtype (twice the half ulp).
TOL = {"fp32": 1e-5, "3xtf32": 1e-5, "tf32": 1e-3, torch.bfloat16: 1e-2, torch.float16: 1e-2}
PRODUCT_TOL = {"fp32": 1e-5, "3xtf32": 1e-5, "tf32": 4e-3, torch.bfloat16: 1e-4,
               torch.float16: 1e-4}
H_ROUNDING = {torch.float32: 0.0, torch.bfloat16: 1 / 128, torch.float16: 1 / 1024}


def shape_id(s):
    return "M%d-K%d-N%d-G%d-clamp%g,%g" % s


def positions(where, m, k, n, groups):
    """The planted positions of one input, as index tuples."""
    if where == "x":
        rows = sorted({0, m // 2, m - 1})
        return [(r, c) for r in rows for c in sorted({0, k - 1})]
    gs = n // groups
    chans = sorted({g * gs + j for g in (0, groups - 1) for j in (0, gs - 1)})
    return [(c, 0) for c in chans] if where == "weight" else [(c,) for c in chans]


def make_inputs(m, k, n, dtype, seed):
    """x in [0, 1), W and b as nn.Linear initialises them, gamma in [0.5, 1.5), beta in
    [-0.5, 0.5); drawn in float64 on the CPU, then rounded to dtype."""
    gen = torch.Generator().manual_seed(seed)
    bw = 1.0 / k ** 0.5

    def rand(*shape):
        return torch.rand(shape, generator=gen, dtype=torch.float64)

    x = rand(m, k)
    w = (rand(n, k) * 2 - 1) * bw
    b = (rand(n) * 2 - 1) * bw
    g = 0.5 + rand(n)
    be = rand(n) - 0.5
    return {name: t.to(dtype) for name, t in zip(WHERE, (x, w, b, g, be))}


def torch_modules(p, groups, lo, hi, device):
    """torch.nn's three modules in float32 on `device`, applied to p["x"] (as float32)."""
    k, n = p["x"].shape[1], p["weight"].shape[0]
    linear = torch.nn.Linear(k, n).to(device)
    norm = torch.nn.GroupNorm(groups, n, eps=EPS).to(device)
    act = torch.nn.Hardtanh(lo, hi)
    with torch.no_grad():
        linear.weight.copy_(p["weight"].float())
        linear.bias.copy_(p["bias"].float())
        norm.weight.copy_(p["gamma"].float())
        norm.bias.copy_(p["beta"].float())
        return act(norm(linear(p["x"].float().to(device)))).cpu()


def ambiguous(p, groups, where, pos, mode):
    """For gamma = +-Inf: the elements of its channel whose value depends on the sign of an
    h - mean within the rounding of h and of the mean (amb: NaN, lo or hi allowed), and the
    channel's other elements (exact: must equal the reference). Both all False otherwise."""
    m, n = p["x"].shape[0], p["weight"].shape[0]
    amb = torch.zeros(m, n, dtype=torch.bool)
    exact = torch.zeros(m, n, dtype=torch.bool)
    if where != "gamma" or not torch.isinf(p["gamma"][pos[0]]):
        return amb, exact
    x, w, b = (p[name].double().cpu() for name in ("x", "weight", "bias"))
    gs = n // groups
    c = pos[0]
    c0 = c // gs * gs
    h = x @ w[c0:c0 + gs].T + b[c0:c0 + gs]
    scale = x.abs() @ w[c0:c0 + gs].abs().T + b[c0:c0 + gs].abs()
    hc = h[:, c - c0]
    err = (PRODUCT_TOL[mode] * (scale[:, c - c0] + scale.mean(dim=1)) +
           H_ROUNDING[p["x"].dtype] * (hc.abs() + h.abs().mean(dim=1)))
    near = (hc - h.mean(dim=1)).abs() <= err
    amb[:, c] = near
    exact[:, c] = ~near
    return amb, exact


def tf32_floor(p, groups, lo, hi):
    """The error exact arithmetic makes on tf32-rounded operands (W truncated, x truncated
    or rounded to nearest), relative, over the finite elements; the larger of the two."""
    def tf32(t, nearest):
        bits = t.float().contiguous().view(torch.int32)
        finite = torch.isfinite(t.float())
        r = ((bits + 0x1000) if nearest else bits) & ~0x1fff
        return torch.where(finite, r.view(torch.float32), t.float())

    exact = torch_float64(p, groups, lo, hi)
    worst = 0.0
    for nearest in (False, True):
        q = dict(p, x=tf32(p["x"], nearest), weight=tf32(p["weight"], False))
        y = torch_float64(q, groups, lo, hi)
        ok = torch.isfinite(y) & torch.isfinite(exact)
        den = exact[ok].norm()
        if den > 0:
            worst = max(worst, ((y[ok] - exact[ok]).norm() / den).item())
    return worst


def torch_float64(p, groups, lo, hi):
    d = {name: t.double().cpu() for name, t in p.items()}
    h = torch.nn.functional.linear(d["x"], d["weight"], d["bias"])
    y = torch.nn.functional.group_norm(h, groups, d["gamma"], d["beta"], EPS)
    return torch.nn.functional.hardtanh(y, lo, hi)


def cuda_formula_float64(p, groups, lo, hi):
    """torch's CUDA GroupNorm for [M, N] input, (h - mean) * rstd * gamma + beta, then
    hardtanh, in float64 on the CPU: the reference for gamma = +-Inf on the CPU engine
    (torch's CPU GroupNorm gives NaN there where h and the mean share a sign)."""
    d = {name: t.double().cpu() for name, t in p.items()}
    h = torch.nn.functional.linear(d["x"], d["weight"], d["bias"])
    m, n = h.shape
    hg = h.view(m, groups, n // groups)
    mean = hg.mean(dim=2, keepdim=True)
    rstd = (((hg - mean) ** 2).mean(dim=2, keepdim=True) + EPS).rsqrt()
    y = ((hg - mean) * rstd).view(m, n) * d["gamma"] + d["beta"]
    return torch.nn.functional.hardtanh(y, lo, hi)


def compare(y, want, masks, lo, hi, tol, label, floor=None):
    """Asserts lgh's y (any dtype, CPU) against the reference want (float32 or float64) as
    the module says. masks: (amb, exact) from ambiguous(). floor: a callable giving the
    tf32 allowance, called only past tol."""
    amb, exact = masks
    y = y.float().cpu()
    assert y.shape == want.shape, label
    strict = ~amb
    y_nan, w_nan = torch.isnan(y), torch.isnan(want)
    flips = (y_nan != w_nan) & strict
    if flips.any():
        idx = flips.nonzero()[0].tolist()
        raise AssertionError("%s: %d elements NaN in one and not the other; first y%s: lgh %r, "
                             "torch %r" % (label, int(flips.sum()), idx, y[tuple(idx)].item(),
                                           want[tuple(idx)].item()))
    lo32, hi32 = torch.tensor(lo, dtype=y.dtype), torch.tensor(hi, dtype=y.dtype)
    amb_ok = torch.isnan(y) | (y == lo32) | (y == hi32)
    assert bool(amb_ok[amb].all()), "%s: a sign-ambiguous gamma=+-Inf element is neither NaN, " \
        "lo nor hi" % label
    if not bool((y[exact] == want[exact]).all()):
        idx = (exact & (y != want)).nonzero()[0].tolist()
        raise AssertionError("%s: a gamma=+-Inf element differs from the reference's lo / hi; "
                             "first y%s: lgh %r, reference %r" % (
                                 label, idx, y[tuple(idx)].item(), want[tuple(idx)].item()))
    w_inf = torch.isinf(want) & strict
    assert bool((y[w_inf] == want[w_inf]).all()), "%s: infinities differ" % label
    finite = torch.isfinite(want) & strict
    assert bool(torch.isfinite(y[finite]).all()), \
        "%s: lgh is infinite where torch is finite" % label
    den = want[finite].double().norm()
    err = ((y[finite].double() - want[finite].double()).norm() / den).item() if den > 0 else 0.0
    if err > tol and floor is not None:
        tol = max(tol, 1.5 * floor())
    assert err <= tol, "%s: finite elements differ from torch by %.3g (bound %.3g)" % (
        label, err, tol)


def planted(p, where, pos, value):
    q = {name: t.clone() for name, t in p.items()}
    q[where][pos] = value
    return q


# ---- CPU ---------------------------------------------------------------------------------

cpu_only = pytest.mark.skipif(
    os.environ.get("LGH_ENGINE", "auto").lower() not in ("", "auto", "cpu"),
    reason="LGH_ENGINE=%s forces a GPU engine on every context, the CPU's too" %
    os.environ.get("LGH_ENGINE"))


@cpu_only
@pytest.mark.parametrize("value", list(VALUES), ids=str)
@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_cpu_float32_matches_torch(shape, where, value):
    m, k, n, groups, lo, hi = shape
    base = make_inputs(m, k, n, torch.float32, seed=m * 7919 + n)
    for pos in positions(where, m, k, n, groups):
        p = planted(base, where, pos, VALUES[value])
        y = lgh.linear_groupnorm_hardtanh(p["x"], p["weight"], p["bias"], p["gamma"], p["beta"],
                                          groups, EPS, lo, hi, math="fp32", engine="cpu")
        if where == "gamma" and value != "nan":
            want = cuda_formula_float64(p, groups, lo, hi)
        else:
            want = torch_modules(p, groups, lo, hi, "cpu")
        label = "cpu float32 %s%s=%s" % (where, list(pos), value)
        compare(y, want, ambiguous(p, groups, where, pos, "fp32"), lo, hi, TOL["fp32"], label)


def test_cpu_expected_patterns():
    """The rules themselves, on torch's CPU modules and on lgh: one row, one group, one
    channel, hi / lo; and gamma = +-Inf on lgh and on the CUDA formula in float64."""
    m, k, n, groups, lo, hi = 9, 16, 48, 3, -2.0, 2.0
    base = make_inputs(m, k, n, torch.float32, seed=1)

    def both(where, pos, value):
        p = planted(base, where, pos, value)
        y = lgh.linear_groupnorm_hardtanh(p["x"], p["weight"], p["bias"], p["gamma"], p["beta"],
                                          groups, EPS, lo, hi, math="fp32", engine="cpu")
        return y, torch_modules(p, groups, lo, hi, "cpu")

    for y in both("x", (4, 3), INF):
        assert torch.isnan(y[4]).all() and not torch.isnan(y[torch.arange(m) != 4]).any()
    for y in both("weight", (20, 0), NAN):  # channel 20 is in group 1 (channels 16..31)
        nan_cols = torch.isnan(y).all(dim=0)
        assert nan_cols[16:32].all() and not nan_cols[:16].any() and not nan_cols[32:].any()
        assert not torch.isnan(y[:, :16]).any()
    for y in both("gamma", (5,), NAN):
        assert torch.isnan(y[:, 5]).all() and torch.isnan(y).sum() == m
    for y in both("beta", (7,), INF):
        assert (y[:, 7] == hi).all() and torch.isfinite(y).all()
    for y in both("beta", (7,), -INF):
        assert (y[:, 7] == lo).all()
    # gamma[5] = +-Inf: hi where (h - mean) * gamma > 0, lo where < 0, in every row (no
    # element of these inputs has h within rounding of its group's mean).
    h = torch.nn.functional.linear(base["x"].double(), base["weight"].double(),
                                   base["bias"].double())
    d = h[:, 5] - h[:, :16].mean(dim=1)
    assert bool((d.abs() > 1e-3).all())
    for value in (INF, -INF):
        p = planted(base, "gamma", (5,), value)
        y = lgh.linear_groupnorm_hardtanh(p["x"], p["weight"], p["bias"], p["gamma"], p["beta"],
                                          groups, EPS, lo, hi, math="fp32", engine="cpu")
        expected = torch.where((d > 0) == (value > 0), torch.tensor(hi), torch.tensor(lo))
        for out in (y, cuda_formula_float64(p, groups, lo, hi)):
            assert torch.equal(out[:, 5].double(), expected.double())
            assert bool(torch.isfinite(out).all())


# ---- CUDA ----------------------------------------------------------------------------------

GPU_ENGINES = ("cublaslt", "sm80", "sm90")
GPU_MODES = [  # (dtype, math)
    (torch.float32, "fp32"),
    (torch.float32, "tf32"),
    (torch.float32, "3xtf32"),
    (torch.bfloat16, None),
    (torch.float16, None),
]


@pytest.fixture(scope="module")
def cuda_engines():
    """The GPU engines liblgh.so can run here; skips without a device or a CUDA build."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch: GPU tier skipped")
    if os.environ.get("LGH_ENGINE", "").lower() == "cpu":
        pytest.skip("LGH_ENGINE=cpu forces the CPU engine on CUDA contexts too")
    try:
        engines = lgh.engines_available("cuda")
    except lgh.LghRuntimeError as e:
        pytest.skip("liblgh.so cannot run on CUDA here: %s" % e)
    if not engines:
        pytest.skip("liblgh.so has no GPU engine for this device")
    return engines


@pytest.fixture
def full_fp32_torch():
    """torch's CUDA float32 reference in full float32 (no tf32 in its matmul); lgh's math
    is always given explicitly, so this does not change what lgh computes."""
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(saved)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("mode", GPU_MODES, ids=lambda m: "%s-%s" % (str(m[0])[6:], m[1]))
@pytest.mark.parametrize("engine", GPU_ENGINES)
def test_cuda_matches_torch(engine, mode, shape, where, cuda_engines, full_fp32_torch):
    if engine not in cuda_engines:
        pytest.skip("engine %s is not available on %s" % (engine, lgh.device_description("cuda")))
    dtype, math = mode
    m, k, n, groups, lo, hi = shape
    key = math if dtype == torch.float32 else dtype
    base = make_inputs(m, k, n, dtype, seed=m * 7919 + n + 31 * GPU_MODES.index(mode))
    for value in VALUES:
        for pos in positions(where, m, k, n, groups):
            p = planted(base, where, pos, VALUES[value])
            pd = {name: t.cuda() for name, t in p.items()}
            try:
                y = lgh.linear_groupnorm_hardtanh(pd["x"], pd["weight"], pd["bias"], pd["gamma"],
                                                  pd["beta"], groups, EPS, lo, hi, math=math,
                                                  engine=engine)
            except lgh.LghRuntimeError as e:
                if e.status_name in ("LGH_STATUS_NOT_SUPPORTED", "LGH_STATUS_ENGINE_UNAVAILABLE"):
                    pytest.skip("engine %s declines: %s" % (engine, e))
                raise
            torch.cuda.synchronize()
            # Every case, gamma = +-Inf included: torch's CUDA GroupNorm on [M, N] input
            # computes (x - mean) * rstd * gamma + beta, as lgh does.
            want = torch_modules(p, groups, lo, hi, "cuda")
            label = "%s %s %s %s%s=%s" % (engine, str(dtype)[6:], math, where, list(pos), value)
            floor = (lambda q=p: tf32_floor(q, groups, lo, hi)) if key == "tf32" else None
            compare(y, want, ambiguous(p, groups, where, pos, key), lo, hi, TOL[key], label,
                    floor)
