"""lgh on CPU tensors (the library's CPU engine) against torch.nn: every dtype, leading
shapes, non-contiguous inputs, the modules and their state_dicts, errors, the math-mode
switch, autograd, statistics, and calls from several threads."""

import os
import threading

import pytest
import torch
import torch.nn.functional as F

import lgh
from lgh import ops

from conftest import DTYPES, bound, make_problem, reference, rel_err

pytestmark = pytest.mark.skipif(
    os.environ.get("LGH_ENGINE", "auto").lower() not in ("", "auto", "cpu"),
    reason="LGH_ENGINE=%s forces a GPU engine on every context, the CPU's too" %
    os.environ.get("LGH_ENGINE"))

SHAPES = [  # (M, K, N, groups): odd sizes, group sizes 1 to 512
    (1, 8, 8, 1),
    (7, 100, 96, 8),
    (33, 64, 512, 1),
    (128, 257, 384, 48),
    (5, 1024, 1024, 1024),
]


def same(a, b, msg=None):
    """Equal up to rounding: two calls on the same data may take different BLAS paths
    (a single row is a matrix-vector product)."""
    tol = 1e-5 if a.dtype == torch.float32 else 1e-2
    torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=msg)


def run(x, w, b, g, be, groups, eps=1e-5, lo=-1.0, hi=1.0, **kw):
    return lgh.linear_groupnorm_hardtanh(x, w, b, g, be, groups, eps, lo, hi, **kw)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M%d-K%d-N%d-G%d" % s)
def test_matches_float64_reference(shape, dtype):
    m, k, n, groups = shape
    p = make_problem(m, k, n, groups, dtype)
    y = run(*p, groups, 1e-5, -2.0, 2.0)
    assert y.shape == (m, n) and y.dtype == dtype and y.is_contiguous()
    assert torch.isfinite(y).all()
    err = rel_err(y, reference(*p, groups, 1e-5, -2.0, 2.0))
    assert err <= bound(dtype, "fp32"), err


def test_float32_matches_torch_nn_tightly():
    m, k, n, groups = 64, 200, 96, 12
    model = lgh.Model(k, n, groups, -0.75, 0.75)
    with torch.no_grad():
        model.group_norm.weight.uniform_(0.5, 1.5)
        model.group_norm.bias.uniform_(-0.5, 0.5)
    x = torch.rand(m, k)
    new = lgh.ModelNew(k, n, groups, -0.75, 0.75)
    new.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(new(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_leading_shapes(dtype):
    k, n, groups = 48, 64, 4
    p = make_problem(0, k, n, groups, dtype, x_shape=(3, 5, k))
    x = p[0]
    y = run(*p, groups)
    assert y.shape == (3, 5, n)
    flat = run(x.reshape(15, k), *p[1:], groups)
    same(y.reshape(15, n), flat)
    assert rel_err(y, reference(*p, groups, 1e-5, -1.0, 1.0)) <= bound(dtype, "fp32")
    # x of shape [K]: one row, result [N]
    y1 = run(x[0, 0], *p[1:], groups)
    assert y1.shape == (n,)
    same(y1, y[0, 0])
    # four leading dimensions
    x4 = x.reshape(3, 1, 5, 1, k)
    assert run(x4, *p[1:], groups).shape == (3, 1, 5, 1, n)


def test_empty_batch():
    p = make_problem(0, 32, 16, 4, x_shape=(0, 32))
    y = run(*p, 4)
    assert y.shape == (0, 16)
    y = run(torch.rand(2, 0, 32), *p[1:], 4)
    assert y.shape == (2, 0, 16)
    with pytest.raises(ValueError, match="not a multiple of groups"):
        run(p[0], *p[1:], 3)  # still checked with no rows


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous_inputs(dtype):
    m, k, n, groups = 9, 40, 24, 3
    _, w, b, g, be = make_problem(m, k, n, groups, dtype)
    wide = torch.rand(m, k + 13, dtype=torch.float64).to(dtype)
    cases = {
        "sliced columns (row stride > K)": wide[:, 5:5 + k],
        "every other row": torch.rand(2 * m, k).to(dtype)[::2],
        "transposed": torch.rand(k, m).to(dtype).t(),
        "column stride 2": torch.rand(m, 2 * k).to(dtype)[:, ::2],
        "broadcast row (stride 0)": torch.rand(1, k).to(dtype).expand(m, k),
        "3-D, sliced": torch.rand(3, m, k + 7).to(dtype)[:, :, 7:],
        "3-D, permuted": torch.rand(m, 3, k).to(dtype).permute(1, 0, 2),
    }
    for what, x in cases.items():
        y = run(x, w, b, g, be, groups)
        ref = reference(x, w, b, g, be, groups, 1e-5, -1.0, 1.0)
        assert y.shape == ref.shape, what
        assert rel_err(y, ref) <= bound(dtype, "fp32"), what
        same(y, run(x.contiguous(), w, b, g, be, groups), msg=what)


def test_non_contiguous_parameters():
    m, k, n, groups = 6, 32, 40, 5
    x, w, b, g, be = make_problem(m, k, n, groups)
    w_wide = torch.zeros(n, k + 9)
    w_wide[:, 3:3 + k] = w
    w_sliced = w_wide[:, 3:3 + k]
    w_t = w.t().contiguous().t()  # [N, K] with column-major strides
    vec = lambda v: torch.stack([v, torch.zeros_like(v)], 1)[:, 0]  # stride 2
    ref = reference(x, w, b, g, be, groups, 1e-5, -1.0, 1.0)
    for ww in (w_sliced, w_t):
        assert rel_err(run(x, ww, b, g, be, groups), ref) <= 1e-5
    assert rel_err(run(x, w, vec(b), vec(g), vec(be), groups), ref) <= 1e-5


def test_clamp_and_eps_are_honoured():
    x, w, b, g, be = make_problem(16, 64, 32, 4)
    for eps, lo, hi in ((1e-5, -0.1, 0.3), (0.5, -2.0, 2.0), (1e-5, 0.0, 0.0),
                        (1e-5, float("-inf"), float("inf"))):
        y = run(x, w, b, g, be, 4, eps, lo, hi)
        assert rel_err(y, reference(x, w, b, g, be, 4, eps, lo, hi)) <= 1e-5, (eps, lo, hi)


# --- the modules -----------------------------------------------------------------------


def test_state_dict_round_trip():
    k, n, groups = 64, 48, 6
    model = lgh.Model(k, n, groups, -2.0, 2.0)
    new = lgh.ModelNew(k, n, groups, -2.0, 2.0)
    assert list(model.state_dict().keys()) == list(new.state_dict().keys()) == [
        "gemm.weight", "gemm.bias", "group_norm.weight", "group_norm.bias"]
    with torch.no_grad():
        model.group_norm.weight.uniform_(0.5, 1.5)
        model.group_norm.bias.uniform_(-0.5, 0.5)
    new.load_state_dict(model.state_dict())
    x = torch.rand(20, k)
    with torch.no_grad():
        torch.testing.assert_close(new(x), model(x), atol=1e-5, rtol=1e-5)
        # and back: a ModelNew checkpoint into a fresh Model
        back = lgh.Model(k, n, groups, -2.0, 2.0)
        back.load_state_dict(new.state_dict())
        torch.testing.assert_close(back(x), new(x), atol=1e-5, rtol=1e-5)


def test_module_attributes_are_honoured():
    k, n = 32, 48
    model, new = lgh.Model(k, n, 6, -1.0, 1.0), lgh.ModelNew(k, n, 6, -1.0, 1.0)
    new.load_state_dict(model.state_dict())
    x = torch.rand(10, k)
    for mod in (model, new):
        mod.group_norm.eps = 0.25
        mod.group_norm.num_groups = 4
        mod.hardtanh.min_val, mod.hardtanh.max_val = -0.5, 0.8
    with torch.no_grad():
        torch.testing.assert_close(new(x), model(x), atol=1e-5, rtol=1e-5)


def test_module_leading_shape_and_dtype():
    k, n, groups = 40, 32, 8
    new = lgh.ModelNew(k, n, groups, -2.0, 2.0)
    model = lgh.Model(k, n, groups, -2.0, 2.0)
    model.load_state_dict(new.state_dict())
    x = torch.rand(4, 6, k)
    with torch.no_grad():
        y = new(x)
        assert y.shape == (4, 6, n)
        # Model treats dim 1 as channels, so compare on the flattened rows.
        torch.testing.assert_close(y.reshape(24, n), model(x.reshape(24, k)), atol=1e-5, rtol=1e-5)
        yb = new.to(torch.bfloat16)(x.to(torch.bfloat16))
        assert yb.dtype == torch.bfloat16
        assert rel_err(yb, y) <= 1e-2


def test_engine_for_on_cpu():
    new = lgh.ModelNew(16, 16, 4, -1.0, 1.0)
    assert new.engine_for(torch.rand(3, 16)) == "cpu"
    assert lgh.engine_for(torch.rand(3, 16), *[p.detach() for p in (
        new.gemm.weight, new.gemm.bias, new.group_norm.weight, new.group_norm.bias)], 4) == "cpu"


# --- errors ----------------------------------------------------------------------------


def test_errors_are_python_exceptions_with_lgh_messages():
    x, w, b, g, be = make_problem(4, 16, 12, 4)
    with pytest.raises(TypeError, match="share x's dtype"):
        run(x, w.half(), b, g, be, 4)
    with pytest.raises(TypeError, match="float32, bfloat16 and float16"):
        run(x.double(), w.double(), b.double(), g.double(), be.double(), 4)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        run(x, w, None, g, be, 4)
    with pytest.raises(TypeError, match="num_groups must be an int"):
        run(x, w, b, g, be, 2.5)
    with pytest.raises(ValueError, match="K must match"):
        run(torch.rand(4, 17), w, b, g, be, 4)
    with pytest.raises(ValueError, match=r"bias must be \[N=12\]"):
        run(x, w, b[:6], g, be, 4)
    with pytest.raises(ValueError, match="math must be"):
        run(x, w, b, g, be, 4, math="fp64")
    with pytest.raises(ValueError, match="is not an engine"):
        run(x, w, b, g, be, 4, engine="fastest")
    # Refused by the C library: its status and message come through.
    cases = [
        (dict(groups=5), "LGH_STATUS_GROUPS_MISMATCH", "N=12 is not a multiple of groups=5"),
        (dict(groups=0), "LGH_STATUS_INVALID_SIZE", "groups=0"),
        (dict(eps=0.0), "LGH_STATUS_INVALID_EPS", "eps=0"),
        (dict(eps=float("nan")), "LGH_STATUS_INVALID_EPS", "eps=nan"),
        (dict(lo=1.0, hi=-1.0), "LGH_STATUS_INVALID_CLAMP", "lo=1 hi=-1"),
        (dict(lo=float("nan")), "LGH_STATUS_INVALID_CLAMP", "neither NaN"),
    ]
    for kw, status, text in cases:
        args = dict(groups=4, eps=1e-5, lo=-1.0, hi=1.0)
        args.update(kw)
        with pytest.raises(ValueError) as info:
            run(x, w, b, g, be, args["groups"], args["eps"], args["lo"], args["hi"])
        assert isinstance(info.value, lgh.LghValueError)
        assert info.value.status_name == status, str(info.value)
        assert text in str(info.value)
    # An engine that cannot run on the CPU is a RuntimeError, never a silent fallback.
    with pytest.raises(RuntimeError) as info:
        run(x, w, b, g, be, 4, engine="sm90")
    assert info.value.status_name in ("LGH_STATUS_ENGINE_UNAVAILABLE", "LGH_STATUS_NOT_SUPPORTED")
    assert "sm90" in str(info.value)


def test_model_new_errors():
    new = lgh.ModelNew(16, 12, 4, -1.0, 1.0)
    with pytest.raises(TypeError):
        new(torch.rand(3, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="K must match"):
        new(torch.rand(3, 15))
    new.group_norm.num_groups = 5
    with pytest.raises(ValueError, match="not a multiple"):
        new(torch.rand(3, 16))


# --- math mode -------------------------------------------------------------------------


def test_math_mode_follows_torch(matmul_precision, monkeypatch):
    seen = []
    fill = ops._fill_args

    def spy(*args):
        a = fill(*args)
        seen.append(a.math)
        return a

    monkeypatch.setattr(ops, "_fill_args", spy)
    x, w, b, g, be = make_problem(4, 16, 8, 2)
    for precision, expect in (("highest", "accurate"), ("high", "tf32"), ("medium", "tf32")):
        torch.set_float32_matmul_precision(precision)
        assert lgh.math_mode() == expect
        run(x, w, b, g, be, 2)
        assert seen[-1] == lgh._lib.MATH_BY_NAME[expect]
        for explicit in ("fp32", "tf32", "3xtf32", "accurate"):
            assert lgh.math_mode(explicit) == explicit
            run(x, w, b, g, be, 2, math=explicit.upper())
            assert seen[-1] == lgh._lib.MATH_BY_NAME[explicit]


def test_accurate_is_fp32_on_the_cpu(matmul_precision):
    """"accurate" (and torch's "highest", which asks for it) resolves to fp32 on the CPU:
    the same bits as math="fp32", forward and backward; math_for reports the mode."""
    p = make_problem(9, 40, 24, 4)
    torch.set_float32_matmul_precision("highest")
    assert lgh.math_for(*p, 4) == "fp32"
    assert lgh.math_for(*p, 4, math="accurate", engine="cpu") == "fp32"
    assert lgh.math_for(*p, 4, math="3xtf32") == "3xtf32"  # explicit modes stay as asked
    assert lgh.math_for(*[t.bfloat16() for t in p], 4) is None  # 16-bit data: no math
    y32 = run(*p, 4, math="fp32")
    assert torch.equal(run(*p, 4, math="accurate"), y32)
    assert torch.equal(run(*p, 4), y32)  # "highest"

    grads = {}
    for math in ("fp32", "accurate"):
        leaves = [t.clone().requires_grad_() for t in p]
        y = run(*leaves, 4, math=math)
        y.backward(torch.linspace(-1, 1, y.numel()).reshape(y.shape))
        grads[math] = [t.grad for t in leaves]
    for a, b in zip(grads["fp32"], grads["accurate"]):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="accurate"):
        run(*p, 4, math="fastest")


# --- autograd --------------------------------------------------------------------------


@pytest.mark.parametrize("x_shape", [(12, 24), (3, 4, 24)], ids=["2d", "3d"])
def test_backward_matches_torch(x_shape):
    k, n, groups, lo, hi = 24, 36, 6, -0.9, 0.9
    model = lgh.Model(k, n, groups, lo, hi).double()
    with torch.no_grad():
        model.group_norm.weight.uniform_(0.5, 1.5)
        model.group_norm.bias.uniform_(-0.5, 0.5)
    new = lgh.ModelNew(k, n, groups, lo, hi)
    new.load_state_dict(model.state_dict())
    x = torch.rand(x_shape)
    x_new = x.clone().requires_grad_()
    x_ref = x.double().reshape(-1, k).requires_grad_()
    y = new(x_new)
    assert y.requires_grad
    dy = torch.randn(y.shape)
    y.backward(dy)
    model(x_ref).backward(dy.double().reshape(-1, n))
    assert rel_err(x_new.grad.reshape(-1, k), x_ref.grad) <= 1e-4
    for (name, p), (_, q) in zip(new.named_parameters(), model.named_parameters()):
        assert rel_err(p.grad, q.grad) <= 1e-4, name


def test_backward_only_some_inputs():
    x, w, b, g, be = make_problem(8, 16, 12, 3)
    w.requires_grad_()
    y = run(x, w, b, g, be, 3)
    (gw,) = torch.autograd.grad(y.sum(), [w])
    w_ref = w.detach().double().requires_grad_()
    reference(x, w_ref, b, g, be, 3, 1e-5, -1.0, 1.0).sum().backward()
    assert rel_err(gw, w_ref.grad) <= 1e-4


def test_no_grad_output_does_not_require_grad():
    new = lgh.ModelNew(16, 16, 4, -1.0, 1.0)
    with torch.no_grad():
        assert not new(torch.rand(2, 16)).requires_grad


# --- statistics ------------------------------------------------------------------------


def test_stats_outputs():
    m, k, n, groups = 10, 32, 48, 6
    x, w, b, g, be = make_problem(m, k, n, groups, x_shape=(2, 5, k))
    y, mean, rstd = lgh.linear_groupnorm_hardtanh_with_stats(x, w, b, g, be, groups, 1e-5)
    assert y.shape == (2, 5, n) and mean.shape == rstd.shape == (m, groups)
    assert mean.dtype == rstd.dtype == torch.float32
    h = F.linear(x.double().reshape(m, k), w.double(), b.double()).reshape(m, groups, -1)
    ref_mean = h.mean(-1)
    ref_rstd = 1.0 / torch.sqrt(h.var(-1, unbiased=False) + 1e-5)
    assert rel_err(mean, ref_mean) <= 1e-5
    assert rel_err(rstd, ref_rstd) <= 1e-5
    same(y, run(x, w, b, g, be, groups))


# --- threads ---------------------------------------------------------------------------


def test_calls_from_several_threads():
    k, n, groups = 96, 64, 8
    _, w, b, g, be = make_problem(1, k, n, groups)
    xs = [torch.rand(37, k) for _ in range(8)]
    expect = [run(x, w, b, g, be, groups) for x in xs]
    got = [None] * len(xs)
    errors = []

    def work(i):
        try:
            for _ in range(5):
                got[i] = run(xs[i], w, b, g, be, groups)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for a, e in zip(got, expect):
        same(a, e)
