"""The bad-input catalogue, MMSegmentation's route: hostile and merely unusual checkpoints and configs, and outputs
over inputs (shared parts in catalogue.py; the reader's rules one by one in test_mmseg_strict.py).

Every case runs a script on a crafted file and expects one `error:` line, exit status 2 and nothing written.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from catalogue import Catalogue
from conftest import run_script

from segmenter.model.formats.mmseg_config import evaluate_config_text

catalogue = Catalogue()
case = catalogue.case
MMSEG = Path(__file__).resolve().parent / "data" / "golden" / "mmseg_tiny"
REFS = Path(__file__).resolve().parent / "data" / "mmseg"
MASK = MMSEG / "mask" / "checkpoint.pth"
UNWRITTEN = ("metrics.yaml", "pred", "report", "out", "m.onnx")


def data(w: Path) -> Path:
    """A private copy of the golden ADE20K-layout images and annotations (the cases aim outputs at them)."""
    root = w / "ade"
    if not root.exists():
        shutil.copytree(MMSEG / "ADEChallengeData2016", root / "ADEChallengeData2016")
    return root


def evaluate(w: Path, checkpoint: Path = MASK, *extra, metrics: Path | None = None):
    return run_script("segmenter_eval.py", "--model", checkpoint, "--data-root", data(w), "--metrics-path",
                      metrics or w / "metrics.yaml", "--device", "cpu", "--precision", "fp32", *extra)


def write_config(w: Path, edit, name: str = "mask", file: str = "cfg.py") -> Path:
    """The golden config with `edit` applied, written back as Python literals."""
    cfg = evaluate_config_text((MMSEG / name / "config.py").read_text(), "config.py")
    edit(cfg)
    path = w / file
    path.write_text("".join(f"{key} = {value!r}\n" for key, value in cfg.items()))
    return path


# --- checkpoint bytes


@case("{w}/short.pth: damaged checkpoint", "bytes but its tensor needs", unwritten=UNWRITTEN)
def checkpoint_record_shorter_than_its_tensor(w):
    with zipfile.ZipFile(MASK) as src, zipfile.ZipFile(w / "short.pth", "w") as dst:
        largest = max((i for i in src.infolist() if "/data/" in i.filename), key=lambda i: i.file_size).filename
        for info in src.infolist():
            data_ = src.read(info.filename)
            dst.writestr(info.filename, data_[:-64] if info.filename == largest else data_)
    return evaluate(w, w / "short.pth")


@case("{w}/nan.pth: key 'decode_head.cls_emb'", "NaN or infinite weights", "checkpoint is damaged",
      unwritten=UNWRITTEN)
def checkpoint_with_non_finite_weights(w):
    ckpt = torch.load(MASK, weights_only=True)
    ckpt["state_dict"]["decode_head.cls_emb"] = torch.full_like(ckpt["state_dict"]["decode_head.cls_emb"], float("inf"))
    torch.save(ckpt, w / "nan.pth")
    return evaluate(w, w / "nan.pth")


@case("{w}/meta.pth", "class names must be a list of names, got 150", unwritten=UNWRITTEN)
def checkpoint_meta_of_the_wrong_type(w):
    ckpt = torch.load(MASK, weights_only=True)
    ckpt["meta"]["CLASSES"] = 150
    torch.save(ckpt, w / "meta.pth")
    return evaluate(w, w / "meta.pth")


# --- settings bent to fit, and mmseg's rules


@case("{w}/cfg.py: model.backbone.act_cfg.type='ReLU' is not supported", unwritten=UNWRITTEN)
def config_activation_it_does_not_build(w):
    return evaluate(w, MASK, "--cfg-path", write_config(w, lambda c: c["model"]["backbone"].update(
        act_cfg=dict(type="ReLU"))))


@case("{w}/cfg.py: model.data_preprocessor.test_cfg", "pads every test image", unwritten=UNWRITTEN)
def config_padding_test_images(w):
    return evaluate(w, MASK, "--cfg-path", write_config(w, lambda c: c["model"]["data_preprocessor"].update(
        test_cfg=dict(size_divisor=32))))


@case("{w}/cfg.py: tta_pipeline TestTimeAug group 2 RandomFlip 2", "direction='vertical'", unwritten=UNWRITTEN)
def config_vertical_flip(w):
    def flip_vertically(cfg):
        cfg["tta_pipeline"][1]["transforms"][1][1]["direction"] = "vertical"
    return evaluate(w, MASK, "--cfg-path", write_config(w, flip_vertically), "--multiscale")


# --- config evaluation, bounded


@case("{w}/tower.py:1", "too large for a config value", unwritten=UNWRITTEN)
def config_power_tower(w):
    (w / "tower.py").write_text("x = 10**10**10\n")
    return evaluate(w, MASK, "--cfg-path", w / "tower.py")


@case("{w}/repeat.py:2", "more than 1,000,000 items", unwritten=UNWRITTEN)
def config_nested_repetition(w):
    (w / "repeat.py").write_text("a = [1] * 1000\nb = [a] * 1000\n")
    return evaluate(w, MASK, "--cfg-path", w / "repeat.py")


@case("{w}/keys.py:1", "cannot evaluate (TypeError: unhashable type", unwritten=UNWRITTEN)
def config_unhashable_key(w):
    (w / "keys.py").write_text("x = {[1]: 2}\n")
    return evaluate(w, MASK, "--cfg-path", w / "keys.py")


@case("{w}/pipe.py: the config file is a FIFO", unwritten=UNWRITTEN)
def config_that_is_a_fifo(w):
    os.mkfifo(w / "pipe.py")
    (w / "child.py").write_text("_base_ = 'pipe.py'\n")
    return evaluate(w, MASK, "--cfg-path", w / "child.py")


# --- outputs over inputs


@case("the metrics file lies inside the data root", unwritten=())
def metrics_over_a_ground_truth_png(w):
    target = data(w) / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000101.png"
    before = target.read_bytes()
    proc = evaluate(w, MASK, metrics=target)
    assert target.read_bytes() == before
    return proc


@case("the report lies inside the data root", unwritten=("metrics.yaml",))
def report_inside_the_data_root(w):
    return evaluate(w, MASK, "--report", data(w) / "ADEChallengeData2016" / "report")


@case("{w}/zoo/_base_/models/segmenter_vit-b16_mask.py: the metrics file would overwrite the model's description",
      unwritten=())
def metrics_over_a_base_file(w):
    shutil.copytree(REFS / "configs", w / "zoo")
    base = w / "zoo" / "_base_" / "models" / "segmenter_vit-b16_mask.py"
    before = base.read_bytes()
    proc = evaluate(w, MASK, "--cfg-path", w / "zoo" / "tiny" / "mask.py", metrics=base)
    assert base.read_bytes() == before
    return proc


@case("{w}/zoo/_base_/models/segmenter_vit-b16_mask.py: the ONNX file would overwrite", unwritten=())
def export_over_a_base_file(w):
    shutil.copytree(REFS / "configs", w / "zoo")
    base = w / "zoo" / "_base_" / "models" / "segmenter_vit-b16_mask.py"
    before = base.read_bytes()
    proc = run_script("segmenter_pytorch2onnx.py", "-c", MASK, "--cfg-path", w / "zoo" / "tiny" / "mask.py", "-o",
                      base)
    assert base.read_bytes() == before
    return proc


@case("the bin folder lies inside the data root", unwritten=())
def preprocess_into_the_data_root(w):
    return run_script("segmenter_preprocess.py", "--cfg-path", MMSEG / "mask" / "config.py", "--data-root", data(w),
                      "--bin-dir", data(w) / "bins", "--gt-path", w / "gt.txt")


# --- the format converter


@case("{w}/conf: the output folder holds the config", unwritten=("conf/checkpoint.pth",))
def convert_into_the_configs_folder(w):
    (w / "conf").mkdir()
    shutil.copy(MMSEG / "mask" / "config.py", w / "conf" / "variant.yml")  # a config named as the output's
    proc = run_script("tools/convert_checkpoint.py", "--checkpoint", MASK, "--cfg-path", w / "conf" / "variant.yml",
                      "--out-dir", w / "conf")
    assert (w / "conf" / "variant.yml").read_bytes() == (MMSEG / "mask" / "config.py").read_bytes()
    return proc


@case("{w}/conv/checkpoint.pth: already exists", "--overwrite", unwritten=("conv/variant.yml",))
def convert_over_existing_files(w):
    (w / "conv").mkdir()
    (w / "conv" / "checkpoint.pth").write_text("the user's own file")
    proc = run_script("tools/convert_checkpoint.py", "--checkpoint", MASK, "--out-dir", w / "conv")
    assert (w / "conv" / "checkpoint.pth").read_text() == "the user's own file"
    return proc


test_bad_input = catalogue.test()


def test_converting_keeps_a_non_default_stride(tmp_path):
    """A linear model evaluated at stride 448 (not the crop - 32) converts to a variant whose stride the release
    reader takes, and back."""
    def stride_448(cfg):
        cfg["model"]["test_cfg"]["stride"] = (448, 448)
    cfg = write_config(tmp_path, stride_448, "linear")
    proc = run_script("tools/convert_checkpoint.py", "--checkpoint", MMSEG / "linear" / "checkpoint.pth", "--cfg-path",
                      cfg, "--out-dir", tmp_path / "release")
    assert proc.returncode == 0, proc.stderr
    from segmenter.model.loading import describe_model

    assert describe_model(tmp_path / "release" / "checkpoint.pth").window_stride == 448
    proc = run_script("tools/convert_checkpoint.py", "--checkpoint", tmp_path / "release" / "checkpoint.pth",
                      "--out-dir", tmp_path / "back")
    assert proc.returncode == 0, proc.stderr
    assert describe_model(tmp_path / "back" / "checkpoint.pth").window_stride == 448


@pytest.mark.parametrize("name", ["model.ckpt", "seg_b.pth.tar"])
def test_a_checkpoint_named_otherwise_is_read_as_one(tmp_path, name):
    shutil.copy(MASK, tmp_path / name)
    proc = run_script("segmenter_eval.py", "--model", tmp_path / name, "--data-root", MMSEG, "--metrics-path",
                      tmp_path / "m.yaml", "--device", "cpu", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert "ONNX" not in proc.stderr
