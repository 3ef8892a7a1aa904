"""Training-step benchmark: forward + backward of all five inputs (x, W, b, γ, β) of
Linear -> GroupNorm -> Hardtanh, lgh against PyTorch, side by side in one process.

    python3 bench/train.py [--shape 1024x8192x8192:16] [--reps 10] [--out DIR] [--name NAME]
                           [--classes fp32,3xtf32,tf32,bf16]

For each precision class the same inputs, parameters and output gradient dy go through:
  float32-accurate: torch-eager-train (fp32, no TF32) | lgh-auto-train (3xtf32)
  tf32:             torch-eager-train | torch-compile-train | lgh-auto-train
  bf16:             torch-eager-train | torch-compile-train | lgh-auto-train
and lgh once more with the memory-saving choice (impl lgh-auto-train-recompute: the
forward keeps only mean / rstd and the backward recomputes the pre-norm).

A class's implementations are timed in interleaved rounds (time_interleaved), so that
the card's clock drift over a run falls on all of them alike.

Each record has the benchmark's usual fields (shape, dtype, math, impl, ms, tflops,
rel_err) plus grad_errs (relative Frobenius error of each gradient against a float64
PyTorch reference of the same step) and saved_bytes (what autograd keeps between forward
and backward, beyond the inputs and parameters themselves). rel_err is the largest of the
five gradient errors. tflops counts the three GEMMs of a step (6·M·N·K).

The clamp makes the gradient discontinuous: dy is set to zero wherever the float64
pre-clamp value lies within 1e-3 of lo or hi, so a legitimate mask flip from rounding
cannot dominate the comparison (every implementation gets the same dy).
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import lgh  # noqa: E402


def parse_shape(text):
    dims, groups = text.split(":")
    m, k, n = (int(v) for v in dims.lower().split("x"))
    return {"m": m, "k": k, "n": n, "groups": int(groups)}


class TorchLayer(nn.Module):
    def __init__(self, k, n, g, lo, hi):
        super().__init__()
        self.linear = nn.Linear(k, n)
        self.norm = nn.GroupNorm(g, n)
        self.act = nn.Hardtanh(lo, hi)

    def forward(self, x):
        return self.act(self.norm(self.linear(x)))


def make_problem(shape, seed=0, lo=-2.0, hi=2.0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    m, k, n, groups = shape["m"], shape["k"], shape["n"], shape["groups"]
    bound = 1.0 / k ** 0.5

    def u(*size, lo_=0.0, hi_=1.0):
        return torch.rand(*size, generator=g, device="cuda", dtype=torch.float64) * (hi_ - lo_) + lo_

    p = {
        "x": u(m, k),
        "w": u(n, k, lo_=-bound, hi_=bound),
        "b": u(n, lo_=-bound, hi_=bound),
        "gamma": u(n, lo_=0.5, hi_=1.5),
        "beta": u(n, lo_=-0.5, hi_=0.5),
        "dy": u(m, n, lo_=-1.0, hi_=1.0),
        "groups": groups, "lo": lo, "hi": hi, "eps": 1e-5,
    }
    # float64 pre-clamp z; dy zeroed near the clamp's edges
    with torch.no_grad():
        h = p["x"] @ p["w"].T + p["b"]
        z = torch.nn.functional.group_norm(h, groups, p["gamma"], p["beta"], p["eps"])
        tol = 1e-3 * max(1.0, abs(lo), abs(hi))
        near = ((z - lo).abs() < tol) | ((z - hi).abs() < tol)
        p["dy"][near] = 0.0
    return p


def reference_grads(p):
    leaves = [p[k].clone().requires_grad_(True) for k in ("x", "w", "b", "gamma", "beta")]
    x, w, b, gamma, beta = leaves
    h = torch.nn.functional.linear(x, w, b)
    z = torch.nn.functional.group_norm(h, p["groups"], gamma, beta, p["eps"])
    y = torch.nn.functional.hardtanh(z, p["lo"], p["hi"])
    y.backward(p["dy"])
    return [t.grad.detach() for t in leaves]


def rel(a, ref):
    a = a.double()
    return float((a - ref).norm() / ref.norm().clamp_min(1e-300))


class Step:
    """One implementation's training step on leaves of one dtype."""

    def __init__(self, impl, p, dtype, fn):
        self.impl = impl
        self.leaves = [p[k].to(dtype).clone().requires_grad_(True)
                       for k in ("x", "w", "b", "gamma", "beta")]
        self.dy = p["dy"].to(dtype)
        self.fn = fn

    def __call__(self):
        for t in self.leaves:
            t.grad = None
        y = self.fn(*self.leaves)
        y.backward(self.dy)

    def grads(self):
        return [t.grad for t in self.leaves]

    def saved_bytes(self):
        """Bytes autograd keeps between forward and backward, beyond the leaves."""
        leaf_ptrs = {t.untyped_storage().data_ptr() for t in self.leaves}
        seen = {}

        def pack(t):
            try:
                s = t.untyped_storage()
                if s.data_ptr() not in leaf_ptrs:
                    seen[s.data_ptr()] = s.nbytes()
            except Exception:  # noqa: BLE001 - a tensor without storage (fake) counts nothing
                pass
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = self.fn(*self.leaves)
        del y
        return sum(seen.values())


def time_round(step, reps):
    """Mean time in ms of `reps` back-to-back steps (as in a training loop: no
    synchronisation between steps, so the host's launch work overlaps the GPU's; a
    synchronisation after every step would add the launch latency of a whole step and let
    the clocks drop while the GPU waits), by CUDA events around the round."""
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(reps):
        step()
    e1.record()
    e1.synchronize()
    return e0.elapsed_time(e1) / reps


def time_step(step, reps, warmup=5, rounds=7):
    """Median over `rounds` rounds (time_round) of `reps` steps, the fastest round, and
    every round's mean in order (a drift from first to last shows the clocks settling)."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = [time_round(step, reps) for _ in range(rounds)]
    return statistics.median(times), min(times), times


def time_interleaved(steps, reps, rounds=7):
    """time_step's measure for several implementations at once: each round times `reps`
    back-to-back steps of every implementation in turn; returns, per implementation, its
    rounds' mean step times in ms."""
    out = [[] for _ in steps]
    for _ in range(rounds):
        for i, step in enumerate(steps):
            out[i].append(time_round(step, reps))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="1024x8192x8192:16")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--out", default=None)
    ap.add_argument("--name", default="train")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--classes", default="fp32,3xtf32,tf32,bf16",
                    help="the precision classes to run, by their math name (comma-separated)")
    a = ap.parse_args(argv)
    wanted = set(a.classes.split(","))
    if wanted - {"fp32", "3xtf32", "tf32", "bf16"}:
        ap.error("unknown class(es): " + ", ".join(sorted(wanted - {"fp32", "3xtf32", "tf32", "bf16"})))
    shape = parse_shape(a.shape)
    p = make_problem(shape)
    ref = reference_grads(p)
    m, k, n, groups = shape["m"], shape["k"], shape["n"], shape["groups"]
    flops = 6.0 * m * n * k
    lo, hi, eps = p["lo"], p["hi"], p["eps"]

    def torch_fn(dtype):
        mod = TorchLayer(k, n, groups, lo, hi).cuda().to(dtype)

        def f(x, w, b, gamma, beta):
            h = torch.nn.functional.linear(x, w, b)
            z = torch.nn.functional.group_norm(h, groups, gamma, beta, eps)
            return torch.nn.functional.hardtanh(z, lo, hi)
        del mod
        return f

    def lgh_fn(math, save_prenorm=True):
        def f(x, w, b, gamma, beta):
            return lgh.linear_groupnorm_hardtanh(x, w, b, gamma, beta, groups, eps, lo, hi,
                                                 math=math, save_prenorm=save_prenorm)
        return f

    classes = [
        ("float32", "fp32", "highest", [("torch-eager-train", torch.float32, torch_fn, None)]),
        ("float32", "3xtf32", "highest", [("lgh-auto-train", torch.float32, lgh_fn, "3xtf32"),
                                          ("lgh-auto-train-recompute", torch.float32, lgh_fn, "3xtf32")]),
        ("float32", "tf32", "high", [("torch-eager-train", torch.float32, torch_fn, None),
                                     ("torch-compile-train", torch.float32, torch_fn, "compile"),
                                     ("lgh-auto-train", torch.float32, lgh_fn, "tf32"),
                                     ("lgh-auto-train-recompute", torch.float32, lgh_fn, "tf32")]),
        ("bfloat16", "bf16", "high", [("torch-eager-train", torch.bfloat16, torch_fn, None),
                                      ("torch-compile-train", torch.bfloat16, torch_fn, "compile"),
                                      ("lgh-auto-train", torch.bfloat16, lgh_fn, None),
                                      ("lgh-auto-train-recompute", torch.bfloat16, lgh_fn, None)]),
    ]
    records = []
    for dtype_name, math_, precision, impls in classes:
        if math_ not in wanted:
            continue
        torch.set_float32_matmul_precision(precision)
        torch.backends.cuda.matmul.allow_tf32 = precision != "highest"
        torch.backends.cudnn.allow_tf32 = precision != "highest"
        # Build and warm every implementation of the class, then time them in interleaved
        # rounds (time_interleaved): the card's clocks drift over a run (measured: the
        # same step 10-15% slower in its last rounds than in its first), and interleaving
        # gives each implementation the same share of every state.
        entries, class_recs = [], []
        for impl, dtype, maker, opt in impls:
            if impl.startswith("torch"):
                f = maker(dtype)
                if opt == "compile":
                    if a.no_compile:
                        continue
                    f = torch.compile(f)
            else:
                f = maker(opt, save_prenorm=not impl.endswith("recompute"))
            rec = {"shape": shape, "dtype": dtype_name, "math": math_, "impl": impl, "ms": None,
                   "tflops": None, "rel_err": None}
            try:
                step = Step(impl, p, dtype, f)
                for _ in range(5):
                    step()
                torch.cuda.synchronize()
                entries.append((rec, step, opt))
            except Exception as e:  # noqa: BLE001 - recorded, the run goes on
                rec.update(status="error", note=str(e)[:300])
            class_recs.append(rec)
        records += class_recs
        t0 = time.time()
        timed = time_interleaved([step for _, step, _ in entries], a.reps) if entries else []
        for (rec, step, opt), rounds in zip(entries, timed):
            try:
                ms = statistics.median(rounds)
                step()
                torch.cuda.synchronize()
                errs = {name: rel(g, r) for name, g, r in
                        zip(("dx", "dW", "db", "dgamma", "dbeta"), step.grads(), ref)}
                rec.update(ms=round(ms, 4), min_ms=round(min(rounds), 4),
                           round_ms=[round(t, 4) for t in rounds],
                           tflops=round(flops / (ms * 1e-3) / 1e12, 1),
                           rel_err=max(errs.values()), grad_errs=errs,
                           saved_bytes=step.saved_bytes(), reps=a.reps,
                           engine=(lgh.engine_for(*step.leaves, groups, eps, lo, hi, math=opt)
                                   if rec["impl"].startswith("lgh") else None),
                           wall_s=round(time.time() - t0, 1))
            except Exception as e:  # noqa: BLE001 - recorded, the run goes on
                rec.update(status="error", note=str(e)[:300])
        for rec in class_recs:
            print(f"{dtype_name:8s} {math_:6s} {rec['impl']:26s} "
                  + (f"{rec['ms']:8.3f} ms  rel_err {rec['rel_err']:.2e}  saved {rec['saved_bytes'] / 2**20:7.1f} MiB"
                     f"  {' '.join('%s %.1e' % kv for kv in rec['grad_errs'].items())}"
                     if rec.get("ms") else f"error: {rec.get('note')}"), flush=True)
    doc = {"meta": {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                    "lgh": lgh.version() if hasattr(lgh, "version") else None,
                    "commit": os.environ.get("LGH_BENCH_COMMIT"), "date": time.strftime("%Y-%m-%d")},
           "records": records}
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, a.name + ".json"), "w") as fh:
            json.dump(doc, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
