#!/usr/bin/env python3
"""The hottest SASS instructions of an Nsight Compute source page (bench/ncu_source.sh).

    scripts/ncu_hot.py sm80-sass.csv [--top 40]

Prints the stall samples per opcode (where the warps wait, summed over the kernel), then
the instructions with the most samples, each with its address, its neighbours' context
(the opcode sequence before it) and its largest stall reasons when the page has them.
"""
import argparse
import collections
import csv
import sys


def num(s):
    try:
        return float(str(s).replace(",", ""))
    except ValueError:
        return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    with open(args.csv, newline="") as f:
        lines = [l for l in f if l.strip() and not l.startswith("==")]
    rows = list(csv.reader(lines))
    head_i = next((i for i, r in enumerate(rows) if any("Source" in c for c in r)), None)
    if head_i is None:
        sys.exit("ncu_hot: no 'Source' column in " + args.csv)
    head = rows[head_i]
    body = [r for r in rows[head_i + 1:] if len(r) == len(head)]
    col = {h: i for i, h in enumerate(head)}
    src = next(i for i, h in enumerate(head) if h.strip() == "Source" or h.endswith("Source"))
    addr = next((i for i, h in enumerate(head) if "Address" in h), None)
    allc = next((i for i, h in enumerate(head) if "Warp Stall Sampling (All" in h), None)
    if allc is None:
        sys.exit("ncu_hot: no warp stall sampling column; columns: " + ", ".join(head))
    reasons = [i for i, h in enumerate(head) if h.startswith("stall_") and "Not Issued" not in h]
    total = sum(num(r[allc]) for r in body) or 1.0
    ops = collections.Counter()
    cnt = collections.Counter()
    for r in body:
        op = r[src].split()
        op = [w for w in op if not w.startswith("@")]
        op = op[0].split(".")[0] if op else "?"
        ops[op] += num(r[allc])
        cnt[op] += 1
    print(f"{len(body)} instructions, {total:.0f} samples")
    print("== samples by opcode (share, instructions)")
    for op, v in ops.most_common(16):
        print(f"  {op:10s} {100 * v / total:5.1f}%  {cnt[op]}")
    print(f"== top {args.top} instructions")
    order = sorted(range(len(body)), key=lambda i: -num(body[i][allc]))[: args.top]
    for i in sorted(order):
        r = body[i]
        prev = " ".join(body[j][src].split()[0].split(".")[0] for j in range(max(0, i - 3), i) if body[j][src].split())
        rs = sorted(((num(r[j]), head[j]) for j in reasons), reverse=True)[:3]
        rs = ", ".join(f"{h[len('stall_'):]}={v:.0f}" for v, h in rs if v > 0)
        a = r[addr] if addr is not None else str(i)
        print(f"  {a:>6s} {100 * num(r[allc]) / total:5.2f}%  {r[src][:60]:60s} after [{prev}] {rs}")


if __name__ == "__main__":
    main()
