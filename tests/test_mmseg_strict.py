"""Every MMSegmentation input read exactly as mmseg reads it, or refused in one line: the settings reader, the test
pipeline, the checkpoint's records, the bounded config evaluator (property-tested) and deterministic digests.

The command-line side of each class (one line, exit status 2, nothing written) is in test_bad_inputs_mmseg.py.
"""
from __future__ import annotations

import copy
import gc
import os
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter.errors import SegmenterError
from segmenter.model.checkpoint import check_archive
from segmenter.model.formats.mmseg import describe_config
from segmenter.model.formats.mmseg_config import evaluate_config_text
from segmenter.model.loading import load_model, read_checkpoint

GOLDEN = ROOT / "tests" / "data" / "golden" / "mmseg_tiny"
SOURCE = Path("cfg.py")


def golden_config(name: str = "mask") -> dict:
    return evaluate_config_text((GOLDEN / name / "config.py").read_text(), "config.py")


def edited(edit, name: str = "mask") -> dict:
    cfg = copy.deepcopy(golden_config(name))
    edit(cfg)
    return cfg


def refused(cfg: dict, *fragments: str) -> str:
    with pytest.raises(SegmenterError) as caught:
        describe_config(cfg, SOURCE)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{SOURCE}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ----------------------------------------------------------------------------- settings bent to fit: refused

SETTINGS = {  # (edit of the golden mask config, what the one line must say)
    "activation": (lambda c: c["model"]["backbone"].update(act_cfg=dict(type="ReLU")), "act_cfg.type='ReLU'"),
    "tanh GELU": (lambda c: c["model"]["backbone"].update(act_cfg=dict(type="GELU", approximate="tanh")),
                  "approximate='tanh'"),
    "norm type": (lambda c: c["model"]["backbone"].update(norm_cfg=dict(type="BN")), "norm_cfg.type='BN'"),
    "unknown backbone key": (lambda c: c["model"]["backbone"].update(layer_scale=0.1),
                             "model.backbone.layer_scale is a setting this reader does not know"),
    "unknown head key": (lambda c: c["model"]["decode_head"].update(use_mask_cls=True),
                         "model.decode_head.use_mask_cls is a setting this reader does not know"),
    "preprocessor pads test images": (
        lambda c: c["model"]["data_preprocessor"].update(test_cfg=dict(size_divisor=32)), "pads every test image"),
    "unknown preprocessor key": (lambda c: c["model"]["data_preprocessor"].update(pad_size_divisor=32),
                                 "data_preprocessor.pad_size_divisor"),
    "head mlp ratio": (lambda c: c["model"]["decode_head"].update(mlp_ratio=2), "mlp_ratio=2 is not supported"),
    "head align_corners": (lambda c: c["model"]["decode_head"].update(align_corners=True), "align_corners=True"),
    "a neck": (lambda c: c["model"].update(neck=dict(type="Feature2Pyramid")), "a neck is not supported"),
    "pre-norm": (lambda c: c["model"]["backbone"].update(pre_norm=True), "pre_norm=True is not supported"),
    "patch padding": (lambda c: c["model"]["backbone"].update(patch_pad=0), "patch_pad=0"),
    "whole-image test": (lambda c: c["model"]["test_cfg"].update(mode="whole"), "mode='whole'"),
    "test-time padding step": (lambda c: c["test_dataloader"]["dataset"]["pipeline"].insert(
        2, dict(type="Pad", size=(512, 512))), "(Pad) is a step this reader does not build"),
    "resize without keep_ratio": (lambda c: c["test_dataloader"]["dataset"]["pipeline"][1].update(keep_ratio=False),
                                  "keep_ratio=True) is supported"),
    "resize interpolation": (lambda c: c["test_dataloader"]["dataset"]["pipeline"][1].update(interpolation="nearest"),
                             "interpolation='nearest'"),
    "out_channels": (lambda c: c["model"]["decode_head"].update(out_channels=1), "out_channels=1"),
    "last layer only": (lambda c: c["model"]["backbone"].update(out_indices=[0, 1]), "out_indices=[0, 1]"),
    # wrong types
    "patch_size 0": (lambda c: c["model"]["backbone"].update(patch_size=0), "patch_size must be an integer"),
    "eps as text": (lambda c: c["model"]["backbone"].update(norm_cfg=dict(type="LN", eps="small")),
                    "norm_cfg.eps must be a number"),
    "float channels": (lambda c: c["model"]["decode_head"].update(in_channels=64.0), "in_channels must be an integer"),
    "bool layers": (lambda c: c["model"]["backbone"].update(num_layers=True), "num_layers must be an integer"),
    "scale with a zero": (lambda c: c["test_dataloader"]["dataset"]["pipeline"][1].update(scale=(2048, 0)),
                          "scale must be a size"),
    "crop not square": (lambda c: c["model"]["test_cfg"].update(crop_size=(512, 256)), "only square sizes"),
    "stride above crop": (lambda c: c["model"]["test_cfg"].update(stride=(600, 600)), "larger than crop_size"),
    "backbone not a dict": (lambda c: c["model"].update(backbone=[1, 2]), "model.backbone must be a dict"),
    "heads not dividing": (lambda c: c["model"]["backbone"].update(num_heads=3), "not a multiple of num_heads"),
    "empty mean": (lambda c: c["model"]["data_preprocessor"].update(mean=[]), "mean must be 3 numbers"),
    "two-value std": (lambda c: c["model"]["data_preprocessor"].update(std=[127.5, 127.5]), "std must be 3 numbers"),
    "no mean": (lambda c: c["model"]["data_preprocessor"].pop("mean"), "no mean or std"),
    "both channel swaps": (lambda c: c["model"]["data_preprocessor"].update(rgb_to_bgr=True), "sets both"),
    "vertical flip": (lambda c: c["tta_pipeline"][1]["transforms"][1][1].update(direction="vertical"),
                      "direction='vertical'"),
    "random flip": (lambda c: c["tta_pipeline"][1]["transforms"][1][1].update(prob=0.5), "prob=0.5"),
    "int scale factor": (lambda c: c["tta_pipeline"][1]["transforms"][0][2].update(scale_factor=1),
                         "must be a positive float"),
    "unknown tta group": (lambda c: c["tta_pipeline"][1]["transforms"].append([dict(type="PhotoMetricDistortion")]),
                          "PhotoMetricDistortion"),
    "tta box of another shape": (
        lambda c: c["tta_pipeline"][1]["transforms"][0].__setitem__(0, dict(type="Resize", scale=(1000, 512),
                                                                                keep_ratio=True)),
        "is not the test box"),
}


@pytest.mark.parametrize("case", SETTINGS)
def test_a_setting_it_does_not_build_is_refused_by_name(case):
    edit, says = SETTINGS[case]
    refused(edited(edit), says)


def test_the_linear_heads_settings_are_checked_too():
    refused(edited(lambda c: c["model"]["decode_head"].update(num_convs=1), "linear"), "num_convs=1")
    refused(edited(lambda c: c["model"]["decode_head"].update(concat_input=True), "linear"), "concat_input=True")


META = {
    "class count as a number": ({"CLASSES": 150}, "class names must be a list of names, got 150"),
    "palette of strings": ({"PALETTE": [["a", "b", "c"]] * 150}, "palette must be a list of [r, g, b]"),
    "palette out of range": ({"PALETTE": [[0, 0, 300]] * 150}, "palette must be a list of [r, g, b]"),
    "too few names": ({"CLASSES": ["wall"] * 3}, "names 3 classes but the model has 150"),
}


@pytest.mark.parametrize("case", META)
def test_checkpoint_meta_of_the_wrong_type_is_refused(case):
    meta, says = META[case]
    with pytest.raises(SegmenterError, match=None) as caught:
        describe_config(golden_config(), SOURCE, meta)
    assert says in str(caught.value) and "\n" not in str(caught.value)


# ----------------------------------------------------------------------------- mmseg's own rules, followed


def test_one_value_mean_and_std_broadcast_over_the_channels_as_in_mmseg():
    cfg = edited(lambda c: c["model"]["data_preprocessor"].update(mean=[127.5], std=[127.5]))
    assert describe_config(cfg, SOURCE).normalization == "vit"


def test_a_0x_normalize_without_to_rgb_swaps_the_channels_as_mmseg_0x_does():
    from test_mmseg import ZERO_X_CONFIG

    text = ZERO_X_CONFIG.replace(", to_rgb=True)", ")")
    assert "to_rgb" not in text
    assert describe_config(evaluate_config_text(text, "0.x"), SOURCE).normalization == "vit"
    bgr = ZERO_X_CONFIG.replace("to_rgb=True", "to_rgb=False")
    refused(evaluate_config_text(bgr, "0.x"), "BGR input")


def test_tta_resize_by_explicit_scales_gives_those_boxes():
    """TestTimeAug Resize(scale=(long, short), keep_ratio=True) fits the image into that box: views of the test box
    (2048, 512) scaled by short / 512, not the image scaled by a ratio."""
    scales = [(1024, 256), (2048, 512), (3072, 768)]
    cfg = edited(lambda c: c["tta_pipeline"][1]["transforms"].__setitem__(
        0, [dict(type="Resize", scale=s, keep_ratio=True) for s in scales]))
    variant = describe_config(cfg, SOURCE)
    assert not variant.tta_of_image
    assert [r for r, flip in variant.tta if not flip] == [0.5, 1.0, 1.5]
    from segmenter.data.plan import WindowConfig, make_views

    box = WindowConfig(512, 512, 480, "vit", box_ratio=4, views=make_views([0.5, 1.0, 1.5]))
    assert [box.fit_box(v) for v in box.views] == scales


def test_the_zoo_configs_still_read_the_same():
    variant = describe_config(golden_config(), SOURCE)
    assert (variant.image_size, variant.box_ratio, variant.window_size, variant.window_stride) == (512, 4, 512, 480)
    assert variant.tta_of_image and len(variant.tta) == 12
    linear = describe_config(golden_config("linear"), SOURCE)
    assert linear.model.decoder == "linear"


# ----------------------------------------------------------------------------- checkpoint bytes


def rewrite_archive(source: Path, target: Path, change=None, compression=zipfile.ZIP_STORED) -> None:
    """Copy a torch archive record by record (as `unzip` + `zip -r` would), changing a record's bytes on the way."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", compression) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if change is not None:
                data = change(info.filename, data)
            dst.writestr(info.filename, data)


def first_weight_record(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size).filename


def test_a_record_shorter_than_its_tensor_is_refused(tmp_path):
    source = GOLDEN / "mask" / "checkpoint.pth"
    record = first_weight_record(source)
    target = tmp_path / "short.pth"
    rewrite_archive(source, target, lambda name, data: data[:-16] if name == record else data)
    with pytest.raises(SegmenterError, match="damaged checkpoint .*holds .* bytes but its tensor needs"):
        read_checkpoint(target)


def test_a_record_with_other_bytes_is_refused_by_its_crc(tmp_path):
    source = GOLDEN / "mask" / "checkpoint.pth"
    record = first_weight_record(source)
    target = tmp_path / "flipped.pth"
    rewrite_archive(source, target)
    data = bytearray(target.read_bytes())
    with zipfile.ZipFile(target) as archive:
        info = archive.getinfo(record)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 8] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(SegmenterError, match="damaged checkpoint"):
        read_checkpoint(target)


def test_a_recompressed_archive_is_read_as_torch_reads_it(tmp_path):
    source = GOLDEN / "mask" / "checkpoint.pth"
    target = tmp_path / "zipped.pth"
    rewrite_archive(source, target, compression=zipfile.ZIP_DEFLATED)
    assert check_archive(source) and not check_archive(target)  # stored: memory-mapped; deflated: read through zlib
    ours = read_checkpoint(target).state
    plain = torch.load(target, weights_only=True)["state_dict"]
    assert ours.keys() == plain.keys() and all(torch.equal(ours[k], plain[k]) for k in ours)
    assert all(torch.equal(ours[k], read_checkpoint(source).state[k]) for k in ours)


@pytest.mark.parametrize("bad", ["nan", "int"])
def test_weights_that_are_not_finite_floats_are_the_checkpoints_fault(tmp_path, bad):
    ckpt = torch.load(GOLDEN / "mask" / "checkpoint.pth", weights_only=True)
    key = "backbone.layers.0.ln1.weight"
    ckpt["state_dict"][key] = ckpt["state_dict"][key].clone()
    if bad == "nan":
        ckpt["state_dict"][key][3] = float("nan")
    else:
        ckpt["state_dict"][key] = ckpt["state_dict"][key].long()
    torch.save(ckpt, tmp_path / "bad.pth")
    says = "NaN or infinite weights" if bad == "nan" else "holds int64 values"
    with pytest.raises(SegmenterError, match=f"bad.pth: key '{key}' holds {says.removeprefix('holds ')}"):
        load_model(tmp_path / "bad.pth")


def test_a_head_convolution_of_another_kernel_is_refused(tmp_path):
    ckpt = torch.load(GOLDEN / "linear" / "checkpoint.pth", weights_only=True)
    weight = ckpt["state_dict"]["decode_head.conv_seg.weight"]
    ckpt["state_dict"]["decode_head.conv_seg.weight"] = weight.repeat(1, 1, 3, 3)
    torch.save(ckpt, tmp_path / "k3.pth")
    with pytest.raises(SegmenterError, match=r"decode_head.conv_seg.weight' has shape \(150, 64, 3, 3\)"):
        load_model(tmp_path / "k3.pth")


@pytest.mark.parametrize("name", ["model.ckpt", "seg.pth.tar", "weights"])
def test_the_format_comes_from_the_content_not_the_name(tmp_path, name):
    from segmenter.model.loading import describe_model

    (tmp_path / name).write_bytes((GOLDEN / "mask" / "checkpoint.pth").read_bytes())
    assert describe_model(tmp_path / name).format == "mmseg"


# ----------------------------------------------------------------------------- the config evaluator, bounded

HOSTILE = {
    "power tower": "x = 10**10**10",
    "huge range comprehension": "x = [i for i in range(10**9)]",
    "string repetition": "x = 'a' * 10**9",
    "list repetition": "x = [0] * 10**9",
    "nested repetition": "a = [1] * 1000\nb = [a] * 1000\n",
    "shared references": "a = [[1] * 999] * 999\nb = [a, a]\n",
    "a long computation": "x = [0 for y in range(999999) for z in range(999999)]",
    "deep nesting": "x = " + "[" * 150 + "]" * 150,
    "unary chain": "x = " + "-" * 100000 + "1",
    "huge integer text": "x = 1" + "0" * 5000,
    "format width": "x = f'{1:>100000000}'",
    "percent formatting": "x = '%100000000d' % 1",
    "unhashable key": "x = {[1]: 2}",
    "bad unpacking": "a, b = 1",
    "zero slice step": "x = [1, 2][::0]",
    "float overflow": "x = 2.0 ** 100000",
}


BOUNDED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GiB of address space for the whole interpreter
from segmenter.errors import SegmenterError
from segmenter.model.formats.mmseg_config import evaluate_config_text
try:
    evaluate_config_text(sys.stdin.read(), "cfg.py")
except SegmenterError as exc:
    sys.exit(f"error: {exc}")
"""


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_config_text_is_refused_in_one_line_within_bounds(case):
    """In a process of 1 GiB of address space, refused in one line within seconds."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", BOUNDED], input=HOSTILE[case], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert time.perf_counter() - start < 10
    assert proc.returncode == 1 and proc.stderr.startswith("error: cfg.py") and proc.stderr.count("\n") == 1, \
        proc.stderr


NUMBERS = st.integers(-(10**6), 10**6).map(str) | st.sampled_from(["10**10**10", "2.5", "1e308", "0"])
LEAVES = NUMBERS | st.sampled_from(["'ab'", "[1, 2]", "(1,)", "{}", "{'a': 1}", "range(5)", "range(10**9)", "x",
                                    "None", "True"])


def _compound(inner):
    binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "**", "//", "%", "/", " in ", " < ", " == "]), inner)
    return (binary.map(lambda t: f"({t[0]}{t[1]}{t[2]})")
            | st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")
            | st.tuples(inner, inner).map(lambda t: f"[{t[0]} for v in {t[1]}]")
            | st.tuples(inner, inner).map(lambda t: f"{{{t[0]}: {t[1]}}}")
            | st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]")
            | st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}::{t[1]}]")
            | st.tuples(st.sampled_from(["dict", "list", "tuple", "range", "len", "open"]), inner).map(
                lambda t: f"{t[0]}({t[1]})"))


EXPRESSIONS = st.recursive(LEAVES, _compound, max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=EXPRESSIONS, second=EXPRESSIONS)
def test_any_expression_gives_a_value_or_one_line_within_bounds(first, second):
    """Random expressions of what a config may hold (and some it may not): a value, or a one-line error naming the
    file; within seconds (under tracemalloc, which slows Python several times) and a few hundred MB whatever
    they ask for."""
    gc.collect()  # what earlier tests left is not this example's time
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = evaluate_config_text(f"x = {first}\ny = {second}\n", "cfg.py")
        assert isinstance(result, dict)
    except SegmenterError as exc:
        assert str(exc).startswith("cfg.py") and "\n" not in str(exc)
    finally:
        seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < 30 and peak < 300e6, (seconds, peak)


def test_bases_that_fan_out_are_bounded(tmp_path):
    from segmenter.model.formats.mmseg_config import read_config

    for level in range(12):  # each file names the next level twice: 2**12 reads unbounded
        (tmp_path / f"l{level}.py").write_text(f"_base_ = ['l{level + 1}.py', 'l{level + 1}.py']\n")
    (tmp_path / "l12.py").write_text("model = dict()\n")
    with pytest.raises(SegmenterError, match="set 'model'|more than 64 files"):
        read_config(tmp_path / "l0.py")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")
def test_special_files_are_refused_not_read(tmp_path):
    from segmenter.model.formats.mmseg_config import read_config

    os.mkfifo(tmp_path / "pipe.py")
    (tmp_path / "child.py").write_text("_base_ = 'pipe.py'\n")
    for path in (tmp_path / "pipe.py", tmp_path / "child.py"):
        with pytest.raises(SegmenterError, match="pipe.py: the config file is a FIFO"):
            read_config(path)


# ----------------------------------------------------------------------------- deterministic digests

DIGEST = """
import sys
from pathlib import Path
from segmenter.model.formats.mmseg import describe_config
from segmenter.model.formats.mmseg_config import evaluate_config_text
cfg = evaluate_config_text(Path(sys.argv[1]).read_text(), "c")
cfg["extra"] = {"tags": {"alpha", "beta", "gamma", "delta"}, 1: "one", "two": 2}
print(describe_config(cfg, Path("c")).digest)
"""


def test_a_configs_digest_is_the_same_in_every_process():
    digests = {subprocess.run([sys.executable, "-c", DIGEST, str(GOLDEN / "mask" / "config.py")], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": str(seed)},
                              check=True).stdout.strip() for seed in (1, 2, 3)}
    assert len(digests) == 1 and len(next(iter(digests))) == 64
