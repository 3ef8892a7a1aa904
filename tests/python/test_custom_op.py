"""The torch.library custom operator on CPU tensors: torch.library.opcheck (schema, fake
implementation, autograd registration, AOT dispatch), torch.compile with fullgraph=True
(the aot_eager backend: tracing through the fake implementation and the autograd formula,
no C++ code generation needed), and shape inference under FakeTensorMode. Skipped, with
the reason, on torch without torch.library.custom_op (< 2.4)."""

import pytest
import torch

import lgh

from conftest import make_problem, rel_err

pytestmark = pytest.mark.skipif(
    not lgh.HAS_CUSTOM_OP,
    reason="torch %s has no torch.library.custom_op (needs >= 2.4): lgh uses a plain "
    "autograd.Function there (lgh.HAS_CUSTOM_OP is False)" % torch.__version__)

OP_ARGS_TAIL = (1e-5, -1.0, 1.0, "auto", "auto")


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch has no opcheck")
@pytest.mark.parametrize("x_shape", [(12, 32), (3, 4, 32), (0, 32)], ids=str)
def test_opcheck_cpu(x_shape):
    x, w, b, g, be = make_problem(0, 32, 48, 6, x_shape=x_shape)
    b.requires_grad_()
    be.requires_grad_()
    torch.library.opcheck(torch.ops.lgh.linear_groupnorm_hardtanh.default,
                          (x, w, b, g, be, 6) + OP_ARGS_TAIL)


def test_fake_tensor_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 7, 64, dtype=torch.bfloat16)
        w = torch.empty(96, 64, dtype=torch.bfloat16)
        v = torch.empty(96, dtype=torch.bfloat16)
        y = torch.ops.lgh.linear_groupnorm_hardtanh(x, w, v, v, v, 8, *OP_ARGS_TAIL)
        assert y.shape == (2, 7, 96) and y.dtype == torch.bfloat16
        with pytest.raises(ValueError, match="K must match"):
            torch.ops.lgh.linear_groupnorm_hardtanh(x, w[:, :60], v, v, v, 8, *OP_ARGS_TAIL)


def test_compile_fullgraph_cpu():
    torch._dynamo.reset()
    k, n, groups = 64, 96, 6
    new = lgh.ModelNew(k, n, groups, -2.0, 2.0)
    twin = lgh.ModelNew(k, n, groups, -2.0, 2.0)
    twin.load_state_dict(new.state_dict())
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        for shape in ((16, k), (33, k), (2, 5, k)):
            x = torch.rand(shape)
            torch.testing.assert_close(compiled(x), new(x), atol=1e-5, rtol=1e-5)
    x = torch.rand(20, k)
    dy = torch.randn(20, n)
    new(x).backward(dy)
    compiled(x).backward(dy)
    for (name, p), (_, q) in zip(new.named_parameters(), twin.named_parameters()):
        assert rel_err(q.grad, p.grad) <= 1e-5, name


def test_compile_has_no_graph_break():
    torch._dynamo.reset()
    new = lgh.ModelNew(32, 32, 4, -1.0, 1.0)
    explain = torch._dynamo.explain(new)(torch.rand(8, 32))
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1
