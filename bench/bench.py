#!/usr/bin/env python3
"""bench/bench.py - times lgh side by side with everything a PyTorch user could use instead.

Run on a GPU machine from the repository root (see bench/README.md):

    PYTHONPATH=python LGH_LIBRARY=build/liblgh.so python3 bench/bench.py --suite quick
    python3 bench/bench.py --suite full --out DIR --seed path/to/seed_modelnew.py
    python3 bench/bench.py --list --suite full          # print the plan, time nothing

For every shape and mode (float32 with math fp32 / tf32 / 3xtf32, bfloat16, float16) it
times, in one process and one order: cuBLAS addmm alone (the bar), every lgh engine
(probed: one that cannot run the problem is recorded as not supported), lgh.ModelNew,
PyTorch eager, torch.compile and the seed's Triton ModelNew. Each output is first checked
against a float64 reference computed with torch from the same inputs; then the call is
warmed up and timed with CUDA events, one pair per call, median of --reps (>= 50) calls,
with x rotated over enough buffers that they do not fit in L2 together.

It writes <out>/<gpu-slug>-<yyyy-mm-dd>.json (layout: bench/report.py), the same name
.md (tables) and .png (plot.py), rewriting the JSON and markdown after every shape so an
interrupted run keeps what it measured. Progress goes to stderr, a short table to stdout
last. Exit status: 0, or 3 with --strict when a result failed its check, 1 on a setup
error.

--device cpu runs the same harness on the CPU with wall-clock timing: only for testing the
harness on machines without a GPU (tiny shapes), never for numbers.
"""

import argparse
import contextlib
import datetime
import importlib.util
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import report as R  # noqa: E402  (bench/report.py, standard library only)

REF_SHAPE = (1024, 8192, 8192, 16)
SHAPE_SETS = {
    "ref": [REF_SHAPE],
    "m-sweep": [(m, 8192, 8192, 16) for m in (1, 16, 128, 1024, 4096, 16384)],
    "llama": [(1024, 4096, 11008, 32)],
    # small batches: W's bytes dominate (split K on sm90)
    "small-m": [(m, 8192, 8192, 16) for m in (1, 8, 32, 64, 128, 256)] + [(256, 4096, 11008, 32)],
    # the batches where the fused kernel should match the GEMM alone, and the LLaMA-style layer
    "large-m": [(m, 8192, 8192, 16) for m in (512, 1024, 2048, 4096, 16384)] + [(1024, 4096, 11008, 32)],
    "g-sweep": [(1024, 8192, 8192, 8192 // gs) for gs in (8, 16, 32, 64, 128, 256, 512, 1024, 2048)],
}
SUITES = {
    "quick": {"shapes": ["ref"], "modes": ["tf32", "3xtf32", "bf16"]},
    "full": {"shapes": ["ref", "m-sweep", "llama", "g-sweep"], "modes": list(R.MODE_ORDER)},
}
# Per-suite defaults for what can take long: compile limits (seconds).
SUITE_COMPILE = {"quick": (60.0, 100.0), "full": (120.0, 240.0)}  # (per compile, total)

CUDA_ENGINES = ["auto", "sm90", "sm80", "cublaslt"]
CPU_ENGINES = ["auto", "cpu"]

X_DIST = "x ~ U[0,1); W, b ~ U(-1/sqrt(K), 1/sqrt(K)); gamma ~ U[0.5,1.5); beta ~ U[-0.5,0.5)"


# ---------------------------------------------------------------- arguments and the plan


def parse_shape(token):
    """'MxKxN:G' (or 'MxKxNgG') -> (m, k, n, g); ValueError in words otherwise."""
    t = token.strip().lower().replace("g", ":")
    try:
        dims, groups = t.split(":")
        m, k, n = (int(v) for v in dims.split("x"))
        g = int(groups)
    except ValueError:
        raise ValueError(f"shape {token!r}: write MxKxN:G, e.g. 1024x8192x8192:16, or one of "
                         f"{', '.join(SHAPE_SETS)}") from None
    if min(m, k, n, g) < 1:
        raise ValueError(f"shape {token!r}: M, K, N and G must be >= 1")
    if n % g:
        raise ValueError(f"shape {token!r}: N={n} is not a multiple of G={g}")
    return (m, k, n, g)


def parse_shapes(text):
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if not tok:
            continue
        for s in SHAPE_SETS.get(tok, None) or [parse_shape(tok)]:
            if s not in out:
                out.append(s)
    if not out:
        raise ValueError("--shapes names no shape")
    return out


def parse_list(text, allowed, what):
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad:
        raise ValueError(f"{what}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
    return items


def build_parser():
    p = argparse.ArgumentParser(
        prog="bench.py",
        description="Time lgh side by side with PyTorch eager, torch.compile, cuBLAS addmm "
                    "and the seed's ModelNew; write results JSON, markdown and a plot.")
    p.add_argument("--suite", choices=sorted(SUITES), default="quick",
                   help="quick: reference problem, modes tf32,3xtf32,bf16 (~2 min on an H100); "
                        "full: every shape and mode")
    p.add_argument("--shapes", help="comma list of MxKxN:G or sets (" + ", ".join(SHAPE_SETS) +
                   "); replaces the suite's shapes")
    p.add_argument("--modes", help="comma list of " + ", ".join(R.MODE_ORDER) +
                   "; replaces the suite's modes")
    p.add_argument("--impls", help="only these implementations (names or prefixes, comma list, "
                   "e.g. lgh,addmm,torch-eager)")
    p.add_argument("--engines", help="lgh engines to probe (default auto,sm90,sm80,cublaslt)")
    p.add_argument("--tag", help="appended to the lgh engines' impl names (lgh-auto-TAG, ...), for runs "
                   "under another setting, e.g. 'tuned' after `lgh tune` filled the tuning file")
    p.add_argument("--compile-modes", default="tf32,bf16",
                   help="modes in which torch.compile is timed (default tf32,bf16)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--compile-timeout", type=float,
                   help="seconds one torch.compile may take (default quick 60, full 120)")
    p.add_argument("--compile-budget", type=float,
                   help="seconds all compiles may take together (default quick 100, full 240)")
    p.add_argument("--seed", metavar="PATH",
                   help="the seed's seed_modelnew.py (default .seed/seed_modelnew.py or "
                        "shared/seed/seed_modelnew.py in the repository, when present)")
    p.add_argument("--out", metavar="DIR", help="output folder (default bench/results)")
    p.add_argument("--name", help="output base name (default <gpu-slug>-<yyyy-mm-dd>)")
    p.add_argument("--reps", type=int, default=100, help="timed calls per measurement (>= 50)")
    p.add_argument("--max-seconds", type=float, default=2.0,
                   help="timed seconds per measurement above which fewer than --reps calls "
                        "are timed (never fewer than 50)")
    p.add_argument("--warmup-ms", type=float, default=100.0,
                   help="warm-up per measurement, in ms of calls (at least 5 calls)")
    p.add_argument("--time-limit", type=float, default=0.0,
                   help="stop starting measurements after this many seconds (0: none); "
                        "what was measured is still written")
    p.add_argument("--peak-size", type=int, help="size of the square matmul that measures the "
                   "peak (default 8192; 256 on --device cpu)")
    p.add_argument("--rng-seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--eps", type=float, default=1e-5)
    p.add_argument("--lo", type=float, default=-2.0)
    p.add_argument("--hi", type=float, default=2.0)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cpu: test the harness without a GPU (no meaningful numbers)")
    p.add_argument("--strict", action="store_true",
                   help="exit 3 when any output fails its check against the reference")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    p.add_argument("--list", action="store_true", help="print the plan and exit")
    return p


def parse_args(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    suite = SUITES[a.suite]
    try:
        a.shape_list = parse_shapes(a.shapes) if a.shapes else parse_shapes(",".join(suite["shapes"]))
        a.mode_list = parse_list(a.modes, R.MODE_ORDER, "--modes") if a.modes else list(suite["modes"])
        a.mode_list = [m for m in R.MODE_ORDER if m in a.mode_list]
        a.compile_mode_list = [] if a.no_compile else parse_list(
            a.compile_modes, R.MODE_ORDER, "--compile-modes")
        default_engines = CPU_ENGINES if a.device == "cpu" else CUDA_ENGINES
        a.engine_list = (parse_list(a.engines, ["auto", "cpu", "cublaslt", "sm80", "sm90"], "--engines")
                         if a.engines else default_engines)
        a.impl_filter = [t.strip() for t in a.impls.split(",") if t.strip()] if a.impls else None
    except ValueError as e:
        p.error(str(e))
    if a.reps < 50 and a.device == "cuda":
        p.error("--reps must be at least 50 (the median of fewer calls is not trusted)")
    if a.reps < 5:
        p.error("--reps must be at least 5")
    if a.warmup_ms < 0 or a.time_limit < 0:
        p.error("--warmup-ms and --time-limit must be >= 0")
    if a.lo > a.hi or not a.eps > 0:
        p.error("need lo <= hi and eps > 0")
    per, total = SUITE_COMPILE[a.suite]
    a.compile_timeout = per if a.compile_timeout is None else a.compile_timeout
    a.compile_budget = total if a.compile_budget is None else a.compile_budget
    if a.peak_size is None:
        a.peak_size = 256 if a.device == "cpu" else 8192
    return a


class Item:
    """One planned measurement: impl in a mode, recorded under `math`, run with torch's
    float32 matmul precision set to `precision`."""

    def __init__(self, shape, mode, impl, math_, precision, engine=None):
        self.shape, self.mode, self.impl, self.math = shape, mode, impl, math_
        self.precision, self.engine = precision, engine
        self.dtype = R.MODES[mode][0]

    def __repr__(self):
        return f"{self.impl}[{self.dtype}/{self.math}]"


def _wanted(impl, filt):
    return filt is None or any(impl == f or impl.startswith(f) for f in filt)


def plan_mode(shape, mode, a):
    """The measurements of one (shape, mode), bar first."""
    dtype, mmath = R.MODES[mode]
    items = []
    torch_math, prec = mmath, "high" if mode == "tf32" else "highest"
    torch_baselines = True
    if mode == "3xtf32":
        # PyTorch has no 3xtf32: its float32-accurate path is plain fp32, measured here
        # under math "fp32" unless the fp32 mode measures it anyway.
        torch_math = "fp32"
        torch_baselines = "fp32" not in a.mode_list
    # Baselines first: should an lgh engine break the CUDA context, they are measured.
    if torch_baselines:
        items.append(Item(shape, mode, "addmm", torch_math, prec))
        items.append(Item(shape, mode, "torch-eager", torch_math, prec))
    if mode in a.compile_mode_list and mode != "3xtf32":
        items.append(Item(shape, mode, "torch-compile", torch_math, prec))
    if mode == "tf32":
        items.append(Item(shape, mode, "seed", "tf32", "high"))
    for e in a.engine_list:
        items.append(Item(shape, mode, "lgh-" + e + (f"-{a.tag}" if a.tag else ""), mmath, "highest", engine=e))
    if mode != "fp32":
        # ModelNew follows torch's switch: "highest" -> accurate (3xtf32 on Hopper), "high" -> tf32.
        items.append(Item(shape, mode, "lgh-modelnew", mmath, "high" if mode == "tf32" else "highest"))
    return [it for it in items if _wanted(it.impl, a.impl_filter)]


def build_plan(a):
    return [it for shape in a.shape_list for mode in a.mode_list for it in plan_mode(shape, mode, a)]


# ---------------------------------------------------------------- environment


def _run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def read_clocks():
    """SM clock now / max and power, read (never set) through nvidia-smi."""
    out = _run(["nvidia-smi", "--query-gpu=clocks.sm,clocks.max.sm,power.draw,temperature.gpu",
                "--format=csv,noheader"])
    return out.splitlines()[0] if out else None


def collect_meta(torch, a, lgh_mod):
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": ["bench/bench.py"] + sys.argv[1:], "suite": a.suite, "modes": a.mode_list,
            "device": a.device, "reps": a.reps, "warmup_ms": a.warmup_ms,
            "torch": torch.__version__, "cuda": getattr(torch.version, "cuda", None),
            "python": sys.version.split()[0],
            "problem": {"eps": a.eps, "lo": a.lo, "hi": a.hi, "inputs": X_DIST,
                        "rng_seed": a.rng_seed},
            "bounds": R.BOUNDS, "notes": []}
    try:
        import triton
        meta["triton"] = triton.__version__
    except Exception:
        meta["triton"] = None
    if a.device == "cuda":
        p = torch.cuda.get_device_properties(0)
        meta.update({"gpu": torch.cuda.get_device_name(0), "capability": f"{p.major}.{p.minor}",
                     "sm_count": p.multi_processor_count,
                     "l2_bytes": getattr(p, "L2_cache_size", None) or 50 * 1024 * 1024,
                     "memory_bytes": p.total_memory})
        drv = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        meta["driver"] = drv.splitlines()[0] if drv else None
        meta["clocks_before"] = read_clocks()
    else:
        meta.update({"gpu": "cpu-" + (os.uname().machine if hasattr(os, "uname") else "host"),
                     "l2_bytes": 32 * 1024 * 1024})
    if lgh_mod is not None:
        meta["lgh"] = getattr(lgh_mod, "__version__", None)
        for key, fn, args in (("lgh_library", "library_path", ()), ("lgh_c_version", "version", ()),
                              ("lgh_engines", "engines_available", (a.device,)),
                              ("lgh_device", "device_description", (a.device,))):
            try:
                meta[key] = getattr(lgh_mod, fn)(*args)
            except Exception:  # noqa: BLE001 - facts only; probing decides what runs
                meta[key] = None
        if meta["lgh_library"] is None:
            meta["lgh_library"] = os.environ.get("LGH_LIBRARY")
    # The caller's word first: a copy of the tree on a GPU machine may have no .git, or a
    # stale one, and only the machine that built the library knows its commit.
    rev = _run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    if os.environ.get("LGH_BENCH_COMMIT"):
        meta["commit"] = os.environ["LGH_BENCH_COMMIT"]
    elif rev:
        dirty = _run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
        meta["commit"] = rev + ("+dirty" if dirty else "")
    else:
        meta["commit"] = None
    return meta


def load_lgh():
    """The lgh package (PYTHONPATH=python, or the repository's python/ folder), or
    (None, why). Any failure only removes the lgh columns."""
    path = os.path.join(ROOT, "python")
    if path not in sys.path:
        sys.path.append(path)
    try:
        import lgh
    except Exception as e:  # noqa: BLE001
        return None, f"lgh could not be imported ({_short(e)})"
    if not hasattr(lgh, "linear_groupnorm_hardtanh"):
        return None, f"lgh at {getattr(lgh, '__path__', '?')} has no linear_groupnorm_hardtanh"
    return lgh, None


def load_seed(path_arg):
    """The seed's module, or (None, why)."""
    candidates = [path_arg] if path_arg else [
        os.path.join(ROOT, "shared", "seed", "seed_modelnew.py"),
        os.path.join(ROOT, ".seed", "seed_modelnew.py")]
    path = next((c for c in candidates if c and os.path.isfile(c)), None)
    if path is None:
        return None, ("the seed's ModelNew was not found (" + ", ".join(candidates) +
                      "); pass --seed PATH to include it")
    try:
        spec = importlib.util.spec_from_file_location("lgh_bench_seed", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.ModelNew  # noqa: B018
        return mod, None
    except Exception as e:  # noqa: BLE001 - e.g. Triton missing: skip the column
        return None, f"the seed at {path} could not be loaded ({type(e).__name__}: {e})"


# ---------------------------------------------------------------- timing


class Timer:
    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def warm(self, fn, xs, warmup_ms):
        """Calls fn until warmup_ms of wall time have passed (at least 5 calls); returns
        (calls, wall ms per call)."""
        t0, i = time.perf_counter(), 0
        while True:
            for _ in range(5):
                fn(xs[i % len(xs)])
                i += 1
            self.sync()
            el = (time.perf_counter() - t0) * 1e3
            if el >= warmup_ms or i >= 5000:
                return i, el / i

    def times(self, fn, xs, reps, start=0):
        """Per-call times in ms: CUDA events around each call (GPU), else wall clock."""
        nb = len(xs)
        if self.cuda:
            ev = self.torch.cuda.Event
            starts = [ev(enable_timing=True) for _ in range(reps)]
            ends = [ev(enable_timing=True) for _ in range(reps)]
            for j in range(reps):
                starts[j].record()
                fn(xs[(start + j) % nb])
                ends[j].record()
            self.torch.cuda.synchronize()
            return [s.elapsed_time(e) for s, e in zip(starts, ends)]
        out = []
        for j in range(reps):
            t = time.perf_counter()
            fn(xs[(start + j) % nb])
            out.append((time.perf_counter() - t) * 1e3)
        return out


def summarize(times):
    s = sorted(times)
    n = len(s)
    med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    p90 = s[min(n - 1, max(0, math.ceil(0.9 * n) - 1))]
    return med, s[0], p90


# ---------------------------------------------------------------- problems and references


class Problem:
    """Inputs of one shape in one dtype, on the device, with x in `nb` rotating buffers,
    and the float64 reference of buffer 0 (pre-norm z and final y)."""

    def __init__(self, torch, a, shape, dtype_name, l2_bytes):
        m, k, n, g = shape
        dev = a.device
        dt = getattr(torch, dtype_name)
        gen = torch.Generator(device=dev)
        gen.manual_seed(a.rng_seed * 1000003 + m * 31 + k * 17 + n * 7 + g)

        def u(rows, cols, lo, hi):
            shape_ = (rows, cols) if cols else (rows,)
            return (torch.rand(shape_, generator=gen, device=dev) * (hi - lo) + lo).to(dt)

        bound = 1.0 / math.sqrt(k)
        self.shape, self.dtype = shape, dt
        self.W = u(n, k, -bound, bound)
        self.b = u(n, 0, -bound, bound)
        self.gamma = u(n, 0, 0.5, 1.5)
        self.beta = u(n, 0, -0.5, 0.5)
        esize = torch.empty((), dtype=dt).element_size()
        x_bytes = m * k * esize
        # Enough x buffers that together they hold twice the L2, so no call finds its x
        # there from an earlier one (W, read once per call, is larger than L2 at every
        # suite shape); at least 2, at most 64 buffers and 4 GB.
        nb = max(2, -(-2 * l2_bytes // max(1, x_bytes)))
        nb = int(min(nb, 64, max(2, (4 << 30) // max(1, x_bytes))))
        self.xs = [u(m, k, 0.0, 1.0) for _ in range(nb)]
        self.rotation_bytes = nb * x_bytes
        F = torch.nn.functional
        x64 = self.xs[0].to(torch.float64)
        w64 = self.W.to(torch.float64)
        self.z = torch.addmm(self.b.to(torch.float64), x64, w64.t())
        del x64, w64
        y = F.group_norm(self.z, g, self.gamma.to(torch.float64), self.beta.to(torch.float64), a.eps)
        self.ref = F.hardtanh(y, a.lo, a.hi)
        del y

    def params(self):
        return {"gemm.weight": self.W, "gemm.bias": self.b,
                "group_norm.weight": self.gamma, "group_norm.bias": self.beta}


def compare(torch, y, ref):
    """(rel_err, max_abs, finite) of y against the float64 reference."""
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(ref.shape):
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"output has shape {got}, expected {tuple(ref.shape)}")
    yd = y.detach().to(torch.float64)
    finite = bool(torch.isfinite(yd).all().item())
    d = yd - ref
    rel = float(d.norm().item() / max(ref.norm().item(), 1e-300))
    mx = float(d.abs().max().item())
    return rel, mx, finite


# ---------------------------------------------------------------- implementations


class Unsupported(Exception):
    """This implementation cannot run this problem (recorded, not flagged)."""


class Skipped(Exception):
    """Not measured for a reason of the run (budget, missing component)."""


class CompileTimeout(BaseException):
    """Raised from SIGALRM inside torch.compile; BaseException so that no library
    `except Exception` swallows it."""


@contextlib.contextmanager
def alarm(seconds):
    usable = (seconds and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise CompileTimeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def matmul_precision(torch, prec):
    # Only the long-standing switch is used, never the newer per-backend one: PyTorch
    # refuses to read one after the other was written, and lgh.ModelNew reads this one.
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(prec)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def _is_unsupported(e):
    """lgh's own refusals (engine cannot take the shape, or is not there)."""
    name = str(getattr(e, "status_name", "") or "")
    if name:
        return "NOT_SUPPORTED" in name or "UNAVAILABLE" in name or "NO_DEVICE" in name
    return isinstance(e, (RuntimeError, ValueError))


def _short(e, limit=300):
    text = f"{type(e).__name__}: {e}" if not isinstance(e, (Unsupported, Skipped)) else str(e)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Runner:
    def __init__(self, torch, a, lgh_mod, lgh_why, seed_mod, seed_why):
        self.torch, self.a = torch, a
        self.F = torch.nn.functional
        self.lgh, self.lgh_why = lgh_mod, lgh_why
        self.seed, self.seed_why = seed_mod, seed_why
        self.compile_spent = 0.0

    # Each builder returns (fn, note, compile_s); fn(x) -> y.

    def _layer(self, p):
        F, (_, _, _, g), a = self.F, p.shape, self.a

        def layer(x, w, b, gamma, beta):
            return F.hardtanh(F.group_norm(F.linear(x, w, b), g, gamma, beta, a.eps), a.lo, a.hi)
        return layer

    def build(self, it, p):
        torch, a = self.torch, self.a
        W, b, gm, bt = p.W, p.b, p.gamma, p.beta
        g = p.shape[3]
        if it.impl == "addmm":
            wt = W.t()
            return (lambda x: torch.addmm(b, x, wt)), None, None
        if it.impl == "torch-eager":
            layer = self._layer(p)
            return (lambda x: layer(x, W, b, gm, bt)), None, None
        if it.impl == "torch-compile":
            return self._build_compile(it, p)
        if it.impl.startswith("lgh-") and it.engine is not None:
            if self.lgh is None:
                raise Skipped(self.lgh_why)
            f = self.lgh.linear_groupnorm_hardtanh
            mth = it.math if it.dtype == "float32" else None
            eng = None if it.engine == "auto" else it.engine
            note = None
            if eng is None and hasattr(self.lgh, "engine_for"):
                try:
                    note = "auto chose " + str(self.lgh.engine_for(
                        p.xs[0], W, b, gm, bt, g, a.eps, a.lo, a.hi, math=mth))
                except Exception:  # noqa: BLE001 - the note is optional
                    note = None
            return (lambda x: f(x, W, b, gm, bt, g, a.eps, a.lo, a.hi, math=mth, engine=eng)), note, None
        if it.impl == "lgh-modelnew":
            if self.lgh is None:
                raise Skipped(self.lgh_why)
            if not hasattr(self.lgh, "ModelNew"):
                raise Skipped("lgh has no ModelNew")
            mod = self._module(self.lgh.ModelNew, p)
            note = None
            try:
                note = "runs " + str(mod.engine_for(p.xs[0]))
            except Exception:  # noqa: BLE001 - the note is optional
                pass
            return mod, note, None
        if it.impl == "seed":
            if self.seed is None:
                raise Skipped(self.seed_why)
            return self._module(self.seed.ModelNew, p), None, None
        raise Skipped(f"unknown implementation {it.impl}")

    def _module(self, cls, p):
        torch, a = self.torch, self.a
        m, k, n, g = p.shape
        dev_ctx = torch.device(a.device) if hasattr(torch.device, "__enter__") else contextlib.nullcontext()
        with dev_ctx:  # build the parameters on the device directly when torch can
            mod = cls(k, n, g, a.lo, a.hi)
        mod = mod.to(device=a.device, dtype=p.dtype)
        try:
            mod.load_state_dict(p.params(), strict=True)
        except RuntimeError as e:
            raise Skipped(f"{cls.__module__}.ModelNew does not take nn.Linear/nn.GroupNorm "
                          f"parameters by name: {_short(e, 160)}") from None
        mod.eval()
        return mod

    def _build_compile(self, it, p):
        torch, a = self.torch, self.a
        if not hasattr(torch, "compile"):
            raise Skipped(f"torch.compile is not in torch {torch.__version__}")
        left = a.compile_budget - self.compile_spent
        if left <= 1:
            raise Skipped(f"compile budget of {a.compile_budget:.0f} s spent (--compile-budget)")
        torch._dynamo.reset()
        layer = self._layer(p)
        cf = torch.compile(layer, dynamic=False)
        W, b, gm, bt = p.W, p.b, p.gamma, p.beta
        fn = lambda x: cf(x, W, b, gm, bt)  # noqa: E731
        limit = min(a.compile_timeout, left)
        t0 = time.perf_counter()
        try:
            with alarm(limit):
                fn(p.xs[0])
                self.sync()
        except CompileTimeout:
            self.compile_spent += time.perf_counter() - t0
            torch._dynamo.reset()
            raise Skipped(f"torch.compile took over {limit:.0f} s (--compile-timeout/--compile-budget)") from None
        spent = time.perf_counter() - t0
        self.compile_spent += spent
        return fn, f"compiled in {spent:.1f} s", spent

    def sync(self):
        if self.a.device == "cuda":
            self.torch.cuda.synchronize()

    def context_ok(self):
        if self.a.device != "cuda":
            return True
        try:
            self.torch.cuda.synchronize()
            return True
        except Exception:  # noqa: BLE001
            return False

    def measure(self, it, p, timer):
        """One record for one item."""
        torch, a = self.torch, self.a
        shape = {"m": it.shape[0], "k": it.shape[1], "n": it.shape[2], "groups": it.shape[3]}
        rec = lambda **kw: R.make_record(shape, it.dtype, it.math, it.impl, **kw)  # noqa: E731
        is_lgh = it.impl.startswith("lgh")
        with matmul_precision(torch, it.precision), torch.no_grad():
            try:
                fn, note, compile_s = self.build(it, p)
            except Skipped as e:
                return rec(status="skipped", note=_short(e))
            except Exception as e:  # noqa: BLE001
                status = "unsupported" if is_lgh and _is_unsupported(e) and self.context_ok() else "error"
                return rec(status=status, note=_short(e))
            try:
                y = fn(p.xs[0])
                self.sync()
            except Exception as e:  # noqa: BLE001
                ok = self.context_ok()
                status = "unsupported" if is_lgh and ok and _is_unsupported(e) else "error"
                return rec(status=status, note=_short(e))
            ref = p.z if it.impl == "addmm" else p.ref
            try:
                rel, mx, finite = compare(torch, y, ref)
            except ValueError as e:
                return rec(status="error", note=_short(e))
            del y
            bound = R.BOUNDS[it.math]
            status = "ok" if finite and rel <= bound else ("nonfinite" if not finite else "bound")
            n_warm, per_call = timer.warm(fn, p.xs, a.warmup_ms)
            # --reps calls, fewer (never under 50) where that would pass --max-seconds.
            reps = int(max(min(a.reps, 50), min(a.reps, a.max_seconds * 1e3 / max(per_call, 1e-6))))
            times = timer.times(fn, p.xs, reps, start=n_warm)
            med, lo, p90 = summarize(times)
            notes = [s for s in (note, "checked against the float64 GEMM + bias (no norm)"
                                 if it.impl == "addmm" else None) if s]
            return rec(ms=med, min_ms=lo, p90_ms=p90, rel_err=rel if finite else None,
                       max_abs=mx if finite else None, reps=reps, buffers=len(p.xs),
                       status=status, note="; ".join(notes) or None,
                       **({"compile_s": round(compile_s, 2)} if compile_s is not None else {}))


# ---------------------------------------------------------------- peaks


def measure_peaks(torch, a, timer, modes):
    """Median TFLOP/s of a size^3 torch.mm per precision; the tensor-core peak the % of
    peak divides by (tf32 for float32 data), plus fp32 without TF32 for reference."""
    keys = []
    if any(R.MODES[m][0] == "float32" for m in modes):
        keys.append("tf32")
    if "fp32" in modes or "3xtf32" in modes:
        keys.append("fp32")
    keys += [k for k in ("bf16", "fp16") if k in modes]
    s, out = a.peak_size, {}
    gen = torch.Generator(device=a.device)
    gen.manual_seed(12345)
    for key in keys:
        dt = {"tf32": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16,
              "fp16": torch.float16}[key]
        try:
            A = (torch.rand(s, s, generator=gen, device=a.device) - 0.5).to(dt)
            B = (torch.rand(s, s, generator=gen, device=a.device) - 0.5).to(dt)
            with matmul_precision(torch, "high" if key == "tf32" else "highest"), torch.no_grad():
                fn = lambda _x: torch.mm(A, B)  # noqa: E731
                # A longer warm-up than per measurement: this is the run's first GPU work,
                # and it brings the clocks up for everything after it.
                timer.warm(fn, [None], max(a.warmup_ms, 500.0))
                med, _, _ = summarize(timer.times(fn, [None], max(50, min(a.reps, 100))))
            out[key] = 2.0 * s ** 3 / (med * 1e-3) / 1e12
            progress(f"peak {key}: {s}^3 torch.mm {med:.3f} ms = {out[key]:.1f} TFLOP/s")
            del A, B
        except Exception as e:  # noqa: BLE001
            progress(f"peak {key}: not measured ({_short(e)})")
    return out


# ---------------------------------------------------------------- main loop


_T0 = time.perf_counter()


def progress(msg):
    el = time.perf_counter() - _T0
    print(f"[{int(el // 60)}:{int(el % 60):02d}] {msg}", file=sys.stderr, flush=True)


def describe(rec):
    if rec.get("ms") is None:
        return f"{rec['status']}: {rec.get('note') or ''}"
    s = (f"{rec['ms']:.4f} ms (min {rec['min_ms']:.4f}, p90 {rec['p90_ms']:.4f}) "
         f"{rec['tflops']:.1f} TFLOP/s rel_err {R._fmt_e(rec.get('rel_err'))}")
    if R.is_flagged(rec):
        s += f"  !!! {rec['status'].upper()}: above bound {rec['bound']:.0e} !!!"
    if rec.get("note"):
        s += f"  [{rec['note']}]"
    return s


def print_plan(plan):
    last = None
    for it in plan:
        key = (it.shape, it.mode)
        if key != last:
            m, k, n, g = it.shape
            print(f"M={m} K={k} N={n} G={g} {it.mode}:")
            last = key
        print(f"    {it.impl:14s} {it.dtype}/{it.math}")
    print(f"{len(plan)} measurements")


def write_outputs(doc, base, plot_too):
    R.write_json(doc, base + ".json")
    R.write_markdown(doc, base + ".md")
    if plot_too:
        try:
            import plot
            plot.plot_doc(doc, base + ".png")
        except Exception as e:  # noqa: BLE001 - no matplotlib: JSON and table still stand
            progress(f"plot not written ({_short(e)})")


def main(argv=None):
    a = parse_args(argv)
    plan = build_plan(a)
    if a.list:
        print_plan(plan)
        return 0
    warnings.filterwarnings("ignore", message=".*TF32.*")
    warnings.filterwarnings("ignore", message=".*fp32_precision.*")
    import torch
    if a.device == "cuda" and not torch.cuda.is_available():
        print("bench.py: no CUDA device (use --device cpu to test the harness)", file=sys.stderr)
        return 1
    lgh_mod, lgh_why = load_lgh()
    seed_mod, seed_why = (None, "not asked for") if not any(i.impl == "seed" for i in plan) else load_seed(a.seed)
    meta = collect_meta(torch, a, lgh_mod)
    for why in (lgh_why, seed_why if seed_why != "not asked for" else None):
        if why:
            meta["notes"].append(why)
            progress("note: " + why)
    l2 = int(meta["l2_bytes"])
    meta["rotation"] = (f"x rotated over enough buffers to hold twice the L2 ({l2 / 2**20:.0f} MiB) together "
                        "(2 to 64, see each record's 'buffers'); W, b, gamma, beta one copy")
    timer = Timer(torch, a.device)
    out_dir = a.out or os.path.join(HERE, "results")
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, a.name or R.default_basename(meta))
    progress(f"{meta['gpu']}, torch {meta['torch']}, {len(plan)} measurements, "
             f"{len(a.shape_list)} shape(s), modes {','.join(a.mode_list)} -> {base}.json")

    meta["peak_size"] = a.peak_size
    meta["peak_tflops"] = measure_peaks(torch, a, timer, a.mode_list)
    doc = {"format": R.FORMAT, "meta": meta, "records": []}
    runner = Runner(torch, a, lgh_mod, lgh_why, seed_mod, seed_why)
    deadline = _T0 + a.time_limit if a.time_limit > 0 else None
    done, broken = 0, False

    for shape in a.shape_list:
        shape_items = [it for it in plan if it.shape == shape]
        by_dtype = {}
        for it in shape_items:
            by_dtype.setdefault(it.dtype, []).append(it)
        for dtype_name, items in by_dtype.items():
            if broken or (deadline and time.perf_counter() > deadline):
                break
            try:
                prob = Problem(torch, a, shape, dtype_name, l2)
            except Exception as e:  # noqa: BLE001 - e.g. out of memory at a huge M
                for it in items:
                    doc["records"].append(R.make_record(
                        {"m": shape[0], "k": shape[1], "n": shape[2], "groups": shape[3]},
                        it.dtype, it.math, it.impl, status="error",
                        note="inputs/reference could not be made: " + _short(e)))
                done += len(items)
                progress(f"M={shape[0]} K={shape[1]} N={shape[2]} G={shape[3]} {dtype_name}: "
                         f"setup failed: {_short(e)}")
                broken = not runner.context_ok()
                continue
            for it in items:
                if deadline and time.perf_counter() > deadline:
                    break
                rec = runner.measure(it, prob, timer)
                done += 1
                doc["records"].append(rec)
                m, k, n, g = shape
                progress(f"{done:3d}/{len(plan)} M={m} K={k} N={n} G={g} {it.dtype}/{it.math} "
                         f"{it.impl}: {describe(rec)}")
                if not runner.context_ok():
                    broken = True
                    meta["incomplete"] = f"the CUDA context failed after {it.impl} at {shape}; stopped"
                    progress("!!! " + meta["incomplete"])
                    break
            del prob
            if a.device == "cuda" and not broken:
                torch.cuda.empty_cache()
        if not broken:
            write_outputs(doc, base, plot_too=False)

    if done < len(plan) and "incomplete" not in meta:
        meta["incomplete"] = f"stopped at --time-limit {a.time_limit:.0f} s after {done} of {len(plan)} measurements"
        progress(meta["incomplete"])
    if a.device == "cuda":
        meta["clocks_after"] = read_clocks()
    meta["seconds"] = round(time.perf_counter() - _T0, 1)
    meta["compile_seconds"] = round(runner.compile_spent, 1)
    write_outputs(doc, base, plot_too=not a.no_plot)

    flagged = [r for r in doc["records"] if R.is_flagged(r)]
    # Flags first, then the short table last, for logs that show only their end.
    if flagged:
        print(f"!!! {len(flagged)} result(s) FAILED their check against the float64 reference "
              "or could not run (all in the .md):")
        for r in flagged[:8]:
            print(f"!!!   {R.shape_label(r['shape'])} {r['dtype']}/{r['math']} {r['impl']}: "
                  f"{r['status']} rel_err {R._fmt_e(r.get('rel_err'))} {(r.get('note') or '')[:100]}")
        if len(flagged) > 8:
            print(f"!!!   ... and {len(flagged) - 8} more")
    md = R.markdown(doc).split("\n")
    start = next((i for i, l in enumerate(md) if l.startswith("## Reference") or l.startswith("## First")), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(md)) if md[i].startswith("## ")), len(md))
        print("\n".join(md[start:end]).rstrip())
    print(f"wrote {base}.json, .md{'' if a.no_plot else ', .png'} ({meta['seconds']} s, "
          f"compile {meta['compile_seconds']} s)")
    if flagged and a.strict:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
