#!/usr/bin/env bash
# `make test`: ctest, then the Python tier (pytest) with the python deps.sh found, then
# one closing summary line for both.
set -u -o pipefail
build=${1:-build}
py=$(cat "$build/.python" 2>/dev/null || true)

ctest --test-dir "$build" --output-on-failure -j 2 2>&1 | tee "$build/ctest.log"
c_rc=$?
c_line=$(grep -E "tests passed|tests failed" "$build/ctest.log" | tail -n 1)
[ -n "$c_line" ] || c_rc=1

p_rc=0
if [ -n "$py" ]; then
    LGH_LIBRARY="$(pwd)/$build/liblgh.so" PYTHONPATH="$(pwd)/python" \
        "$py" -m pytest -q -ra tests/python bench/tests 2>&1 | tee "$build/pytest.log"
    p_rc=$?
    p_line=$(grep -E "(passed|failed|error|skipped)" "$build/pytest.log" | tail -n 1)
else
    p_line="skipped (no python3 with torch and pytest)"
fi
echo
echo "lgh test summary: ctest: $c_line | pytest: $p_line"
[ $c_rc -eq 0 ] && [ $p_rc -eq 0 ]
