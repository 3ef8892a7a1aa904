#!/usr/bin/env python3
"""bench/plot.py - draws a results file of bench.py as one PNG.

    python3 bench/plot.py bench/results/<gpu>-<date>.json [-o out.png]

Two panels per mode (fp32, tf32, 3xtf32, bf16, fp16), one above the other: median time
per shape and implementation (log scale, bars, p90 as a tick), then the same measurements as a
percentage of the tensor-core peak measured in the same run (meta.peak_tflops; tf32 for
float32 data). Bars of a failed check have a red edge; in 3xtf32 rows the hatched PyTorch
bars are PyTorch's float32-accurate path (math fp32), as in the markdown table.
Needs matplotlib (bench.py calls plot_doc() itself when it is installed).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report as R  # noqa: E402

COLORS = {
    "addmm": "#7f7f7f", "lgh-auto": "#d62728", "lgh-sm90": "#ff7f0e", "lgh-sm80": "#bcbd22",
    "lgh-cublaslt": "#8c564b", "lgh-cpu": "#e377c2", "lgh-modelnew": "#ff9896",
    "torch-eager": "#1f77b4", "torch-compile": "#17becf", "seed": "#9467bd",
}


def _short_shape(shape):
    m, k, n, g = R.shape_key(shape)
    if (k, n) == (8192, 8192):
        return f"M={m}\nG={g}"
    return f"M={m}\n{k}x{n}\nG={g}"


def plot_doc(doc, path, dpi=110):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    rows = R.build_rows(doc)
    meta = doc["meta"]
    modes = [m for m in R.MODE_ORDER if any(r["mode"] == m for r in rows)]
    # Only implementations with a time somewhere get a bar slot (an engine not built in,
    # n/s everywhere, would leave gaps); the markdown table still lists them.
    timed = {r["impl"] for r in doc["records"] if r.get("ms") is not None}
    impls = [i for i in R.impls_in_doc(doc) if i in timed]
    shapes = R.shapes_in_order(doc["records"])
    if not modes or not shapes:
        raise ValueError("the results hold no measurement to plot")
    nsh, nim = len(shapes), max(1, len(impls))
    # One column: per mode a time panel over a %-of-peak panel, wide enough for the bars.
    width = min(22.0, max(8.0, 0.11 * nsh * nim + 3.0))
    fig, axes = plt.subplots(2 * len(modes), 1, figsize=(width, 2.7 * 2 * len(modes) + 1.2),
                             squeeze=False)
    bw = 0.84 / nim
    for ri, mode in enumerate(modes):
        ax_t, ax_p = axes[2 * ri][0], axes[2 * ri + 1][0]
        dtype = R.MODES[mode][0]
        peak = (meta.get("peak_tflops") or {}).get(R.PEAK_KEY[dtype])
        mode_rows = {R.shape_key(r["shape"]): r for r in rows if r["mode"] == mode}
        times = []
        for si, shape in enumerate(shapes):
            row = mode_rows.get(R.shape_key(shape))
            if row is None:
                continue
            for ii, impl in enumerate(impls):
                rec, borrowed = row["cells"].get(impl, (None, False))
                if rec is None or rec.get("ms") is None:
                    continue
                x = si - 0.42 + bw * (ii + 0.5)
                flagged = R.is_flagged(rec)
                # The hatch is drawn in the edge colour, so borrowed bars need an edge.
                style = dict(color=COLORS.get(impl, "#333333"), width=bw,
                             hatch="//" if borrowed else None,
                             edgecolor="red" if flagged else ("black" if borrowed else "none"),
                             linewidth=1.5 if flagged else (0.4 if borrowed else 0))
                ax_t.bar(x, rec["ms"], **style)
                times.append(rec["ms"])
                if rec.get("p90_ms"):
                    ax_t.plot([x - bw / 3, x + bw / 3], [rec["p90_ms"]] * 2, color="black", lw=0.6)
                pp = R.pct_peak(rec, meta)
                if pp is not None:
                    ax_p.bar(x, pp, **style)
                if nsh <= 3:  # few shapes: write the numbers on the bars
                    ax_t.annotate(R._fmt_ms(rec["ms"]), (x, rec["ms"]), ha="center", va="bottom",
                                  fontsize=6, rotation=90, xytext=(0, 2), textcoords="offset points")
                    if pp is not None:
                        ax_p.annotate(f"{pp:.0f}", (x, pp), ha="center", va="bottom", fontsize=6,
                                      xytext=(0, 1), textcoords="offset points")
        labels = [_short_shape(s) for s in shapes]
        for ax in (ax_t, ax_p):
            ax.set_xticks(range(nsh))
            ax.set_xticklabels(labels, fontsize=7)
            ax.set_xlim(-0.6, nsh - 0.4)
            ax.grid(axis="y", alpha=0.3)
        # Log scale only where the times span a wide range (shapes of different sizes);
        # otherwise bars from zero, which compare honestly by height.
        if times and max(times) / max(min(times), 1e-12) > 20:
            ax_t.set_yscale("log")
            ax_t.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax_t.set_ylabel("median ms (log)")
        else:
            ax_t.set_ylim(0, (max(times) if times else 1) * 1.25)
            ax_t.set_ylabel("median ms")
        ax_t.set_title(f"{mode}: time per call (lower is better)", fontsize=10)
        peak_txt = f"{R._fmt_num(peak)} TFLOP/s" if peak else "not measured"
        ax_p.set_ylabel("% of measured peak")
        ax_p.set_ylim(0, 110)
        ax_p.set_title(f"{mode}: % of {R.PEAK_KEY[dtype]} tensor-core peak ({peak_txt})",
                       fontsize=10)
        if peak:
            ax_p.axhline(100, color="black", lw=0.6, ls="--")
    handles = [Patch(color=COLORS.get(i, "#333333"), label=i) for i in impls]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                         label="PyTorch fp32 (3xtf32 rows)"))
    handles.append(Patch(facecolor="white", edgecolor="red", label="failed check"))
    h = fig.get_figheight()
    title = f"lgh: Linear -> GroupNorm -> HardTanh on {meta.get('gpu', '?')}, {meta.get('date', '')}"
    fig.suptitle(title, y=1.0 - 0.12 / h, fontsize=11, va="top")
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6), fontsize=8,
               bbox_to_anchor=(0.5, 1.0 - 0.4 / h))
    fig.tight_layout(rect=(0, 0, 1, 1.0 - 0.75 / h))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description="Plot an lgh benchmark results file.")
    p.add_argument("results", help="results JSON written by bench.py (or report.py)")
    p.add_argument("-o", "--output", help="PNG path (default: the JSON's path with .png)")
    p.add_argument("--dpi", type=int, default=110)
    a = p.parse_args(argv)
    try:
        doc = R.load(a.results)
    except (OSError, ValueError) as e:
        print(f"plot: {e}", file=sys.stderr)
        return 1
    out = a.output or os.path.splitext(a.results)[0] + ".png"
    try:
        plot_doc(doc, out, dpi=a.dpi)
    except ImportError:
        print("plot: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"plot: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
