"""Many processes: the layer split along N in whole groups (tensor parallel), on
torch.distributed.

The group norm reduces over the channels of one group only, so a column split of W, b, γ
and β that keeps every group on one rank lets each rank compute its groups completely:
the forward needs no communication at all (a generic split along N would first have to
gather the pre-norm x·Wᵀ + b). Rank r holds the channels [start_r, stop_r) of
`shard_ranges`; its output is y[..., start_r:stop_r] (the last dimension sharded, as the
next column- or row-parallel layer expects), or the whole y when asked to gather.

In the backward, dW, db, dγ and dβ of a rank's channels are local; dx is a sum over all
channels, so each rank's dx is a partial sum and one all-reduce over the group completes
it (`_ReduceGradient`).

Data parallel (the batch split over ranks) needs nothing of lgh: wrap ModelNew in
torch.nn.parallel.DistributedDataParallel as any module.

    import torch.distributed as dist, lgh, lgh.parallel
    dist.init_process_group("nccl")                 # one process per GPU
    full = lgh.ModelNew(K, N, G, -1.0, 1.0)          # or a checkpoint's weights
    layer = lgh.parallel.ColumnParallel.from_module(full).cuda()
    y_local = layer(x)                               # [*, N / world] of this rank's groups
    y = lgh.parallel.ColumnParallel.from_module(full, gather_output=True).cuda()(x)
"""

import torch
import torch.distributed as dist
from torch import nn

from .ops import linear_groupnorm_hardtanh

__all__ = ["ColumnParallel", "shard_ranges"]


def shard_ranges(n, num_groups, world_size, sizes=None):
    """The channel range [start, stop) of each rank: N split into world_size shards of
    whole groups. sizes: channels per rank (a list summing to N, each a multiple of the
    group size); default: the groups dealt out evenly (the first N/G mod world ranks get
    one group more). ValueError, naming the group size and the shard sizes, for a split
    that would cut a group or leave a rank without channels."""
    if world_size < 1:
        raise ValueError("lgh.parallel: world_size must be at least 1, got %d" % world_size)
    if num_groups < 1 or n % num_groups != 0:
        raise ValueError("lgh.parallel: N=%d is not divisible into %d groups" % (n, num_groups))
    gs = n // num_groups
    if sizes is None:
        if num_groups < world_size:
            raise ValueError(
                "lgh.parallel: %d groups of %d channels cannot be split over %d ranks in whole "
                "groups (each rank needs at least one group)" % (num_groups, gs, world_size))
        base, extra = divmod(num_groups, world_size)
        sizes = [(base + (1 if r < extra else 0)) * gs for r in range(world_size)]
    sizes = [int(s) for s in sizes]
    if len(sizes) != world_size or sum(sizes) != n:
        raise ValueError("lgh.parallel: shard sizes %s must be %d numbers summing to N=%d" % (
            sizes, world_size, n))
    bad = [r for r, s in enumerate(sizes) if s <= 0 or s % gs != 0]
    if bad:
        raise ValueError(
            "lgh.parallel: shard sizes %s cut a group: with %d groups the group size is %d "
            "channels, and rank %d's shard of %d channels is not a whole number of groups" % (
                sizes, num_groups, gs, bad[0], sizes[bad[0]]))
    ranges, start = [], 0
    for s in sizes:
        ranges.append((start, start + s))
        start += s
    return ranges


class _ReduceGradient(torch.autograd.Function):
    """Identity in the forward; the gradient all-reduced (summed) over the group in the
    backward: x enters every rank's shard, so dx is the sum of the ranks' partial dx."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, dx):
        dx = dx.contiguous()
        dist.all_reduce(dx, op=dist.ReduceOp.SUM, group=ctx.group)
        return dx, None


class _GatherColumns(torch.autograd.Function):
    """All-gather of the ranks' channel shards along the last dimension; the backward
    keeps this rank's columns of the gradient."""

    @staticmethod
    def forward(ctx, y, group, ranges, rank):
        ctx.rank_range = ranges[rank]
        parts = [y.new_empty(y.shape[:-1] + (b - a,)) for a, b in ranges]
        y = y.contiguous()
        if len(set(b - a for a, b in ranges)) == 1:
            dist.all_gather(parts, y, group=group)
        else:  # uneven shards: all_gather needs equal sizes, so pad to the largest
            width = max(b - a for a, b in ranges)
            padded = y.new_zeros(y.shape[:-1] + (width,))
            padded[..., :y.shape[-1]] = y
            bufs = [y.new_empty(y.shape[:-1] + (width,)) for _ in ranges]
            dist.all_gather(bufs, padded, group=group)
            parts = [buf[..., :b - a] for buf, (a, b) in zip(bufs, ranges)]
        return torch.cat(parts, dim=-1)

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.rank_range
        return dy[..., a:b].contiguous(), None, None, None


class ColumnParallel(nn.Module):
    """This rank's shard of Linear -> GroupNorm -> HardTanh split along N in whole groups.

    Parameters: weight [N_r, K], bias, gamma, beta [N_r] of this rank's channels. The
    input x [*, K] is the same on every rank (replicated); the output is [*, N_r], this
    rank's channels, or with gather_output [*, N], the whole layer. math and engine as in
    lgh.linear_groupnorm_hardtanh. group: the process group (default: the world)."""

    def __init__(self, in_features, out_features, num_groups, hardtanh_min=-1.0, hardtanh_max=1.0,
                 eps=1e-5, group=None, sizes=None, gather_output=False, math=None, engine=None,
                 device=None, dtype=None):
        super().__init__()
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("lgh.parallel.ColumnParallel needs torch.distributed initialised "
                               "(torch.distributed.init_process_group)")
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.ranges = shard_ranges(out_features, num_groups, self.world_size, sizes)
        start, stop = self.ranges[self.rank]
        self.in_features, self.out_features = in_features, out_features
        self.num_groups = num_groups
        self.local_groups = (stop - start) // (out_features // num_groups)
        self.eps, self.lo, self.hi = eps, hardtanh_min, hardtanh_max
        self.gather_output, self.math, self.engine = gather_output, math, engine
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(stop - start, in_features, **kw))
        self.bias = nn.Parameter(torch.empty(stop - start, **kw))
        self.gamma = nn.Parameter(torch.ones(stop - start, **kw))
        self.beta = nn.Parameter(torch.zeros(stop - start, **kw))

    @classmethod
    def from_module(cls, full, group=None, sizes=None, gather_output=False):
        """This rank's shard of a whole layer: an lgh.ModelNew (or lgh.Model, the same
        submodules), whose parameters every rank holds (e.g. loaded from a checkpoint)."""
        lin, gn, ht = full.gemm, full.group_norm, full.hardtanh
        p = lin.weight
        m = cls(lin.in_features, lin.out_features, gn.num_groups, ht.min_val, ht.max_val, gn.eps,
                group=group, sizes=sizes, gather_output=gather_output,
                math=getattr(full, "math", None), engine=getattr(full, "engine", None),
                device=p.device, dtype=p.dtype)
        m.load_shard(lin.weight, lin.bias, gn.weight, gn.bias)
        return m

    @torch.no_grad()
    def load_shard(self, weight, bias, gamma, beta):
        """Copies this rank's rows / entries of the whole layer's parameters."""
        a, b = self.ranges[self.rank]
        self.weight.copy_(weight[a:b])
        self.bias.copy_(bias[a:b])
        self.gamma.copy_(gamma[a:b])
        self.beta.copy_(beta[a:b])

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad and self.world_size > 1:
            x = _ReduceGradient.apply(x, self.group)
        y = linear_groupnorm_hardtanh(x, self.weight, self.bias, self.gamma, self.beta,
                                      self.local_groups, self.eps, self.lo, self.hi,
                                      math=self.math, engine=self.engine)
        if self.gather_output and self.world_size > 1:
            y = _GatherColumns.apply(y, self.group, self.ranges, self.rank)
        return y

    def extra_repr(self):
        a, b = self.ranges[self.rank]
        return "in_features=%d, channels [%d, %d) of %d, groups %d of %d, rank %d of %d" % (
            self.in_features, a, b, self.out_features, self.local_groups, self.num_groups,
            self.rank, self.world_size)


# ---------------------------------------------------------------- DTensor

# With DTensor (torch.distributed.tensor, PyTorch 2.5 and later) the split is a sharding
# rule of a custom operator. The layer's own operator takes num_groups, which a shard of N
# would have to divide; this one takes the group size instead, which every shard of whole
# groups shares, so the same call is right on the whole layer and on each shard:
#   x Replicate, weight / bias / gamma / beta Shard(0)  ->  y Shard(-1)   (no collective)
#   x Shard(0) (the batch), parameters Replicate         ->  y Shard(0)    (data parallel)
#   everything Replicate                                 ->  y Replicate
# A sharding of N that cuts a group reaches the operator as a shard whose N is not a
# multiple of the group size, and is refused there. Forward (inference) only: training a
# DTensor-sharded layer goes through ColumnParallel above.

_HAS_DTENSOR = False
try:  # pragma: no cover - depends on the PyTorch version
    from torch.distributed.tensor import DTensor, Replicate, Shard
    from torch.distributed.tensor.experimental import register_sharding
    _HAS_DTENSOR = hasattr(torch, "library") and hasattr(torch.library, "custom_op")
except ImportError:  # pragma: no cover
    DTensor = None

if _HAS_DTENSOR:
    from . import ops as _ops

    @torch.library.custom_op("lgh::linear_groupnorm_hardtanh_gs", mutates_args=())
    def _op_gs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gamma: torch.Tensor,
               beta: torch.Tensor, group_size: int, eps: float, lo: float, hi: float, math: str,
               engine: str) -> torch.Tensor:
        n = weight.shape[0]
        if group_size < 1 or n % group_size != 0:
            raise ValueError(
                "lgh: this shard holds N=%d channels, not a whole number of groups of %d: a split "
                "of the layer along N must keep its groups whole (shard sizes multiples of %d)" % (
                    n, group_size, group_size))
        return _ops._forward(x, weight, bias, gamma, beta, n // group_size, eps, lo, hi, math,
                             engine)

    @_op_gs.register_fake
    def _op_gs_fake(x, weight, bias, gamma, beta, group_size, eps, lo, hi, math, engine):
        return x.new_empty(tuple(x.shape[:-1]) + (weight.shape[0],))

    @register_sharding(torch.ops.lgh.linear_groupnorm_hardtanh_gs.default)
    def _op_gs_sharding(x, weight, bias, gamma, beta, group_size, eps, lo, hi, math, engine):
        scalars = [None] * 6
        rep, col, row = Replicate(), Shard(0), Shard(0)
        last = Shard(x.ndim - 1)
        return [
            ([last], [rep, col, col, col, col] + scalars),   # tensor parallel, whole groups
            ([row], [row, rep, rep, rep, rep] + scalars),    # data parallel
            ([rep], [rep, rep, rep, rep, rep] + scalars),
        ]


def is_dtensor(t):
    """Whether t is a DTensor (False where PyTorch has none)."""
    return _HAS_DTENSOR and isinstance(t, DTensor)


def dtensor_forward(x, weight, bias, gamma, beta, num_groups, eps=1e-5, lo=-1.0, hi=1.0,
                    math=None, engine=None):
    """lgh.linear_groupnorm_hardtanh on DTensors (lgh.linear_groupnorm_hardtanh and
    ModelNew call it for DTensor parameters): parameters sharded with Shard(0) along N in
    whole groups and x replicated give y sharded along its last dimension with no
    collective; x may be a plain tensor (taken as replicated on the parameters' mesh)."""
    if not _HAS_DTENSOR:
        raise RuntimeError("lgh.parallel: DTensor needs PyTorch 2.5 or later with torch.library.custom_op")
    if not isinstance(x, DTensor):
        x = DTensor.from_local(x, weight.device_mesh, [Replicate()] * weight.device_mesh.ndim,
                               run_check=False)
    n = weight.shape[0]
    if num_groups < 1 or n % num_groups != 0:
        raise ValueError("lgh: N=%d is not divisible into %d groups" % (n, num_groups))
    return torch.ops.lgh.linear_groupnorm_hardtanh_gs(
        x, weight, bias, gamma, beta, n // num_groups, float(eps), float(lo), float(hi),
        _ops._math_name(math), _ops._engine_name(engine))


def distribute_model(model, mesh):
    """Shards an lgh.ModelNew's parameters over a 1-D DeviceMesh along N in whole groups
    (Shard(0); a mesh whose size does not divide the groups evenly is refused with the
    group size and the shard sizes, see shard_ranges). Its forward then returns y sharded
    along the last dimension (y.full_tensor() gathers it). In place; returns the model."""
    if not _HAS_DTENSOR:
        raise RuntimeError("lgh.parallel: DTensor needs PyTorch 2.5 or later with torch.library.custom_op")
    from torch.distributed.tensor import distribute_tensor
    world = mesh.size()
    n, g = model.gemm.out_features, model.group_norm.num_groups
    # DTensor shards evenly (torch.chunk): each shard must be a whole number of groups
    chunk = -(-n // world)
    shard_ranges(n, g, world, [min(chunk, max(n - r * chunk, 0)) for r in range(world)])
    for mod, names in ((model.gemm, ("weight", "bias")), (model.group_norm, ("weight", "bias"))):
        for name in names:
            p = getattr(mod, name)
            setattr(mod, name, torch.nn.Parameter(distribute_tensor(p.detach(), mesh, [Shard(0)]),
                                                  requires_grad=False))
    return model
