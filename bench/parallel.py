#!/usr/bin/env python3
"""bench/parallel.py - the layer split along N over the GPUs of one host (lgh.parallel,
NCCL) against one GPU: forward throughput and training-step throughput, and the sharded
results checked against one GPU's.

    LGH_LIBRARY=build/liblgh.so PYTHONPATH=python python3 bench/parallel.py \
        [--gpus 2] [--shape 8192x8192x8192:16] [--modes tf32,3xtf32] [--out DIR]

Each process drives one GPU; every process builds the same whole layer from one seed,
keeps its shard (ColumnParallel, output left sharded along N: no collective in the
forward), and times back-to-back calls with CUDA events (median of 7 x 10 calls). The
one-GPU figure is the whole layer on GPU 0 in the same run. Throughput ratio = one GPU's
time / the sharded time (all ranks finish together: the slowest rank's median counts).
Training step = forward + backward of x, W, b, γ, β (dx all-reduced over NCCL). Writes
<out>/parallel.json with records (shape, dtype, math, impl, ms, tflops, rel_err): impl
lgh-tp<gpus> / lgh-tp<gpus>-train and lgh-1gpu / lgh-1gpu-train.
"""
import argparse
import json
import os
import sys

import torch
import torch.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
import lgh  # noqa: E402
import lgh.parallel as par  # noqa: E402
from train import time_step  # noqa: E402  (bench/train.py)


def median_ms(fn, calls=10):
    """train.py's time_step: median of 7 rounds of `calls` back-to-back calls."""
    return time_step(fn, calls)[0]


def build(m, k, n, g, dev):
    torch.manual_seed(0)
    full = lgh.ModelNew(k, n, g, -1.0, 1.0).to(dev)
    x = torch.randn(m, k, device=dev)
    dy = torch.randn(m, n, device=dev)
    return full, x, dy


def rank_main(rank, world, init, m, k, n, g, modes, out):
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=init, rank=rank, world_size=world)
    dev = torch.device("cuda", rank)
    records = []
    for mode in modes:
        torch.set_float32_matmul_precision("highest" if mode == "3xtf32" else "high")
        full, x, dy = build(m, k, n, g, dev)
        flops = 2.0 * m * n * k
        shard = par.ColumnParallel.from_module(full)
        a, b = shard.ranges[rank]
        with torch.no_grad():
            y = shard(x)
            ref = full(x)[:, a:b]
        err = ((y.double() - ref.double()).norm() / ref.double().norm()).item()
        with torch.no_grad():
            t_tp = median_ms(lambda: shard(x))
        xs = x.clone().requires_grad_(True)

        def step():
            shard.zero_grad(set_to_none=True)
            shard(xs).backward(dy[:, a:b])
        t_tp_train = median_ms(step)
        worst = torch.tensor([t_tp, t_tp_train], device=dev)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        if rank == 0:
            with torch.no_grad():
                t_one = median_ms(lambda: full(x))
            xo = x.clone().requires_grad_(True)

            def step_one():
                full.zero_grad(set_to_none=True)
                full(xo).backward(dy)
            t_one_train = median_ms(step_one)
            shape = {"m": m, "k": k, "n": n, "groups": g}
            for impl, ms, mult in (("lgh-1gpu", t_one, 1), ("lgh-tp%d" % world, worst[0].item(), 1),
                                   ("lgh-1gpu-train", t_one_train, 3),
                                   ("lgh-tp%d-train" % world, worst[1].item(), 3)):
                records.append({"shape": shape, "dtype": "float32", "math": mode, "impl": impl,
                                "ms": ms, "tflops": mult * flops / ms / 1e9,
                                "rel_err": err if impl.startswith("lgh-tp") else 0.0})
            print("%s: one GPU %.3f ms, %d GPUs %.3f ms (%.2fx); step %.3f vs %.3f ms (%.2fx); "
                  "rel err vs one GPU %.2g" % (mode, t_one, world, worst[0].item(),
                                                t_one / worst[0].item(), t_one_train,
                                                worst[1].item(), t_one_train / worst[1].item(), err))
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "parallel.json"), "w") as f:
            json.dump({"format": 1, "records": records}, f, indent=1)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpus", type=int, default=torch.cuda.device_count())
    p.add_argument("--shape", default="8192x8192x8192:16", help="MxKxN:G")
    p.add_argument("--modes", default="tf32,3xtf32")
    p.add_argument("--out", default=".")
    a = p.parse_args()
    if a.gpus < 2:
        p.error("needs at least 2 GPUs (found %d)" % torch.cuda.device_count())
    dims, g = a.shape.split(":")
    m, k, n = (int(v) for v in dims.split("x"))
    init = "file://" + os.path.join(os.path.abspath(a.out), ".parallel-rendezvous")
    if os.path.exists(init[7:]):
        os.remove(init[7:])
    torch.multiprocessing.spawn(rank_main, args=(a.gpus, init, m, k, n, int(g), a.modes.split(","), a.out),
                                nprocs=a.gpus, join=True)


if __name__ == "__main__":
    main()
