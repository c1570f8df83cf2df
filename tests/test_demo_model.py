"""The shipped demo model through the guide's whole chain on the demo's generated val set."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, run_script

DEMO = ROOT / "models" / "demo"


def test_shipped_files_are_released_format_and_small():
    ckpt = torch.load(DEMO / "checkpoint.pth", weights_only=True)
    assert {"model", "optimizer", "n_cls", "lr_scheduler", "epoch"} <= set(ckpt) and ckpt["n_cls"] == 19
    assert "!!python/tuple" in (DEMO / "variant.yml").read_text()
    assert (DEMO / "checkpoint.pth").stat().st_size < 8 * 2 ** 20


@pytest.mark.slow
def test_demo_chain_reaches_recorded_miou(tmp_path):
    """Generated val set as demo.sh makes it, export, preprocess, infer (bs 4, padded), postprocess."""
    expected = yaml.safe_load((DEMO / "expected.yaml").read_text())
    steps = [
        ("tools/make_dataset.py", "--data-root", tmp_path / "data", "--n-images", expected["val_images"],
         "--size", *expected["image_size"], "--seed", expected["seed"]),
        ("segmenter_pytorch2onnx.py", "-c", DEMO / "checkpoint.pth", "-o", tmp_path / "demo.onnx"),
        ("segmenter_preprocess.py", "--cfg-path", DEMO / "variant.yml", "--data-root", tmp_path / "data",
         "--bin-dir", tmp_path / "bins", "--gt-path", tmp_path / "gt_file.txt"),
        ("segmenter_infer.py", "--model", tmp_path / "demo.onnx", "--input", tmp_path / "bins",
         "--output", tmp_path / "result", "--output_dirname", "bs4", "--batchsize", 4),
        ("segmenter_postprocess.py", "--result-dir", tmp_path / "result" / "bs4", "--gt-path",
         tmp_path / "gt_file.txt", "--metrics-path", tmp_path / "metrics.yaml"),
    ]
    for step in steps:
        proc = run_script(*step)
        assert proc.returncode == 0, proc.stderr
    scores = yaml.safe_load(Path(tmp_path / "metrics.yaml").read_text())
    assert scores["mean_iou"] >= 70.0
    assert scores["mean_iou"] == pytest.approx(expected["mean_iou"], abs=0.3)
