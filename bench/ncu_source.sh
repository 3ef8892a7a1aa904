#!/usr/bin/env bash
# Per-instruction stall sampling of one lgh kernel under Nsight Compute: where in the SASS
# the warps wait, and why. Profiles the 4th launch of the engine's kernel on the problem
# given (reference problem by default) and writes, under $OUT:
#   <name>.ncu-rep      the full report (open it in the Nsight Compute GUI),
#   <name>-sass.csv     the source page: every SASS instruction with its warp-state samples,
#   <name>-summary.txt  the report's details page (throughputs, stall reasons, occupancy).
# Run on the GPU machine, after `make` on the development machine (carry: [build]):
#   bench/ncu_source.sh sm80 [lgh run options...]        e.g. --dtype bfloat16
# Environment: NAME (file prefix, default the engine), KERNEL (kernel-name regex), LGH (the
# CLI to profile, default build/lgh; another build's is run with its library beside it).
# Read the CSV with scripts/ncu_hot.py (the hottest instructions and their stall reasons).
set -u -o pipefail
engine=${1:-sm80}
shift || true
OUT=${OUT:-$(mktemp -d)}
name=${NAME:-$engine}
kernel=${KERNEL:-lgh_${engine}}
rep=$OUT/$name
lgh=${LGH:-build/lgh}
export LD_LIBRARY_PATH=$(dirname "$lgh")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
timeout 300 ncu --kernel-name "regex:$kernel" --launch-skip 3 --launch-count 1 --set full \
    --import-source no -f -o "$rep" \
    "$lgh" run --engine "$engine" --m 1024 --iters 3 --warmup 2 --check-rows 0 "$@" > "$OUT/$name-ncu.log" 2>&1
echo "ncu: exit $? ($(tail -n 1 "$OUT/$name-ncu.log"))"
ncu -i "$rep.ncu-rep" --page source --csv --print-source sass > "$OUT/$name-sass.csv" 2> "$OUT/$name-sass.err" ||
    ncu -i "$rep.ncu-rep" --page source --csv > "$OUT/$name-sass.csv" 2>> "$OUT/$name-sass.err"
echo "source page: $(wc -l < "$OUT/$name-sass.csv") lines"
ncu -i "$rep.ncu-rep" --page details > "$OUT/$name-summary.txt" 2>&1
grep -E "Duration|Tensor|Issue Slots Busy|Eligible Warps|Active Warps Per|Registers Per|Achieved Occupancy|L2 Cache Throughput|L1/TEX Cache Throughput|DRAM Throughput|L2 Hit Rate|Memory Throughput" \
    "$OUT/$name-summary.txt" | head -n 20
