"""Shared helpers: paths of the test data and a runner for the top-level scripts."""
from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRESS_LINE = re.compile(r"^[\w ]+: \d+(/\d+)? \w+, [\d.]+ \w+/s, \d+ s$")  # progress without a terminal
_CACHE = tempfile.mkdtemp(prefix="segmenter-test-cache-")  # exported models of the tests' checkpoints
os.environ["SEGMENTER_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
GOLDEN = ROOT / "tests" / "data" / "golden"
GOLDEN_CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "checkpoint.pth").is_file())  # upstream format


def run_script(script: str, *args, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a repository script with this interpreter (env: extra variables); returns the completed process."""
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A non-zero exit with a single `error: ...` line on stderr that contains every fragment."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines()
             if line.strip() and "%|" not in line and not PROGRESS_LINE.match(line)]  # not progress
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny released-format mask-transformer checkpoint (random weights), 64x64 windows, 19 classes."""
    from segmenter.demo.checkpoints import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("tiny"), "tiny", seed=1)


def bash_script(script: str, *args, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a repository shell script with PYTHON set to this interpreter (unless env says otherwise)."""
    full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=600)


def put_cityscapes_image(root: Path, city: str, stem: str, image: np.ndarray, gt: np.ndarray,
                         split: str = "val") -> Path:
    """Write `<stem>_leftImg8bit.png` and its train-id map in the Cityscapes layout under root; returns the image."""
    import cv2

    image_dir = root / "cityscapes" / "leftImg8bit" / split / city
    gt_dir = root / "cityscapes" / "gtFine" / split / city
    image_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    path = image_dir / f"{stem}_leftImg8bit.png"
    path.write_bytes(cv2.imencode(".png", image)[1].tobytes())
    (gt_dir / f"{stem}_gtFine_labelTrainIds.png").write_bytes(cv2.imencode(".png", gt)[1].tobytes())
    return path


def read_metrics(path: Path) -> dict:
    """A metrics file's metrics, without its `run:` block (the record of what produced them, which differs by run)."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text())
    doc.pop("run", None)
    return doc


def plain_miou(gts: list[np.ndarray], preds: list[np.ndarray], n_cls: int) -> float:
    """mIoU written plainly: per class, TP / (TP + FP + FN) over all images; 255 in the ground truth ignored."""
    ious = []
    for c in range(n_cls):
        tp = sum(int(((g == c) & (p == c)).sum()) for g, p in zip(gts, preds))
        fp = sum(int(((g != c) & (g != 255) & (p == c)).sum()) for g, p in zip(gts, preds))
        fn = sum(int(((g == c) & (p != c)).sum()) for g, p in zip(gts, preds))
        if tp + fp + fn:
            ious.append(tp / (tp + fp + fn))
    return 100 * float(np.mean(ious))


@pytest.fixture(scope="session")
def done(tmp_path_factory) -> Path:
    """A finished small chain (the bad-input catalogue's): data, model, windows, bs2 outputs."""
    root = tmp_path_factory.mktemp("catalogue")
    for args in (("tools/make_dataset.py", "--data-root", root / "data", "--n-images", 3, "--size", 80, 160),
                 ("tools/make_random_checkpoint.py", "--out-dir", root / "model", "--im-size", 48),
                 ("segmenter_pytorch2onnx.py", "-c", root / "model" / "checkpoint.pth", "-o", root / "model.onnx"),
                 ("segmenter_preprocess.py", "--cfg-path", root / "model" / "variant.yml", "--data-root",
                  root / "data", "--bin-dir", root / "bins", "--gt-path", root / "gt_file.txt"),
                 ("segmenter_infer.py", "--model", root / "model.onnx", "--input", root / "bins", "--output",
                  root / "result", "--output_dirname", "bs2", "--batchsize", 2)):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture
def work(done, tmp_path) -> Path:
    """A private copy of the finished chain that a test may damage."""
    work = tmp_path / "w"
    shutil.copytree(done, work)
    for listing in (work / "gt_file.txt", work / "gt_file.json", work / "bins" / "segmenter_layout.json"):
        listing.write_text(listing.read_text().replace(str(done.resolve()), str(work.resolve())))
    return work
