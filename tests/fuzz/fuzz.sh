#!/bin/sh
# Builds and runs lgh's libFuzzer targets (tests/fuzz/fuzz_api.c: the C API's arguments on
# a CPU context; tests/fuzz/fuzz_cache.c: the tuning-cache file parser).
#
#   tests/fuzz/fuzz.sh deps                       clang + libFuzzer with apt-get (root, Debian)
#   tests/fuzz/fuzz.sh build DIR                  configure and build DIR with clang
#   tests/fuzz/fuzz.sh run DIR TARGET SECONDS [libFuzzer options...]
#   tests/fuzz/fuzz.sh ctest DIR TARGET SECONDS   build, then run; exit 77 (skipped) when
#                                                 clang cannot link -fsanitize=fuzzer
#
# TARGET is api or cache. `run` starts from the seed corpus tests/fuzz/corpus/TARGET (kept
# small and in git: valid and refused calls, and each input that once found a bug) and
# keeps what the fuzzer adds under DIR/corpus/TARGET; a crash, leak or sanitizer report
# stops it, leaves the input in DIR/artifacts/TARGET/ and fails. Replay one input with
# `DIR/fuzz_TARGET FILE`. One process, one core; the final stats line gives the
# executions (stat::number_of_executed_units).
#
# `make fuzz` runs both targets for FUZZ_SECONDS (default 60) each; ctest's fuzz_api and
# fuzz_cache (label cpu) run them for 30 s each where clang with libFuzzer is installed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
CLANG=${CLANG:-clang}

have_libfuzzer() {
    command -v "$CLANG" >/dev/null 2>&1 || return 1
    tmp=$(mktemp -d) || return 1
    printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$tmp/t.c"
    "$CLANG" -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" >/dev/null 2>&1
    rc=$?
    rm -rf "$tmp"
    return $rc
}

deps() {
    have_libfuzzer && return 0
    pkgs="clang libclang-rt-dev"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "fuzz: installing $pkgs" >&2
        export DEBIAN_FRONTEND=noninteractive
        timeout 300 apt-get -o Acquire::Retries=0 -o Acquire::http::Timeout=10 update -q >/dev/null 2>&1
        timeout 1200 apt-get -o Acquire::Retries=0 -o Acquire::http::Timeout=10 install -y -q \
            --no-install-recommends $pkgs >/dev/null 2>&1
    fi
    have_libfuzzer && return 0
    echo "fuzz: clang with libFuzzer not found; as root: apt-get install $pkgs" >&2
    return 1
}

build() {
    dir=$1
    if [ ! -f "$dir/CMakeCache.txt" ]; then
        cmake -S "$here" -B "$dir" -DCMAKE_C_COMPILER="$CLANG" >"$dir.configure.log" 2>&1 ||
            { cat "$dir.configure.log"; return 1; }
    fi
    cmake --build "$dir" -j "${JOBS:-2}" >"$dir.build.log" 2>&1 || { cat "$dir.build.log"; return 1; }
}

run() {
    dir=$1 target=$2 seconds=$3
    shift 3
    case $target in
    api) max_len=1024 ;;
    cache) max_len=16384 ;;
    *) echo "fuzz: unknown target '$target' (api or cache)" >&2; return 2 ;;
    esac
    work="$dir/corpus/$target" art="$dir/artifacts/$target/"
    mkdir -p "$work" "$art"
    echo "fuzz: $target for ${seconds}s (work corpus $work, seeds $here/corpus/$target)"
    "$dir/fuzz_$target" -max_total_time="$seconds" -max_len=$max_len -timeout=30 \
        -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$art" "$@" \
        "$work" "$here/corpus/$target" >"$dir/fuzz_$target.log" 2>&1
    rc=$?
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done )" "$dir/fuzz_$target.log"
    if [ $rc -ne 0 ]; then
        tail -n 60 "$dir/fuzz_$target.log"
        echo "fuzz: $target failed (exit $rc); inputs in $art; replay: $dir/fuzz_$target FILE" >&2
    fi
    return $rc
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
deps) deps ;;
build) [ $# -eq 1 ] || { echo "usage: $0 build DIR" >&2; exit 2; }; mkdir -p "$1" && build "$1" ;;
run) [ $# -ge 3 ] || { echo "usage: $0 run DIR TARGET SECONDS" >&2; exit 2; }; run "$@" ;;
ctest)
    [ $# -eq 3 ] || { echo "usage: $0 ctest DIR TARGET SECONDS" >&2; exit 2; }
    if ! have_libfuzzer; then
        echo "fuzz: skipped ($CLANG with -fsanitize=fuzzer not available; tests/fuzz/fuzz.sh deps)"
        exit 77
    fi
    mkdir -p "$1" && build "$1" && run "$@"
    ;;
*) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
