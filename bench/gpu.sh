#!/usr/bin/env bash
# One call on the GPU machine: kernel facts, the GPU test tiers, sanitizers, the
# side-by-side benchmark and an Nsight Compute profile; logs under $OUT (at most 8 files),
# a short table printed last.
#
# Build on the development machine first (`make`), then, with the device tool:
#   run  command: bench/gpu.sh [preset | step...]   carry: [build, .seed]
# .seed/ (git-ignored) holds a copy of the seed's seed_modelnew.py for the benchmark.
# Steps:   facts ctest forced sanitize pytest kernelbench bench msweep small smallc groups tuned profile sm80 train dw mps
#          micro ksweep
# Presets: tests = facts ctest pytest     quick = tests bench
#          final = facts ctest forced sanitize kernelbench bench profile
set -u -o pipefail
[ $# -gt 0 ] || set -- quick
steps=()
for a in "$@"; do
    case $a in
    tests) steps+=(facts ctest pytest) ;;
    quick) steps+=(facts ctest pytest bench) ;;
    final) steps+=(facts ctest bench forced sm80 profile sanitize) ;;
    facts | ctest | forced | sanitize | pytest | kernelbench | bench | msweep | small | smallc | groups | tuned | profile | sm80 | train | dw | mps | micro | ksweep) steps+=("$a") ;;
    *) echo "gpu.sh: unknown step '$a'" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-$(mktemp -d)}
root=$(pwd)
export LGH_BENCH_COMMIT=$(cat build/.commit 2>/dev/null) PYTHONUNBUFFERED=1
export LGH_LIBRARY="$root/build/liblgh.so" PYTHONPATH="$root/python"

# ctest's files hold the absolute paths of the machine that configured build/.
src=$(grep -m1 '^CMAKE_HOME_DIRECTORY' build/CMakeCache.txt | cut -d= -f2)
if [ -n "$src" ] && [ "$src" != "$root" ] && [ ! -e "$src" ]; then
    mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"
fi

checks=$OUT/checks.log
summary=()
note() { summary+=("$1"); echo "[gpu.sh $(date +%T)] $1" >&2; }

step_facts() {
    {
        nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv
        echo; build/lgh info
        echo; echo "== SASS of liblgh.so: HGMMA/HMMA count, local-memory loads/stores per kernel"
        cuobjdump --dump-sass build/liblgh.so 2>/dev/null | awk '
            /Function :/ { fn=$3; seen[fn]=1 } /HGMMA/ { h[fn]++ } /HMMA/ { m[fn]++ } /LDL|STL/ { l[fn]++ }
            END { for (f in seen) printf "%-72s HGMMA %d  HMMA %d  LDL/STL %d\n", f, h[f]+0, m[f]+0, l[f]+0 }' | sort
    } > "$OUT/facts.txt" 2>&1
    note "facts: $(grep -c 'LDL/STL 0' "$OUT/facts.txt") kernels without local memory, $(grep -vc 'LDL/STL 0' <(grep 'LDL/STL' "$OUT/facts.txt")) with"
}
step_ctest() {
    # CTEST_EXCLUDE: a regex of tests to leave out (e.g. fuzz, which the CPU tier runs);
    # CTEST_LABEL=gpu: the GPU tests alone (the CPU tier runs the rest); CTEST_JOBS: tests at once
    timeout ${CTEST_TIMEOUT:-300} ctest --test-dir build --output-on-failure -j ${CTEST_JOBS:-1} \
        ${CTEST_LABEL:+-L "$CTEST_LABEL"} ${CTEST_EXCLUDE:+-E "$CTEST_EXCLUDE"} > "$OUT/ctest.log" 2>&1
    note "ctest: $(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -n 1)"
}
step_forced() { # the matrix with the engine forced through LGH_ENGINE (the sm90 engine's variants,
    # forced through LGH_SM90_VARIANT, are ctest's matrix_sm90_variant_* and the like)
    echo "== LGH_ENGINE=sm90 test_matrix --engine auto" >> "$checks"
    LGH_ENGINE=sm90 timeout 40 build/tests/test_matrix --engine auto >> "$checks" 2>&1
    note "forced sm90 (exit $?): $(tail -n 1 "$checks")"
    # the backward's dW on the 3xtf32 main loops other than its default (LGH_SM90_DW_LOOP=1), and
    # its products on transposed copies instead of NN products
    for v in LGH_SM90_DW_LOOP=2 LGH_SM90_DW_LOOP=3 LGH_SM90_BWD_TRANSPOSE=1; do
        echo "== $v test_backward --engine sm90" >> "$checks"
        env $v timeout 60 build/tests/test_backward --engine sm90 >> "$checks" 2>&1
        note "sm90 backward $v (exit $?): $(tail -n 1 "$checks")"
        echo "== $v pytest test_train.py -k as_close" >> "$checks"
        env $v timeout 60 python3 -m pytest -q tests/python/test_train.py -k as_close >> "$checks" 2>&1
        note "sm90 dW accuracy $v (exit $?): $(tail -n 1 "$checks")"
    done
}
step_sanitize() {
    local tools=${SANITIZE_TOOLS:-memcheck racecheck synccheck} engines=${SANITIZE_ENGINES:-sm90 sm80}
    for e in $engines; do for tool in $tools; do
        echo "== compute-sanitizer --tool $tool test_matrix --engine $e --reduced" >> "$checks"
        timeout "${SANITIZE_TIMEOUT:-60}" compute-sanitizer --tool $tool --error-exitcode 9 \
            build/tests/test_matrix --engine $e --reduced >> "$checks" 2>&1
        local rc=$?
        note "sanitize $tool $e: exit $rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|cases run' "$checks" | tail -n 1)"
    done; done
}
step_pytest() {
    timeout 400 python3 -m pytest -q -ra tests/python bench/tests > "$OUT/pytest.log" 2>&1
    note "pytest: $(tail -n 1 "$OUT/pytest.log")"
}
step_kernelbench() {
    echo "== pytest -s -k kernelbench (ModelNew vs Model, 5 fresh inputs)" >> "$checks"
    timeout 200 python3 -m pytest -q -s -k kernelbench tests/python >> "$checks" 2>&1
    note "kernelbench: $(tail -n 1 "$checks")"
}
step_bench() {
    local seed=()
    [ -f .seed/seed_modelnew.py ] && seed=(--seed .seed/seed_modelnew.py)
    timeout 170 python3 bench/bench.py --suite "${BENCH_SUITE:-quick}" --out "$OUT" "${seed[@]}" \
        > "$OUT/bench.log" 2>&1
    note "bench: exit $? $(ls "$OUT"/*.json 2>/dev/null | head -n 1)"
}
step_msweep() { # the M sweep (K = N = 8192, G = 16), tf32 and bf16, GEMM baselines and lgh
    # Its json alone comes back (the device returns at most 8 files): report.py remakes the rest.
    mkdir -p "$OUT/ms"
    timeout 200 python3 bench/bench.py --shapes m-sweep --modes tf32,bf16 --impls addmm,lgh \
        --engines auto,sm90,cublaslt --no-compile --name msweep --out "$OUT/ms" > "$OUT/ms/msweep.log" 2>&1
    note "msweep: exit $?"
    tail -n 40 "$OUT/ms/msweep.log" >> "$checks"
    find "$OUT/ms" -type f ! -name '*.json' -delete
}
step_small() { # small batches (bench.py --shapes small-m): lgh (split K on sm90) vs addmm and eager,
    # then the sm90 engine without split K (LGH_SM90_VARIANT=1) for the split's effect
    timeout 240 python3 bench/bench.py --shapes small-m --modes tf32,bf16,3xtf32 --impls addmm,torch-eager,lgh \
        --engines auto,sm90,cublaslt --no-compile --name smallm --out "$OUT" > "$OUT/smallm.log" 2>&1
    note "small: exit $?"
    LGH_SM90_VARIANT=1 timeout 120 python3 bench/bench.py --shapes small-m --modes tf32,bf16,3xtf32 --impls lgh-sm90 \
        --engines sm90 --no-compile --name smallm-nosplit --out "$OUT" > "$OUT/smallm-nosplit.log" 2>&1
    note "small (no split): exit $?"
}
step_smallc() { # small batches from C (lgh run: CUDA-event medians, no Python on the host path), the
    # split counts side by side at M = 128, and the Python layer's host time per call
    {
        printf "%-5s %-8s %-7s %-9s %s\n" M mode engine splits "median ms"
        for m in 1 8 32 64 128 256; do
            for cfg in "float32 tf32 sm90" "float32 tf32 cublaslt" "bfloat16 default sm90" \
                "bfloat16 default cublaslt" "float32 3xtf32 sm90" "float32 3xtf32 cublaslt"; do
                set -- $cfg
                for sp in 0 1; do
                    [ "$3" = cublaslt ] && [ $sp = 1 ] && continue
                    t=$(LGH_SM90_VARIANT=$sp build/lgh run --m $m --k 8192 --n 8192 --groups 16 --dtype $1 --math $2 \
                        --engine $3 --iters 200 --check-rows 0 2>&1 | grep -oE 'median [0-9.]+ ms' | grep -oE '[0-9.]+')
                    printf "%-5s %-8s %-7s %-9s %s\n" $m "$1/$2" $3 "$([ $sp = 0 ] && echo model || echo none)" "$t"
                done
            done
        done
        for sp in 2 3 4 6 8; do
            for cfg in "float32 tf32" "bfloat16 default" "float32 3xtf32"; do
                set -- $cfg
                t=$(LGH_SM90_VARIANT=$sp build/lgh run --m 128 --k 8192 --n 8192 --groups 16 --dtype $1 --math $2 \
                    --engine sm90 --iters 200 --check-rows 0 2>&1 | grep -oE 'median [0-9.]+ ms' | grep -oE '[0-9.]+')
                printf "%-5s %-8s %-7s %-9s %s\n" 128 "$1/$2" sm90 "S=$sp" "$t"
            done
        done
    } > "$OUT/smallc.txt" 2>&1
    timeout 120 python3 bench/micro/host_overhead.py > "$OUT/host_overhead.txt" 2>&1
    note "smallc: $(wc -l < "$OUT/smallc.txt") lines; host: $(sed -n 4p "$OUT/host_overhead.txt")"
}
step_ksweep() { # the fused kernel's time split into a rate per unit of K and a fixed cost per
    # call: M = 1024, N = 8192, K = 1024 .. 8192, sm90 (G = 16: software cluster; G = 64: groups
    # inside a tile) against cublaslt, least squares per line (docs/PERF.md, "Across shapes")
    for cfg in "sm90 16" "sm90 64" "cublaslt 64"; do for d in "bfloat16 default" "float32 tf32"; do
        set -- $cfg $d
        for k in 1024 2048 4096 8192; do
            echo "$1 G=$2 $3 $k $(build/lgh run --engine $1 --m 1024 --k $k --n 8192 --groups $2 --dtype $3 \
                --math $4 --iters 100 --check-rows 0 2>&1 | awk '/median/ {print $3}')"
        done
    done; done > "$OUT/ksweep.txt" 2>&1
    awk '{ key = $1 " " $2 " " $3; x = $4 / 1024; y = $5 * 1000
           n[key]++; sx[key] += x; sy[key] += y; sxx[key] += x * x; sxy[key] += x * y }
         END { for (k in n) { b = (n[k] * sxy[k] - sx[k] * sy[k]) / (n[k] * sxx[k] - sx[k] * sx[k])
                              a = (sy[k] - b * sx[k]) / n[k]
                              printf "%-24s %7.2f us per 1024 of K, fixed %6.1f us\n", k, b, a } }' \
        "$OUT/ksweep.txt" | sort > "$OUT/ksweep-fit.txt"
    cat "$OUT/ksweep-fit.txt" >> "$checks"
    note "ksweep: $(wc -l < "$OUT/ksweep-fit.txt") fits"
}
step_groups() { # groups that do not tile the sm90 epilogue's 256 columns (344 channels: N = 11008,
    # G = 32): sm90's unfused path (GEMM into a float32 workspace, then the group-norm pass),
    # sm90 in straddle mode (LGH_SM90_VARIANT=501: fused, edge statistics shared across tiles)
    # and cublaslt; then bench.py's llama shape against addmm, with straddle mode on
    for cfg in "float32 3xtf32" "float32 tf32" "bfloat16 default"; do
        set -- $cfg
        for e in sm90 sm90+straddle cublaslt; do
            printf "%-18s %-14s " "$1/$2" $e
            env $([ $e = sm90+straddle ] && echo LGH_SM90_VARIANT=501) build/lgh run --m 1024 --k 4096 --n 11008 \
                --groups 32 --dtype $1 --math $2 --engine ${e%+*} --iters 50 --check-rows 16 2>&1 |
                grep -E "engine|time|error" | tr '\n' ' ' | sed 's/  */ /g'
            echo
        done
    done > "$OUT/groups.txt" 2>&1
    for s in "" LGH_SM90_VARIANT=501; do
        env $s timeout 150 python3 bench/bench.py --shapes llama,256x4096x11008:32,4096x4096x11008:32 --modes tf32,bf16 --impls addmm,lgh \
            --engines auto,sm90,cublaslt --no-compile --name "llama${s:+-straddle}" --out "$OUT/gr" \
            > "$OUT/gr.log" 2>&1
        echo "== bench.py llama ${s:-(straddle off)}" >> "$OUT/groups.txt"
        grep -E "11008" "$OUT/gr.log" >> "$OUT/groups.txt"
    done
    mv "$OUT"/gr/*.json "$OUT"/ 2>/dev/null; rm -rf "$OUT/gr" "$OUT/gr.log"
    note "groups: $(grep -c median "$OUT/groups.txt") timings"
}
step_tuned() { # lgh AUTO against addmm over bench.py's large-m shapes (M = 512 .. 16384 at
    # K = N = 8192, G = 16, and 1024x4096x11008, G = 32): untuned, then after `lgh tune` timed
    # every engine and variant for them (impl lgh-auto-tuned); the tuner's choices in tuned.txt
    local cache=/tmp/lgh-tune-cache
    rm -rf "$cache"
    LGH_CACHE=0 timeout 200 python3 bench/bench.py --shapes large-m --modes tf32,bf16 --impls addmm,lgh \
        --engines auto,sm90 --no-compile --name untuned --out "$OUT" > "$OUT/untuned.log" 2>&1
    note "untuned: exit $?"
    for d in "float32 --math tf32" "bfloat16"; do
        XDG_CACHE_HOME=$cache timeout 150 build/lgh tune --m 512,1024,2048,4096,16384 --dtype $d
        XDG_CACHE_HOME=$cache timeout 60 build/lgh tune --m 1024 --k 4096 --n 11008 --groups 32 --dtype $d
    done > "$OUT/tuned.txt" 2>&1
    cat "$cache"/lgh/* >> "$OUT/tuned.txt" 2>/dev/null
    XDG_CACHE_HOME=$cache timeout 200 python3 bench/bench.py --shapes large-m --modes tf32,bf16 --impls addmm,lgh \
        --engines auto --tag tuned --no-compile --name tuned --out "$OUT" > "$OUT/tuned.log" 2>&1
    note "tuned: exit $?"
    for f in untuned tuned; do echo "== $f"; grep -E "K=8192 N=8192|N=11008" "$OUT/$f.log" | tail -n 30; done >> "$checks"
    # The device returns at most 8 files: the jsons stay (report.py remakes .md and .png), the
    # logs' timing lines are in checks.log.
    rm -f "$OUT"/untuned.{md,png,log} "$OUT"/tuned.{md,png,log}
}
step_train() { # training step (forward + backward), lgh vs PyTorch: bench/train.py
    timeout "${TRAIN_TIMEOUT:-300}" python3 bench/train.py --shape "${TRAIN_SHAPE:-1024x8192x8192:16}" \
        --out "$OUT" --name "${TRAIN_NAME:-train}" > "$OUT/train.log" 2>&1
    note "train: exit $?"
}
step_dw() { # the backward's 3xtf32 products: transposed copies (version 2) against NN products,
    # and dW on each main loop (LGH_SM90_DW_LOOP): training steps side by side in C, then the
    # Python step with its five gradient errors under each
    ROUNDS=3 BACKWARD=1 ITERS=20 MODES=float32:3xtf32 SHAPES=${DW_SHAPES:-1024} OUT="$OUT" \
        bench/sm90_ab.sh LGH_SM90_BWD_TRANSPOSE=1 LGH_SM90_DW_LOOP=2 LGH_SM90_DW_LOOP=1 LGH_SM90_DW_LOOP=3 \
        > "$OUT/dw.txt" 2>&1
    grep -E "^== .*round 1|^ +d(W|x) " "$OUT/ab.log.raw" >> "$OUT/dw.txt"
    for v in LGH_SM90_BWD_TRANSPOSE=1 LGH_SM90_DW_LOOP=2 LGH_SM90_DW_LOOP=1; do
        local tag=${v##*_}
        env $v timeout 120 python3 bench/train.py --classes fp32,3xtf32 --reps 5 \
            --out "$OUT" --name "train-${tag//=/}" 2>&1 | grep -v Warn | sed "s/^/$tag /" >> "$OUT/dw.txt"
    done
    note "dw: $(grep -c 'lgh-auto-train ' "$OUT/dw.txt") training records (dw.txt)"
}
step_mps() { # the sm90 engine under MPS with half the SMs: its cooperative launch (software
    # clusters) is refused there and must fall back with the same results
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/lgh-mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/lgh-mps-log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if ! nvidia-cuda-mps-control -d >> "$checks" 2>&1; then
        note "mps: the MPS daemon did not start (the forced refusal runs in step forced)"
        return
    fi
    echo "== MPS, CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=50: test_matrix --engine sm90" >> "$checks"
    CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=50 timeout 60 build/tests/test_matrix --engine sm90 >> "$checks" 2>&1
    note "mps sm90 (exit $?): $(tail -n 1 "$checks")"
    CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=50 timeout 60 build/tests/test_backward --engine sm90 >> "$checks" 2>&1
    note "mps sm90 backward (exit $?): $(tail -n 1 "$checks")"
    echo quit | nvidia-cuda-mps-control >> "$checks" 2>&1
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}
step_profile() { # the reference problem under Nsight Compute: sm90 and cublaslt, tf32 and bf16,
    # with the tensor pipe, L2 and stall metrics of PROFILE_METRICS (a run whose metric names
    # this ncu does not know fails in one line; the plain metrics follow it then)
    local extra=${PROFILE_METRICS:-sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active,lts__throughput.avg.pct_of_peak_sustained_elapsed,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,smsp__warp_issue_stalled_long_scoreboard_per_warp_active.pct,smsp__warp_issue_stalled_barrier_per_warp_active.pct,smsp__warp_issue_stalled_wait_per_warp_active.pct}
    # The sm80 engine (PROFILE_ENGINES) also gets shared-memory throughput and the stalls
    # that wait on it: mma.sync reads every operand from shared memory through ldmatrix.
    local smem=l1tex__data_pipe_lsu_wavefronts_mem_shared.sum.pct_of_peak_sustained_elapsed,l1tex__throughput.avg.pct_of_peak_sustained_active,smsp__warp_issue_stalled_mio_throttle_per_warp_active.pct,smsp__warp_issue_stalled_short_scoreboard_per_warp_active.pct,smsp__warp_issue_stalled_math_pipe_throttle_per_warp_active.pct
    for e in ${PROFILE_ENGINES:-sm90 cublaslt}; do for d in "float32 --math tf32" "bfloat16"; do
        local m=$extra
        [ "$e" = sm80 ] && m=$extra,$smem
        echo "== lgh profile --engine $e --dtype $d (reference problem)" >> "$checks"
        timeout 90 build/lgh profile --engine $e --dtype $d --metrics "$m" >> "$checks" 2>&1 ||
            timeout 60 build/lgh profile --engine $e --dtype $d >> "$checks" 2>&1
        note "profile $e $d: exit $?"
    done; done
}

step_micro() { # the mma.sync ceiling, on registers and fed from shared memory (bench/micro/mma_sync_peak.cu;
    # built here with the command its header gives when build/ has none)
    [ -x build/mma_sync_peak ] || nvcc -O3 -std=c++17 -Isrc/cuda -gencode arch=compute_90,code=sm_90 \
        -o build/mma_sync_peak bench/micro/mma_sync_peak.cu
    timeout 60 build/mma_sync_peak > "$OUT/micro.txt" 2>&1
    note "micro: $(grep -c TFLOP "$OUT/micro.txt") cases"
}

step_sm80() { # the sm80 engine's other paths, which the default choice rarely takes
    for v in LGH_SM80_MODE=fused LGH_SM80_MODE=pre LGH_SM80_CONFIG=0 LGH_SM80_CONFIG=1 LGH_SM80_CONFIG=2 \
        LGH_SM80_CONFIG=3 LGH_SM80_CONFIG=4; do
        echo "== $v test_matrix --engine sm80" >> "$checks"
        env "$v" timeout 30 build/tests/test_matrix --engine sm80 >> "$checks" 2>&1
        note "sm80 $v (exit $?): $(tail -n 1 "$checks")"
    done
}

for s in "${steps[@]}"; do "step_$s"; done

echo "== facts"; grep -E "NVIDIA" "$OUT/facts.txt" | head -n 3
grep -E "sm90|sm80" "$OUT/facts.txt" | grep -E "HGMMA|HMMA" | head -n 4
echo "== failures"
grep -hE "^FAIL|Failed|\*\*\*Failed|failed|ERROR SUMMARY: [1-9]" "$OUT/ctest.log" "$OUT/pytest.log" "$checks" 2>/dev/null | head -n 20
if [ -f "$OUT/bench.log" ]; then echo "== bench"; tail -n 32 "$OUT/bench.log"; fi
if [ -d "$OUT/ms" ]; then echo "== msweep"; tail -n 24 "$checks"; fi
if [ -f "$OUT/micro.txt" ]; then echo "== micro"; cat "$OUT/micro.txt"; fi
if [ -f "$OUT/groups.txt" ]; then echo "== groups"; cut -c1-120 "$OUT/groups.txt"; fi
if [ -f "$OUT/train.log" ]; then echo "== train"; tail -n 14 "$OUT/train.log"; fi
echo "== summary"; printf '%s\n' "${summary[@]}"
