"""Where a training step's time goes: a few lgh training steps (forward + backward of all
five inputs) under torch.profiler, the CUDA kernels summed by name.

    python3 bench/profile_train.py [--shape 1024x8192x8192:16] [--dtype float32|bfloat16]
                                   [--math tf32|3xtf32] [--steps 5] [--torch]

--torch profiles PyTorch's own modules (eager) instead, for comparison.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import lgh  # noqa: E402
from train import time_round  # noqa: E402  (bench/train.py)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="1024x8192x8192:16")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--math", default="tf32")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--torch", action="store_true")
    a = ap.parse_args()
    dims, g = a.shape.split(":")
    m, k, n = (int(v) for v in dims.split("x"))
    g = int(g)
    dt = getattr(torch, a.dtype)
    torch.backends.cuda.matmul.allow_tf32 = a.math == "tf32"
    dev = "cuda"
    x = torch.rand(m, k, device=dev, dtype=dt, requires_grad=True)
    w = ((torch.rand(n, k, device=dev) * 2 - 1) / k ** 0.5).to(dt).requires_grad_(True)
    b = ((torch.rand(n, device=dev) * 2 - 1) / k ** 0.5).to(dt).requires_grad_(True)
    gamma = (torch.rand(n, device=dev) + 0.5).to(dt).requires_grad_(True)
    beta = (torch.rand(n, device=dev) - 0.5).to(dt).requires_grad_(True)
    dy = (torch.rand(m, n, device=dev) * 2 - 1).to(dt)

    def step():
        for t in (x, w, b, gamma, beta):
            t.grad = None
        if a.torch:
            h = torch.nn.functional.linear(x, w, b)
            y = torch.nn.functional.hardtanh(torch.nn.functional.group_norm(h, g, gamma, beta, 1e-5), -2, 2)
        else:
            y = lgh.linear_groupnorm_hardtanh(x, w, b, gamma, beta, g, 1e-5, -2.0, 2.0,
                                              math=a.math if dt == torch.float32 else None)
        y.backward(dy)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(a.steps):
            step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=70))
    # GPU work per step (kernels and copies, as the profiler saw them) against the time of a
    # step in a loop of back-to-back steps: the difference is time the GPU waits (host-bound
    # launches, gaps) or runs slower than under the profiler.
    kinds = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_us = sum(e.self_device_time_total for e in kinds) / a.steps
    wall_us = time_round(step, 20) * 1000
    print("per step: GPU work %.1f us, back-to-back step %.1f us, difference %.1f us"
          % (gpu_us, wall_us, wall_us - gpu_us))


if __name__ == "__main__":
    main()
