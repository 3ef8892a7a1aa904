"""Training through lgh: the backward (lgh_backward) behind autograd, against torch's own
modules run in float64 on the CPU.

CPU tier (the library's CPU engine): the gradient of every input for each dtype, leading
shapes, strided inputs and empty batches; subsets of requires_grad (only the asked-for
gradients are computed); both save modes (the forward's pre-norm h kept, or only
mean / rstd and h recomputed) and their switches; torch.autograd.gradcheck; the
functional backward; a few optimizer steps of ModelNew next to the torch model; the
custom operators (opcheck, fake tensors, torch.compile(fullgraph=True) of a training step,
on torch >= 2.4). GPU tier (skipped without CUDA or a CUDA build): engines cublaslt and
sm90 (and AUTO), float32 in tf32 and 3xtf32 and bfloat16, against the float64
reference; torch.compile of a training step; CUDA-graph capture of forward + backward.

The clamp's gradient is discontinuous at lo and hi: where the reference's pre-clamp value
z lies within a rounding error of lo or hi, an engine may legitimately put z on the other
side and pass (or stop) the whole of dy there. The comparisons therefore set dy to zero
where the float64 z is within a tolerance of lo or hi (a few times the expected error of
z for the dtype and math mode), which changes no gradient of a correct implementation.
"""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import lgh
from lgh import ops

from conftest import make_problem, rel_err

CPU_ENGINE_FORCED_AWAY = os.environ.get("LGH_ENGINE", "auto").lower() not in ("", "auto", "cpu")
cpu_tier = pytest.mark.skipif(
    CPU_ENGINE_FORCED_AWAY,
    reason="LGH_ENGINE=%s forces a GPU engine on every context, the CPU's too" %
    os.environ.get("LGH_ENGINE"))

needs_custom_op = pytest.mark.skipif(
    not lgh.HAS_CUSTOM_OP, reason="torch %s has no torch.library.custom_op (needs >= 2.4): "
    "the training path is a torch.autograd.Function there" % torch.__version__)

NAMES = ("x", "weight", "bias", "gamma", "beta")

# Relative-error bounds of each gradient against the float64 reference.
GRAD_BOUND = {"fp32": 1e-5, "3xtf32": 1e-5, "tf32": 1e-3, torch.bfloat16: 2e-2,
              torch.float16: 2e-2}
# How close to lo / hi (relative to max(1, |lo|, |hi|)) the reference's z must be for dy
# to be zeroed there: several times the error of the z an engine computes.
EDGE_TOL = {"fp32": 1e-4, "3xtf32": 1e-4, "tf32": 2e-2, torch.bfloat16: 6e-2,
            torch.float16: 2e-2}


def mode_key(dtype, math):
    return math if dtype == torch.float32 else dtype


# --- the float64 reference ---------------------------------------------------------------


def reference_z(p, groups, eps):
    """z = group_norm(x @ W.T + b) in float64 on the CPU, [M, N]: what the clamp sees."""
    x, w, b, g, be = (t.detach().cpu().double() for t in p)
    k = w.shape[1]
    return F.group_norm(F.linear(x.reshape(-1, k), w, b), groups, g, be, eps)


def masked_dy(p, groups, eps, lo, hi, rel_tol, gen=None, dy=None):
    """A random dy of y's shape (or the given one), zero where the float64 z is within
    rel_tol * max(1, |lo|, |hi|) of lo or hi; and how many elements were zeroed."""
    x, w = p[0], p[1]
    n = w.shape[0]
    shape = tuple(x.shape[:-1]) + (n,)
    if dy is None:
        dy = torch.randn(shape, generator=gen, dtype=torch.float64)
    z = reference_z(p, groups, eps).reshape(shape)
    tol = rel_tol * max(1.0, abs(lo), abs(hi))
    near = ((z - lo).abs() <= tol) | ((z - hi).abs() <= tol)
    dy = dy.double().cpu().masked_fill(near, 0.0)
    return dy.to(device=x.device, dtype=x.dtype), int(near.sum())


def reference_grads(p, groups, eps, lo, hi, dy):
    """Gradients of torch.nn's Linear -> GroupNorm -> Hardtanh in float64 on the CPU, for
    the inputs p (any dtype / device) and output gradient dy; x's gradient in x's shape."""
    xs = [t.detach().cpu().double().requires_grad_() for t in p]
    x, w, b, g, be = xs
    k, n = w.shape[1], w.shape[0]
    y = F.hardtanh(F.group_norm(F.linear(x.reshape(-1, k), w, b), groups, g, be, eps), lo, hi)
    y.backward(dy.detach().cpu().double().reshape(-1, n))
    return [t.grad for t in xs]


def lgh_grads(p, groups, eps, lo, hi, dy, wanted=(True,) * 5, **kw):
    """Gradients through lgh.linear_groupnorm_hardtanh and autograd (None where not
    wanted), and the output."""
    xs = [t.detach().clone().requires_grad_(f) for t, f in zip(p, wanted)]
    y = lgh.linear_groupnorm_hardtanh(*xs, groups, eps, lo, hi, **kw)
    y.backward(dy)
    return [t.grad for t in xs], y


def grad_err(a, r):
    """||a - r|| / ||r||, with ||r|| floored at an RMS of 1e-8: a gradient that is zero in
    exact arithmetic (groups of one channel have x̂ = 0, so dh, dx, dW, db and dγ vanish)
    comes out of the float64 reference as rounding noise (~1e-14), and of lgh as exact
    zeros or float32 noise; both are right."""
    d = (a.detach().double().cpu() - r.double()).norm().item()
    floor = 1e-8 * max(r.numel(), 1) ** 0.5
    return d / max(r.double().norm().item(), floor)


def check_grads(got, ref, bound, what=""):
    for name, a, r in zip(NAMES, got, ref):
        if r is None:
            continue
        assert a is not None, "%s: no gradient for %s" % (what, name)
        assert a.shape == r.shape, (what, name, a.shape, r.shape)
        assert torch.isfinite(a.double()).all(), (what, name)
        err = grad_err(a, r)
        assert err <= bound, "%s: d%s rel err %.3g > %.1g" % (what, name, err, bound)


# --- CPU: gradients of every input ---------------------------------------------------------

SHAPES = [  # (M, K, N, groups)
    (1, 8, 8, 1),
    (7, 100, 96, 8),
    (33, 64, 512, 1),
    (128, 257, 384, 48),
    (5, 1024, 1024, 1024),  # groups of one channel: x̂ = 0, dh = 0
]


@cpu_tier
@pytest.mark.parametrize("save", [True, False], ids=["save-h", "recompute"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M%d-K%d-N%d-G%d" % s)
def test_gradients_match_float64_torch(shape, dtype, save):
    m, k, n, groups = shape
    eps, lo, hi = 1e-5, -0.8, 0.8  # clamps inside the data: both sides of the mask
    gen = torch.Generator().manual_seed(m * 1000 + n)
    p = make_problem(m, k, n, groups, dtype, gen=gen)
    key = mode_key(dtype, "fp32")
    dy, _ = masked_dy(p, groups, eps, lo, hi, EDGE_TOL[key], gen)
    got, y = lgh_grads(p, groups, eps, lo, hi, dy, save_prenorm=save)
    assert y.dtype == dtype
    for t, q in zip(got, p):
        assert t.dtype == dtype and t.shape == q.shape
    check_grads(got, reference_grads(p, groups, eps, lo, hi, dy), GRAD_BOUND[key], str(shape))


@cpu_tier
@pytest.mark.parametrize("x_shape", [(3, 4, 40), (40,), (2, 1, 3, 40)], ids=str)
def test_leading_shapes(x_shape):
    k, n, groups, lo, hi = 40, 24, 4, -1.0, 1.0
    p = make_problem(0, k, n, groups, x_shape=x_shape)
    dy, _ = masked_dy(p, groups, 1e-5, lo, hi, 1e-4)
    got, y = lgh_grads(p, groups, 1e-5, lo, hi, dy)
    assert y.shape == tuple(x_shape[:-1]) + (n,)
    assert got[0].shape == x_shape
    check_grads(got, reference_grads(p, groups, 1e-5, lo, hi, dy), 1e-5)


@cpu_tier
def test_strided_inputs():
    """x with a row stride > K, a transposed weight, parameters with stride 2, and the
    stride-0 dy that y.sum() sends back."""
    m, k, n, groups, lo, hi = 9, 40, 24, 3, -1.0, 1.0
    x, w, b, g, be = make_problem(m, k, n, groups)
    x_wide = torch.rand(m, k + 7)
    x_wide[:, 3:3 + k] = x
    vec = lambda v: torch.stack([v, torch.zeros_like(v)], 1)[:, 0]  # noqa: E731
    leaves = [x_wide.requires_grad_(), w.t().contiguous().requires_grad_(),
              torch.stack([b, b], 1).requires_grad_(), g.clone().requires_grad_(),
              be.clone().requires_grad_()]
    args = [leaves[0][:, 3:3 + k], leaves[1].t(), leaves[2][:, 0], vec(leaves[3]),
            vec(leaves[4])]
    far = 50.0  # no clamping: y.sum()'s dy of ones is exact everywhere
    y = lgh.linear_groupnorm_hardtanh(*args, groups, 1e-5, -far, far)
    y.sum().backward()
    ref = reference_grads([x, w, b, g, be], groups, 1e-5, -far, far, torch.ones(m, n))
    check_grads([leaves[0].grad[:, 3:3 + k], leaves[1].grad.t(), leaves[2].grad[:, 0],
                 leaves[3].grad, leaves[4].grad], ref, 1e-5)
    assert (leaves[0].grad[:, :3] == 0).all() and (leaves[2].grad[:, 1] == 0).all()


@cpu_tier
def test_clamps_far_from_the_data():
    """lo / hi far outside z: every dy passes; no masking needed."""
    p = make_problem(20, 48, 32, 4)
    dy = torch.randn(20, 32)
    got, _ = lgh_grads(p, 4, 1e-5, -100.0, 100.0, dy)
    check_grads(got, reference_grads(p, 4, 1e-5, -100.0, 100.0, dy), 1e-5)


@cpu_tier
def test_everything_clamped_gives_zero_gradients():
    p = make_problem(6, 16, 8, 2)
    got, y = lgh_grads(p, 2, 1e-5, 5.0, 5.0, torch.randn(6, 8))  # lo = hi: z never inside
    assert (y == 5.0).all()
    for t in got:
        assert (t == 0).all()


@cpu_tier
def test_empty_batch():
    p = make_problem(0, 16, 12, 3, x_shape=(0, 16))
    got, y = lgh_grads(p, 3, 1e-5, -1.0, 1.0, torch.empty(0, 12))
    assert y.shape == (0, 12) and got[0].shape == (0, 16)
    for t, q in zip(got[1:], p[1:]):
        assert t.shape == q.shape and (t == 0).all()


# --- subsets of requires_grad --------------------------------------------------------------

SUBSETS = [
    (True, False, False, False, False),
    (False, True, False, False, False),
    (False, False, True, False, False),
    (False, False, False, True, True),
    (True, True, False, False, False),
    (False, True, True, True, True),
]


@cpu_tier
@pytest.mark.parametrize("wanted", SUBSETS,
                         ids=lambda w: "+".join(n for n, f in zip(NAMES, w) if f))
def test_subsets_of_requires_grad(wanted, monkeypatch):
    asked = []
    impl = ops._backward_impl

    def spy(*args, **kw):
        asked.append(tuple(bool(f) for f in args[-1]))
        return impl(*args, **kw)

    monkeypatch.setattr(ops, "_backward_impl", spy)
    m, k, n, groups, lo, hi = 12, 40, 36, 6, -0.9, 0.9
    p = make_problem(m, k, n, groups)
    dy, _ = masked_dy(p, groups, 1e-5, lo, hi, 1e-4)
    got, _ = lgh_grads(p, groups, 1e-5, lo, hi, dy, wanted)
    assert asked == [wanted], "lgh_backward was asked for %s, not %s" % (asked, wanted)
    ref = reference_grads(p, groups, 1e-5, lo, hi, dy)
    for name, a, f in zip(NAMES, got, wanted):
        assert (a is not None) == f, name
    check_grads(got, [r if f else None for r, f in zip(ref, wanted)], 1e-5)


@cpu_tier
def test_no_backward_state_without_grad():
    """Without autograd recording, the forward saves nothing and the output does not
    require grad; with an input requiring grad under no_grad, likewise."""
    p = make_problem(4, 16, 8, 2)
    p[1].requires_grad_()
    with torch.no_grad():
        y = lgh.linear_groupnorm_hardtanh(*p, 2)
    assert not y.requires_grad and y.grad_fn is None
    y = lgh.linear_groupnorm_hardtanh(*p, 2)
    assert y.requires_grad and y.grad_fn is not None


# --- the two save modes --------------------------------------------------------------------


def saved_shapes(fn):
    """Shapes of the tensors autograd saves while fn() runs (saved_tensors_hooks)."""
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, shapes


@cpu_tier
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_save_modes_give_the_same_gradients(dtype, monkeypatch):
    seen_h = []
    impl = ops._backward_impl

    def spy(dy, x, weight, bias, gamma, beta, mean, rstd, h, *rest, **kw):
        seen_h.append(None if h is None or h.numel() == 0 else tuple(h.shape))
        return impl(dy, x, weight, bias, gamma, beta, mean, rstd, h, *rest, **kw)

    monkeypatch.setattr(ops, "_backward_impl", spy)
    m, k, n, groups, lo, hi = 24, 64, 48, 4, -1.0, 1.0
    p = make_problem(m, k, n, groups, dtype, x_shape=(2, 12, k))
    dy, _ = masked_dy(p, groups, 1e-5, lo, hi, EDGE_TOL[mode_key(dtype, "fp32")])
    (saved, ys), shapes_saved = saved_shapes(
        lambda: lgh_grads(p, groups, 1e-5, lo, hi, dy, save_prenorm=True))
    (recomputed, yr), shapes_recomputed = saved_shapes(
        lambda: lgh_grads(p, groups, 1e-5, lo, hi, dy, save_prenorm=False))
    assert seen_h == [(m, n), None]
    # What the autograd graph keeps: mean and rstd [M, G] in both modes, h [M, N] only
    # when saving it.
    assert (m, groups) in shapes_saved and (m, groups) in shapes_recomputed
    assert (m, n) in shapes_saved and (m, n) not in shapes_recomputed
    torch.testing.assert_close(ys, yr, atol=0, rtol=0)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for name, a, b in zip(NAMES, saved, recomputed):
        assert rel_err(a, b) <= tol, name
    check_grads(saved, reference_grads(p, groups, 1e-5, lo, hi, dy),
                GRAD_BOUND[mode_key(dtype, "fp32")])


@cpu_tier
def test_save_mode_switches(monkeypatch):
    seen = []
    impl = ops._backward_impl

    def spy(dy, x, weight, bias, gamma, beta, mean, rstd, h, *rest, **kw):
        seen.append(h is not None and h.numel() > 0)
        return impl(dy, x, weight, bias, gamma, beta, mean, rstd, h, *rest, **kw)

    monkeypatch.setattr(ops, "_backward_impl", spy)
    k, n, groups = 16, 24, 4
    model = lgh.ModelNew(k, n, groups, -1.0, 1.0)
    x = torch.rand(5, k)
    assert model.save_prenorm is None and ops.SAVE_PRENORM is True
    model(x).sum().backward()
    model.save_prenorm = False
    model(x).sum().backward()
    model.save_prenorm = None
    monkeypatch.setattr(ops, "SAVE_PRENORM", False)
    model(x).sum().backward()
    model.save_prenorm = True
    model(x).sum().backward()
    assert seen == [True, False, False, True]
    assert "save_prenorm=True" in repr(model)


@cpu_tier
def test_save_prenorm_environment_variable():
    code = ("import torch, lgh\n"
            "print('default', lgh.ops.SAVE_PRENORM)\n"
            "m = lgh.ModelNew(8, 8, 2, -1.0, 1.0)\n"
            "m(torch.rand(3, 8)).sum().backward()\n"
            "print('grad', m.gemm.weight.grad is not None)\n")
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(lgh.__file__)))
    for value, expect in (("0", "False"), ("1", "True"), ("", "True")):
        env = dict(os.environ, PYTHONPATH=pkg, LGH_SAVE_PRENORM=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "default %s" % expect in out.stdout and "grad True" in out.stdout, out.stdout


# --- gradcheck -------------------------------------------------------------------------------


@cpu_tier
def test_gradcheck_float32():
    """torch.autograd.gradcheck on float32 inputs (lgh computes float32, bfloat16 and
    float16, not float64): finite differences of lgh's own forward with a step of 1e-2
    against lgh_backward's analytic Jacobian, for all five inputs, with atol = rtol =
    1e-2 (float32 rounding of the forward, divided by the step, is ~1e-4). The clamps
    (-10, 10) are far from z, so no perturbation crosses the mask's discontinuity; the
    clamp's own rule is checked against float64 torch by the tests above. Inputs are
    small (M=4, K=6, N=8, G=2) so the full Jacobian is cheap."""
    torch.manual_seed(0)
    m, k, n, groups = 4, 6, 8, 2
    x = torch.rand(m, k)
    w = torch.randn(n, k)  # h of unit scale: the step is small against each group's spread
    b = torch.randn(n) * 0.5
    g = torch.rand(n) + 0.5
    be = torch.rand(n) - 0.5
    inputs = tuple(t.requires_grad_() for t in (x, w, b, g, be))

    def fn(*ts):
        return lgh.linear_groupnorm_hardtanh(*ts, groups, 1e-5, -10.0, 10.0, math="fp32")

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not double precision": intended, see above
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-2, atol=1e-2, rtol=1e-2)


@cpu_tier
def test_directional_derivative_float64():
    """The float64 side of gradcheck: lgh's analytic gradient, contracted with a random
    direction, against a central difference of the float64 torch layer along it."""
    torch.manual_seed(1)
    m, k, n, groups, lo, hi = 10, 20, 24, 3, -10.0, 10.0
    p = make_problem(m, k, n, groups)
    dy = torch.randn(m, n)
    got, _ = lgh_grads(p, groups, 1e-5, lo, hi, dy)
    dirs = [torch.randn(t.shape, dtype=torch.float64) for t in p]

    def f(s):
        x, w, b, g, be = (t.double() + s * d for t, d in zip(p, dirs))
        y = F.hardtanh(F.group_norm(F.linear(x, w, b), groups, g, be, 1e-5), lo, hi)
        return (y * dy.double()).sum()

    step = 1e-6
    numeric = ((f(step) - f(-step)) / (2 * step)).item()
    analytic = sum((gr.double() * d).sum() for gr, d in zip(got, dirs)).item()
    assert abs(analytic - numeric) <= 1e-4 * max(1.0, abs(numeric)), (analytic, numeric)


# --- the functional backward ------------------------------------------------------------------


@cpu_tier
@pytest.mark.parametrize("with_h", [True, False], ids=["h", "no-h"])
def test_functional_backward(with_h):
    m, k, n, groups, lo, hi = 17, 50, 40, 5, -0.7, 0.7
    p = make_problem(m, k, n, groups, x_shape=(m, k))
    y, mean, rstd, h = lgh.linear_groupnorm_hardtanh_with_stats(*p, groups, 1e-5, lo, hi,
                                                                return_prenorm=True)
    href = F.linear(p[0].double(), p[1].double(), p[2].double())
    assert h.shape == (m, n) and h.dtype == torch.float32 and rel_err(h, href) <= 1e-5
    dy, _ = masked_dy(p, groups, 1e-5, lo, hi, 1e-4)
    got = lgh.linear_groupnorm_hardtanh_backward(dy, *p, groups, mean, rstd,
                                                 h if with_h else None, 1e-5, lo, hi)
    check_grads(got, reference_grads(p, groups, 1e-5, lo, hi, dy), 1e-5)
    only = lgh.linear_groupnorm_hardtanh_backward(dy, *p, groups, mean, rstd, None, 1e-5, lo, hi,
                                                  needs=(False, False, False, True, False))
    assert only[:3] == (None, None, None) and only[4] is None
    assert rel_err(only[3], got[3]) <= 1e-6


@cpu_tier
def test_backward_errors_come_from_the_library():
    p = make_problem(4, 16, 8, 2)
    y, mean, rstd = lgh.linear_groupnorm_hardtanh_with_stats(*p, 2)
    dy = torch.randn(4, 8)
    with pytest.raises(ValueError, match="mean and rstd must be"):
        lgh.linear_groupnorm_hardtanh_backward(dy, *p, 2, mean[:3], rstd[:3])
    with pytest.raises(ValueError, match="dy must have"):
        lgh.linear_groupnorm_hardtanh_backward(dy[:, :4], *p, 2, mean, rstd)
    with pytest.raises(lgh.LghValueError) as info:
        lgh.linear_groupnorm_hardtanh_backward(dy, *p, 2, mean, rstd, eps=0.0)
    assert info.value.status_name == "LGH_STATUS_INVALID_EPS"
    with pytest.raises(RuntimeError) as info:
        lgh.linear_groupnorm_hardtanh_backward(dy, *p, 2, mean, rstd, engine="sm90")
    assert info.value.status_name in ("LGH_STATUS_ENGINE_UNAVAILABLE", "LGH_STATUS_NOT_SUPPORTED")


# --- optimizer steps --------------------------------------------------------------------------


@cpu_tier
@pytest.mark.parametrize("save", [True, False], ids=["save-h", "recompute"])
def test_model_new_trains_like_the_torch_model(save):
    torch.manual_seed(3)
    k, n, groups, lo, hi = 32, 48, 6, -1.0, 1.0
    ref = lgh.Model(k, n, groups, lo, hi).double()
    new = lgh.ModelNew(k, n, groups, lo, hi, save_prenorm=save)
    new.load_state_dict(ref.state_dict())
    x = torch.rand(64, k)
    target = torch.rand(64, n) * 1.6 - 0.8
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2)
    opt_new = torch.optim.Adam(new.parameters(), lr=1e-2)
    losses_ref, losses_new = [], []
    for _ in range(25):
        for model, opt, losses, xx, tt in ((ref, opt_ref, losses_ref, x.double(), target.double()),
                                           (new, opt_new, losses_new, x, target)):
            opt.zero_grad()
            loss = F.mse_loss(model(xx), tt)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses_new[-1] < 0.6 * losses_new[0], losses_new
    for a, b in zip(losses_new, losses_ref):
        assert abs(a - b) <= 1e-3 * b + 1e-6, (losses_new, losses_ref)
    for (name, p), (_, q) in zip(new.named_parameters(), ref.named_parameters()):
        assert rel_err(p, q) <= 1e-4, name


# --- the custom operators (torch >= 2.4) --------------------------------------------------------


@cpu_tier
@needs_custom_op
@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch has no opcheck")
@pytest.mark.parametrize("save", [True, False], ids=["save-h", "recompute"])
def test_opcheck_train_and_backward_ops(save):
    x, w, b, g, be = make_problem(0, 32, 48, 6, x_shape=(3, 4, 32))
    for t in (x, w, g):
        t.requires_grad_()
    tail = (6, 1e-5, -1.0, 1.0, "auto", "auto")
    torch.library.opcheck(torch.ops.lgh.linear_groupnorm_hardtanh_train.default,
                          (x, w, b, g, be) + tail + (save,))
    _, mean, rstd, h = torch.ops.lgh.linear_groupnorm_hardtanh_train(
        *[t.detach() for t in (x, w, b, g, be)], *tail, save)
    dy = torch.randn(3, 4, 48)
    torch.library.opcheck(torch.ops.lgh.linear_groupnorm_hardtanh_backward.default,
                          (dy, x.detach(), w.detach(), b, g.detach(), be, mean, rstd,
                           h if save else None) + tail + ([True, True, False, True, False],))


@cpu_tier
@needs_custom_op
def test_fake_tensor_shapes_of_the_training_ops():
    from torch._subclasses.fake_tensor import FakeTensorMode

    tail = (8, 1e-5, -1.0, 1.0, "auto", "auto")
    with FakeTensorMode():
        x = torch.empty(2, 7, 64, dtype=torch.bfloat16)
        w = torch.empty(96, 64, dtype=torch.bfloat16)
        v = torch.empty(96, dtype=torch.bfloat16)
        for save in (True, False):
            y, mean, rstd, h = torch.ops.lgh.linear_groupnorm_hardtanh_train(x, w, v, v, v, *tail,
                                                                             save)
            assert y.shape == (2, 7, 96) and y.dtype == torch.bfloat16
            assert mean.shape == rstd.shape == (14, 8) and mean.dtype == torch.float32
            assert h.shape == ((14, 96) if save else (0,)) and h.dtype == torch.bfloat16
        grads = torch.ops.lgh.linear_groupnorm_hardtanh_backward(
            y, x, w, v, v, v, mean, rstd, None, *tail, [True, False, True, False, True])
        assert [tuple(t.shape) for t in grads] == [(2, 7, 64), (0,), (96,), (0,), (96,)]
        assert all(t.dtype == torch.bfloat16 for t in grads)


@cpu_tier
@needs_custom_op
@pytest.mark.parametrize("save", [True, False], ids=["save-h", "recompute"])
def test_compile_fullgraph_training_step_cpu(save):
    """torch.compile(fullgraph=True) of forward + loss (aot_eager: AOTAutograd traces the
    forward and backward graphs through the fake implementations); the backward graph
    calls lgh's backward operator, and the gradients equal eager ones."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    torch._dynamo.reset()
    graphs = {"fw": [], "bw": []}

    def keep(kind):
        def compiler(gm, example_inputs):
            graphs[kind].append(gm.code)
            return make_boxed_func(gm.forward)
        return compiler

    backend = aot_autograd(fw_compiler=keep("fw"), bw_compiler=keep("bw"))
    k, n, groups = 64, 96, 6
    new = lgh.ModelNew(k, n, groups, -1.5, 1.5, save_prenorm=save)
    twin = lgh.ModelNew(k, n, groups, -1.5, 1.5, save_prenorm=save)
    twin.load_state_dict(new.state_dict())
    target = torch.rand(40, n)

    def step(model, x):
        return F.mse_loss(model(x), target)

    compiled = torch.compile(step, backend=backend, fullgraph=True)
    x = torch.rand(40, k)
    step(new, x).backward()
    compiled(twin, x).backward()
    for (name, p), (_, q) in zip(new.named_parameters(), twin.named_parameters()):
        assert rel_err(q.grad, p.grad) <= 1e-5, name
    assert any("linear_groupnorm_hardtanh_train" in c for c in graphs["fw"]), graphs["fw"]
    assert any("linear_groupnorm_hardtanh_backward" in c for c in graphs["bw"]), graphs["bw"]


@cpu_tier
@needs_custom_op
def test_direct_inference_op_is_differentiable():
    """torch.ops.lgh.linear_groupnorm_hardtanh called directly keeps no statistics; its
    backward recomputes them and still gives torch's gradients."""
    p = make_problem(10, 24, 36, 6)
    xs = [t.clone().requires_grad_() for t in p]
    y = torch.ops.lgh.linear_groupnorm_hardtanh(*xs, 6, 1e-5, -0.9, 0.9, "auto", "auto")
    dy, _ = masked_dy(p, 6, 1e-5, -0.9, 0.9, 1e-4)
    y.backward(dy)
    check_grads([t.grad for t in xs], reference_grads(p, 6, 1e-5, -0.9, 0.9, dy), 1e-5)


# --- GPU tier ------------------------------------------------------------------------------------


def _cuda_engines():
    if not torch.cuda.is_available() or os.environ.get("LGH_ENGINE", "").lower() == "cpu":
        return None
    try:
        return lgh.engines_available("cuda")
    except lgh.LghRuntimeError:
        return None


gpu_tier = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("LGH_ENGINE", "").lower() == "cpu",
    reason="no CUDA device visible to torch (or LGH_ENGINE=cpu): GPU tier skipped")


@pytest.fixture(scope="module")
def cuda_engines():
    engines = _cuda_engines()
    if not engines:
        pytest.skip("liblgh.so has no GPU engine here (a CPU-only build?)")
    return engines


def grads_or_skip(engine, p, groups, eps, lo, hi, dy, **kw):
    try:
        return lgh_grads(p, groups, eps, lo, hi, dy, engine=engine, **kw)
    except lgh.LghRuntimeError as e:
        if engine != "auto" and e.status_name in ("LGH_STATUS_NOT_SUPPORTED",
                                                  "LGH_STATUS_ENGINE_UNAVAILABLE"):
            pytest.skip("engine %s declines: %s" % (engine, e))
        raise


GPU_SHAPES = [  # (M, K, N, groups)
    (7, 100, 96, 8),
    (128, 1024, 1024, 16),
    (200, 512, 2048, 4),
]
GPU_MODES = [(torch.float32, "3xtf32"), (torch.float32, "tf32"), (torch.bfloat16, None)]


@gpu_tier
@pytest.mark.parametrize("save", [True, False], ids=["save-h", "recompute"])
@pytest.mark.parametrize("engine", ["auto", "cublaslt", "sm90"])
@pytest.mark.parametrize("mode", GPU_MODES, ids=lambda md: "%s-%s" % (str(md[0])[6:], md[1]))
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=lambda s: "M%d-K%d-N%d-G%d" % s)
def test_gpu_gradients_match_float64_torch(shape, mode, engine, save, cuda_engines):
    if engine != "auto" and engine not in cuda_engines:
        pytest.skip("engine %s is not available on %s" % (engine, lgh.device_description("cuda")))
    dtype, math = mode
    m, k, n, groups = shape
    eps, lo, hi = 1e-5, -1.5, 1.5
    gen = torch.Generator().manual_seed(m + k + n)
    p = [t.cuda() for t in make_problem(m, k, n, groups, dtype, gen=gen)]
    key = mode_key(dtype, math)
    dy, _ = masked_dy(p, groups, eps, lo, hi, EDGE_TOL[key], gen)
    got, _ = grads_or_skip(engine, p, groups, eps, lo, hi, dy, math=math, save_prenorm=save)
    torch.cuda.synchronize()
    for t in got:
        assert t.device == p[0].device and t.dtype == dtype
    ref = reference_grads(p, groups, eps, lo, hi, dy)
    if key == "tf32":
        check_grads_tf32(got, ref, p, groups, eps, lo, hi, dy, "%s %s" % (engine, key))
    else:
        check_grads(got, ref, GRAD_BOUND[key], "%s %s" % (engine, key))


def torch_fp32_grads(p, groups, eps, lo, hi, dy):
    """The same step through torch.nn.functional in float32 on p's device with TF32 off:
    what a PyTorch user gets for float32 accuracy."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        xs = [t.detach().clone().requires_grad_() for t in p]
        x, w, b, g, be = xs
        y = F.hardtanh(F.group_norm(F.linear(x, w, b), groups, g, be, eps), lo, hi)
        y.backward(dy)
        return [t.grad for t in xs]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@gpu_tier
@pytest.mark.xfail(os.environ.get("LGH_SM90_DW_LOOP", "1") in ("2", "3"), strict=True,
                   reason="dW on a bf16-corrected 3xtf32 main loop (LGH_SM90_DW_LOOP=2: 9.4e-7, 3: 6.1e-7) "
                   "against PyTorch fp32's 5.9e-7; the default, 1 (tf32 corrections), gives 2.5e-7")
def test_gpu_3xtf32_gradients_as_close_as_torch_fp32(cuda_engines):
    """3xtf32's promise in training, at the reference problem (M = 1024, K = N = 8192,
    16 groups): every gradient as close to float64 as PyTorch's own float32 step (TF32
    off), within 10%. dW reduces over only M rows, where float32 is accurate: this catches
    dW on the forward's bf16-corrected main loop (1.6x PyTorch's error), which is why dW
    runs the tf32-corrected loop (LGH_SM90_DW_LOOP=1, the default; 2 and 3 must fail
    here). (At short reductions, K = 2048, float32's own error falls below 3xtf32's floor
    of ~1e-6 in the forward's h, and dγ and db follow h: there the claim is not made.)"""
    m, k, n, groups = 1024, 8192, 8192, 16
    eps, lo, hi = 1e-5, -2.0, 2.0
    gen = torch.Generator().manual_seed(11)
    p = [t.cuda() for t in make_problem(m, k, n, groups, torch.float32, gen=gen)]
    dy, _ = masked_dy(p, groups, eps, lo, hi, EDGE_TOL["3xtf32"], gen)
    got, _ = lgh_grads(p, groups, eps, lo, hi, dy, math="3xtf32")
    theirs = torch_fp32_grads(p, groups, eps, lo, hi, dy)
    ref = reference_grads(p, groups, eps, lo, hi, dy)
    errs = {name: (grad_err(a, r), grad_err(t, r)) for name, a, t, r in zip(NAMES, got, theirs, ref)}
    worse = {name: e for name, e in errs.items() if e[0] > 1.1 * e[1]}
    assert not worse, "3xtf32 gradient error above PyTorch fp32's (lgh, torch): %s (all: %s)" % (worse, errs)


def tf32_rounded(t, nearest):
    """t (float32) with its mantissa cut to tf32's 10 bits: to nearest (ties away from 0)
    or truncated."""
    v = t.detach().float().cpu().contiguous().view(torch.int32)
    if nearest:
        v = v + 0x1000
    return (v & ~0x1FFF).view(torch.float32)


def check_grads_tf32(got, ref, p, groups, eps, lo, hi, dy, what):
    """tf32's bound of 1e-3, plus what exact arithmetic on tf32-rounded x and W alone
    changes in each gradient (the larger of rounding to nearest and truncating): small
    groups amplify h's rounding through rstd, so that part can pass 1e-3 by itself."""
    floors = [0.0] * 5
    for nearest in (True, False):
        q = [tf32_rounded(p[0], nearest), tf32_rounded(p[1], nearest)] + list(p[2:])
        for i, (a, r) in enumerate(zip(reference_grads(q, groups, eps, lo, hi, dy), ref)):
            floors[i] = max(floors[i], grad_err(a, r))
    for i, (name, a, r) in enumerate(zip(NAMES, got, ref)):
        err = grad_err(a, r)
        bound = GRAD_BOUND["tf32"] + floors[i]
        assert err <= bound, "%s: d%s rel err %.3g > %.3g (1e-3 + tf32 floor %.2g)" % (
            what, name, err, bound, floors[i])


@gpu_tier
@needs_custom_op
def test_gpu_compile_fullgraph_training_step(cuda_engines, matmul_precision):
    torch.set_float32_matmul_precision("highest")
    torch._dynamo.reset()
    k, n, groups = 256, 512, 8
    new = lgh.ModelNew(k, n, groups, -1.5, 1.5).cuda()
    twin = lgh.ModelNew(k, n, groups, -1.5, 1.5).cuda()
    twin.load_state_dict(new.state_dict())
    opt_new = torch.optim.SGD(new.parameters(), lr=0.1)
    opt_twin = torch.optim.SGD(twin.parameters(), lr=0.1)
    target = torch.rand(96, n, device="cuda") - 0.5

    def loss_fn(model, x):
        return F.mse_loss(model(x), target)

    compiled = torch.compile(loss_fn, fullgraph=True)
    for _ in range(3):
        x = torch.rand(96, k, device="cuda")
        for model, opt, fn in ((new, opt_new, loss_fn), (twin, opt_twin, compiled)):
            opt.zero_grad()
            fn(model, x).backward()
            opt.step()
        for (name, p), (_, q) in zip(new.named_parameters(), twin.named_parameters()):
            assert rel_err(q.grad, p.grad) <= 1e-4, name
            assert rel_err(q, p) <= 1e-5, name


@gpu_tier
@pytest.mark.parametrize("save", [True, False], ids=["save-h", "recompute"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_cuda_graph_forward_and_backward(dtype, save, cuda_engines):
    """A whole training step (forward, backward, SGD update) captured in one CUDA graph
    and replayed on new inputs matches the same step run eagerly."""
    m, k, n, groups = 256, 1024, 2048, 16
    torch.manual_seed(5)
    model = lgh.ModelNew(k, n, groups, -2.0, 2.0, save_prenorm=save).cuda().to(dtype)
    eager = lgh.ModelNew(k, n, groups, -2.0, 2.0, save_prenorm=save).cuda().to(dtype)
    eager.load_state_dict(model.state_dict())
    static_x = torch.rand(m, k, device="cuda", dtype=dtype)
    static_dy = torch.randn(m, n, device="cuda", dtype=dtype)

    def step(mod):
        y = mod(static_x)
        y.backward(static_dy)
        with torch.no_grad():
            for p in mod.parameters():
                p.sub_(1e-3 * p.grad)
        return y

    # Warm-up on a side stream (lgh plans and allocates its workspace on the first call
    # of a shape), grads left allocated so the capture reuses them.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for mod in (model, eager):
            step(mod)
            for p in mod.parameters():
                p.grad.zero_()
    torch.cuda.current_stream().wait_stream(side)
    with torch.no_grad():
        for p, q in zip(eager.parameters(), model.parameters()):
            p.copy_(q)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = step(model)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for _ in range(3):
        static_x.copy_(torch.rand(m, k, device="cuda", dtype=dtype))
        static_dy.copy_(torch.randn(m, n, device="cuda", dtype=dtype))
        for p in model.parameters():
            p.grad.zero_()
        for p in eager.parameters():
            p.grad = None
        graph.replay()
        y = step(eager)
        torch.cuda.synchronize()
        assert rel_err(static_y, y) <= tol
        for (name, p), (_, q) in zip(model.named_parameters(), eager.named_parameters()):
            assert rel_err(p.grad, q.grad) <= tol, name
            assert rel_err(p, q) <= tol, name
