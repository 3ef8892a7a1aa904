"""The weight-gradient product dW = dhᵀ·x of the training step (reference problem M=1024,
K=N=8192) under cuBLAS in each operand layout, TF32 and bf16, timed with CUDA events
(median of 50), next to the forward's product: which layouts run at the forward's speed,
and what a transpose costs.

    python3 bench/micro/wgrad_layouts.py [--m 1024 --k 8192 --n 8192]

Layouts (torch's calls; cuBLAS sees column-major operands):
  dh.t() @ x          both operands reduced along their strided dimension (PyTorch's own)
  dht @ x             dhᵀ stored (K-major), x as is
  dh.t() @ xt.t()     xᵀ stored (K-major), dh as is
  dht @ xt.t()        both stored transposed (both K-major)
"""
import argparse
import statistics

import torch


def bench(fn, reps=50):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1))
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=1024)
    ap.add_argument("--k", type=int, default=8192)
    ap.add_argument("--n", type=int, default=8192)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    for dt in (torch.float32, torch.bfloat16):
        x = torch.randn(a.m, a.k, device="cuda", dtype=dt)
        w = torch.randn(a.n, a.k, device="cuda", dtype=dt)
        dh = torch.randn(a.m, a.n, device="cuda", dtype=dt)
        dht = dh.t().contiguous()
        xt = x.t().contiguous()
        rows = [
            ("forward x @ w.t()", lambda: x @ w.t()),
            ("dgrad dh @ w", lambda: dh @ w),
            ("wgrad dh.t() @ x", lambda: dh.t() @ x),
            ("wgrad dht @ x", lambda: dht @ x),
            ("wgrad dh.t() @ xt.t()", lambda: dh.t() @ xt.t()),
            ("wgrad dht @ xt.t()", lambda: dht @ xt.t()),
            ("transpose dh", lambda: dh.t().contiguous()),
        ]
        for name, fn in rows:
            print("%-9s %-24s %.4f ms" % (str(dt).replace("torch.", ""), name, bench(fn)), flush=True)


if __name__ == "__main__":
    main()
