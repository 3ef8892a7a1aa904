"""The ctypes binding itself: which library is loaded, its version, the structure layouts
against include/lgh.h (compiled with the system C compiler), errors as exceptions."""

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch

import lgh
from lgh import _lib

from conftest import REPO

HEADER = os.path.join(REPO, "include", "lgh.h")


def test_library_loads_and_reports_version():
    path = lgh.library_path()
    assert os.path.isfile(path)
    if os.environ.get("LGH_LIBRARY"):
        assert os.path.samefile(path, os.environ["LGH_LIBRARY"])
    assert lgh.version() == lgh.__version__
    assert "cpu" in lgh.engines_available("cpu")
    assert lgh.device_description("cpu").startswith("CPU")
    assert isinstance(lgh.cpu_blas_name(), str) and lgh.cpu_blas_name()


def test_candidate_paths_order(monkeypatch):
    monkeypatch.delenv("LGH_LIBRARY", raising=False)
    pkg = os.path.dirname(os.path.abspath(_lib.__file__))
    paths = _lib.candidate_paths()
    assert paths[0] == os.path.join(pkg, "liblgh.so")
    assert paths[1] == os.path.join(os.path.dirname(os.path.dirname(pkg)), "build", "liblgh.so")
    monkeypatch.setenv("LGH_LIBRARY", "/some/where/liblgh.so")
    assert _lib.candidate_paths() == ["/some/where/liblgh.so"]


def test_bad_library_path_is_a_clear_error():
    # In a fresh interpreter: import works, the first use says what was tried.
    code = ("import lgh\n"
            "try:\n"
            "    lgh.version()\n"
            "except OSError as e:\n"
            "    print('OSError:', e)\n")
    env = dict(os.environ, LGH_LIBRARY="/nonexistent/liblgh.so",
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(lgh.__file__))))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "OSError: lgh: cannot load liblgh.so" in out.stdout
    assert "/nonexistent/liblgh.so (not found)" in out.stdout


_LAYOUT_C = r"""
#include <stddef.h>
#include <stdio.h>
#include "lgh.h"
#define F(s, f) printf(#f " %zu %zu\n", offsetof(s, f), sizeof(((s *)0)->f));
int main(void) {
    printf("sizeof %zu %zu %zu\n", sizeof(lgh_args_t), sizeof(lgh_kernel_info_t),
           sizeof(lgh_backward_args_t));
    F(lgh_args_t, m) F(lgh_args_t, k) F(lgh_args_t, n) F(lgh_args_t, groups)
    F(lgh_args_t, dtype) F(lgh_args_t, math) F(lgh_args_t, engine)
    F(lgh_args_t, eps) F(lgh_args_t, lo) F(lgh_args_t, hi)
    F(lgh_args_t, x) F(lgh_args_t, ldx) F(lgh_args_t, w) F(lgh_args_t, ldw)
    F(lgh_args_t, bias) F(lgh_args_t, gamma) F(lgh_args_t, beta)
    F(lgh_args_t, y) F(lgh_args_t, ldy) F(lgh_args_t, mean) F(lgh_args_t, rstd)
    F(lgh_args_t, h) F(lgh_args_t, ldh)
    printf("--\n");
    F(lgh_kernel_info_t, name) F(lgh_kernel_info_t, engine) F(lgh_kernel_info_t, registers)
    F(lgh_kernel_info_t, shared_bytes) F(lgh_kernel_info_t, local_bytes)
    F(lgh_kernel_info_t, threads_per_block) F(lgh_kernel_info_t, blocks_per_sm)
    printf("--\n");
    F(lgh_backward_args_t, fwd) F(lgh_backward_args_t, dy) F(lgh_backward_args_t, lddy)
    F(lgh_backward_args_t, mean) F(lgh_backward_args_t, rstd) F(lgh_backward_args_t, h)
    F(lgh_backward_args_t, ldh) F(lgh_backward_args_t, dx) F(lgh_backward_args_t, lddx)
    F(lgh_backward_args_t, dw) F(lgh_backward_args_t, lddw) F(lgh_backward_args_t, dbias)
    F(lgh_backward_args_t, dgamma) F(lgh_backward_args_t, dbeta)
    return 0;
}
"""


def test_struct_layout_matches_header():
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler on PATH to compile include/lgh.h")
    if not os.path.isfile(HEADER):
        pytest.skip("include/lgh.h not found at %s (installed package without sources)" % HEADER)
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "layout.c"), os.path.join(d, "layout")
        with open(src, "w") as f:
            f.write(_LAYOUT_C)
        subprocess.run([cc, "-std=c11", "-I", os.path.dirname(HEADER), src, "-o", exe], check=True)
        lines = subprocess.run([exe], check=True, capture_output=True, text=True).stdout.split("\n")
    sizes = lines[0].split()
    structs = (_lib.lgh_args_t, _lib.lgh_kernel_info_t, _lib.lgh_backward_args_t)
    for struct, size in zip(structs, sizes[1:]):
        assert int(size) == ctypes.sizeof(struct), struct.__name__
    cuts = [i for i, line in enumerate(lines) if line == "--"]
    sections = (lines[1:cuts[0]], lines[cuts[0] + 1:cuts[1]], lines[cuts[1] + 1:])
    for struct, rows in zip(structs, sections):
        c_fields = [r.split() for r in rows if r.strip()]
        assert [f[0] for f in c_fields] == [f[0] for f in struct._fields_], struct.__name__
        for name, offset, size in c_fields:
            field = getattr(struct, name)
            assert (field.offset, field.size) == (int(offset), int(size)), (struct.__name__, name)


def test_enum_values_match_the_library():
    L = _lib.lib()
    assert [_lib._str(L.lgh_dtype_name(i)) for i in range(3)] == ["float32", "bfloat16", "float16"]
    for name, value in _lib.MATH_BY_NAME.items():
        assert _lib._str(L.lgh_math_name(value)) == name
    for name in ("cpu", "cublaslt", "sm80", "sm90"):
        assert _lib.engine_name(_lib.engine_from_name(name)) == name
    assert _lib.engine_from_name("auto") == _lib.ENGINE_AUTO
    with pytest.raises(ValueError, match="is not an engine"):
        _lib.engine_from_name("fastest")
    # Status names follow the header's order: check two ends against the library's text.
    assert "success" in _lib._str(L.lgh_status_string(0))
    assert "internal" in _lib._str(L.lgh_status_string(len(_lib.STATUS_NAMES) - 1))


def test_exception_classes():
    e = _lib.error_for(3, "lgh_forward", "N=30 is not a multiple of groups=4")
    assert isinstance(e, ValueError) and isinstance(e, lgh.LghError)
    assert not isinstance(e, RuntimeError)
    assert e.status == 3 and e.status_name == "LGH_STATUS_GROUPS_MISMATCH"
    assert "N=30 is not a multiple of groups=4" in str(e)
    e = _lib.error_for(13, "lgh_forward", "an illegal memory access")
    assert isinstance(e, RuntimeError) and not isinstance(e, ValueError)
    assert e.status_name == "LGH_STATUS_CUDA_ERROR"


def test_one_context_per_device_is_cached():
    a = _lib.context(_lib.DEVICE_CPU)
    b = _lib.context(_lib.DEVICE_CPU)
    assert a is b and a.handle
    assert _lib.lib().lgh_context_device(a.handle) == _lib.DEVICE_CPU


def test_custom_op_flag_matches_torch():
    has = hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_fake")
    assert lgh.HAS_CUSTOM_OP == has
    if has:
        assert hasattr(torch.ops.lgh, "linear_groupnorm_hardtanh")


def _run_python(code, **env):
    full = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(
        lgh.__file__))), **env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_lgh_engine_environment_variable():
    code = ("import torch, lgh\n"
            "x, w, v = torch.rand(4, 8), torch.rand(8, 8), torch.rand(8)\n"
            "try:\n"
            "    print(lgh.engine_for(x, w, v, v, v, 2))\n"
            "    lgh.linear_groupnorm_hardtanh(x, w, v, v, v, 2)\n"
            "except Exception as e:\n"
            "    print(type(e).__name__, e.status_name, e)\n")
    assert _run_python(code, LGH_ENGINE="cpu").startswith("cpu")
    out = _run_python(code, LGH_ENGINE="bogus")
    assert "LghValueError LGH_STATUS_INVALID_VALUE" in out and "LGH_ENGINE=bogus" in out
