#!/usr/bin/env bash
# One call on the GPU machine: kernel facts, the GPU test tier (ctest + pytest), and the
# side-by-side benchmark; logs under $OUT, a short table printed last.
#
# Build on the development machine first (`make`), then, with the device tool:
#   run  command: bench/gpu.sh [tests|quick|full]   carry: [build, .seed]
# .seed/ (git-ignored) holds a copy of the seed's seed_modelnew.py for the benchmark.
#   tests  facts + ctest + pytest          quick  tests + bench --suite quick
#   bench  facts + bench --suite quick     full   tests + bench --suite full
set -u -o pipefail
mode=${1:-quick}
OUT=${OUT:-$(mktemp -d)}
root=$(pwd)
export LGH_BENCH_COMMIT=$(cat build/.commit 2>/dev/null) PYTHONUNBUFFERED=1 LGH_LIBRARY="$root/build/liblgh.so" PYTHONPATH="$root/python"

# ctest's files hold the absolute paths of the machine that configured build/.
src=$(grep -m1 '^CMAKE_HOME_DIRECTORY' build/CMakeCache.txt | cut -d= -f2)
if [ -n "$src" ] && [ "$src" != "$root" ] && [ ! -e "$src" ]; then
    mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"
fi

facts=$OUT/facts.txt
{
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv
    echo; build/lgh info
    echo; echo "== SASS of liblgh.so: HGMMA count, local-memory loads/stores per kernel"
    cuobjdump --dump-sass build/liblgh.so 2>/dev/null | awk '
        /Function :/ { fn=$3 } /HGMMA/ { h[fn]++ } /LDL|STL/ { l[fn]++ }
        END { for (f in h) printf "%-70s HGMMA %d  LDL/STL %d\n", f, h[f], l[f]+0
              for (f in l) if (!(f in h)) printf "%-70s HGMMA 0  LDL/STL %d\n", f, l[f] }'
} > "$facts" 2>&1

summary=""
if [ "$mode" != bench ]; then
    ctest --test-dir build --output-on-failure -j 1 > "$OUT/ctest.log" 2>&1
    summary="ctest: $(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -n 1)"
    python3 -m pytest -q -ra tests/python bench/tests > "$OUT/pytest.log" 2>&1
    summary="$summary
pytest: $(tail -n 1 "$OUT/pytest.log")"
fi

if [ "$mode" = quick ] || [ "$mode" = full ] || [ "$mode" = bench ]; then
    suite=quick; [ "$mode" = full ] && suite=full
    seed=(); [ -f .seed/seed_modelnew.py ] && seed=(--seed .seed/seed_modelnew.py)
    python3 bench/bench.py --suite "$suite" --out "$OUT" "${seed[@]}" > "$OUT/bench.log" 2>&1
    summary="$summary
bench: exit $? ($(ls "$OUT"/*.json 2>/dev/null | head -n 1))"
fi

echo "== facts"; grep -E "NVIDIA|HGMMA" "$facts" | head -n 12
echo "== failures"; grep -E "FAIL|Failed|failed|Error" "$OUT/ctest.log" "$OUT/pytest.log" 2>/dev/null | head -n 20
echo "== bench"; [ -f "$OUT/bench.log" ] && tail -n 40 "$OUT/bench.log"
echo "== summary"; echo "$summary"
