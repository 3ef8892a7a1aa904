#!/bin/sh
# ctest driver for the lgh program: runs a command and checks its exit status and output.
#
#   expect.sh <status> <regex|-> [--skip-if <regex>] -- <command> [args...]
#
# Passes when the command exits with <status> and its output (stdout and stderr
# together, lines joined by spaces so that .* can span lines) matches the extended
# regex (- for any output). With --skip-if, output
# matching that regex (e.g. "no CUDA device") exits 77, ctest's SKIP_RETURN_CODE.
want=$1
pattern=$2
shift 2
skip_pattern=
if [ "$1" = "--skip-if" ]; then
    skip_pattern=$2
    shift 2
fi
[ "$1" = "--" ] && shift

out=$("$@" 2>&1)
got=$?
printf '%s\n' "$out"
if [ -n "$skip_pattern" ] && printf '%s\n' "$out" | grep -Eq -- "$skip_pattern"; then
    echo "expect.sh: skipped (output matches '$skip_pattern')"
    exit 77
fi
if [ "$got" -ne "$want" ]; then
    echo "expect.sh: exit status $got, want $want: $*"
    exit 1
fi
if [ "$pattern" != "-" ] && ! printf '%s\n' "$out" | tr '\n' ' ' | grep -Eq -- "$pattern"; then
    echo "expect.sh: output does not match '$pattern': $*"
    exit 1
fi
echo "expect.sh: ok (exit $got)"
