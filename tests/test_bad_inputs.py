"""The bad-input catalogue: every way to feed the chain wrong data, and what must happen.

Each entry of CATALOGUE damages a private copy of a finished small chain (or passes a bad flag), runs
one step, and states what the one `error:` line must say; the test also checks the exit status and
that no metrics, predictions or other outputs were written. A new case is one more decorated
function. Cases that the checks made correct (rather than refused) follow the catalogue, each
compared with the result on clean data.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import yaml
from conftest import assert_one_line_error, bash_script, plain_miou, put_cityscapes_image, run_script

from segmenter.data.datasets.cityscapes import LABEL_IDS as CITYSCAPES_LABEL_IDS
from segmenter.demo.writers import write_split

STEM = "lindau_000000_000001_leftImg8bit"  # the second generated image: 3 windows of 64 at stride 32
OUT = STEM + "_{k}_0.bin"


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A finished small chain: data, model, windows, bs2 outputs."""
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


# ----------------------------------------------------------------------------- the steps, on the work copy


def post(w: Path, *extra, result: str = "result/bs2", gt: str = "gt_file.txt"):
    return run_script("segmenter_postprocess.py", "--result-dir", w / result, "--gt-path", w / gt,
                      "--metrics-path", w / "metrics.yaml", "--pred-dir", w / "pred", *extra)


def prep(w: Path, *extra, gt: str = "gt2.txt", bins: str = "bins2", variant: str = "model/variant.yml"):
    return run_script("segmenter_preprocess.py", "--cfg-path", w / variant, "--data-root", w / "data",
                      "--bin-dir", w / bins, "--gt-path", w / gt, *extra)


def evaluate(w: Path, *extra, model: str = "model.onnx"):
    return run_script("segmenter_eval.py", "--model", w / model, "--cfg-path", w / "model" / "variant.yml",
                      "--data-root", w / "data", "--metrics-path", w / "metrics.yaml", "--device", "cpu",
                      "--precision", "fp32", *extra)


def infer(w: Path, *extra, inputs: str = "bins", out: str = "bs9"):
    return run_script("segmenter_infer.py", "--model", w / "model.onnx", "--input", w / inputs,
                      "--output", w / "result", "--output_dirname", out, *extra)


def export(w: Path, *extra):
    return run_script("segmenter_pytorch2onnx.py", "-c", w / "model" / "checkpoint.pth", "-o", w / "m2.onnx", *extra)


def gt_png(w: Path, stem: str = STEM) -> Path:
    return next((w / "data").rglob(stem.replace("leftImg8bit", "gtFine") + "_labelTrainIds.png"))


def edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def edit_variant(w: Path, edit) -> None:
    path = w / "model" / "variant.yml"
    doc = yaml.unsafe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.dump(doc))


# ----------------------------------------------------------------------------- the catalogue

CATALOGUE = []
NOTHING_WRITTEN = ("metrics.yaml", "pred", "gt2.txt", "gt2.json", "m2.onnx", "result/bs9")


def case(*says: str, unwritten: tuple[str, ...] = NOTHING_WRITTEN):
    """Register a bad input: `says` are fragments of the error line ({w} is the work folder)."""
    def register(make):
        CATALOGUE.append(pytest.param(make, says, unwritten, id=make.__name__))
        return make
    return register


@pytest.mark.parametrize("make, says, unwritten", CATALOGUE)
def test_bad_input(work, make, says, unwritten):
    proc = make(work)
    assert_one_line_error(proc, *(s.format(w=work) for s in says))
    for rel in unwritten:  # a folder made while checking it is writable may stay, empty
        path = work / rel
        assert not path.exists() or (path.is_dir() and not any(path.iterdir())), rel


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


# --- inference inputs and models

@case("{w}/missing.onnx", "not found")
def missing_model(w):
    return run_script("segmenter_infer.py", "--model", w / "missing.onnx")


@case("tensorrt", "TensorrtExecutionProvider")
def unavailable_tensorrt(w):
    return run_script("segmenter_infer.py", "--model", w / "model.onnx", "--device", "tensorrt")


@case("{w}/bins/zz_bad_0.bin", "100 bytes")
def wrong_size_input_bin(w):
    (w / "bins" / "zz_bad_0.bin").write_bytes(b"\0" * 100)
    return infer(w)


@case("{w}/bins/zz_bad_0.npy", "(64, 64, 3)", "(1, 3, 64, 64)")
def npy_input_channels_last(w):
    np.save(w / "bins" / "zz_bad_0.npy", np.zeros((64, 64, 3), np.float32))
    return infer(w)


@case("{w}/bins/zz_bad_0.npy", "object")
def npy_input_of_objects(w):
    np.save(w / "bins" / "zz_bad_0.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    return infer(w)


@case("{w}/bins/zz_bad_0.npy", "not a readable .npy")
def npy_input_corrupt(w):
    (w / "bins" / "zz_bad_0.npy").write_bytes(os.urandom(200))
    return infer(w)


@case("{w}/renamed.onnx", "inputs are ['x']", "needed: one input 'input'")
def onnx_with_other_names(w):
    model = onnx.load(w / "model.onnx")
    model.graph.input[0].name = "x"
    for node in model.graph.node:
        node.input[:] = ["x" if i == "input" else i for i in node.input]
    onnx.save(model, w / "renamed.onnx")
    return run_script("segmenter_infer.py", "--model", w / "renamed.onnx")


@case("batch of 100000000 windows", "GiB of memory")
def batch_that_cannot_fit(w):
    return run_script("segmenter_infer.py", "--model", w / "model.onnx", "--batchsize", 100_000_000)


@case("batch of 100000000 windows", "GiB of memory")
def batch_that_cannot_fit_openvino(w):
    return evaluate(w, "--device", "openvino", "--batch-size", 100_000_000)


# --- checkpoints and variants

@case("{w}/model/checkpoint.pth", "not a torch checkpoint")
def random_bytes_checkpoint(w):
    (w / "model" / "checkpoint.pth").write_bytes(os.urandom(4096))
    return export(w)


@case("{w}/model/checkpoint.pth", "damaged or not a torch checkpoint")
def damaged_pickle_checkpoint(w):
    from segmenter.errors import SegmenterError
    from segmenter.model.checkpoint import read_state_dict

    path = w / "model" / "checkpoint.pth"
    for seed in range(50):  # random bytes fail at many places in an unpickler: each must give this error
        path.write_bytes(b"\x80\x02" + np.random.default_rng(seed).bytes(4096))
        with pytest.raises(SegmenterError, match="damaged or not a torch checkpoint"):
            read_state_dict(path)
    return export(w)


@case("variant.yml", "net_kwargs.n_heads", "from 1 to", "got 0")
def variant_with_zero_heads(w):
    edit_variant(w, lambda d: d["net_kwargs"].__setitem__("n_heads", 0))
    return export(w)


@case("variant.yml", "net_kwargs.patch_size", "got 0")
def variant_with_zero_patch(w):
    edit_variant(w, lambda d: d["net_kwargs"].__setitem__("patch_size", 0))
    return export(w)


@case("variant.yml", "names no data set", "give one of cityscapes, ade20k, pascal_context")
def variant_without_dataset(w):
    edit_variant(w, lambda d: [d.pop("inference_kwargs"), d.pop("dataset_kwargs")])
    return prep(w)


@case("variant.yml", "the model has 19 classes but ADE20K has 150")
def model_of_another_dataset(w):
    return prep(w, "--dataset", "ade20k")


@case("variant.yml", "dataset_kwargs.normalization nor net_kwargs.normalization")
def variant_without_normalization(w):
    edit_variant(w, lambda d: [d.pop("dataset_kwargs"), d["net_kwargs"].pop("normalization")])
    return prep(w)


# --- other data sets and views

def as_dataset(w: Path, name: str) -> None:
    """Make the variant one of `name` (class count included); enough for preprocess, which loads no weights."""
    from segmenter.data.datasets import dataset_spec

    edit_variant(w, lambda d: [d["dataset_kwargs"].__setitem__("dataset", name),
                               d["net_kwargs"].__setitem__("n_cls", dataset_spec(name).n_cls)])


@case("{w}/data/ADEChallengeData2016/images/validation", "must be the folder that contains ADEChallengeData2016/")
def data_root_without_the_data_set(w):
    as_dataset(w, "ade20k")
    return prep(w)


@case("{w}/data/VOCdevkit/VOC2010/JPEGImages/2008_999999.jpg", "image of 2008_999999", "line 3 of")
def pascal_split_list_naming_a_missing_image(w):

    as_dataset(w, "pascal_context")
    write_split(w / "data", "val", 2, (40, 60), dataset="pascal_context")
    listing = w / "data" / "VOCdevkit" / "VOC2010" / "ImageSets" / "SegmentationContext" / "val.txt"
    listing.write_text(listing.read_text() + "2008_999999\n")
    return prep(w)


@case("ADE_val_00000002.png", "holds value 200, above the 150 classes of ADE20K")
def ade_annotation_above_150(w):

    write_split(w / "ade", "validation", 2, (40, 60), dataset="ade20k")
    annotation = w / "ade" / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000002.png"
    label = cv2.imread(str(annotation), cv2.IMREAD_UNCHANGED)
    label[5, 5] = 200
    cv2.imwrite(str(annotation), label)
    assert run_script("tools/make_random_checkpoint.py", "--out-dir", w / "ade_model", "--dataset", "ade20k",
                      "--im-size", 48).returncode == 0
    return run_script("segmenter_eval.py", "--model", w / "ade_model" / "checkpoint.pth", "--data-root", w / "ade",
                      "--metrics-path", w / "metrics.yaml", "--pred-dir", w / "pred", "--device", "cpu")


@case("--scales", "must be a positive number, got 0")
def scale_zero(w):
    return prep(w, "--scales", "1.0", "0")


@case("--scales", "must be a positive number, got -0.5")
def scale_negative(w):
    return evaluate(w, "--scales=-0.5")


@case("--multiscale sets its own scales")
def multiscale_and_scales(w):
    return evaluate(w, "--multiscale", "--scales", "1.5")


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


@case("20000x20000", "merging its windows", "GiB of memory", unwritten=("out",))
def image_too_large_to_merge_predict(w):
    huge_image(w, (20000, 20000))
    return run_script("segmenter_predict.py", "--model", w / "model.onnx", "--cfg-path", w / "model" / "variant.yml",
                      "--input", w / "data", "--output-dir", w / "out", "--device", "cpu", "--precision", "fp32")


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


# --- ground truth

@case("every pixel of every ground truth is ignored", "undefined")
def all_ground_truth_ignored(w):
    for png in (w / "data").rglob("*_labelTrainIds.png"):
        cv2.imwrite(str(png), np.full((80, 160), 255, np.uint8))
    return post(w)


@case("{w}/data/cityscapes/gtFine/val/lindau", "76x160", "80x160")
def ground_truth_size_differs(w):
    png = gt_png(w)
    cv2.imwrite(str(png), cv2.imread(str(png), cv2.IMREAD_UNCHANGED)[:-4])
    return post(w)


# --- perf.sh

@case("--loop needs a value", unwritten=("perf.csv",))
def perf_loop_without_value(w):
    return bash_script("perf.sh", w / "model.onnx", "--csv", w / "perf.csv", "--loop")


@case("--batch-sizes is empty", unwritten=("perf.csv",))
def perf_empty_batch_sizes(w):
    return bash_script("perf.sh", w / "model.onnx", "--csv", w / "perf.csv", "--batch-sizes", "")


@case("--csv {w}", "is a folder")
def perf_csv_is_a_folder(w):
    return bash_script("perf.sh", w / "model.onnx", "--csv", w)


@case("--csv {w}/blocker/perf.csv", "cannot write")
def perf_csv_unwritable(w):
    (w / "blocker").write_text("x")
    return bash_script("perf.sh", w / "model.onnx", "--csv", w / "blocker" / "perf.csv")


@case("--device npu --precision fp32", "unknown device 'npu'", "torch-cuda", unwritten=("perf.csv",))
def perf_unknown_device(w):  # the engine table's own check
    return bash_script("perf.sh", w / "model.onnx", "--csv", w / "perf.csv", "--device", "npu")


@case("--device cpu --precision bf16", "offers precisions fp32, int8", unwritten=("perf.csv",))
def perf_precision_the_device_lacks(w):
    return bash_script("perf.sh", w / "model.onnx", "--csv", w / "perf.csv", "--precision", "bf16")


@case("lacks the requirements", "bash setup.sh", unwritten=("perf.csv",))
def perf_without_the_requirements(w):
    return bash_script("perf.sh", w / "model.onnx", "--csv", w / "perf.csv", env={"PYTHON": "/usr/bin/python3"})


# ----------------------------------------------------------------------------- made correct, not refused


def scores(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_edited_gt_file_paths_are_used(work):
    """The gt file is the contract: its ground-truth paths are the ones scored."""
    assert post(work).returncode == 0
    clean = scores(work / "metrics.yaml")
    moved = work / "moved_gt.png"
    label = cv2.imread(str(gt_png(work)), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(moved), np.where(label == 255, 255, (label + 1) % 19).astype(np.uint8))
    text = (work / "gt_file.txt").read_text()
    (work / "gt_file.txt").write_text(text.replace(str(gt_png(work).resolve()), str(moved)))
    proc = post(work)
    assert proc.returncode == 0 and "using the gt file's" in proc.stdout
    edited = scores(work / "metrics.yaml")
    shutil.copy(moved, gt_png(work))  # the same labels at the manifest's path give the same metrics
    (work / "gt_file.txt").write_text(text)
    assert post(work).returncode == 0
    assert edited == scores(work / "metrics.yaml") != clean


def test_one_unlabelled_ground_truth_is_named(work):
    cv2.imwrite(str(gt_png(work)), np.full((80, 160), 255, np.uint8))
    proc = post(work)
    assert proc.returncode == 0
    assert f"1 of 3 ground truths label no pixel (all 255): {STEM}.png" in proc.stdout
    assert "RuntimeWarning" not in proc.stderr


def test_variant_without_resize_size_says_which_default(work):
    edit_variant(work, lambda d: [d.pop("inference_kwargs"), d["dataset_kwargs"].pop("image_size")])
    proc = prep(work, "--window-stride", 64)
    assert proc.returncode == 0, proc.stderr
    assert "images resized with S = 1024, the upstream evaluation's for Cityscapes" in proc.stdout
    assert "resized to fit 2048x1024" in proc.stdout


def test_variant_without_window_keys_says_which_default(work):
    edit_variant(work, lambda d: [d["inference_kwargs"].pop("window_size"), d["dataset_kwargs"].pop("crop_size")])
    proc = prep(work)
    assert proc.returncode == 0, proc.stderr
    assert "note: variant.yml has no inference_kwargs.window_size or dataset_kwargs.crop_size: windows of 64" \
        in proc.stdout


def test_extreme_aspect_ratio_warns_before_writing(work):
    data = work / "data"
    shutil.rmtree(data)
    rng = np.random.default_rng(0)
    put_cityscapes_image(data, "strip", "strip_000000_000000", rng.integers(0, 255, (8, 3000, 3), np.uint8),
                         np.zeros((8, 3000), np.uint8))
    proc = prep(work)
    assert proc.returncode == 0, proc.stderr
    assert "(8x3000) needs 191 windows (9.0 MiB of input files)" in proc.stdout


def test_same_stem_in_two_cities(tmp_path, done):
    """Images whose names share the part before the first dot get their own prefixes; both routes agree."""
    rng = np.random.default_rng(5)
    data = tmp_path / "data"
    for city, hw in (("aachen", (70, 150)), ("bonn", (90, 120))):
        put_cityscapes_image(data, city, "x_000000_000000", rng.integers(0, 255, (*hw, 3), np.uint8),
                             rng.integers(0, 19, hw).astype(np.uint8))
    put_cityscapes_image(data, "bonn", "x_000000_000000_leftImg8bit.v2", rng.integers(0, 255, (60, 60, 3), np.uint8),
                         rng.integers(0, 19, (60, 60)).astype(np.uint8))
    steps = [("segmenter_preprocess.py", "--cfg-path", done / "model" / "variant.yml", "--data-root", data,
              "--bin-dir", tmp_path / "bins", "--gt-path", tmp_path / "gt.txt"),
             ("segmenter_infer.py", "--model", done / "model.onnx", "--input", tmp_path / "bins", "--output",
              tmp_path / "result", "--output_dirname", "bs1"),
             ("segmenter_postprocess.py", "--result-dir", tmp_path / "result" / "bs1", "--gt-path", tmp_path / "gt.txt",
              "--metrics-path", tmp_path / "files.yaml", "--pred-dir", tmp_path / "pred_files"),
             ("segmenter_eval.py", "--model", done / "model.onnx", "--cfg-path", done / "model" / "variant.yml",
              "--data-root", data, "--metrics-path", tmp_path / "stream.yaml", "--pred-dir", tmp_path / "pred_stream",
              "--device", "cpu", "--precision", "fp32")]
    for step in steps:
        proc = run_script(*step)
        assert proc.returncode == 0, proc.stderr
    prefixes = [i["prefix"] for i in json.loads((tmp_path / "gt.json").read_text())["images"]]
    stem = "x_000000_000000_leftImg8bit"  # what ais_bench keeps of all three names
    assert sorted(prefixes) == [stem, f"{stem}-2", f"{stem}-3"]
    pngs = sorted(p.name for p in (tmp_path / "pred_files" / "labelIds").iterdir())
    assert pngs == sorted(f"{p}.png" for p in prefixes)
    for name in pngs:
        assert (tmp_path / "pred_files" / "labelIds" / name).read_bytes() == \
            (tmp_path / "pred_stream" / "labelIds" / name).read_bytes()
    assert scores(tmp_path / "files.yaml") == scores(tmp_path / "stream.yaml")
    # each image scored once: the metric equals a plain one over the three saved predictions
    lut = np.full(256, 255, np.uint8)
    lut[list(CITYSCAPES_LABEL_IDS)] = np.arange(19)
    manifest = json.loads((tmp_path / "gt.json").read_text())["images"]
    gts = [cv2.imread(i["gt_path"], cv2.IMREAD_UNCHANGED) for i in manifest]
    preds = [lut[cv2.imread(str(tmp_path / "pred_files" / "labelIds" / f"{i['prefix']}.png"), cv2.IMREAD_UNCHANGED)]
             for i in manifest]
    assert scores(tmp_path / "files.yaml")["mean_iou"] == pytest.approx(plain_miou(gts, preds, 19), abs=0.006)


def test_non_utf8_path(tmp_path, done):
    """A data root whose name holds a byte that is not UTF-8: read through Python, never a crash."""
    root = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    shutil.copytree(done / "data", root / "data")
    proc = run_script("segmenter_eval.py", "--model", done / "model.onnx", "--cfg-path", done / "model" / "variant.yml",
                      "--data-root", root / "data", "--metrics-path", root / "m.yaml", "--pred-dir", root / "pred",
                      "--device", "cpu", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert len(list((root / "pred" / "labelIds").iterdir())) == 3
    proc = run_script("segmenter_preprocess.py", "--cfg-path", done / "model" / "variant.yml", "--data-root",
                      root / "data", "--bin-dir", root / "bins", "--gt-path", root / "gt.txt")
    assert proc.returncode == 0, proc.stderr
    next((root / "data").rglob("*_leftImg8bit.png")).write_bytes(b"not a png")
    proc = run_script("segmenter_preprocess.py", "--cfg-path", done / "model" / "variant.yml", "--data-root",
                      root / "data", "--bin-dir", root / "bins2", "--gt-path", root / "gt2.txt")
    assert_one_line_error(proc, "caf\\udce9", "cannot be decoded as an image")


def test_checkpoint_export_is_cached_not_leaked(tmp_path, done):
    """A run from checkpoint.pth exports into the cache once; a killed writer's temporary file is removed."""
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    orphan = cache / "onnx" / ".model-0123.onnx.999999999.abcd.tmp"  # pid 999999999 runs nowhere
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half an export")
    runs = [run_script("segmenter_eval.py", "--model", done / "model" / "checkpoint.pth", "--data-root", done / "data",
                       "--device", "cpu", "--precision", "fp32", "--metrics-path", tmp_path / f"{tag}.yaml",
                       env={"SEGMENTER_CACHE_DIR": str(cache), "TMPDIR": str(tmp)}) for tag in "ab"]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    assert "exporting" in runs[0].stdout and "using the export" in runs[1].stdout
    assert not orphan.exists()
    assert len(list((cache / "onnx").glob("*.onnx"))) == 1
    assert not list(tmp.rglob("*.onnx"))  # no export left in the temporary folder
    assert scores(tmp_path / "a.yaml") == scores(tmp_path / "b.yaml")


def test_perf_csv_mode_and_venv(done, tmp_path):
    old = os.umask(0o022)
    try:
        proc = bash_script("perf.sh", done / "model.onnx", "--batch-sizes", "1", "--loop", 2, "--csv",
                           tmp_path / "p.csv", env={"PYTHON": ""})  # finds .venv by itself
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {tmp_path / 'p.csv'}" in proc.stdout
    assert stat.S_IMODE((tmp_path / "p.csv").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["p.csv"]



# ----------------------------------------------------------------------------- caches and journals: made correct


def resign(line: str, edit) -> str:
    """A journal line edited as a careful forger would: its checksum recomputed."""
    from segmenter.evaluation.journal import _signed

    doc = json.loads(line)
    doc.pop("check")
    edit(doc)
    return _signed(doc)


JOURNAL_DAMAGE = {
    "counts_times_ten": lambda line: resign(line, lambda d: d.update(counts=[10 * c for c in d["counts"]],
                                                                     labelled=10 * d["labelled"])),
    "negative_count": lambda line: resign(line, lambda d: d["counts"].__setitem__(0, -d["counts"][0])),
    "cell_out_of_range": lambda line: resign(line, lambda d: d["cells"].__setitem__(-1, 19 * 19)),
    "lists_of_another_length": lambda line: resign(line, lambda d: d["counts"].pop()),
    "unsigned_edit": lambda line: line.replace('"counts": [', '"counts": [1'),
}


@pytest.mark.parametrize("damage", JOURNAL_DAMAGE)
def test_damaged_journal_line_is_named_and_its_image_scored_again(work, damage):
    assert evaluate(work, "--resume").returncode == 0
    fresh = scores(work / "metrics.yaml")
    journal = work / "metrics.yaml.journal.jsonl"
    lines = journal.read_text().splitlines()
    lines[2] = JOURNAL_DAMAGE[damage](lines[2])
    journal.write_text("\n".join(lines) + "\n")
    (work / "metrics.yaml").unlink()
    proc = evaluate(work, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert f"{journal}:3:" in proc.stdout and "scored again" in proc.stdout
    assert "2 images already scored" in proc.stdout
    assert scores(work / "metrics.yaml") == fresh


def test_resume_that_adds_predictions_and_a_report_completes_them(work):
    assert evaluate(work, "--resume", "--pred-dir", work / "fresh_pred", "--report", work / "fresh_report"
                    ).returncode == 0
    journal = work / "metrics.yaml.journal.jsonl"
    journal.unlink()
    assert evaluate(work, "--resume").returncode == 0
    fresh = scores(work / "metrics.yaml")
    (work / "metrics.yaml").unlink()
    proc = evaluate(work, "--resume", "--pred-dir", work / "pred", "--report", work / "report")
    assert proc.returncode == 0, proc.stderr
    assert "3 images scored before have no predictions" in proc.stdout
    assert scores(work / "metrics.yaml") == fresh
    for png in (work / "fresh_pred" / "labels").iterdir():
        assert (work / "pred" / "labels" / png.name).read_bytes() == png.read_bytes()
    page = (work / "report" / "report.html").read_text()
    assert page.count("<h3>") == 3 and page.count("<h3>") == (work / "fresh_report" / "report.html"
                                                              ).read_text().count("<h3>")
    (work / "metrics.yaml").unlink()  # a report added to a complete run: its worst images from the saved labels
    proc = evaluate(work, "--resume", "--pred-dir", work / "pred", "--report", work / "report2")
    assert proc.returncode == 0 and "segmenting again" not in proc.stdout
    assert (work / "report2" / "report.html").read_text().count("<h3>") == 3
    (work / "metrics.yaml").unlink()  # without the predictions: the worst images segmented again
    proc = evaluate(work, "--resume", "--report", work / "report3")
    assert proc.returncode == 0 and "segmenting again 3 of the worst images" in proc.stdout
    assert (work / "report3" / "report.html").read_text().count("<h3>") == 3


def same_size_and_time(replaced: Path, new_content: Path) -> None:
    """Replace a file by another of the same size, keeping its modification time (as cp -p or rsync -a do)."""
    st = replaced.stat()
    assert new_content.stat().st_size == st.st_size
    shutil.copyfile(new_content, replaced)
    os.utime(replaced, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_converted_copies_follow_the_model_content(work, tmp_path):
    """A model replaced by another with the same size and time gets its own int8 copy and export, not the old."""
    other = tmp_path / "other"
    assert run_script("tools/make_random_checkpoint.py", "--out-dir", other, "--im-size", 48, "--seed", 7
                      ).returncode == 0
    assert run_script("segmenter_pytorch2onnx.py", "-c", other / "checkpoint.pth", "-o", other / "model.onnx"
                      ).returncode == 0
    int8 = ("--device", "cpu", "--precision", "int8")
    cache = {"SEGMENTER_CACHE_DIR": str(tmp_path / "cache")}

    def run(model: Path, tag: str, *extra) -> dict:
        proc = run_script("segmenter_eval.py", "--model", model, "--cfg-path", work / "model" / "variant.yml",
                          "--data-root", work / "data", "--metrics-path", tmp_path / f"{tag}.yaml", *extra, env=cache)
        assert proc.returncode == 0, proc.stderr
        return scores(tmp_path / f"{tag}.yaml")

    expected = run(other / "model.onnx", "other_int8", *int8), run(other / "checkpoint.pth", "other_ckpt", *int8)
    assert run(work / "model.onnx", "first_int8", *int8) != expected[0]
    assert run(work / "model" / "checkpoint.pth", "first_ckpt", *int8) != expected[1]
    same_size_and_time(work / "model.onnx", other / "model.onnx")
    same_size_and_time(work / "model" / "checkpoint.pth", other / "checkpoint.pth")
    assert run(work / "model.onnx", "second_int8", *int8) == expected[0]
    assert run(work / "model" / "checkpoint.pth", "second_ckpt", *int8) == expected[1]
    assert len(list(work.glob("model.int8-*.onnx"))) == 1  # the copy of the replaced content removed


def test_cut_short_converted_copy_is_made_again(work, tmp_path):
    args = ("--device", "openvino", "--precision", "int8", "--calibration", 2)
    proc = evaluate(work, *args)
    assert proc.returncode == 0, proc.stderr
    before = scores(work / "metrics.yaml")
    weights = next(work.glob("model.int8-*.bin"))
    weights.write_bytes(weights.read_bytes()[:100])
    proc = evaluate(work, *args)
    assert proc.returncode == 0, proc.stderr
    assert f"note: {weights.with_suffix('.xml')} has {weights.name} of 100 bytes" in proc.stdout
    assert "making it again" in proc.stdout and scores(work / "metrics.yaml") == before


def test_predict_output_inside_the_input_folder_is_not_read_back(work):
    images = work / "data" / "cityscapes" / "leftImg8bit" / "val"
    args = ("segmenter_predict.py", "--model", work / "model.onnx", "--cfg-path", work / "model" / "variant.yml",
            "--input", images, "--output-dir", images / "predicted", "--device", "cpu", "--precision", "fp32")
    for _ in range(2):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
        assert "\n3 inputs ->" in proc.stdout
    assert len(list((images / "predicted").rglob("*_labels.png"))) == 3


def test_quoted_glob_follows_a_link_loop_once(work):
    images = work / "data" / "cityscapes" / "leftImg8bit" / "val"
    (images / "loop").symlink_to(".")
    proc = run_script("segmenter_predict.py", "--model", work / "model.onnx", "--cfg-path",
                      work / "model" / "variant.yml", "--input", f"{images}/**/*.png", "--output-dir", work / "out",
                      "--device", "cpu", "--precision", "fp32", "--save", "labels")
    assert proc.returncode == 0, proc.stderr
    assert "\n3 inputs ->" in proc.stdout
    assert len(list((work / "out").rglob("*_labels.png"))) == 3
