"""Bad inputs to the chain: one `error:` line naming the file, non-zero exit, and never a metric."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_one_line_error, run_script

STEM = "lindau_000000_000001_leftImg8bit"  # the second generated image


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A finished small chain: data, model, windows, bs2 outputs."""
    root = tmp_path_factory.mktemp("errors")
    for args in (("tools/make_dataset.py", "--data-root", root / "data", "--n-images", 3, "--size", 80, 160),
                 ("tools/make_random_checkpoint.py", "--out-dir", root / "model"),
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
    for listing in (work / "gt_file.txt", work / "gt_file.json"):  # they hold absolute paths
        listing.write_text(listing.read_text().replace(str(done.resolve()), str(work.resolve())))
    return work


def post(work: Path, result: Path | None = None):
    proc = run_script("segmenter_postprocess.py", "--result-dir", result or work / "result" / "bs2",
                      "--gt-path", work / "gt_file.txt", "--metrics-path", work / "metrics.yaml")
    if proc.returncode != 0:
        assert not (work / "metrics.yaml").exists()
    return proc


def test_intact_chain_scores(work):
    proc = post(work)
    assert proc.returncode == 0, proc.stderr
    assert (work / "metrics.yaml").is_file()


def test_missing_result_folder(work):
    assert_one_line_error(post(work, work / "result" / "nope"), "nope", "not found")


def test_truncated_output(work):
    target = work / "result" / "bs2" / f"{STEM}_1_0.bin"
    target.write_bytes(target.read_bytes()[:1000])
    assert_one_line_error(post(work), str(target), "truncated")


def test_missing_window(work):
    target = work / "result" / "bs2" / f"{STEM}_2_0.bin"
    target.unlink()
    assert_one_line_error(post(work), str(target), "missing")


def test_image_without_outputs(work):
    for f in (work / "result" / "bs2").glob(f"{STEM}_*"):
        f.unlink()
    assert_one_line_error(post(work), f"no outputs for image {STEM}.png")


def test_ground_truth_size_differs(work):
    gt = next((work / "data").rglob(f"{STEM.replace('leftImg8bit', 'gtFine')}_labelTrainIds.png")).resolve()
    label = cv2.imread(str(gt), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(gt), label[:-4])
    proc = post(work)
    assert_one_line_error(proc, str(gt), "76x160", "80x160")


def test_class_count_differs_from_manifest(work):
    target = work / "result" / "bs2" / f"{STEM}_0_0.bin"
    np.zeros((1, 18, 64, 64), np.float32).tofile(target)
    assert_one_line_error(post(work), str(target), "18 classes instead of 19")


def test_class_count_differs_npy(work):
    out = work / "result" / "bs2"
    for f in out.glob("*.bin"):
        np.save(f.with_suffix(".npy"), np.fromfile(f, np.float32).reshape(1, 19, 64, 64))
        f.unlink()
    assert post(work).returncode == 0  # NPY outputs are read as well
    (work / "metrics.yaml").unlink()
    target = out / f"{STEM}_0_0.npy"
    np.save(target, np.zeros((1, 18, 64, 64), np.float32))
    assert_one_line_error(post(work), str(target), "class count 19")


def test_nan_in_outputs(work):
    target = work / "result" / "bs2" / f"{STEM}_1_0.bin"
    data = np.fromfile(target, np.float32)
    data[123] = np.nan
    data.tofile(target)
    assert_one_line_error(post(work), str(target), "NaN")


def test_missing_gt_file(work):
    (work / "gt_file.txt").unlink()
    assert_one_line_error(post(work), "gt_file.txt", "not found")


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_missing_or_empty_data_folder(work, state):
    data = work / "nodata"
    if state == "empty":
        (data / "cityscapes" / "leftImg8bit" / "val").mkdir(parents=True)
    proc = run_script("segmenter_preprocess.py", "--cfg-path", work / "model" / "variant.yml", "--data-root", data,
                      "--bin-dir", work / "bins2", "--gt-path", work / "gt2.txt")
    assert_one_line_error(proc, str(data / "cityscapes" / "leftImg8bit" / "val"))
    assert not (work / "gt2.txt").exists()


def test_non_positive_stride(work):
    proc = run_script("segmenter_preprocess.py", "--cfg-path", work / "model" / "variant.yml", "--data-root",
                      work / "data", "--bin-dir", work / "bins2", "--gt-path", work / "gt2.txt", "--window-stride", 0)
    assert_one_line_error(proc, "stride must be positive")


def test_infer_bad_inputs(work):
    proc = run_script("segmenter_infer.py", "--model", work / "missing.onnx")
    assert_one_line_error(proc, "missing.onnx", "not found")
    proc = run_script("segmenter_infer.py", "--model", work / "model.onnx", "--device", "tensorrt")
    assert_one_line_error(proc, "tensorrt", "TensorrtExecutionProvider")
    bad = work / "bins" / "zz_bad_0.bin"
    bad.write_bytes(b"\0" * 100)
    proc = run_script("segmenter_infer.py", "--model", work / "model.onnx", "--input", work / "bins")
    assert_one_line_error(proc, str(bad), "100 bytes")
