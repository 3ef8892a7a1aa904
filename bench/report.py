"""bench/report.py - the results format of the lgh benchmark, and its markdown table.

bench.py writes results through this module and plot.py reads them through it. It needs
only the Python standard library (no torch), so results can be merged, checked and
rendered on any machine.

As a command it merges one or more results files and (re)writes the JSON and markdown:

    python3 bench/report.py results/a.json [results/b.json ...] [--out DIR] [--name BASE]

(the full suite may be run in several calls, one per group of shapes, to stay under a
machine's per-command limit; this joins the pieces).

Results file layout (format "lgh-bench/1"):

    {"format": "lgh-bench/1",
     "meta":    {gpu, torch, triton, cuda, driver, lgh, date, argv, modes, reps,
                 peak_tflops: {"tf32": .., "bf16": .., "fp16": .., "fp32": ..}, ...},
     "records": [ {"shape": {"m", "k", "n", "groups"}, "dtype", "math", "impl",
                   "ms", "tflops", "rel_err",                 <- the issue's fields
                   "min_ms", "p90_ms", "reps", "buffers", "max_abs", "bound",
                   "status", "note"}, ... ]}

One record per measurement. "ms" is the median, "tflops" the GEMM's 2*M*N*K flops over
the median; "ms", "tflops" and "rel_err" are null when the implementation could not run
the problem (status "unsupported" or "error", with the reason in "note").
"""

import argparse
import json
import math
import os
import sys

FORMAT = "lgh-bench/1"

# A mode is one row kind of the tables: the data type plus, for float32, the math.
# mode -> (dtype, math as recorded)
MODES = {
    "fp32": ("float32", "fp32"),
    "tf32": ("float32", "tf32"),
    "3xtf32": ("float32", "3xtf32"),
    "bf16": ("bfloat16", "bf16"),
    "fp16": ("float16", "fp16"),
}
MODE_ORDER = ["fp32", "tf32", "3xtf32", "bf16", "fp16"]

# docs/PRECISION.md's bounds on ||y - ref|| / ||ref|| against the float64 reference, by math.
BOUNDS = {"fp32": 1e-5, "3xtf32": 1e-5, "tf32": 1e-3, "bf16": 1e-2, "fp16": 1e-2}

# Which measured tensor-core peak a dtype is compared with (meta.peak_tflops keys).
# float32 runs on the tf32 tensor cores whatever its math (3xtf32 does three tf32
# products per product, so it cannot pass 33 % of that peak).
PEAK_KEY = {"float32": "tf32", "bfloat16": "bf16", "float16": "fp16"}

# Column order of the tables. "addmm" (cuBLAS GEMM + bias alone, no norm) is the bar.
IMPL_ORDER = ["addmm", "lgh-auto", "lgh-auto-tuned", "lgh-sm90", "lgh-sm80", "lgh-cublaslt", "lgh-cpu",
              "lgh-modelnew", "torch-eager", "torch-compile", "seed"]

IMPL_MEANING = {
    "addmm": "torch.addmm(b, x, W.t()) alone: cuBLAS GEMM + bias, no norm (the bar)",
    "lgh-auto": "lgh.linear_groupnorm_hardtanh, engine chosen by lgh",
    "lgh-auto-tuned": "the same after `lgh tune` timed the engines and their variants for the shape",
    "lgh-sm90": "lgh fused wgmma + TMA engine (Hopper)",
    "lgh-sm80": "lgh fused mma.sync + cp.async engine (Ampere and later)",
    "lgh-cublaslt": "lgh: cuBLASLt GEMM + bias, then one norm + clamp kernel",
    "lgh-cpu": "lgh CPU engine (BLAS + one fused pass)",
    "lgh-modelnew": "lgh.ModelNew module (math from torch's float32 matmul precision)",
    "torch-eager": "nn.Linear -> nn.GroupNorm -> nn.Hardtanh, PyTorch eager",
    "torch-compile": "the same three ops through torch.compile (inductor, default mode)",
    "seed": "the seed's Triton ModelNew (TF32 GEMM + separate norm kernel)",
}

# In a float32-accurate row (math 3xtf32) the PyTorch columns show PyTorch's own
# float32-accurate path, which is math fp32 (no TF32): marked with BORROWED in tables.
BORROW_FROM = {"3xtf32": "fp32"}
BORROWED = "\u2020"  # dagger
FLAG = "\u26a0"  # warning sign

OK_STATUSES = ("ok", "bound", "nonfinite")  # the ones with a time


def shape_key(shape):
    return (int(shape["m"]), int(shape["k"]), int(shape["n"]), int(shape["groups"]))


def shape_label(shape, sep=" "):
    m, k, n, g = shape_key(shape)
    return f"M={m}{sep}K={k}{sep}N={n}{sep}G={g}"


def mode_of(dtype, math_):
    for mode, (d, m) in MODES.items():
        if d == dtype and m == math_:
            return mode
    return None


def gemm_tflops(shape, ms):
    if ms is None or ms <= 0:
        return None
    m, k, n, _ = shape_key(shape)
    return 2.0 * m * n * k / (ms * 1e-3) / 1e12


def slug(text):
    out = []
    for ch in text.lower():
        out.append(ch if ch.isalnum() else "-")
    s = "".join(out)
    while "--" in s:
        s = s.replace("--", "-")
    return s.strip("-") or "unknown"


def make_record(shape, dtype, math_, impl, **fields):
    """One measurement; fields not given are null. Keeps the issue's fields first."""
    rec = {
        "shape": {"m": int(shape["m"]), "k": int(shape["k"]), "n": int(shape["n"]),
                  "groups": int(shape["groups"])},
        "dtype": dtype, "math": math_, "impl": impl,
        "ms": None, "tflops": None, "rel_err": None,
        "min_ms": None, "p90_ms": None, "reps": None, "buffers": None,
        "max_abs": None, "bound": BOUNDS.get(math_), "status": None, "note": None,
    }
    rec.update(fields)
    if rec["tflops"] is None and rec["ms"] is not None:
        rec["tflops"] = gemm_tflops(rec["shape"], rec["ms"])
    return rec


# ---------------------------------------------------------------- load, check, merge


class FormatError(ValueError):
    pass


def _finite_or_none(v, what):
    if v is None:
        return
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise FormatError(f"{what} must be a finite number or null, got {v!r}")


def validate(doc):
    """Raise FormatError, in words, if doc is not a results document."""
    if not isinstance(doc, dict) or "records" not in doc or "meta" not in doc:
        raise FormatError("a results file is an object with 'meta' and 'records'")
    if not isinstance(doc["records"], list):
        raise FormatError("'records' must be a list")
    for i, r in enumerate(doc["records"]):
        where = f"record {i}"
        for key in ("shape", "dtype", "math", "impl", "ms", "tflops", "rel_err"):
            if key not in r:
                raise FormatError(f"{where} lacks '{key}'")
        for key in ("m", "k", "n", "groups"):
            v = r["shape"].get(key) if isinstance(r["shape"], dict) else None
            if not isinstance(v, int) or v < 1:
                raise FormatError(f"{where}: shape.{key} must be a positive integer, got {v!r}")
        if r["shape"]["n"] % r["shape"]["groups"]:
            raise FormatError(f"{where}: N={r['shape']['n']} is not a multiple of "
                              f"G={r['shape']['groups']}")
        for key in ("ms", "tflops", "min_ms", "p90_ms"):
            _finite_or_none(r.get(key), f"{where}: {key}")
        # rel_err may be NaN/inf in memory; JSON stores those as null plus status.
        if r.get("ms") is not None and r["ms"] <= 0:
            raise FormatError(f"{where}: ms must be positive, got {r['ms']}")
    return doc


def load(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if isinstance(doc, list):  # a bare list of records is accepted too
        doc = {"format": FORMAT, "meta": {}, "records": doc}
    return validate(doc)


def merge(docs):
    """Join results of one GPU. Later files win for the same (shape, dtype, math, impl)."""
    if not docs:
        raise FormatError("nothing to merge")
    gpus = {d["meta"].get("gpu") for d in docs if d["meta"].get("gpu")}
    if len(gpus) > 1:
        raise FormatError("results of different GPUs cannot be merged: " + ", ".join(sorted(gpus)))
    meta = dict(docs[0]["meta"])
    modes, peaks, parts = [], {}, []
    for d in docs:
        for m in d["meta"].get("modes", []):
            if m not in modes:
                modes.append(m)
        for k, v in (d["meta"].get("peak_tflops") or {}).items():
            peaks.setdefault(k, v)
        parts.append({k: d["meta"].get(k) for k in ("date", "argv", "torch", "lgh")})
    meta["modes"] = [m for m in MODE_ORDER if m in modes]
    meta["peak_tflops"] = peaks
    if len(docs) > 1:
        meta["merged_from"] = parts
    index, records = {}, []
    for d in docs:
        for r in d["records"]:
            key = (shape_key(r["shape"]), r["dtype"], r["math"], r["impl"])
            if key in index:
                records[index[key]] = r
            else:
                index[key] = len(records)
                records.append(r)
    return {"format": FORMAT, "meta": meta, "records": records}


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(doc, path):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_json_safe(doc), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)  # a run killed mid-write leaves the previous file whole


# ---------------------------------------------------------------- table assembly


def shapes_in_order(records):
    seen, out = set(), []
    for r in records:
        k = shape_key(r["shape"])
        if k not in seen:
            seen.add(k)
            out.append(r["shape"])
    return out


def modes_in_doc(doc):
    """Table rows: the modes the run asked for, plus any that lgh records show."""
    modes = set(doc["meta"].get("modes") or [])
    recs = doc["records"]
    have_lgh = any(r["impl"].startswith("lgh") for r in recs)
    for r in recs:
        if r["impl"].startswith("lgh") or not have_lgh:
            m = mode_of(r["dtype"], r["math"])
            if m:
                modes.add(m)
    return [m for m in MODE_ORDER if m in modes]


def impls_in_doc(doc):
    present = {r["impl"] for r in doc["records"]}
    known = [i for i in IMPL_ORDER if i in present]
    return known + sorted(present - set(IMPL_ORDER))


def build_rows(doc):
    """One row per (shape, mode) that has any record: {"shape", "mode", "cells", "bar"}.

    cells[impl] = (record, borrowed); borrowed is True where a float32-accurate row shows
    PyTorch's fp32 measurement. bar is the addmm record the row's ratios divide by.
    """
    idx = {}
    for r in doc["records"]:
        idx[(shape_key(r["shape"]), r["dtype"], r["math"], r["impl"])] = r
    rows = []
    impls = impls_in_doc(doc)
    for shape in shapes_in_order(doc["records"]):
        sk = shape_key(shape)
        for mode in modes_in_doc(doc):
            dtype, math_ = MODES[mode]
            cells = {}
            for impl in impls:
                r = idx.get((sk, dtype, math_, impl))
                borrowed = False
                if r is None and not impl.startswith("lgh") and mode in BORROW_FROM:
                    r = idx.get((sk, dtype, BORROW_FROM[mode], impl))
                    borrowed = r is not None
                if r is not None:
                    cells[impl] = (r, borrowed)
            if not cells:
                continue
            bar = cells.get("addmm", (None, False))[0]
            rows.append({"shape": shape, "mode": mode, "cells": cells, "bar": bar})
    return rows


def ratio(rec, bar):
    if rec is None or bar is None or rec.get("ms") is None or bar.get("ms") is None:
        return None
    return rec["ms"] / bar["ms"]


def pct_peak(rec, meta):
    peaks = meta.get("peak_tflops") or {}
    p = peaks.get(PEAK_KEY.get(rec["dtype"], ""))
    if rec.get("tflops") is None or not p:
        return None
    return 100.0 * rec["tflops"] / p


def is_flagged(rec):
    return rec.get("status") in ("bound", "nonfinite", "error")


# ---------------------------------------------------------------- markdown


def _fmt_ms(v):
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:.1f}"
    if v >= 10:
        return f"{v:.2f}"
    if v >= 1:
        return f"{v:.3f}"
    return f"{v:.4f}"


def _fmt_num(v):
    """TFLOP/s and the like: whole numbers when large, two significant digits when small."""
    if v is None:
        return "—"
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.2g}"


def _fmt_e(v):
    if v is None:
        return "—"
    return f"{v:.1e}"


def _cell(rec, borrowed, bar):
    if rec is None:
        return ""
    st = rec.get("status")
    if rec.get("ms") is None:
        return {"unsupported": "n/s", "skipped": "skipped"}.get(st, "error " + FLAG)
    s = _fmt_ms(rec["ms"])
    q = ratio(rec, bar)
    if q is not None and rec["impl"] != "addmm":
        s += f" ({q:.2f}×)"
    if borrowed:
        s += " " + BORROWED
    if is_flagged(rec):
        s += " " + FLAG
    return s


def _title(meta):
    gpu = meta.get("gpu") or "unknown GPU"
    date = meta.get("date") or ""
    return f"# lgh benchmark: {gpu}, {date}".rstrip(", ")


def _meta_lines(meta):
    out = []
    soft = []
    for key, label in (("torch", "PyTorch"), ("cuda", "CUDA"), ("triton", "Triton"),
                       ("driver", "driver"), ("lgh", "lgh"), ("commit", "commit")):
        if meta.get(key):
            soft.append(f"{label} {meta[key]}")
    if soft:
        out.append("Software: " + ", ".join(soft) + ".")
    dev = []
    if meta.get("sm_count"):
        dev.append(f"{meta['sm_count']} SMs")
    if meta.get("l2_bytes"):
        dev.append(f"L2 {meta['l2_bytes'] / 2**20:.0f} MiB")
    if meta.get("clocks"):
        dev.append(f"clocks {meta['clocks']}")
    if dev:
        out.append("Device: " + ", ".join(dev) + ".")
    peaks = meta.get("peak_tflops") or {}
    if peaks:
        size = meta.get("peak_size", 8192)
        parts = [f"{k} {_fmt_num(v)}" for k, v in sorted(peaks.items()) if v]
        out.append(f"Measured peak ({size}³ torch.mm, median, TFLOP/s): " + ", ".join(parts) + ".")
    how = []
    if meta.get("reps"):
        how.append(f"median of {meta['reps']} timed calls (also min and p90) after "
                   f"≥ {meta.get('warmup_ms', 0):.0f} ms of warm-up, CUDA events per call")
    if meta.get("rotation"):
        how.append(meta["rotation"])
    if how:
        out.append("Method: " + "; ".join(how) + ".")
    if meta.get("argv"):
        out.append("Command: `" + " ".join(meta["argv"]) + "`.")
    if meta.get("incomplete"):
        out.append(f"**Incomplete run:** {meta['incomplete']}.")
    for n in meta.get("notes") or []:
        out.append("Note: " + n)
    return out


def _is_reference(shape):
    return shape_key(shape) == (1024, 8192, 8192, 16)


def markdown(doc):
    meta = doc["meta"]
    rows = build_rows(doc)
    impls = impls_in_doc(doc)
    lines = [_title(meta), ""]
    lines += [l + "  " for l in _meta_lines(meta)]
    lines.append("")

    # The reference problem (or the first shape) in full: one line per measurement.
    shapes = shapes_in_order(doc["records"])
    focus = next((s for s in shapes if _is_reference(s)), shapes[0] if shapes else None)
    if focus is not None:
        which = "Reference problem" if _is_reference(focus) else "First shape"
        lines += [f"## {which}: {shape_label(focus, ', ')}", "",
                  "| mode | impl | median ms | min ms | p90 ms | TFLOP/s | % peak | × addmm | rel_err |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in rows:
            if shape_key(row["shape"]) != shape_key(focus):
                continue
            for impl in impls:
                if impl not in row["cells"]:
                    continue
                rec, borrowed = row["cells"][impl]
                name = impl + (f" ({rec['math']}) {BORROWED}" if borrowed else "")
                if rec.get("ms") is None:
                    lines.append(f"| {row['mode']} | {name} | {_cell(rec, False, None)} "
                                 "| | | | | | |")
                    continue
                q = ratio(rec, row["bar"])
                pp = pct_peak(rec, meta)
                err = _fmt_e(rec.get("rel_err"))
                if is_flagged(rec):
                    err = f"**{err}** {FLAG}"
                tf = rec.get("tflops")
                lines.append(
                    f"| {row['mode']} | {name} | {_fmt_ms(rec['ms'])} | {_fmt_ms(rec.get('min_ms'))} "
                    f"| {_fmt_ms(rec.get('p90_ms'))} | {_fmt_num(tf)} | "
                    f"{'' if pp is None else f'{pp:.0f} %'} | "
                    f"{'' if q is None else f'{q:.2f}'} | {err} |")
        lines.append("")

    # Every shape: one row per (shape, mode), one column per implementation.
    if rows:
        lines += ["## All shapes: median ms (time ÷ cuBLAS addmm alone)", "",
                  "| M | K | N | G | mode | " + " | ".join(impls) + " |",
                  "|---:|---:|---:|---:|---|" + "---:|" * len(impls)]
        for row in rows:
            m, k, n, g = shape_key(row["shape"])
            cells = []
            for impl in impls:
                rec, borrowed = row["cells"].get(impl, (None, False))
                cells.append(_cell(rec, borrowed, row["bar"]))
            lines.append(f"| {m} | {k} | {n} | {g} | {row['mode']} | " + " | ".join(cells) + " |")
        lines.append("")

    flagged = [r for r in doc["records"] if is_flagged(r)]
    lines += ["## Checks", ""]
    if flagged:
        lines.append(f"{FLAG} **{len(flagged)} result(s) failed their check against the "
                     "float64 reference:**")
        lines.append("")
        for r in flagged:
            lines.append(f"- {shape_label(r['shape'])} {r['dtype']}/{r['math']} {r['impl']}: "
                         f"{r.get('status')}, rel_err {_fmt_e(r.get('rel_err'))} "
                         f"(bound {_fmt_e(r.get('bound'))}){'; ' + r['note'] if r.get('note') else ''}")
    else:
        n = sum(1 for r in doc["records"] if r.get("rel_err") is not None)
        lines.append(f"All {n} checked outputs are within docs/PRECISION.md's bounds "
                     "(fp32, 3xtf32 ≤ 1e-5; tf32 ≤ 1e-3; bf16, fp16 ≤ 1e-2; "
                     "‖y − ref‖ / ‖ref‖ against float64).")
    lines.append("")
    lines += ["## Legend", "",
              "- A cell is the median time in ms and, in brackets, that time divided by "
              "cuBLAS addmm alone in the same row's math (below 1.00× beats the bare GEMM).",
              f"- {BORROWED}: in a 3xtf32 (float32-accurate) row, PyTorch columns show "
              "PyTorch's own float32-accurate path (math fp32, no TF32), and the ratio divides "
              "by addmm in fp32.",
              f"- {FLAG}: output outside its error bound, not finite, or the call failed. "
              "n/s: not supported for this shape/mode. —/blank: not measured.",
              "- TFLOP/s counts the GEMM only (2·M·N·K). % peak is against the measured "
              "tensor-core peak of the dtype (tf32 for float32 data)."]
    for impl in impls:
        if impl in IMPL_MEANING:
            lines.append(f"- `{impl}`: {IMPL_MEANING[impl]}.")
    lines.append("")
    return "\n".join(lines)


def write_markdown(doc, path):
    with open(path, "w", encoding="utf-8") as f:
        f.write(markdown(doc))


def default_basename(meta):
    return f"{slug(meta.get('gpu') or 'unknown-gpu')}-{meta.get('date') or 'undated'}"


def main(argv=None):
    p = argparse.ArgumentParser(description="Merge lgh benchmark results and write JSON + markdown.")
    p.add_argument("inputs", nargs="+", help="results JSON files (one GPU)")
    p.add_argument("--out", help="output folder (default: the first input's folder)")
    p.add_argument("--name", help="output base name (default: <gpu-slug>-<date>)")
    a = p.parse_args(argv)
    try:
        doc = merge([load(x) for x in a.inputs])
    except (OSError, ValueError) as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    out = a.out or os.path.dirname(os.path.abspath(a.inputs[0]))
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, a.name or default_basename(doc["meta"]))
    write_json(doc, base + ".json")
    write_markdown(doc, base + ".md")
    print(base + ".json")
    print(base + ".md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
