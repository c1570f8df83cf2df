"""The bad-input catalogue, the guide's file route: window settings, results, the gt file and the manifest,
output paths (shared parts in catalogue.py).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from catalogue import (
    OUT,
    STEM,
    Catalogue,
    edit_json,
    evaluate,
    gt_png,
    infer,
    post,
    prep,
)
from conftest import run_script

catalogue = Catalogue()
case = catalogue.case


# --- window settings (preprocess and eval)

@case("--window-stride", "must be positive, got 0")
def stride_zero(w):
    return prep(w, "--window-stride", 0)


@case("window stride 65", "larger than the window size 64", "not be covered")
def stride_above_window_preprocess(w):
    return prep(w, "--window-stride", 65)


@case("window stride 100", "larger than the window size 64")
def stride_above_window_eval(w):
    return evaluate(w, "--window-stride", 100)


@case("--window-size", "must be positive, got 0")
def window_size_zero(w):
    return prep(w, "--window-size", 0)


@case("--window-size", "must be positive, got -64")
def window_size_negative_eval(w):
    return evaluate(w, "--window-size=-64")


@case("--image-size", "must be positive, got 0")
def image_size_zero(w):
    return prep(w, "--image-size", 0)


@case("--workers", "must be positive, got 0")
def workers_zero(w):
    return evaluate(w, "--workers", 0)


@case("{w}/data/cityscapes/leftImg8bit/vall", "no split 'vall'", "found: val")
def missing_split(w):
    return prep(w, "--split", "vall")


@case("{w}/nodata/cityscapes/leftImg8bit/val", "folder that contains cityscapes/")
def missing_data_folder(w):
    return run_script("segmenter_preprocess.py", "--cfg-path", w / "model" / "variant.yml", "--data-root",
                      w / "nodata", "--bin-dir", w / "bins2", "--gt-path", w / "gt2.txt")


@case("{w}/data/cityscapes/leftImg8bit/val", "no <city>/*_leftImg8bit.png images")
def empty_data_folder(w):
    shutil.rmtree(w / "data" / "cityscapes" / "leftImg8bit" / "val")
    (w / "data" / "cityscapes" / "leftImg8bit" / "val").mkdir()
    return prep(w)


# --- results that do not belong to the manifest

@case("{w}/result/bs16_summary.json", "another layout", "fingerprint")
def outputs_of_another_stride(w):
    assert prep(w, "--window-stride", 16, gt="gt16.txt", bins="bins16").returncode == 0
    assert infer(w, inputs="bins16", out="bs16").returncode == 0
    return post(w, result="result/bs16")


@case("{w}/result/bs16/frankfurt_000000_000000_leftImg8bit_3_0.bin", "window 3 of", "3 windows",
      "another preprocess run")
def outputs_of_another_stride_without_summary(w):
    assert prep(w, "--window-stride", 16, gt="gt16.txt", bins="bins16").returncode == 0
    assert infer(w, inputs="bins16", out="bs16").returncode == 0
    (w / "result" / "bs16_summary.json").unlink()
    return post(w, result="result/bs16")


@case("{w}/result/bs2_summary.json", "another layout")
def manifest_of_another_run(w):
    assert prep(w, "--window-stride", 16, gt="gt16.txt", bins="bins16").returncode == 0
    return post(w, "--manifest", w / "gt16.json")


@case("{w}/gt_file.json", "lindau_000000_000001_leftImg8bit.png", "differ from those its size", "edited")
def manifest_anchor_removed(w):
    edit_json(w / "gt_file.json", lambda d: d["images"][1]["views"][0]["anchors"].pop())
    return post(w)


@case("{w}/gt_file.json", "fingerprint", "does not match")
def manifest_stride_changed_consistently(w):
    def edit(doc):  # a consistent edit of every layout value but the fingerprint
        doc["window_stride"] = 16
        for image in doc["images"]:
            view = image["views"][0]
            h, wd = view["canvas_hw"]
            view["anchors"] = [[t, left] for t in range(0, h - 63, 16) for left in range(0, wd - 63, 16)]
    edit_json(w / "gt_file.json", edit)
    return post(w)


@case("{w}/result/bs2/" + OUT.format(k=1), "truncated")
def truncated_output(w):
    target = w / "result" / "bs2" / OUT.format(k=1)
    target.write_bytes(target.read_bytes()[:1000])
    return post(w)


@case("{w}/result/bs2/" + OUT.format(k=2), "output missing", "3 windows expected")
def missing_window(w):
    (w / "result" / "bs2" / OUT.format(k=2)).unlink()
    return post(w)


@case(f"no outputs for image {STEM}.png")
def image_without_outputs(w):
    for f in (w / "result" / "bs2").glob(f"{STEM}_*"):
        f.unlink()
    return post(w)


@case("{w}/result/bs2/" + OUT.format(k=0), "18 classes instead of 19")
def class_count_differs_bin(w):
    np.zeros((1, 18, 64, 64), np.float32).tofile(w / "result" / "bs2" / OUT.format(k=0))
    return post(w)


@case("{w}/result/bs2/" + OUT.format(k=0), "float64")
def float64_outputs(w):
    np.zeros((1, 19, 64, 64), np.float64).tofile(w / "result" / "bs2" / OUT.format(k=0))
    return post(w)


def outputs_as_npy(w: Path, first) -> None:
    out = w / "result" / "bs2"
    for f in out.glob("*.bin"):
        np.save(f.with_suffix(".npy"), np.fromfile(f, np.float32).reshape(1, 19, 64, 64))
        f.unlink()
    np.save(out / OUT.format(k=0).replace(".bin", ".npy"), first, allow_pickle=True)


@case("{w}/result/bs2/" + OUT.format(k=0).replace(".bin", ".npy"), "(1, 18, 64, 64)", "(1, 19, 64, 64)")
def class_count_differs_npy(w):
    outputs_as_npy(w, np.zeros((1, 18, 64, 64), np.float32))
    return post(w)


@case("{w}/result/bs2/" + OUT.format(k=0).replace(".bin", ".npy"), "(64, 64, 19)", "(1, 19, 64, 64)")
def npy_output_channels_last(w):
    outputs_as_npy(w, np.zeros((64, 64, 19), np.float32))
    return post(w)


@case("{w}/result/bs2/" + OUT.format(k=0).replace(".bin", ".npy"), "object")
def npy_output_of_objects(w):
    outputs_as_npy(w, np.array([{"a": 1}], dtype=object))
    return post(w)


@case("{w}/result/bs2/" + OUT.format(k=0).replace(".bin", ".npy"), "not a readable .npy")
def npy_output_corrupt(w):
    outputs_as_npy(w, np.zeros((1, 19, 64, 64), np.float32))
    (w / "result" / "bs2" / OUT.format(k=0).replace(".bin", ".npy")).write_bytes(b"\x93NUMPY garbage")
    return post(w)


@case("{w}/result/bs2/" + OUT.format(k=1), "NaN")
def nan_in_outputs(w):
    target = w / "result" / "bs2" / OUT.format(k=1)
    data = np.fromfile(target, np.float32)
    data[123] = np.nan
    data.tofile(target)
    return post(w)


@case("{w}/result/nope", "not found")
def missing_result_folder(w):
    return post(w, result="result/nope")


# --- the gt file and the manifest

@case("{w}/gt_file.txt", "not found")
def missing_gt_file(w):
    (w / "gt_file.txt").unlink()
    return post(w)


@case("{w}/gt_file.txt:4", f"{STEM}.png is listed twice", "also line 2")
def image_listed_twice(w):
    lines = (w / "gt_file.txt").read_text().splitlines()
    (w / "gt_file.txt").write_text("\n".join(lines + [lines[1]]) + "\n")
    return post(w)


@case("no manifest beside gt_file.txt", "guide's fixed layout", "pass the manifest")
def missing_manifest(w):
    (w / "gt_file.json").unlink()
    return post(w)


@case("{w}/gt_file.txt", "a_leftImg8bit.png and a_leftImg8bit.v2.png share the window prefix")
def guide_layout_with_a_shared_prefix(w):
    (w / "gt_file.json").unlink()
    (w / "gt_file.txt").write_text(f"a_leftImg8bit.png\t{gt_png(w)}\na_leftImg8bit.v2.png\t{gt_png(w)}\n")
    return post(w)


@case("{w}/gt_file.json", "n_cls", "integer from 1 to 255", "'19'")
def manifest_class_count_as_text(w):
    edit_json(w / "gt_file.json", lambda d: d.__setitem__("n_cls", "19"))
    return post(w)


@case("{w}/gt_file.json", "window_size", "integer from 1 to 8192, got 0")
def manifest_window_zero(w):
    edit_json(w / "gt_file.json", lambda d: d.__setitem__("window_size", 0))
    return post(w)


@case("{w}/gt_file.json", "images[0].views[0].anchors", "[top, left] integer pairs")
def manifest_anchors_of_wrong_type(w):
    edit_json(w / "gt_file.json", lambda d: d["images"][0]["views"][0].__setitem__("anchors", "0,0"))
    return post(w)


@case("{w}/gt_file.json", "images[0].views[0].canvas_hw", "[height, width]", "-64")
def manifest_negative_canvas(w):
    edit_json(w / "gt_file.json", lambda d: d["images"][0]["views"][0].__setitem__("canvas_hw", [-64, 128]))
    return post(w)


@case("{w}/gt_file.json", "GiB of memory")
def manifest_sizes_of_tens_of_gigabytes(w):
    def edit(doc):  # a consistent layout for a 90000x90000 image: merging it needs ~1 TB
        doc["images"][0]["original_hw"] = [90000, 90000]
        doc["images"][0]["views"][0].update(resized_hw=[48, 48], canvas_hw=[64, 64], anchors=[[0, 0]])
    edit_json(w / "gt_file.json", edit)
    return post(w)


@case("{w}/gt2.json", "must not end in .json", unwritten=("gt2.json", "bins2"))
def gt_path_ending_in_json(w):
    return prep(w, gt="gt2.json")


@case("{w}/gt_file.txt", "would overwrite the gt file")
def metrics_path_equal_to_gt_file(w):
    before = (w / "gt_file.txt").read_text()
    proc = run_script("segmenter_postprocess.py", "--result-dir", w / "result" / "bs2", "--gt-path",
                      w / "gt_file.txt", "--metrics-path", w / "gt_file.txt")
    assert (w / "gt_file.txt").read_text() == before
    return proc


@case("{w}/model/variant.yml", "would overwrite the variant")
def gt_path_equal_to_variant(w):
    return prep(w, gt="model/variant.yml")


# --- output paths checked before any work

@case("{w}/blocker/metrics.yaml", "cannot be written")
def metrics_path_under_a_file(w):
    (w / "blocker").write_text("x")
    return run_script("segmenter_eval.py", "--model", w / "model.onnx", "--data-root", w / "data",
                      "--metrics-path", w / "blocker" / "metrics.yaml")


@case("{w}/blocker", "is a file", "prediction folder")
def pred_dir_is_a_file(w):
    (w / "blocker").write_text("x")
    return post(w, "--pred-dir", w / "blocker")


@case("{w}/blocker/pred", "prediction folder cannot be written")
def pred_dir_under_a_file_eval(w):
    (w / "blocker").write_text("x")
    return evaluate(w, "--pred-dir", w / "blocker" / "pred")


test_bad_input = catalogue.test()
