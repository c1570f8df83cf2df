"""The bad-input catalogue of evaluation runs: resuming, Ray, caches, memory and scale bounds, predict that never
overwrites (shared parts in catalogue.py).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
from catalogue import (
    STEM,
    Catalogue,
    edit_variant,
    evaluate,
    export,
    gt_png,
)
from conftest import run_script

catalogue = Catalogue()
case = catalogue.case


# --- resuming and Ray

@case("{w}/metrics.yaml.journal.jsonl", "journal is of another evaluation", "window_stride: 32 then, 16 now")
def journal_of_another_stride(w):
    assert evaluate(w, "--resume").returncode == 0
    (w / "metrics.yaml").unlink()
    return evaluate(w, "--resume", "--window-stride", 16)


@case("{w}/metrics.yaml.journal.jsonl", "resume that run, or delete the journal")
def journal_without_resume(w):
    assert evaluate(w, "--resume").returncode == 0
    (w / "metrics.yaml").unlink()
    return evaluate(w)


@case("--ray-actors", "must be positive, got 0")
def ray_without_actors(w):
    return evaluate(w, "--ray", "--ray-actors", 0)


@case("{w}/metrics.yaml.journal.jsonl", "journal is of another evaluation", "data_root: '{w}/data' then, "
      "'{w}/data2' now")
def journal_of_another_data_root(w):
    assert evaluate(w, "--resume").returncode == 0
    (w / "metrics.yaml").unlink()
    shutil.copytree(w / "data", w / "data2")
    return evaluate(w, "--resume", "--data-root", w / "data2")


@case("gtFine_labelTrainIds.png: changed since", "journal.jsonl scored it", "sha256")
def journal_after_ground_truth_replaced(w):
    assert evaluate(w, "--resume").returncode == 0
    (w / "metrics.yaml").unlink()
    label = cv2.imread(str(gt_png(w)), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(gt_png(w)), np.where(label == 255, 255, (label + 1) % 19).astype(np.uint8))  # same name
    return evaluate(w, "--resume")


@case("{w}/metrics.yaml.journal.jsonl", "journal is of another evaluation", "calibration:", "2 images", "3 images")
def journal_of_another_calibration(w):
    int8 = ("--device", "openvino", "--precision", "int8", "--resume")
    assert evaluate(w, *int8, "--calibration", 2).returncode == 0
    (w / "metrics.yaml").unlink()
    return evaluate(w, *int8, "--calibration", 3)


@case("{w}/metrics.yaml.journal.jsonl", "is a folder", unwritten=("metrics.yaml", "pred"))
def journal_path_is_a_folder(w):
    (w / "metrics.yaml.journal.jsonl").mkdir()
    return evaluate(w, "--resume", "--pred-dir", w / "pred")


@case("{w}/out", "both the metrics file and the report folder", unwritten=("out", "pred"))
def metrics_path_equal_to_report(w):
    return run_script("segmenter_eval.py", "--model", w / "model.onnx", "--cfg-path", w / "model" / "variant.yml",
                      "--data-root", w / "data", "--metrics-path", w / "out", "--report", w / "out", "--device", "cpu",
                      "--precision", "fp32")


@case("{w}/pred", "both the metrics file and the prediction folder")
def metrics_path_equal_to_pred_dir(w):
    return run_script("segmenter_eval.py", "--model", w / "model.onnx", "--cfg-path", w / "model" / "variant.yml",
                      "--data-root", w / "data", "--metrics-path", w / "pred", "--pred-dir", w / "pred", "--device",
                      "cpu", "--precision", "fp32")


@case("{w}/data/cityscapes/gtFine/val/lindau", "76x160", "80x160")
def ray_ground_truth_of_another_size(w):
    png = gt_png(w)
    cv2.imwrite(str(png), cv2.imread(str(png), cv2.IMREAD_UNCHANGED)[:-4])
    return evaluate(w, "--ray")


@case("gtFine_labelTrainIds.png", "holds label 30, above the 19 classes")
def ray_error_inside_an_actor(w):  # found only when an actor reads the labels: reported as one process does
    label = cv2.imread(str(gt_png(w)), cv2.IMREAD_UNCHANGED)
    label[3, 3] = 30
    cv2.imwrite(str(gt_png(w)), label)
    return evaluate(w, "--ray")


@case("{w}/m48.onnx", "48x48", "64x64")
def ray_onnx_of_another_window(w):
    from segmenter.model.export import export_onnx
    from segmenter.model.loading import load_model

    export_onnx(load_model(w / "model" / "checkpoint.pth")[0], w / "m48.onnx", (48, 48), log=lambda _: None)
    return evaluate(w, "--ray", model="m48.onnx")


@case("{w}/m150.onnx", "150 classes", "Cityscapes has 19")
def ray_onnx_of_another_class_count(w):
    assert run_script("tools/make_random_checkpoint.py", "--out-dir", w / "m150", "--dataset", "ade20k").returncode == 0
    assert run_script("segmenter_pytorch2onnx.py", "-c", w / "m150" / "checkpoint.pth", "-o", w / "m150.onnx"
                      ).returncode == 0
    return evaluate(w, "--ray", model="m150.onnx")


@case("cannot reach the Ray cluster at 127.0.0.1:1")
def ray_address_with_nothing_listening(w):
    return evaluate(w, "--ray", "127.0.0.1:1")


# --- caches and memory

@case("SEGMENTER_CACHE_DIR={w}/blocker", "is a file", "set SEGMENTER_CACHE_DIR to a writable folder")
def cache_dir_is_a_file(w):
    (w / "blocker").write_text("x")
    return run_script("segmenter_eval.py", "--model", w / "model" / "checkpoint.pth", "--data-root", w / "data",
                      "--metrics-path", w / "metrics.yaml", env={"SEGMENTER_CACHE_DIR": str(w / "blocker")})


@case("SEGMENTER_CACHE_DIR=/proc/segmenter-cache", "cannot be written", "set SEGMENTER_CACHE_DIR")
def cache_dir_in_proc(w):
    return run_script("segmenter_eval.py", "--model", w / "model.onnx", "--cfg-path", w / "model" / "variant.yml",
                      "--data-root", w / "data", "--metrics-path", w / "metrics.yaml",
                      env={"SEGMENTER_CACHE_DIR": "/proc/segmenter-cache"})


@case("net_kwargs.image_size [32, 128]", "2x8 patch grid", "trained on a 4x4 grid", "[64, 64]")
def variant_grid_of_the_same_token_count(w):
    edit_variant(w, lambda d: d["net_kwargs"].__setitem__("image_size", (32, 128)))
    return export(w)


def huge_image(w: Path, hw: tuple[int, int]) -> None:
    """A PNG whose header says hw (its pixel data cut short): the checks read headers before pixels."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", hw[1], hw[0], 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data)))
    image = next((w / "data").rglob(f"{STEM}.png"))
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@case("{w}/data/cityscapes/leftImg8bit/val/lindau/" + STEM + ".png", "20000x20000", "merging its windows",
      "GiB of memory")
def image_too_large_to_merge_stream(w):
    huge_image(w, (20000, 20000))
    gt = gt_png(w)
    gt.write_bytes(b"")  # not reached: the memory check comes first
    return evaluate(w)


@case("unknown device 'gpu'", "known: cpu, openvino, cuda, tensorrt, torch-cuda")
def eval_unknown_device(w):
    return evaluate(w, "--device", "gpu")


@case("unknown device 'gpu'", "known: cpu, openvino", unwritten=("out",))
def predict_unknown_device(w):
    return run_script("segmenter_predict.py", "--model", w / "model.onnx", "--cfg-path", w / "model" / "variant.yml",
                      "--input", w / "data", "--output-dir", w / "out", "--device", "gpu")


@case("device openvino offers precisions fp32, bf16, int8, not 'fp16'")
def eval_precision_the_device_lacks(w):
    return evaluate(w, "--device", "openvino", "--precision", "fp16")


@case("--scales 100", "at most 4")
def scale_of_a_hundred(w):
    return evaluate(w, "--scales", "100", "--dry-run")


@case("--scales 1e+308", "at most 4")
def scale_that_overflows(w):
    return evaluate(w, "--scales", "1e308")


# --- predict never overwrites

@case("the output folder is the input folder", unwritten=())
def predict_into_its_input_folder(w):
    return run_script("segmenter_predict.py", "--model", w / "model.onnx", "--cfg-path", w / "model" / "variant.yml",
                      "--input", w / "data", "--output-dir", w / "data", "--device", "cpu", "--precision", "fp32")


@case("photo_color.png", "would overwrite the input", unwritten=())
def predict_output_named_like_an_input(w):
    photos = w / "photos"
    photos.mkdir()
    image = next((w / "data").rglob("*_leftImg8bit.png"))
    for name in ("photo.png", "photo_color.png"):
        shutil.copy(image, photos / name)
    before = (photos / "photo_color.png").read_bytes()
    proc = run_script("segmenter_predict.py", "--model", w / "model.onnx", "--cfg-path", w / "model" / "variant.yml",
                      "--input", photos / "photo.png", photos / "photo_color.png", "--output-dir", photos,
                      "--device", "cpu", "--precision", "fp32")
    assert (photos / "photo_color.png").read_bytes() == before and sorted(os.listdir(photos)) == [
        "photo.png", "photo_color.png"]
    return proc


test_bad_input = catalogue.test()
