"""The bad-input catalogue: inference inputs and models, checkpoints and variants, data sets and views, ground
truth, perf.sh (shared parts in catalogue.py).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from catalogue import (
    Catalogue,
    edit_variant,
    evaluate,
    export,
    gt_png,
    infer,
    post,
    prep,
)
from conftest import bash_script, run_script

from segmenter.demo.writers import write_split

catalogue = Catalogue()
case = catalogue.case


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

@case("{w}/model/checkpoint.pth", "not a checkpoint (neither a torch archive nor a pickle)")
def random_bytes_checkpoint(w):
    (w / "model" / "checkpoint.pth").write_bytes(os.urandom(4096))
    return export(w)


@case("{w}/model/checkpoint.pth", "damaged or not a")
def damaged_pickle_checkpoint(w):
    from segmenter.errors import SegmenterError
    from segmenter.model.loading import read_checkpoint

    path = w / "model" / "checkpoint.pth"
    for seed in range(50):  # random bytes fail at many places in an unpickler: each must give this error
        for head in (b"\x80\x02", b"\x80\x02\x8a\x0a"):  # a plain pickle, and older torch.save's
            path.write_bytes(head + np.random.default_rng(seed).bytes(4096))
            with pytest.raises(SegmenterError, match="damaged or not a (torch )?checkpoint"):
                read_checkpoint(path)
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


# --- MMSegmentation checkpoints and configs

MMSEG = Path(__file__).resolve().parent / "data" / "golden" / "mmseg_tiny"


def mmseg_eval(w: Path, checkpoint: Path, *extra):
    return run_script("segmenter_eval.py", "--model", checkpoint, "--data-root", MMSEG, "--metrics-path",
                      w / "metrics.yaml", "--device", "cpu", "--precision", "fp32", *extra)


@case("{w}/code.py:2", "an import is not allowed", unwritten=("metrics.yaml", "ran"))
def mmseg_config_with_code(w):
    (w / "code.py").write_text(f"model = dict(type='EncoderDecoder')\nimport os\nos.system('touch {w}/ran')\n")
    return mmseg_eval(w, MMSEG / "mask" / "checkpoint.pth", "--cfg-path", w / "code.py")


@case("{w}/call.py:1", "calling open() is not allowed", unwritten=("metrics.yaml", "ran"))
def mmseg_config_calling_a_function(w):
    (w / "call.py").write_text(f"marker = open('{w}/ran', 'w')\n")
    return mmseg_eval(w, MMSEG / "mask" / "checkpoint.pth", "--cfg-path", w / "call.py")


@case("{w}/evil.pth", "refused", "posix.system", unwritten=("metrics.yaml", "ran"))
def mmseg_checkpoint_with_a_code_running_global(w):
    import torch

    class Runs:
        def __reduce__(self):
            return os.system, (f"touch {w}/ran",)

    ckpt = torch.load(MMSEG / "mask" / "checkpoint.pth", weights_only=True)
    ckpt["message_hub"] = {"runtime_info": Runs()}
    torch.save(ckpt, w / "evil.pth")
    return mmseg_eval(w, w / "evil.pth")


@case("{w}/mask.pth", "missing key 'decode_head.conv_seg.weight'", "match this checkpoint")
def mmseg_config_of_another_model(w):
    shutil.copy(MMSEG / "mask" / "checkpoint.pth", w / "mask.pth")
    return mmseg_eval(w, w / "mask.pth", "--cfg-path", MMSEG / "linear" / "config.py")


@case("{w}/uper.py", "decode head type 'UPerHead' is not known", "SegmenterMaskTransformerHead")
def mmseg_unknown_head(w):
    text = (MMSEG / "mask" / "config.py").read_text().replace("type='SegmenterMaskTransformerHead'", "type='UPerHead'")
    (w / "uper.py").write_text(text)
    return mmseg_eval(w, MMSEG / "mask" / "checkpoint.pth", "--cfg-path", w / "uper.py")


@case("{w}/nowhere.py: config file not found", "the _base_ of {w}/child.py")
def mmseg_base_pointing_nowhere(w):
    (w / "child.py").write_text("_base_ = ['./nowhere.py']\nmodel = dict(test_cfg=dict(stride=(448, 448)))\n")
    return mmseg_eval(w, MMSEG / "mask" / "checkpoint.pth", "--cfg-path", w / "child.py")


@case("{w}/bare.pth", "without a config inside", "give the model's config file")
def mmseg_checkpoint_without_a_config(w):
    import torch

    state = torch.load(MMSEG / "mask" / "checkpoint.pth", weights_only=True)["state_dict"]
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, w / "bare.pth")
    return mmseg_eval(w, w / "bare.pth")


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


test_bad_input = catalogue.test()
