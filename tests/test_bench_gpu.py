"""The GPU benchmark's dry run: the same code on the CPU with tiny shapes, so the script cannot rot before a GPU
host runs it."""
from __future__ import annotations

from conftest import run_script

DRY_ROWS = ["cpu fp32", "openvino fp32", "PyTorch cpu fp32", "PyTorch cpu bf16"]
GPU_ROWS = ["cuda fp32", "cuda fp16", "tensorrt fp32", "tensorrt fp16", "PyTorch cuda bf16 compiled"]


def test_dry_run_measures_every_stand_in_and_names_the_gpu_rows(tmp_path):
    out = tmp_path / "gpu.md"
    proc = run_script("benchmarks/bench_gpu.py", "--dry-run", "--out", out, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = out.read_text()
    assert report.startswith("machine: ") and "engines: " in report
    for label in GPU_ROWS:
        assert f"{label}: skipped (dry run on the CPU)" in report
    table = [line for line in report.splitlines() if line.startswith("| ")]
    assert table[0] == "| engine | labels vs fp32 | Seg-tiny bs 1 | Seg-tiny bs 2 |"
    rows = {cells[0]: cells[1:] for line in table[1:] if (cells := [c.strip() for c in line.strip("|").split("|")])}
    assert sorted(rows) == sorted(DRY_ROWS)
    for label, (agreement, *speeds) in rows.items():
        assert agreement.endswith(" ok"), (label, agreement)
        assert 99.0 <= float(agreement.split()[0]) <= 100.0
        assert all(float(s) > 0 for s in speeds), (label, speeds)
    assert "TensorRT int8 is not an engine of this suite" in report
