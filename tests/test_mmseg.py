"""MMSegmentation's Segmenter checkpoints and configs on every route, against MMSegmentation's own outputs.

References: tests/data/golden/mmseg_tiny (mmseg 1.2.2: two tiny models, their logits, labels and metrics on
two ADE20K-layout images) and tests/data/mmseg (made by tools/make_mmseg_references.py with mmseg 1.2.2:
an image whose windows are smaller than the crop, multi-scale + flip, a checkpoint written by mmengine's
Runner, model-zoo configs with _base_ and mmengine's merge of them).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, run_script

from segmenter.api import evaluate, open_model
from segmenter.model.formats.mmseg import our_key, to_ours
from segmenter.model.formats.mmseg_config import evaluate_config_text, read_config
from segmenter.model.loading import describe_model

GOLDEN = ROOT / "tests" / "data" / "golden" / "mmseg_tiny"
REFS = ROOT / "tests" / "data" / "mmseg"
QUIET = lambda *_: None  # noqa: E731
TIE = 1e-4  # a label may differ where the model's top two logits are closer than this (float summation order)


def expected(name: str) -> dict:
    return yaml.safe_load((GOLDEN / name / "expected.yml").read_text())


def assert_labels(ours: np.ndarray, scores: np.ndarray, reference: np.ndarray) -> None:
    """Equal labels, but at near-tied pixels (top-2 margin below TIE in our own scores)."""
    differ = ours != reference
    top2 = np.sort(scores[:, differ], axis=0)[-2:] if differ.any() else np.zeros((2, 0))
    assert differ.sum() <= 5 and (top2[1] - top2[0] < TIE).all(), (differ.sum(), top2[1] - top2[0])


def assert_image(model, image: Path, saved: Path, reference_labels: np.ndarray, reference_scores: np.ndarray,
                 rows: np.ndarray, cols: np.ndarray) -> None:
    """A route's saved labels equal segment()'s, and both mmseg's (ties aside); the scores at the kept pixels."""
    labels = cv2.imread(str(saved / f"{image.stem}.png"), cv2.IMREAD_UNCHANGED)
    mine, scores = model.segment(cv2.imread(str(image)), scores=True)
    assert (labels == mine).all()
    assert_labels(labels, scores, reference_labels)
    assert np.abs(scores[:, rows][:, :, cols] - reference_scores).max() < 1e-4


def assert_metrics(ours: dict, reference: dict) -> None:
    """Our metrics file against mmseg's IoUMetric: equal at its 2 decimals (its JSON holds them as float32)."""
    assert ours["mean_iou"] == pytest.approx(reference["mIoU"], abs=1e-4)
    assert ours["pixel_accuracy"] == pytest.approx(reference["aAcc"], abs=1e-4)
    assert ours["mean_accuracy"] == pytest.approx(reference["mAcc"], abs=1e-4)


# ----------------------------------------------------------------------------- configs, keys, files


def canonical(value):
    return json.loads(json.dumps(value, sort_keys=True, default=list))


@pytest.mark.parametrize("name", ["mask", "linear"])
def test_configs_with_base_merge_as_mmengine_merges_them(name):
    merged = json.loads((REFS / "merged.json").read_text())[name]
    assert canonical(read_config(REFS / "configs" / "tiny" / f"{name}.py")) == canonical(merged)
    dumped = evaluate_config_text((GOLDEN / name / "config.py").read_text(), "config.py")
    assert canonical({k: v for k, v in merged.items() if k != "embed"}) == canonical(dumped)


def test_the_description_of_the_zoo_settings():
    variant = describe_model(GOLDEN / "mask" / "checkpoint.pth")
    assert variant.format == "mmseg" and variant.dataset == "ADE20KDataset" and variant.normalization == "vit"
    assert (variant.image_size, variant.box_ratio, variant.window_size, variant.window_stride) == (512, 4, 512, 480)
    cfg = variant.model
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.decoder_layers, cfg.decoder_heads) == (64, 2, 2, 1, 2)
    assert (cfg.norm_eps, cfg.decoder_norm_eps, cfg.pos_embed_mode, cfg.patch_bias) == (1e-6, 1e-5, "bicubic", False)
    assert not variant.raise_to_window and variant.tta_of_image
    assert [r for r, flip in variant.tta if not flip] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    meta = torch.load(GOLDEN / "mask" / "checkpoint.pth", weights_only=True)["meta"]
    assert variant.classes == tuple(meta["CLASSES"]) and variant.palette[1] == tuple(meta["PALETTE"][1])
    zero_x = evaluate_config_text(ZERO_X_CONFIG, "0.x")  # a zoo file's meta config, as mmseg 0.x dumped it
    from segmenter.model.formats.mmseg import describe_config

    old = describe_config(zero_x, Path("0.x"))
    assert (old.image_size, old.box_ratio, old.window_size, old.window_stride, old.normalization) == \
        (512, 4, 512, 480, "vit")
    assert old.model == cfg and not old.tta and old.dataset == "ADE20KDataset"


ZERO_X_CONFIG = """
norm_cfg = dict(type='SyncBN', requires_grad=True)
backbone_norm_cfg = dict(type='LN', eps=1e-06, requires_grad=True)
model = dict(type='EncoderDecoder', pretrained='pretrain/vit_tiny_p16_384.pth',
    backbone=dict(type='VisionTransformer', img_size=(512, 512), patch_size=16, in_channels=3, embed_dims=64,
        num_layers=2, num_heads=2, drop_path_rate=0.1, attn_drop_rate=0.0, drop_rate=0.0, final_norm=True,
        norm_cfg=dict(type='LN', eps=1e-06, requires_grad=True), with_cls_token=True, interpolate_mode='bicubic'),
    decode_head=dict(type='SegmenterMaskTransformerHead', in_channels=64, channels=64, num_classes=150,
        num_layers=1, num_heads=2, embed_dims=64, dropout_ratio=0.0,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(480, 480)))
dataset_type = 'ADE20KDataset'
img_norm_cfg = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)
test_pipeline = [dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(2048, 512), flip=False,
         transforms=[dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'),
                     dict(type='Normalize', **img_norm_cfg), dict(type='ImageToTensor', keys=['img']),
                     dict(type='Collect', keys=['img'])])]
data = dict(samples_per_gpu=1, test=dict(type='ADE20KDataset', data_root='data/ade/ADEChallengeData2016',
    img_dir='images/validation', ann_dir='annotations/validation', pipeline=test_pipeline))
"""


def test_key_mapping_is_a_pure_renaming():
    state = torch.load(GOLDEN / "mask" / "checkpoint.pth", weights_only=True)["state_dict"]
    renamed = to_ours(state, Path("x"))
    ours, names = renamed.state, renamed.names
    assert len(ours) == len(state) and set(names.values()) == set(state)
    assert names["encoder.blocks.1.attn.qkv.weight"] == "backbone.layers.1.attn.attn.in_proj_weight"
    assert torch.equal(ours["decoder.proj_patch"], state["decode_head.patch_proj.weight"].t())
    assert our_key("backbone.ln1.bias") == "encoder.norm.bias" and our_key("backbone.head.weight") is None
    linear = torch.load(GOLDEN / "linear" / "checkpoint.pth", weights_only=True)["state_dict"]
    assert to_ours(linear, Path("x")).state["decoder.head.weight"].shape == (150, 64)  # a 1x1 convolution


# ----------------------------------------------------------------------------- the golden set, every route


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mmseg_onnx")
    for name in ("mask", "linear"):
        proc = run_script("segmenter_pytorch2onnx.py", "-c", GOLDEN / name / "checkpoint.pth", "-o",
                          folder / f"{name}.onnx")
        assert proc.returncode == 0 and "mmseg format" in proc.stdout and "dynamic" in proc.stdout, proc.stderr
    return folder


@pytest.mark.parametrize("name", ["mask", "linear"])
@pytest.mark.parametrize("device", ["cpu", "openvino"])
def test_one_window_on_the_engines(exported, name, device):
    """The exported graph on a CPU engine: the golden window's logits within 1e-4 of mmseg's encode_decode."""
    from segmenter.engines.backends import open_engine

    golden = np.load(GOLDEN / name / "golden.npz")
    engine = open_engine(exported / f"{name}.onnx", device, "fp32")
    assert engine.dynamic and engine.input_hw == (512, 512)
    for k in (0, 1):
        logits = engine(golden[f"input_window{k}"])
        rows, cols = golden[f"window_logits{k}_rows"], golden[f"window_logits{k}_cols"]
        assert np.abs(logits[:, :, rows][:, :, :, cols] - golden[f"window_logits{k}"]).max() < 1e-4
    wide = np.load(REFS / "single.npz")  # a window below the crop: 307x512, as mmseg cuts it
    logits = engine(wide["image2_window_input"])
    rows, cols = wide["image2_window_rows"], wide["image2_window_cols"]
    if name == "mask":
        assert logits.shape == (1, 150, 307, 512)
        assert np.abs(logits[:, :, rows][:, :, :, cols] - wide["image2_window_logits"]).max() < 1e-4


@pytest.mark.parametrize("name", ["mask", "linear"])
def test_streaming_route_equals_mmseg(name, tmp_path):
    proc = run_script("segmenter_eval.py", "--model", GOLDEN / name / "checkpoint.pth", "--data-root", GOLDEN,
                      "--metrics-path", tmp_path / "m.yaml", "--pred-dir", tmp_path / "pred", "--device", "openvino",
                      "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    ours, reference = yaml.safe_load((tmp_path / "m.yaml").read_text()), expected(name)
    assert_metrics(ours, reference)
    assert ours["cat_iou"] == [pytest.approx(float("nan") if v is None else v, nan_ok=True, abs=0.011)
                               for v in reference["per_class_iou"]]
    assert list(ours["per_class_iou"])[7] == "bed "  # the checkpoint's own class names
    golden = np.load(GOLDEN / name / "golden.npz")
    model = open_model(GOLDEN / name / "checkpoint.pth", device="openvino", precision="fp32", log=QUIET)
    for k in (0, 1):
        image = GOLDEN / "ADEChallengeData2016" / "images" / "validation" / str(golden[f"image{k}_name"])
        assert_image(model, image, tmp_path / "pred" / "labels", golden[f"pred{k}"], golden[f"logits{k}"],
                     golden[f"logits{k}_rows"], golden[f"logits{k}_cols"])


@pytest.mark.parametrize("name", ["mask", "linear"])
def test_file_route_equals_mmseg(exported, tmp_path, name):
    """Export, preprocess with the config file, infer, postprocess: mmseg's metrics, windows below the crop too
    (the mask model on the golden images and the wide one; the linear model on the golden images)."""
    data = REFS if name == "mask" else GOLDEN
    for args in (("segmenter_preprocess.py", "--cfg-path", GOLDEN / name / "config.py", "--data-root", data,
                  "--bin-dir", tmp_path / "bins", "--gt-path", tmp_path / "gt.txt"),
                 ("segmenter_infer.py", "--model", exported / f"{name}.onnx", "--input", tmp_path / "bins", "--output",
                  tmp_path / "result", "--output_dirname", "bs2", "--batchsize", 2),
                 ("segmenter_postprocess.py", "--result-dir", tmp_path / "result" / "bs2", "--gt-path",
                  tmp_path / "gt.txt", "--metrics-path", tmp_path / "m.yaml", "--pred-dir", tmp_path / "pred")):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
    ours = yaml.safe_load((tmp_path / "m.yaml").read_text())
    if name == "mask":
        assert len(list((tmp_path / "bins").glob("ADE_val_00000103_*.npy"))) == 5  # 307x512: not the crop's size
        assert_metrics(ours, json.loads((REFS / "single.json").read_text()))
        references = np.load(REFS / "single.npz")
        pairs = [(references[f"image{k}_name"], references[f"image{k}_pred"]) for k in range(3)]
    else:
        assert_metrics(ours, expected(name))
        golden = np.load(GOLDEN / name / "golden.npz")
        pairs = [(golden[f"image{k}_name"], golden[f"pred{k}"]) for k in range(2)]
    for image, reference in pairs:
        labels = cv2.imread(str(tmp_path / "pred" / "labels" / f"{Path(str(image)).stem}.png"), cv2.IMREAD_UNCHANGED)
        assert (labels != reference).sum() <= 2  # near-tied pixels (test_streaming_route_equals_mmseg checks them)


def test_windows_smaller_than_the_crop(tmp_path):
    """The wide image: resized to 307x2048, five windows of 307x512 (not raised, not padded to the crop)."""
    from segmenter.data.plan import ImagePlan

    model = open_model(GOLDEN / "mask" / "checkpoint.pth", device="cpu", precision="fp32", log=QUIET)
    single = np.load(REFS / "single.npz")
    image = cv2.imread(str(REFS / "ADEChallengeData2016" / "images" / "validation" / str(single["image2_name"])))
    plan = ImagePlan.for_image("w", "w", "", "", image.shape[:2], model.cfg)
    view = plan.views[0]
    assert view.resized_hw == tuple(single["image2_resized_hw"][:1]) + (2048,) and view.canvas_hw == view.resized_hw
    assert [view.window_hw] * len(view.anchors) == [tuple(hw) for hw in single["image2_window_hw"]]
    labels, scores = model.segment(image, scores=True)
    assert_labels(labels, scores, single["image2_pred"])
    rows, cols = single["image2_rows"], single["image2_cols"]
    assert np.abs(scores[:, rows][:, :, cols] - single["image2_logits"]).max() < 1e-4
    result = evaluate(model, REFS)
    assert_metrics(result.metrics, json.loads((REFS / "single.json").read_text()))


def test_multiscale_flip_equals_mmseg_tta(tmp_path):
    """--multiscale takes the config's tta_pipeline: ratios of the image itself, each flipped; mean softmax."""
    proc = run_script("segmenter_eval.py", "--model", GOLDEN / "mask" / "checkpoint.pth", "--data-root", REFS,
                      "--metrics-path", tmp_path / "m.yaml", "--pred-dir", tmp_path / "pred", "--multiscale",
                      "--device", "cpu", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert "12 views: scales of the image 0.5 0.75 1 1.25 1.5 1.75 each also flipped" in proc.stdout
    ours = yaml.safe_load((tmp_path / "m.yaml").read_text())
    assert ours["inference"] == "multi_scale"
    assert_metrics(ours, json.loads((REFS / "tta.json").read_text()))
    tta = np.load(REFS / "tta.npz")
    model = open_model(GOLDEN / "mask" / "checkpoint.pth", device="cpu", precision="fp32", views="multiscale",
                       log=QUIET)
    for k in range(3):
        image = REFS / "ADEChallengeData2016" / "images" / "validation" / str(tta[f"image{k}_name"])
        assert_image(model, image, tmp_path / "pred" / "labels", tta[f"image{k}_pred"], tta[f"image{k}_probs"],
                     tta[f"image{k}_rows"], tta[f"image{k}_cols"])


def test_a_checkpoint_written_by_mmengines_runner(tmp_path):
    """meta['cfg'], dataset_meta, message_hub (HistoryBuffer with numpy arrays), optimizer: read without mmengine."""
    model = open_model(REFS / "runner" / "checkpoint.pth", device="cpu", precision="fp32", log=QUIET)
    assert model.variant.model.d_model == 32 and model.classes[0] == "wall"
    runner = np.load(REFS / "runner" / "golden.npz")
    for k in (0, 1):
        image = GOLDEN / "ADEChallengeData2016" / "images" / "validation" / str(runner[f"image{k}_name"])
        labels, scores = model.segment(cv2.imread(str(image)), scores=True)
        assert_labels(labels, scores, runner[f"image{k}_pred"])
        rows, cols = runner[f"image{k}_rows"], runner[f"image{k}_cols"]
        assert np.abs(scores[:, rows][:, :, cols] - runner[f"image{k}_logits"]).max() < 1e-4
    assert_metrics(evaluate(model, GOLDEN).metrics, json.loads((REFS / "runner" / "metrics.json").read_text()))


@pytest.mark.parametrize("config", ["dumped", "base"])
def test_config_given_by_cfg_path(config, tmp_path):
    """The golden checkpoint with its config given as a file: dumped, or a zoo config with _base_ files."""
    path = GOLDEN / "mask" / "config.py" if config == "dumped" else REFS / "configs" / "tiny" / "mask.py"
    bare = tmp_path / "bare.pth"  # the checkpoint without its meta config: the file must come from --cfg-path
    ckpt = torch.load(GOLDEN / "mask" / "checkpoint.pth", weights_only=True)
    torch.save({"meta": {"CLASSES": ckpt["meta"]["CLASSES"]}, "state_dict": ckpt["state_dict"]}, bare)
    proc = run_script("segmenter_eval.py", "--model", bare, "--cfg-path", path, "--data-root", GOLDEN,
                      "--metrics-path", tmp_path / "m.yaml", "--device", "cpu", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert_metrics(yaml.safe_load((tmp_path / "m.yaml").read_text()), expected("mask"))


@pytest.mark.parametrize("name", ["mask", "linear"])
def test_predict_with_the_checkpoints_names(tmp_path, name):
    images = GOLDEN / "ADEChallengeData2016" / "images" / "validation"
    proc = run_script("segmenter_predict.py", "--model", GOLDEN / name / "checkpoint.pth", "--input", images,
                      "--output-dir", tmp_path / "out", "--device", "cpu", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    golden = np.load(GOLDEN / name / "golden.npz")
    for k in (0, 1):
        stem = Path(str(golden[f"image{k}_name"])).stem
        labels = cv2.imread(str(tmp_path / "out" / f"{stem}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert (labels != golden[f"pred{k}"]).sum() <= 2
        overlay = cv2.imread(str(tmp_path / "out" / f"{stem}_overlay.png"))
        assert overlay.shape[0] > labels.shape[0] + 60  # the legend of the ADE20K classes below the panels


def test_the_legend_names_the_checkpoints_classes():
    from segmenter.data.settings import resolve_dataset

    variant = describe_model(GOLDEN / "mask" / "checkpoint.pth")
    spec = resolve_dataset(variant)
    assert spec.name == "ade20k" and spec.classes == variant.classes and spec.classes[7] == "bed "
    assert spec.palette == variant.palette


def test_ray_and_resume_with_an_mmseg_model(tmp_path):
    pytest.importorskip("ray")
    args = ("segmenter_eval.py", "--model", GOLDEN / "mask" / "checkpoint.pth", "--data-root", GOLDEN,
            "--device", "cpu", "--precision", "fp32")
    proc = run_script(*args, "--metrics-path", tmp_path / "ray.yaml", "--ray")
    assert proc.returncode == 0, proc.stderr
    assert_metrics(yaml.safe_load((tmp_path / "ray.yaml").read_text()), expected("mask"))
    proc = run_script(*args, "--metrics-path", tmp_path / "m.yaml", "--resume")
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "m.yaml").unlink()
    other = tmp_path / "other.py"  # another config of the same model: the journal's fingerprint tells
    text = (GOLDEN / "mask" / "config.py").read_text()
    stride = "stride=(\n        {0},\n        {0},\n    )"
    other.write_text(text.replace(stride.format(480), stride.format(448)))
    assert "448" in other.read_text()
    proc = run_script(*args, "--metrics-path", tmp_path / "m.yaml", "--resume", "--cfg-path", other)
    assert proc.returncode == 2 and "journal is of another evaluation" in proc.stderr
    assert "description_sha256" in proc.stderr and not (tmp_path / "m.yaml").exists()


def test_convert_to_the_release_format_and_back(tmp_path):
    """The linear model (the release format fixes the mask decoder's heads at width // 64: the tiny mask model's
    two heads of 32 cannot be held, and are refused)."""
    from segmenter.model.loading import load_model

    proc = run_script("tools/convert_checkpoint.py", "--checkpoint", GOLDEN / "linear" / "checkpoint.pth",
                      "--out-dir", tmp_path / "release")
    assert proc.returncode == 0, proc.stderr
    assert "cannot be carried over" in proc.stdout and "eps 1e-06" in proc.stdout
    difference = float(proc.stdout.split("random 512x512 window: ")[1].split()[0])
    assert 0 < difference < 0.05  # eps 1e-6 -> 1e-5: close, not equal; the note says why
    converted = describe_model(tmp_path / "release" / "checkpoint.pth")
    assert converted.format == "upstream" and converted.model.d_model == 64 and converted.n_cls == 150
    assert converted.dataset == "ade20k" and converted.window_size == 512
    back = run_script("tools/convert_checkpoint.py", "--checkpoint", tmp_path / "release" / "checkpoint.pth",
                      "--out-dir", tmp_path / "mmseg")
    assert back.returncode == 0, back.stderr
    assert describe_model(tmp_path / "mmseg" / "checkpoint.pth").format == "mmseg"
    assert float(back.stdout.split("random 512x512 window: ")[1].split()[0]) < 1e-5  # the same model
    a, _ = load_model(tmp_path / "release" / "checkpoint.pth")
    b, _ = load_model(tmp_path / "mmseg" / "checkpoint.pth")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-5)
    refused = run_script("tools/convert_checkpoint.py", "--checkpoint", GOLDEN / "mask" / "checkpoint.pth",
                         "--out-dir", tmp_path / "mask")
    assert refused.returncode == 2 and "2 heads" in refused.stderr and "cannot hold" in refused.stderr


def test_the_pytorch_engine_runs_the_checkpoint_itself():
    """torch-cuda's engine (here on the CPU) takes an MMSegmentation checkpoint with nothing beside it."""
    from segmenter.engines.torch_engine import TorchEngine

    engine = TorchEngine(GOLDEN / "mask" / "checkpoint.pth", None, "cpu", "fp32")
    golden = np.load(GOLDEN / "mask" / "golden.npz")
    logits = engine(golden["input_window0"])
    rows, cols = golden["window_logits0_rows"], golden["window_logits0_cols"]
    assert engine.dynamic and np.abs(logits[:, :, rows][:, :, :, cols] - golden["window_logits0"]).max() < 1e-4
