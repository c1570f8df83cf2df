"""The Python API: the README's example as it stands, and segment() against the evaluation's own labels."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_script

from segmenter.api import evaluate, open_model


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"<!-- from-python -->\n```python\n(.*?)```", text, re.S).group(1)


def test_the_readme_example_runs(tmp_path):
    """In a folder laid out as the README's lines leave it: the demo model, and runs/own made by make_dataset.py."""
    (tmp_path / "models").symlink_to(ROOT / "models")
    proc = run_script("tools/make_dataset.py", "--data-root", tmp_path / "runs" / "own", "--n-images", 2, "--size",
                      256, 512)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-c", readme_block()], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("mIoU ") and float(lines[-1].split()[1]) > 30  # the trained demo model
    assert any(line.startswith("(256, 512) ") for line in lines)


@pytest.mark.parametrize("views", ["single", "multi"])
def test_segment_equals_the_evaluations_labels(tiny_checkpoint, tmp_path, views):
    data = tmp_path / "data"
    assert run_script("tools/make_dataset.py", "--data-root", data, "--n-images", 2, "--size", 90, 170
                      ).returncode == 0
    from segmenter.data.plan import make_views

    chosen = make_views([0.75, 1.0], flip=True) if views == "multi" else make_views()
    model = open_model(tiny_checkpoint, device="cpu", precision="fp32", views=chosen, log=lambda *_: None)
    result = evaluate(model, data, pred_dir=tmp_path / "pred")
    assert result.book.images == 2 and 0 <= result.metrics["mean_iou"] <= 100
    for png in sorted((tmp_path / "pred" / "labels").glob("*.png")):
        image = next(data.rglob(f"{png.stem}.png"))
        bgr = cv2.imread(str(image))
        labels, scores = model.segment(bgr, scores=True)
        assert (labels == cv2.imread(str(png), cv2.IMREAD_UNCHANGED)).all()
        assert scores.shape == (19, *bgr.shape[:2]) and (scores.argmax(0) == labels).all()
        assert (model.segment(bgr[:, :, ::-1].copy(), rgb=True) == labels).all()
    gray = model.segment(np.full((40, 60), 128, np.uint8))
    assert gray.shape == (40, 60)


def test_auto_is_decided_again_for_a_longer_run(monkeypatch):
    """An `auto` model decides for the run it is given; a later call with more windows decides again (the cache
    then measures only what the shorter run skipped), a shorter one does not."""
    import segmenter.api as api
    from segmenter.engines.autotune import Choice

    asked = []

    def resolve_engine(path, variant, cfg, device, precision, probe, threads, batch_size, calibration, log,
                       run_windows):
        asked.append((device, precision, run_windows))
        return Choice("openvino", "fp32" if run_windows < 100 else "bf16")
    monkeypatch.setattr(api, "resolve_engine", resolve_engine)
    model = open_model(ROOT / "models" / "demo" / "checkpoint.pth", log=lambda *_: None)
    probe = np.zeros((2, 3, 128, 128), np.float32)
    model.resolve(probe, 6)
    model.resolve(probe, 3)
    assert asked == [("auto", "auto", 6)] and (model.device, model.precision) == ("openvino", "fp32")
    model.resolve(probe, 500)
    assert asked[-1] == ("auto", "auto", 500) and (model.device, model.precision) == ("openvino", "bf16")
    fixed = open_model(ROOT / "models" / "demo" / "checkpoint.pth", device="cpu", precision="fp32")
    fixed.resolve(probe, 10_000)
    assert len(asked) == 2  # given device and precision: never measured


def test_segment_takes_a_path_and_refuses_what_it_cannot_segment(tiny_checkpoint, tmp_path, monkeypatch):
    from segmenter.errors import SegmenterError

    model = open_model(tiny_checkpoint, device="cpu", precision="fp32", log=lambda *_: None)
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    labels = model.segment(image)
    assert (model.segment(str(tmp_path / "photo.png")) == labels).all()  # a path is read as OpenCV reads it
    assert (model.segment(tmp_path / "photo.png") == labels).all()
    for bad, says in ((np.zeros((0, 5, 3), np.uint8), "an empty image"), ([[1, 2]], "expected an image array"),
                      (np.zeros((4, 4, 3), np.float32), "expected a uint8 image")):
        with pytest.raises(SegmenterError, match=says):
            model.segment(bad)
    import segmenter.system

    monkeypatch.setattr(segmenter.system, "available_memory", lambda: 1 << 20)  # 1 MiB: no merge fits
    with pytest.raises(SegmenterError, match="photo.png .70x90, .* merging its windows needs about"):
        model.segment(tmp_path / "photo.png")
