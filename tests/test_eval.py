"""Streaming evaluation (segmenter_eval.py) against the file route, and the engines against each other."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, read_metrics, run_script

from segmenter.engines.backends import available_devices, open_engine
from segmenter.model.export import export_onnx
from segmenter.model.loading import load_model


@pytest.fixture(scope="module")
def files_route(tmp_path_factory) -> Path:
    """Generated data (4 images that need resizing), a tiny model, and the file route's metrics at bs1."""
    root = tmp_path_factory.mktemp("eval")
    for args in (("tools/make_dataset.py", "--data-root", root / "data", "--n-images", 4, "--size", 90, 180),
                 ("tools/make_random_checkpoint.py", "--out-dir", root / "model", "--im-size", "72", "--seed", 4),
                 ("segmenter_pytorch2onnx.py", "-c", root / "model" / "checkpoint.pth",
                  "-o", root / "model" / "m.onnx"),
                 ("segmenter_preprocess.py", "--cfg-path", root / "model" / "variant.yml", "--data-root", root / "data",
                  "--bin-dir", root / "bins", "--gt-path", root / "gt_file.txt"),
                 ("segmenter_infer.py", "--model", root / "model" / "m.onnx", "--input", root / "bins",
                  "--output", root / "result", "--output_dirname", "bs1"),
                 ("segmenter_postprocess.py", "--result-dir", root / "result" / "bs1", "--gt-path",
                  root / "gt_file.txt", "--metrics-path", root / "files.yaml", "--pred-dir", root / "pred_files")):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
    return root


def evaluate(root: Path, model: Path, tag: str, *extra) -> dict:
    proc = run_script("segmenter_eval.py", "--model", model, "--data-root", root / "data",
                      "--metrics-path", root / f"{tag}.yaml", *extra)
    assert proc.returncode == 0, proc.stderr
    assert "evaluate" in proc.stderr and "img/s" in proc.stderr  # progress bar with images/s
    return read_metrics(root / f"{tag}.yaml")


def test_streaming_equals_file_route(files_route):
    root = files_route
    streamed = evaluate(root, root / "model" / "m.onnx", "stream", "--device", "cpu", "--precision", "fp32",
                        "--pred-dir", root / "pred_stream")
    assert streamed == read_metrics(root / "files.yaml")
    for png in (root / "pred_files" / "labelIds").iterdir():
        assert png.read_bytes() == (root / "pred_stream" / "labelIds" / png.name).read_bytes()


def test_streaming_from_checkpoint_and_across_images(files_route):
    root = files_route
    files = read_metrics(root / "files.yaml")
    # 3 windows per image: batches of 4 straddle image boundaries, the last one is padded
    batched = evaluate(root, root / "model" / "checkpoint.pth", "ckpt", "--device", "cpu", "--precision", "fp32",
                       "--batch-size", 4)
    assert batched["mean_iou"] == pytest.approx(files["mean_iou"], abs=0.02)
    assert batched["pixel_accuracy"] == pytest.approx(files["pixel_accuracy"], abs=0.02)


def test_streaming_default_engine(files_route):
    root = files_route
    auto = evaluate(root, root / "model" / "m.onnx", "auto")
    assert auto["mean_iou"] == pytest.approx(read_metrics(root / "files.yaml")["mean_iou"], abs=1.0)


def test_window_size_mismatch(files_route, tmp_path):
    root = files_route
    model, _ = load_model(root / "model" / "checkpoint.pth")
    export_onnx(model, tmp_path / "m48.onnx", (48, 48), log=lambda _: None)
    proc = run_script("segmenter_eval.py", "--model", tmp_path / "m48.onnx",
                      "--cfg-path", root / "model" / "variant.yml",
                      "--data-root", root / "data", "--metrics-path", tmp_path / "m.yaml", "--device", "cpu")
    assert_one_line_error(proc, "48x48", "64x64")
    assert not (tmp_path / "m.yaml").exists()


# ----------------------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from segmenter.demo.checkpoints import write_random_checkpoint
    from segmenter.model.loading import load_model

    folder = tmp_path_factory.mktemp("engines")
    model, _ = load_model(write_random_checkpoint(folder, "tiny", seed=9))
    export_onnx(model, folder / "m.onnx", (64, 64), log=lambda _: None)
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    return folder / "m.onnx", x, open_engine(folder / "m.onnx", "cpu", "fp32")(x)


@pytest.mark.parametrize("device, precision, tolerance", [
    ("openvino", "fp32", 1e-3), ("openvino", "bf16", 0.25), ("cpu", "int8", 0.5)])
def test_engines_agree_with_onnxruntime_fp32(tiny_onnx, device, precision, tolerance):
    path, x, reference = tiny_onnx
    if device not in available_devices():
        pytest.skip(f"{device} engine not installed")
    if precision == "bf16":
        from segmenter.engines.backends import cpu_has_bf16

        if not cpu_has_bf16():
            pytest.skip("no bf16 instructions on this CPU")
    engine = open_engine(path, device, precision, batch_size=2)
    out = engine(x)  # 3 windows through a batch-2 engine: split and padded inside
    assert out.shape == reference.shape and out.dtype == np.float32
    assert np.abs(out - reference).max() <= tolerance
    assert np.mean(out.argmax(1) == reference.argmax(1)) > 0.9


def test_openvino_is_installed_by_the_test_requirements():
    assert "openvino" in available_devices()


def test_engine_choice_errors(tiny_onnx):
    from segmenter.errors import SegmenterError

    path = tiny_onnx[0]
    with pytest.raises(SegmenterError, match="offers precisions"):
        open_engine(path, "cpu", "bf16")
    with pytest.raises(SegmenterError, match="unknown device"):
        open_engine(path, "npu", "fp32")
    if "tensorrt" not in available_devices():
        with pytest.raises(SegmenterError, match="TensorrtExecutionProvider"):
            open_engine(path, "tensorrt", "fp16")
