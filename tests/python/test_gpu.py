"""GPU tier of the Python tests (skipped, with the reason, where there is no CUDA device
or liblgh.so was built without CUDA): every dtype, math mode and engine against the
float64 reference; the KernelBench-style check of ModelNew against Model; streams,
CUDA-graph capture and replay, torch.compile, the custom op's fake implementation,
autograd and devices."""

import os
import subprocess
import sys

import pytest
import torch

import lgh

from conftest import bound, make_problem, reference, rel_err

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA device visible to torch: GPU tier skipped"),
    pytest.mark.skipif(os.environ.get("LGH_ENGINE", "").lower() == "cpu",
                       reason="LGH_ENGINE=cpu forces the CPU engine on CUDA contexts too"),
]

ENGINES = ("auto", "cublaslt", "sm80", "sm90")


@pytest.fixture(scope="module", autouse=True)
def cuda_build():
    """Skips the module when liblgh.so has no CUDA engines (a CPU-only build)."""
    try:
        engines = lgh.engines_available("cuda")
    except lgh.LghRuntimeError as e:
        pytest.skip("liblgh.so cannot run on CUDA here: %s" % e)
    if not engines:
        pytest.skip("liblgh.so has no GPU engine for this device (%s)" % lgh.device_description(
            "cuda"))
    return engines


def run_or_skip(engine, *args, **kw):
    """Runs the functional op; a forced engine that declines the problem is a skip (with
    the library's reason), never a failure of AUTO."""
    try:
        return lgh.linear_groupnorm_hardtanh(*args, engine=engine, **kw)
    except lgh.LghRuntimeError as e:
        if engine != "auto" and e.status_name in ("LGH_STATUS_NOT_SUPPORTED",
                                                  "LGH_STATUS_ENGINE_UNAVAILABLE"):
            pytest.skip("engine %s declines: %s" % (engine, e))
        raise


def require_engine(engine, engines):
    if engine != "auto" and engine not in engines:
        pytest.skip("engine %s is not available on %s" % (engine, lgh.device_description("cuda")))


SHAPES = [  # (M, K, N, groups)
    (1, 8, 8, 1),
    (7, 100, 96, 8),
    (128, 1024, 1024, 16),
    (200, 512, 2048, 4),  # groups of 512 channels
    (64, 4096, 11008, 32),  # groups of 344 channels straddle tiles
]
MODES = [  # (dtype, math)
    (torch.float32, "fp32"),
    (torch.float32, "tf32"),
    (torch.float32, "3xtf32"),
    (torch.bfloat16, None),
    (torch.float16, None),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: "%s-%s" % (str(m[0])[6:], m[1]))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M%d-K%d-N%d-G%d" % s)
@pytest.mark.parametrize("layout", ["packed", "strided"])
def test_every_dtype_math_and_engine(shape, mode, engine, layout, cuda_build):
    require_engine(engine, cuda_build)
    dtype, math = mode
    m, k, n, groups = shape
    p = make_problem(m, k, n, groups, dtype, "cuda")
    if layout == "strided":  # x rows of K inside rows of K + 5 (ldx > K, odd offset)
        wide = torch.rand(m, k + 5, device="cuda").to(dtype)
        wide[:, 3:3 + k] = p[0]
        p[0] = wide[:, 3:3 + k]
    y = run_or_skip(engine, *p, groups, 1e-5, -2.0, 2.0, math=math)
    torch.cuda.synchronize()
    assert y.shape == (m, n) and y.dtype == dtype and y.device == p[0].device
    assert torch.isfinite(y).all()
    err = rel_err(y, reference(*p, groups, 1e-5, -2.0, 2.0))
    assert err <= bound(dtype, math), "rel err %.3g > %.1g" % (err, bound(dtype, math))


# --- KernelBench-style: fresh torch.rand inputs, ModelNew vs Model, same weights -------

REF = (1024, 8192, 8192, 16)
SMALL = (256, 2048, 2048, 16)
KB_CASES = [  # (id, dtype, precision for ModelNew / math, tolerance, size)
    ("fp32-3xtf32-reference-size", torch.float32, ("highest", None), 1e-4, REF),
    ("fp32-tf32-reference-size", torch.float32, ("high", None), 1e-2, REF),
    ("fp32-fp32", torch.float32, ("highest", "fp32"), 1e-4, SMALL),
    ("bf16", torch.bfloat16, ("highest", None), 1e-2, SMALL),
    ("fp16", torch.float16, ("highest", None), 1e-2, SMALL),
]


@pytest.mark.parametrize("case", KB_CASES, ids=[c[0] for c in KB_CASES])
def test_kernelbench_style(case, matmul_precision):
    _, dtype, (precision, math), tol, (m, k, n, groups) = case
    torch.manual_seed(1234)
    model = lgh.Model(k, n, groups, -2.0, 2.0).cuda().to(dtype)
    new = lgh.ModelNew(k, n, groups, -2.0, 2.0, math=math).cuda().to(dtype)
    new.load_state_dict(model.state_dict())
    worst = 0.0
    with torch.no_grad():
        for trial in range(5):
            x = torch.rand(m, k, device="cuda", dtype=dtype)
            torch.set_float32_matmul_precision("highest")  # the reference: PyTorch's float32
            ref = model(x)
            torch.set_float32_matmul_precision(precision)
            out = new(x)
            torch.cuda.synchronize()
            diff = (out.float() - ref.float()).abs().max().item()
            worst = max(worst, diff)
            assert torch.allclose(out, ref, atol=tol, rtol=tol), (
                "trial %d: max |ModelNew - Model| = %.3g (atol = rtol = %g, engine %s)" % (
                    trial, diff, tol, new.engine_for(x)))
    print("%s: engine %s, max |diff| over 5 trials %.3g" % (case[0], new.engine_for(x), worst))


# --- streams, devices ------------------------------------------------------------------


def test_runs_on_the_current_stream():
    """x is written on a side stream after a long sleep; lgh must run on that stream (a
    call on any other stream would read x before it is written)."""
    k, n, groups = 1024, 1024, 16
    new = lgh.ModelNew(k, n, groups, -2.0, 2.0).cuda()
    x_real = torch.rand(256, k, device="cuda")
    x = torch.zeros_like(x_real)
    with torch.no_grad():
        expect = new(x_real)
        torch.cuda.synchronize()
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time
            x.copy_(x_real)
            y = new(x)
        side.synchronize()
    torch.testing.assert_close(y, expect, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("engine", ENGINES[1:])
def test_lgh_engine_environment_variable_on_cuda(engine, cuda_build):
    require_engine(engine, cuda_build)
    code = ("import torch, lgh\n"
            "x = torch.rand(256, 1024, device='cuda')\n"
            "w = torch.rand(1024, 1024, device='cuda')\n"
            "v = torch.rand(1024, device='cuda')\n"
            "print(lgh.engine_for(x, w, v, v, v, 16))\n")
    env = dict(os.environ, LGH_ENGINE=engine,
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(lgh.__file__))))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0 and "LGH_STATUS_NOT_SUPPORTED" in out.stderr:
        pytest.skip("engine %s declines 256x1024x1024: %s" % (engine, out.stderr[-300:]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == engine


def test_device_mismatch_is_an_error():
    x, w, b, g, be = make_problem(4, 16, 8, 2, device="cuda")
    with pytest.raises(ValueError, match="must be on x's device"):
        lgh.linear_groupnorm_hardtanh(x, w.cpu(), b, g, be, 2)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device_while_another_is_current():
    x, w, b, g, be = make_problem(32, 64, 64, 4, device="cuda:1")
    with torch.cuda.device(0):
        y = lgh.linear_groupnorm_hardtanh(x, w, b, g, be, 4)
        assert torch.cuda.current_device() == 0
    assert y.device == torch.device("cuda:1")
    assert rel_err(y, reference(x, w, b, g, be, 4, 1e-5, -1.0, 1.0)) <= 1e-3


def test_module_on_cuda_leading_shape_and_engine():
    new = lgh.ModelNew(256, 512, 8, -2.0, 2.0).cuda()
    x = torch.rand(3, 40, 256, device="cuda")
    with torch.no_grad():
        y = new(x)
    assert y.shape == (3, 40, 512)
    p = [new.gemm.weight, new.gemm.bias, new.group_norm.weight, new.group_norm.bias]
    assert rel_err(y, reference(x, *[t.detach() for t in p], 8, 1e-5, -2.0, 2.0)) <= 1e-3
    assert new.engine_for(x) in lgh.engines_available("cuda")


def test_stats_on_cuda():
    m, k, n, groups = 100, 256, 384, 12
    x, w, b, g, be = make_problem(m, k, n, groups, device="cuda")
    y, mean, rstd = lgh.linear_groupnorm_hardtanh_with_stats(x, w, b, g, be, groups,
                                                             math="3xtf32")
    h = torch.nn.functional.linear(x.double(), w.double(), b.double()).reshape(m, groups, -1)
    assert rel_err(mean, h.mean(-1)) <= 1e-5
    assert rel_err(rstd, 1.0 / torch.sqrt(h.var(-1, unbiased=False) + 1e-5)) <= 1e-5


def test_kernel_info():
    for info in lgh.kernel_info("cuda"):
        assert info["name"] and info["engine"] in ENGINES
        assert info["registers"] > 0 and info["threads_per_block"] > 0


# --- CUDA graphs -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_cuda_graph_capture_and_replay(dtype):
    m, k, n, groups = 256, 1024, 2048, 16
    new = lgh.ModelNew(k, n, groups, -2.0, 2.0).cuda().to(dtype)
    static_x = torch.rand(m, k, device="cuda", dtype=dtype)
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            new(static_x)  # one uncaptured call for the shape: lgh plans and allocates here
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y = new(static_x)
        for _ in range(3):
            static_x.copy_(torch.rand(m, k, device="cuda", dtype=dtype))
            graph.replay()
            eager = new(static_x)
            torch.cuda.synchronize()
            tol = 1e-5 if dtype == torch.float32 else 1e-2
            torch.testing.assert_close(static_y, eager, atol=tol, rtol=tol)
            p = [new.gemm.weight, new.gemm.bias, new.group_norm.weight, new.group_norm.bias]
            ref = reference(static_x, *p, groups, 1e-5, -2.0, 2.0)
            assert rel_err(static_y, ref) <= bound(dtype, lgh.math_mode())


# --- torch.compile, custom op -----------------------------------------------------------

needs_custom_op = pytest.mark.skipif(
    not lgh.HAS_CUSTOM_OP, reason="torch %s has no torch.library.custom_op (needs >= 2.4)" %
    torch.__version__)


@needs_custom_op
def test_compile_fullgraph_inference():
    torch._dynamo.reset()
    new = lgh.ModelNew(256, 512, 8, -2.0, 2.0).cuda()
    compiled = torch.compile(new, fullgraph=True)
    with torch.no_grad():
        for shape in ((64, 256), (100, 256), (2, 30, 256)):
            x = torch.rand(shape, device="cuda")
            torch.testing.assert_close(compiled(x), new(x), atol=1e-5, rtol=1e-5)


@needs_custom_op
def test_compile_reduce_overhead_cuda_graphs():
    """torch.compile's CUDA-graph mode records the op after its warm-up runs."""
    torch._dynamo.reset()
    new = lgh.ModelNew(512, 1024, 16, -2.0, 2.0).cuda()
    compiled = torch.compile(new, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        for _ in range(5):
            x = torch.rand(128, 512, device="cuda")
            y = compiled(x).clone()
            torch.testing.assert_close(y, new(x), atol=1e-5, rtol=1e-5)


@needs_custom_op
def test_compile_fullgraph_training():
    torch._dynamo.reset()
    k, n, groups = 128, 256, 8
    new = lgh.ModelNew(k, n, groups, -1.5, 1.5).cuda()
    twin = lgh.ModelNew(k, n, groups, -1.5, 1.5).cuda()
    twin.load_state_dict(new.state_dict())
    compiled = torch.compile(twin, fullgraph=True)
    x = torch.rand(48, k, device="cuda")
    dy = torch.randn(48, n, device="cuda")
    new(x).backward(dy)
    compiled(x).backward(dy)
    for (name, p), (_, q) in zip(new.named_parameters(), twin.named_parameters()):
        assert rel_err(q.grad, p.grad) <= 1e-4, name


@needs_custom_op
@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch has no opcheck")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_opcheck_cuda(dtype):
    x, w, b, g, be = make_problem(0, 64, 96, 6, dtype, "cuda", x_shape=(3, 5, 64))
    w.requires_grad_()
    g.requires_grad_()
    torch.library.opcheck(torch.ops.lgh.linear_groupnorm_hardtanh.default,
                          (x, w, b, g, be, 6, 1e-5, -1.0, 1.0, "auto", "auto"))


# --- autograd on CUDA ------------------------------------------------------------------


def test_backward_matches_torch_on_cuda(matmul_precision):
    torch.set_float32_matmul_precision("highest")
    k, n, groups = 256, 384, 12
    model = lgh.Model(k, n, groups, -1.0, 1.0).cuda()
    new = lgh.ModelNew(k, n, groups, -1.0, 1.0).cuda()
    new.load_state_dict(model.state_dict())
    x = torch.rand(64, k, device="cuda")
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    dy = torch.randn(64, n, device="cuda")
    new(xa).backward(dy)
    model(xb).backward(dy)
    assert rel_err(xa.grad, xb.grad) <= 1e-4
    for (name, p), (_, q) in zip(new.named_parameters(), model.named_parameters()):
        assert rel_err(p.grad, q.grad) <= 1e-4, name


def test_accurate_resolves_per_device(cuda_build, matmul_precision):
    """torch's "highest" asks lgh for float32 accuracy ("accurate"): untuned, 3xtf32 on
    the sm90 engine on a cc 9.0 device, fp32 on the GeForce parts (cc 8.6, 8.9, 12.0);
    either way within the float32 bound. A forced cublaslt runs it in fp32. (A shape of
    its own, 232 x 512 x 384, so no tuned cache entry stands in for the rule.)"""
    p = make_problem(232, 512, 384, 6, device="cuda")
    torch.set_float32_matmul_precision("highest")
    cc = torch.cuda.get_device_capability()
    mode, engine = lgh.math_for(*p, 6), lgh.engine_for(*p, 6)
    assert mode in ("fp32", "3xtf32"), mode
    if os.environ.get("LGH_ENGINE", "auto").lower() in ("", "auto"):
        if cc == (9, 0):
            assert (mode, engine) == ("3xtf32", "sm90")
        elif cc in ((8, 6), (8, 9), (12, 0)):
            assert (mode, engine) == ("fp32", "cublaslt")
    y = lgh.linear_groupnorm_hardtanh(*p, 6, 1e-5, -2.0, 2.0)
    torch.cuda.synchronize()
    assert rel_err(y, reference(*p, 6, 1e-5, -2.0, 2.0)) <= bound(torch.float32, "accurate")
    assert lgh.math_for(*p, 6, math="accurate", engine="cublaslt") == "fp32"
