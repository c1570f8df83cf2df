"""The README's main command, demo.sh, on both routes (the shipped model, the generated val set)."""
from __future__ import annotations

import os
import subprocess

import pytest
import yaml
from conftest import ROOT


@pytest.mark.slow
@pytest.mark.parametrize("route", ["files", "stream"])
def test_demo_script(tmp_path, route):
    proc = subprocess.run(["bash", str(ROOT / "demo.sh"), "--work-dir", str(tmp_path), "--route", route,
                           "--batch-sizes", "1 2", "--perf-loop", "2"], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = yaml.safe_load((ROOT / "models" / "demo" / "expected.yaml").read_text())
    scores = yaml.safe_load((tmp_path / "metrics.yaml").read_text())
    assert scores["mean_iou"] == pytest.approx(expected["mean_iou"], abs=0.3)
    assert "traffic sign" in proc.stdout and "mIoU" in proc.stdout  # the per-class table is printed
    assert (tmp_path / "perf.csv").read_text().count("\n") == 3  # header + batch sizes 1 and 2
    overlays = sorted((tmp_path / "overlays").glob("*_overlay.png"))
    assert len(overlays) == 4 and len({p.name.split("_")[0] for p in overlays}) >= 2  # spread over cities
    assert (tmp_path / "variant.yml").is_file()  # beside model.onnx: the README's predict command on it works
    predicted = sorted((tmp_path / "predicted").glob("*_labels.png"))
    record = yaml.safe_load((tmp_path / "predicted" / "run.yaml").read_text())
    assert predicted and record["run"]["images"] == len(predicted)
    assert record["model"]["sha256"] == scores["run"]["model"]["sha256"]  # the same model.onnx on both
