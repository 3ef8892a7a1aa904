"""Tests of the benchmark's CPU-side parts: argument parsing and the plan, the results
format (validate, merge), the markdown table, the plot, and one end-to-end run of the
harness on the CPU against a stand-in lgh (tests/fake_lgh). The GPU numbers themselves
are only made on a GPU machine.

    /usr/bin/python3 -m pytest -q bench/tests
"""

import copy
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path.insert(0, BENCH)

import bench  # noqa: E402
import report as R  # noqa: E402


# ---------------------------------------------------------------- arguments and plan


def test_shapes_parse_and_sets():
    assert bench.parse_shape("1024x8192x8192:16") == (1024, 8192, 8192, 16)
    assert bench.parse_shape("4x8x12g3") == (4, 8, 12, 3)
    assert bench.parse_shapes("ref,ref,1x8x8:2") == [(1024, 8192, 8192, 16), (1, 8, 8, 2)]
    gs = bench.parse_shapes("g-sweep")
    assert [8192 // g for (_, _, _, g) in gs] == [8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    assert [m for (m, _, _, _) in bench.parse_shapes("m-sweep")] == [1, 16, 128, 1024, 4096, 16384]
    for bad in ("1024x8192", "1x2x3:4", "0x8x8:2", "axbxc:d"):
        with pytest.raises(ValueError):
            bench.parse_shape(bad)


def test_args_defaults_and_refusals(capsys):
    a = bench.parse_args([])
    assert a.suite == "quick" and a.shape_list == [(1024, 8192, 8192, 16)]
    assert a.mode_list == ["tf32", "3xtf32", "bf16"] and a.reps >= 50
    assert a.compile_timeout == 60 and a.engine_list == ["auto", "sm90", "sm80", "cublaslt"]
    full = bench.parse_args(["--suite", "full"])
    assert len(full.shape_list) == 15 and full.mode_list == R.MODE_ORDER
    for argv in (["--reps", "10"], ["--modes", "tf64"], ["--shapes", "1x2x3:4"],
                 ["--engines", "tpu"], ["--lo", "3", "--hi", "1"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
    capsys.readouterr()


def test_quick_plan_has_every_impl_and_the_bars():
    plan = bench.build_plan(bench.parse_args([]))
    got = {(it.mode, it.impl, it.math) for it in plan}
    for mode, math_ in (("tf32", "tf32"), ("3xtf32", "3xtf32"), ("bf16", "bf16")):
        for e in ("auto", "sm90", "sm80", "cublaslt"):
            assert (mode, "lgh-" + e, math_) in got
        assert (mode, "lgh-modelnew", math_) in got
    # the bars: addmm in tf32 and bf16; PyTorch's float32-accurate path for 3xtf32
    assert ("tf32", "addmm", "tf32") in got and ("bf16", "addmm", "bf16") in got
    assert ("3xtf32", "addmm", "fp32") in got and ("3xtf32", "torch-eager", "fp32") in got
    assert ("tf32", "torch-compile", "tf32") in got and ("bf16", "torch-compile", "bf16") in got
    assert ("tf32", "seed", "tf32") in got and ("tf32", "torch-eager", "tf32") in got
    # baselines are measured before lgh in each mode
    first_tf32 = [it.impl for it in plan if it.mode == "tf32"]
    assert first_tf32.index("addmm") < first_tf32.index("lgh-auto")


def test_fp32_mode_measures_torch_fp32_once():
    a = bench.parse_args(["--modes", "fp32,3xtf32"])
    plan = bench.build_plan(a)
    keys = [(it.impl, it.dtype, it.math) for it in plan if not it.impl.startswith("lgh")]
    assert len(keys) == len(set(keys))


def test_impl_filter():
    plan = bench.build_plan(bench.parse_args(["--impls", "lgh,addmm"]))
    assert {it.impl for it in plan} <= {"addmm", "lgh-auto", "lgh-sm90", "lgh-sm80",
                                         "lgh-cublaslt", "lgh-modelnew"}


def test_summary_statistics():
    med, lo, p90 = bench.summarize([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert (med, lo, p90) == (5.5, 1.0, 9.0)


# ---------------------------------------------------------------- results format


def synthetic_doc():
    """A results document shaped like a full GPU run, with made-up numbers."""
    a = bench.parse_args(["--suite", "full"])
    recs = []
    for i, it in enumerate(bench.build_plan(a)):
        sh = {"m": it.shape[0], "k": it.shape[1], "n": it.shape[2], "groups": it.shape[3]}
        base = 2.0 * it.shape[0] * it.shape[1] * it.shape[2] / 400e12 * 1e3
        if it.impl == "lgh-sm80" and it.mode == "fp16":
            recs.append(R.make_record(sh, it.dtype, it.math, it.impl, status="unsupported",
                                      note="lgh: not supported"))
            continue
        ms = base * (1.0 + 0.05 * (i % 7))
        rel = 0.5 * R.BOUNDS[it.math]
        status = "ok"
        if it.impl == "seed" and it.shape == bench.REF_SHAPE:
            rel, status = 3.0 * R.BOUNDS[it.math], "bound"
        recs.append(R.make_record(sh, it.dtype, it.math, it.impl, ms=ms, min_ms=ms * 0.98,
                                  p90_ms=ms * 1.02, rel_err=rel, reps=100, buffers=3,
                                  status=status))
    meta = {"gpu": "NVIDIA H100 80GB HBM3", "date": "2026-11-25", "modes": a.mode_list,
            "reps": 100, "warmup_ms": 100, "torch": "2.11.0", "sm_count": 132,
            "l2_bytes": 52428800, "peak_tflops": {"tf32": 480.0, "fp32": 51.0, "bf16": 760.0,
                                                  "fp16": 770.0}}
    return {"format": R.FORMAT, "meta": meta, "records": recs}


def test_records_carry_the_issue_fields():
    for r in synthetic_doc()["records"]:
        for key in ("shape", "dtype", "math", "impl", "ms", "tflops", "rel_err"):
            assert key in r
        assert set(r["shape"]) == {"m", "k", "n", "groups"}
        if r["ms"] is not None:
            assert r["tflops"] == pytest.approx(R.gemm_tflops(r["shape"], r["ms"]))


def test_json_round_trip_and_validation(tmp_path):
    doc = synthetic_doc()
    doc["records"][0]["rel_err"] = float("nan")  # not JSON: must be written as null
    path = str(tmp_path / "r.json")
    R.write_json(doc, path)
    text = open(path).read()
    assert "NaN" not in text
    back = R.load(path)
    assert len(back["records"]) == len(doc["records"]) and back["records"][0]["rel_err"] is None
    bad = copy.deepcopy(doc)
    bad["records"][3]["shape"]["groups"] = 7
    with pytest.raises(R.FormatError):
        R.validate(bad)
    bad = copy.deepcopy(doc)
    bad["records"][3]["ms"] = -1.0
    with pytest.raises(R.FormatError):
        R.validate(bad)
    with pytest.raises(R.FormatError):
        R.validate({"records": []})


def test_merge_keeps_later_measurements_and_refuses_two_gpus():
    doc = synthetic_doc()
    half = len(doc["records"]) // 2
    a = {"format": R.FORMAT, "meta": dict(doc["meta"]), "records": doc["records"][:half + 5]}
    b = {"format": R.FORMAT, "meta": dict(doc["meta"]),
         "records": copy.deepcopy(doc["records"][half:])}
    b["records"][0]["ms"] = 123.0
    m = R.merge([a, b])
    assert len(m["records"]) == len(doc["records"])
    assert m["records"][half]["ms"] == 123.0
    other = {"format": R.FORMAT, "meta": {"gpu": "other"}, "records": []}
    with pytest.raises(R.FormatError):
        R.merge([a, other])


def test_markdown_tables():
    md = R.markdown(synthetic_doc())
    assert md.startswith("# lgh benchmark: NVIDIA H100 80GB HBM3, 2026-11-25")
    assert "## Reference problem: M=1024, K=8192, N=8192, G=16" in md
    assert "## All shapes" in md
    table = [l for l in md.splitlines() if l.startswith("| ") and "|---" not in l]
    wide = [l for l in table if l.startswith("| 16384 | 8192 | 8192 | 16 |")]
    assert len(wide) == 5  # one row per mode
    # the 3xtf32 row borrows PyTorch's fp32 measurements, marked
    row = next(l for l in wide if "| 3xtf32 |" in l)
    assert R.BORROWED in row
    # ratios are against addmm, and addmm itself has none
    hdr = next(l for l in table if l.startswith("| M |"))
    assert hdr.split("|")[6].strip() == "addmm"
    assert "×" not in row.split("|")[6] and "×" in row.split("|")[7]
    assert "n/s" in md
    # the seed's failed check is flagged in the table and listed
    assert R.FLAG in md and "failed their check" in md and "seed: bound" in md


def test_report_command_merges_and_writes(tmp_path):
    doc = synthetic_doc()
    p1, p2 = tmp_path / "a.json", tmp_path / "b.json"
    R.write_json({"format": R.FORMAT, "meta": doc["meta"], "records": doc["records"][:40]}, str(p1))
    R.write_json({"format": R.FORMAT, "meta": doc["meta"], "records": doc["records"][40:]}, str(p2))
    assert R.main([str(p1), str(p2), "--out", str(tmp_path / "o")]) == 0
    base = tmp_path / "o" / "nvidia-h100-80gb-hbm3-2026-11-25"
    assert len(json.load(open(str(base) + ".json"))["records"]) == len(doc["records"])
    assert open(str(base) + ".md").read().startswith("# lgh benchmark")


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    import plot
    path = str(tmp_path / "r.json")
    R.write_json(synthetic_doc(), path)
    assert plot.main([path]) == 0
    png = str(tmp_path / "r.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 20000


# ---------------------------------------------------------------- end to end on the CPU


def test_harness_end_to_end_on_cpu(tmp_path):
    pytest.importorskip("torch")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(HERE, "fake_lgh")
    cmd = [sys.executable, os.path.join(BENCH, "bench.py"), "--device", "cpu",
           "--shapes", "48x64x96:6,3x40x32:4", "--modes", "fp32,tf32,3xtf32,bf16,fp16",
           "--engines", "cpu,sm90,sm80", "--reps", "6", "--warmup-ms", "1",
           "--out", str(tmp_path), "--name", "run", "--no-plot", "--strict",
           "--seed", str(tmp_path / "absent.py")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 3, p.stdout + p.stderr  # --strict: the wrong engine is flagged
    doc = R.load(str(tmp_path / "run.json"))
    by = {(R.shape_key(r["shape"]), r["math"], r["impl"]): r for r in doc["records"]}
    s = (48, 64, 96, 6)
    ok = by[(s, "fp32", "lgh-cpu")]
    assert ok["status"] == "ok" and ok["rel_err"] < 1e-5 and ok["ms"] > 0 and ok["reps"] == 6
    assert ok["min_ms"] <= ok["ms"] <= ok["p90_ms"]
    assert by[(s, "fp32", "lgh-sm90")]["status"] == "unsupported"
    assert by[(s, "fp32", "lgh-sm90")]["ms"] is None
    wrong = by[(s, "3xtf32", "lgh-sm80")]
    assert wrong["status"] == "bound" and wrong["rel_err"] > 1e-5 and wrong["ms"] is not None
    assert by[(s, "fp16", "lgh-cpu")]["status"] == "unsupported"
    assert by[(s, "fp32", "addmm")]["status"] == "ok"
    assert "3xtf32" in doc["meta"]["modes"] and doc["meta"]["lgh"] == "0.0.0-fake"
    assert any("seed" in n for n in doc["meta"]["notes"])
    assert "BOUND" in p.stderr and "FAILED their check" in p.stdout
    assert "| 3xtf32 | lgh-cpu |" in p.stdout  # the short table comes last
    md = open(str(tmp_path / "run.md")).read()
    assert "M=48, K=64, N=96, G=6" in md


def test_compile_alarm_interrupts_a_long_call():
    import time as _t
    t0 = _t.perf_counter()
    with pytest.raises(bench.CompileTimeout):
        with bench.alarm(0.2):
            _t.sleep(5)
    assert _t.perf_counter() - t0 < 2
    with bench.alarm(0.5):  # a call inside its limit is untouched, and the timer is cleared
        pass
    _t.sleep(0.7)
