"""lgh.parallel: the layer split along N in whole groups over 2 and 4 processes (gloo,
CPU engine), and data parallel with DistributedDataParallel, against one process.

Each rank builds the same whole layer and inputs from one seed; the sharded forward must
equal the whole layer's output on the rank's channels, and the sharded backward (dx
all-reduced, dW, db, dγ, dβ of the rank's channels gathered) the whole layer's gradients,
within float32 rounding (the CPU engine in fp32 math; a rank's groups are computed by the
same code as in one process, but dx is summed in another order).
"""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist

import lgh
import lgh.parallel as par

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

M, K, N, G = 6, 40, 96, 8  # groups of 12 channels


# ---------------------------------------------------------------- shard sizes (no processes)

def test_shard_ranges_even_and_uneven():
    assert par.shard_ranges(N, G, 2) == [(0, 48), (48, 96)]
    assert par.shard_ranges(N, G, 4) == [(0, 24), (24, 48), (48, 72), (72, 96)]
    # 8 groups over 3 ranks: 3, 3, 2 groups
    assert par.shard_ranges(N, G, 3) == [(0, 36), (36, 72), (72, 96)]
    assert par.shard_ranges(N, G, 2, sizes=[12, 84]) == [(0, 12), (12, 96)]


def test_shard_ranges_refuse_cut_groups():
    with pytest.raises(ValueError) as e:
        par.shard_ranges(N, G, 2, sizes=[50, 46])
    msg = str(e.value)
    assert "group size is 12" in msg and "[50, 46]" in msg and "rank 0" in msg
    with pytest.raises(ValueError, match="cannot be split over 16 ranks"):
        par.shard_ranges(N, G, 16)
    with pytest.raises(ValueError, match="summing to N=96"):
        par.shard_ranges(N, G, 2, sizes=[48, 24])
    with pytest.raises(ValueError, match="not divisible"):
        par.shard_ranges(N, 7, 2)


def test_column_parallel_needs_a_process_group():
    if dist.is_initialized():
        pytest.skip("a process group exists in this process")
    with pytest.raises(RuntimeError, match="init_process_group"):
        par.ColumnParallel(K, N, G)


# ---------------------------------------------------------------- multi-process

def _whole(seed):
    torch.manual_seed(seed)
    full = lgh.ModelNew(K, N, G, -0.8, 0.9, math="fp32", engine="cpu")
    with torch.no_grad():
        full.group_norm.weight.uniform_(0.5, 1.5)
        full.group_norm.bias.uniform_(-0.3, 0.3)
    x = torch.randn(M, K)
    dy = torch.randn(M, N)
    return full, x, dy


def _close(got, want, what):
    err = (got.double() - want.double()).norm() / max(want.double().norm().item(), 1e-30)
    assert err <= 1e-5, "%s: relative error %.3g" % (what, err)


def _tensor_parallel_rank(rank, world, init, sizes):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        full, x, dy = _whole(1234)
        # the whole layer in this process
        xr = x.clone().requires_grad_(True)
        y_ref = full(xr)
        y_ref.backward(dy)
        grads_ref = [xr.grad, full.gemm.weight.grad, full.gemm.bias.grad,
                     full.group_norm.weight.grad, full.group_norm.bias.grad]

        # the rank's shard, output left sharded
        shard = par.ColumnParallel.from_module(full, sizes=sizes)
        a, b = shard.ranges[rank]
        xs = x.clone().requires_grad_(True)
        y = shard(xs)
        assert tuple(y.shape) == (M, b - a)
        _close(y, y_ref[:, a:b], "rank %d y" % rank)
        y.backward(dy[:, a:b])
        _close(xs.grad, grads_ref[0], "rank %d dx (all-reduced)" % rank)
        for p, ref, name in zip((shard.weight, shard.bias, shard.gamma, shard.beta), grads_ref[1:],
                                ("dW", "db", "dgamma", "dbeta")):
            _close(p.grad, ref[a:b], "rank %d %s" % (rank, name))

        # gathered output: the whole y on every rank, gradients as before
        gathered = par.ColumnParallel.from_module(full, sizes=sizes, gather_output=True)
        xg = x.clone().requires_grad_(True)
        yg = gathered(xg)
        _close(yg, y_ref, "rank %d gathered y" % rank)
        yg.backward(dy)
        _close(xg.grad, grads_ref[0], "rank %d dx through the gather" % rank)
        _close(gathered.weight.grad, grads_ref[1][a:b], "rank %d dW through the gather" % rank)
    finally:
        dist.destroy_process_group()


def _data_parallel_rank(rank, world, init):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        full, x, dy = _whole(99)
        ref = lgh.ModelNew(K, N, G, -0.8, 0.9, math="fp32", engine="cpu")
        ref.load_state_dict(full.state_dict())
        (ref(x) * dy).sum().backward()
        ddp = torch.nn.parallel.DistributedDataParallel(full)
        rows = torch.arange(M).chunk(world)[rank]
        # DDP averages gradients over ranks: scale the local loss so the sum is the whole one
        (ddp(x[rows]) * dy[rows]).sum().mul(world).backward()
        for (name, p), q in zip(full.named_parameters(), ref.parameters()):
            _close(p.grad, q.grad, "rank %d %s" % (rank, name))
    finally:
        dist.destroy_process_group()


def _spawn(fn, world, *args):
    with tempfile.TemporaryDirectory() as d:
        init = "file://" + os.path.join(d, "rendezvous")
        torch.multiprocessing.spawn(fn, args=(world, init) + args, nprocs=world, join=True)


@pytest.mark.parametrize("world", [2, 4])
def test_tensor_parallel_matches_one_process(world):
    _spawn(_tensor_parallel_rank, world, None)


def test_tensor_parallel_uneven_shards():
    _spawn(_tensor_parallel_rank, 2, [12, 84])  # one group on rank 0, seven on rank 1


def test_data_parallel_matches_one_process():
    _spawn(_data_parallel_rank, 2)


# ---------------------------------------------------------------- DTensor (PyTorch >= 2.5)

def _dtensor_rank(rank, world, init):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        full, x, _ = _whole(7)
        with torch.no_grad():
            y_ref = full(x)
            par.distribute_model(full, mesh)
            y = full(x)  # x plain: taken as replicated
        assert y.placements == (Shard(1),), y.placements  # left sharded: nothing gathered
        a, b = par.shard_ranges(N, G, world)[rank]
        _close(y.to_local(), y_ref[:, a:b], "rank %d local y" % rank)
        _close(y.full_tensor(), y_ref, "rank %d gathered y" % rank)

        # the batch split, parameters replicated: data parallel
        p = [distribute_tensor(t.full_tensor(), mesh, [Replicate()]) for t in
             (full.gemm.weight, full.gemm.bias, full.group_norm.weight, full.group_norm.bias)]
        xd = distribute_tensor(x, mesh, [Shard(0)])
        with torch.no_grad():
            yd = lgh.linear_groupnorm_hardtanh(xd, *p, G, full.group_norm.eps, -0.8, 0.9,
                                               math="fp32", engine="cpu")
        assert yd.placements == (Shard(0),), yd.placements
        _close(yd.full_tensor(), y_ref, "rank %d batch-sharded y" % rank)

        # a mesh that would cut the groups: 2 groups of 48 channels over 4 ranks
        if world == 4:
            cut = lgh.ModelNew(K, N, 2, -1.0, 1.0, math="fp32", engine="cpu")
            with pytest.raises(ValueError, match="group size is 48"):
                par.distribute_model(cut, mesh)
            w = distribute_tensor(cut.gemm.weight.detach(), mesh, [Shard(0)])
            v = [distribute_tensor(t.detach(), mesh, [Shard(0)]) for t in
                 (cut.gemm.bias, cut.group_norm.weight, cut.group_norm.bias)]
            with pytest.raises(ValueError, match="not a whole number of groups of 48"):
                with torch.no_grad():
                    lgh.linear_groupnorm_hardtanh(x, w, *v, 2, math="fp32", engine="cpu")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not par._HAS_DTENSOR, reason="DTensor needs PyTorch 2.5+ with custom_op")
@pytest.mark.parametrize("world", [2, 4])
def test_dtensor_column_split_matches_one_process(world):
    _spawn(_dtensor_rank, world)
