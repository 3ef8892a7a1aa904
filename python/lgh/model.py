"""Modules: Model, the plain PyTorch layer (KernelBench level 2, problem 30), and
ModelNew, the same module computed by lgh.

Both have the same constructor and the same submodules (gemm = nn.Linear, group_norm =
nn.GroupNorm, hardtanh = nn.Hardtanh), hence the same state_dict keys, so a checkpoint
of one loads into the other. ModelNew reads group_norm.num_groups, group_norm.eps and
hardtanh.min_val / max_val at every call, so changing them on the module is honoured.

One difference: ModelNew takes x of any shape [*, in_features] and normalises each row's
out_features channels; Model is only meaningful for [batch, in_features], because
nn.GroupNorm reads dimension 1 of its input as the channels.
"""

import torch
from torch import nn

from .ops import engine_for, linear_groupnorm_hardtanh


class Model(nn.Module):
    """Linear -> GroupNorm -> HardTanh in plain PyTorch (the reference)."""

    def __init__(self, in_features, out_features, num_groups, hardtanh_min, hardtanh_max):
        super().__init__()
        self.gemm = nn.Linear(in_features, out_features)
        self.group_norm = nn.GroupNorm(num_groups, out_features)
        self.hardtanh = nn.Hardtanh(min_val=hardtanh_min, max_val=hardtanh_max)

    def forward(self, x):
        return self.hardtanh(self.group_norm(self.gemm(x)))


class ModelNew(nn.Module):
    """Linear -> GroupNorm -> HardTanh computed by lgh in one fused call, on CUDA (the
    current stream of x's device) or on the CPU. float32, bfloat16 or float16.

    math / engine: as for lgh.linear_groupnorm_hardtanh (None: float32 math follows
    torch.get_float32_matmul_precision(); engine chosen by lgh).

    Trains: the backward is lgh_backward. save_prenorm (an attribute, read at every
    call): True keeps the pre-norm x @ W.T + b [rows, out_features] from the forward
    for the backward (one GEMM fewer there); False keeps only the per-group mean and
    rstd and recomputes it (less memory); None (default) follows lgh.ops.SAVE_PRENORM,
    i.e. True unless LGH_SAVE_PRENORM=0 was set when lgh was imported."""

    def __init__(self, in_features, out_features, num_groups, hardtanh_min, hardtanh_max,
                 math=None, engine=None, save_prenorm=None):
        super().__init__()
        self.gemm = nn.Linear(in_features, out_features)
        self.group_norm = nn.GroupNorm(num_groups, out_features)
        self.hardtanh = nn.Hardtanh(min_val=hardtanh_min, max_val=hardtanh_max)
        self.math = math
        self.engine = engine
        self.save_prenorm = save_prenorm

    def _params(self):
        gn = self.group_norm
        if not gn.affine:
            raise ValueError("lgh.ModelNew needs group_norm.affine=True (it applies gamma, beta)")
        return (self.gemm.weight, self.gemm.bias, gn.weight, gn.bias, gn.num_groups, gn.eps,
                self.hardtanh.min_val, self.hardtanh.max_val)

    def forward(self, x):
        w, b, g, be, groups, eps, lo, hi = self._params()
        return linear_groupnorm_hardtanh(x, w, b, g, be, groups, eps, lo, hi, math=self.math,
                                         engine=self.engine, save_prenorm=self.save_prenorm)

    def engine_for(self, x):
        """The engine a call with this x would run now ("cpu", "cublaslt", "sm80", "sm90")."""
        w, b, g, be, groups, eps, lo, hi = self._params()
        with torch.no_grad():
            return engine_for(x, w, b, g, be, groups, eps, lo, hi, math=self.math,
                              engine=self.engine)

    def extra_repr(self):
        return "math=%r, engine=%r, save_prenorm=%r" % (self.math, self.engine,
                                                          self.save_prenorm)
