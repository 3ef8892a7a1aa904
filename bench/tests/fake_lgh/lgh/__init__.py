"""A stand-in for the lgh package, used only by bench/tests to drive bench.py on a machine
without a GPU: engine "cpu" computes the layer with torch, "sm90" refuses like lgh does
for an engine that cannot run, and "sm80" returns a slightly wrong answer so the
benchmark's check must flag it."""

import torch
import torch.nn.functional as F

__version__ = "0.0.0-fake"


class LghRuntimeError(RuntimeError):
    def __init__(self, message, status_name=None):
        super().__init__(message)
        self.status_name = status_name


def linear_groupnorm_hardtanh(x, weight, bias, gamma, beta, num_groups, eps=1e-5, lo=-1.0,
                              hi=1.0, math=None, engine=None):
    if engine == "sm90":
        raise LghRuntimeError("lgh: lgh_forward failed (LGH_STATUS_ENGINE_UNAVAILABLE): "
                              "no sm90 here", "LGH_STATUS_ENGINE_UNAVAILABLE")
    if x.dtype == torch.float16:
        raise LghRuntimeError("lgh: lgh_forward failed (LGH_STATUS_NOT_SUPPORTED): fp16 on CPU",
                              "LGH_STATUS_NOT_SUPPORTED")
    z = F.linear(x.float(), weight.float(), bias.float())
    y = F.hardtanh(F.group_norm(z, num_groups, gamma.float(), beta.float(), eps), lo, hi)
    if engine == "sm80":
        y = y * 1.01
    return y.to(x.dtype)


def engine_for(*args, **kwargs):
    return "cpu"


def engines_available(device="cpu"):
    return ["cpu"]
