#!/bin/sh
# Makes sure what `make` needs is installed, on Debian/Ubuntu.
#
# Required: cmake, a C compiler, make. Wanted: OpenBLAS (cblas.h; without it the CPU
# engine uses its built-in blocked GEMM) and a python3 with torch + pytest (without it
# the Python tier is skipped). Missing packages are installed with apt-get when run as
# root and a package registry answers; otherwise the exact command is printed and, for
# anything required or when not root, the script stops. On a machine with no registry
# (the GPU machine) nothing is installed and optional pieces are simply reported.
#
# Prints, as its last line, the python interpreter to use for the Python tier ("" if none).
set -u

missing_required=""
missing_optional=""

have() { command -v "$1" >/dev/null 2>&1; }

have cmake || missing_required="$missing_required cmake"
have cc || have gcc || missing_required="$missing_required build-essential"
have make || missing_required="$missing_required make"

have_cblas() {
    for d in /usr/include /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu \
             /usr/include/openblas /usr/local/include /opt/OpenBLAS/include; do
        [ -f "$d/cblas.h" ] && return 0
    done
    return 1
}
have_cblas || missing_optional="$missing_optional libopenblas-dev"

# A python3 that can run the Python tier: torch and pytest importable.
find_python() {
    for p in ${PYTHON:-} python3 /usr/bin/python3; do
        [ -n "$p" ] || continue
        have "$p" || [ -x "$p" ] || continue
        if "$p" -c "import torch, pytest" >/dev/null 2>&1; then
            echo "$p"
            return 0
        fi
    done
    return 1
}
py=$(find_python) || { py=""; missing_optional="$missing_optional python3-torch python3-pytest python3-numpy"; }

wanted="$missing_required$missing_optional"
if [ -n "$wanted" ]; then
    cmd="apt-get install -y --no-install-recommends$wanted"
    if [ "$(id -u)" = 0 ] && have apt-get; then
        echo "deps: installing:$wanted" >&2
        export DEBIAN_FRONTEND=noninteractive
        if timeout 300 apt-get -o Acquire::Retries=0 -o Acquire::http::Timeout=10 update -q >/dev/null 2>&1 &&
           timeout 1200 apt-get -o Acquire::Retries=0 -o Acquire::http::Timeout=10 install -y -q \
               --no-install-recommends $wanted >/dev/null 2>&1; then
            echo "deps: installed$wanted" >&2
        elif [ -n "$missing_required" ]; then
            echo "deps: could not install the required packages:$missing_required (no package registry?)" >&2
            exit 1
        else
            echo "deps: no package registry reachable; going on without:$missing_optional" >&2
        fi
        [ -n "$py" ] || py=$(find_python) || py=""
    else
        echo "deps: missing packages:$wanted" >&2
        echo "deps: run as root:  $cmd" >&2
        exit 1
    fi
fi
have_cblas || echo "deps: OpenBLAS not found: the CPU engine will use the built-in blocked GEMM" >&2
[ -n "$py" ] || echo "deps: no python3 with torch and pytest: the Python tier will be skipped" >&2
echo "$py"
