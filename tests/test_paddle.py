"""PaddleSeg's Segmenter checkpoints and configs on every route, against PaddleSeg 2.8.0's own outputs
(tests/data/golden/paddle_tiny: two tiny models, their labels, subsampled merged logits, flip labels, windows and
metrics on two ADE20K-layout images), and the format table as the one place that knows formats.
"""
from __future__ import annotations

import ast
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from catalogue import Catalogue
from conftest import ROOT, run_script

from segmenter.api import evaluate, open_model
from segmenter.data.plan import ImagePlan, make_views
from segmenter.evaluation.metrics import iou_from_confusion
from segmenter.model.loading import describe_model, load_model

GOLDEN = ROOT / "tests" / "data" / "golden" / "paddle_tiny"
MODELS = {"mask": GOLDEN / "p_mask" / "model.pdparams", "linear": GOLDEN / "p_linear" / "model.pdparams"}
CONFIGS = {head: GOLDEN / "configs" / "segmenter" / f"segmenter_vit_tiny4_{head}_ade20k_512x512_160k.yml"
           for head in MODELS}
STEMS = ("ADE_val_00000101", "ADE_val_00000102")
QUIET = lambda *_: None  # noqa: E731


def reference(head: str, kind: str, stem: str) -> np.ndarray:
    return np.load(GOLDEN / f"p_{head}" / kind / f"{stem}.npy")


def expected(head: str) -> dict:
    return yaml.safe_load((GOLDEN / f"p_{head}" / "expected.yml").read_text())


def image(stem: str) -> np.ndarray:
    return cv2.imread(str(GOLDEN / "ADEChallengeData2016" / "images" / "validation" / f"{stem}.jpg"))


@pytest.mark.parametrize("head", MODELS)
def test_the_description_of_the_config_chain(head):
    variant = describe_model(MODELS[head], CONFIGS[head])
    cfg = variant.model
    assert variant.format == "paddle" and variant.dataset == "ADE20K" and variant.normalization == "vit"
    assert (variant.image_size, variant.window_size, variant.window_stride) == (512, 512, 512)
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_cls, cfg.decoder) == (
        192, 4, 3, 150, "mask_transformer" if head == "mask" else "linear")
    assert (cfg.norm_eps, cfg.patch_bias, cfg.qkv_bias, cfg.pad_to_patch, cfg.pos_embed_mode) == (
        1e-5, True, True, False, "bicubic")
    if head == "mask":
        assert (cfg.decoder_layers, cfg.decoder_heads, cfg.decoder_qkv_bias) == (2, 3, False)
    assert [p.name for p in variant.sources][-1] == "ade20k.yml"  # the _base_ chain, read and recorded


@pytest.mark.parametrize("head", MODELS)
def test_windows_labels_and_logits_equal_paddleseg(head):
    model = open_model(MODELS[head], CONFIGS[head], device="cpu", precision="fp32", log=QUIET)
    for stem, details in expected(head)["per_image"].items():
        plan = ImagePlan.for_image(stem, stem, "", "", tuple(details["ori_shape"]), model.cfg)
        view = plan.views[0]
        assert list(view.resized_hw) == details["resized_shape"]
        windows = [[y, x, y + h, x + w] for (y, x), (h, w) in zip(view.anchors, [view.window_hw] * len(view.anchors))]
        assert sorted(windows) == sorted(details["windows"])
        labels, scores = model.segment(image(stem), scores=True)
        assert np.mean(labels == reference(head, "pred", stem)) >= 0.9999
        logits = reference(head, "logits", stem).astype(np.float32)
        spacing = np.spacing(np.abs(logits).astype(np.float16)).astype(np.float32)  # float16 rounding, per value
        assert (np.abs(scores[:, ::16, ::16] - logits) <= spacing + 1e-5).all()  # one float16 step (and float32 noise)


@pytest.mark.parametrize("head", MODELS)
def test_flip_evaluation_and_both_mious_equal_paddleseg(head):
    """`--flip`: PaddleSeg's aug_inference averages the two views' raw logits (2.8.0's code; a softmax first would
    differ: the golden's per-class IoU tells them apart). The metrics both ways: PaddleSeg's own mean (a class absent
    from prediction and ground truth counts 0) and the mean over the classes in the ground truth."""
    for flip, key in ((False, "single_scale"), (True, "flip")):
        model = open_model(MODELS[head], CONFIGS[head], device="cpu", precision="fp32", views=make_views(flip=flip),
                           log=QUIET)
        if flip:
            for stem in STEMS:
                assert np.mean(model.segment(image(stem)) == reference(head, "flip_pred", stem)) >= 0.9999
        result = evaluate(model, GOLDEN)
        theirs = expected(head)[key]
        iou = 100 * iou_from_confusion(result.confusion)
        reference_iou = np.array([np.nan if v is None else v for v in theirs["per_class_iou"]])
        assert (np.isnan(iou) == np.isnan(reference_iou)).all()
        assert np.nanmax(np.abs(iou - reference_iou)) < 1e-4  # PaddleSeg's figures have 4 decimals
        assert result.metrics["paddleseg_mean_iou"] == pytest.approx(theirs["paddleseg_miou"], abs=1e-9)
        in_ground_truth = result.confusion.sum(1) > 0
        assert round(float(np.mean(iou[in_ground_truth])), 2) == pytest.approx(theirs["miou_classes_present"])
        assert result.metrics["pixel_accuracy"] == pytest.approx(theirs["aAcc"], abs=1e-9)


def test_the_file_route_and_predict_give_paddlesegs_labels(tmp_path):
    head = "mask"
    w = tmp_path
    steps = [("segmenter_pytorch2onnx.py", "-c", MODELS[head], "--cfg-path", CONFIGS[head], "-o", w / "m.onnx"),
             ("segmenter_preprocess.py", "--cfg-path", CONFIGS[head], "--data-root", GOLDEN, "--bin-dir", w / "bins",
              "--gt-path", w / "gt.txt"),
             ("segmenter_infer.py", "--model", w / "m.onnx", "--input", w / "bins", "--output", w / "result",
              "--output_dirname", "bs2", "--batchsize", 2),
             ("segmenter_postprocess.py", "--result-dir", w / "result" / "bs2", "--gt-path", w / "gt.txt",
              "--metrics-path", w / "metrics.yaml", "--pred-dir", w / "pred"),
             ("segmenter_predict.py", "--model", MODELS[head], "--cfg-path", CONFIGS[head], "--input",
              GOLDEN / "ADEChallengeData2016" / "images", "--output-dir", w / "predicted", "--device", "cpu",
              "--precision", "fp32", "--save", "labels")]
    for step in steps:
        proc = run_script(*step)
        assert proc.returncode == 0, proc.stderr
    for stem in STEMS:
        for saved in (w / "pred" / "labels" / f"{stem}.png", w / "predicted" / "validation" / f"{stem}_labels.png"):
            labels = cv2.imread(str(saved), cv2.IMREAD_UNCHANGED)
            assert np.mean(labels == reference(head, "pred", stem)) >= 0.9999, saved
    metrics = yaml.safe_load((w / "metrics.yaml").read_text())
    assert metrics["paddleseg_mean_iou"] == pytest.approx(expected(head)["single_scale"]["paddleseg_miou"], abs=1e-9)


def test_converting_to_the_other_formats_keeps_the_logits(tmp_path):
    for target in ("upstream", "mmseg"):
        proc = run_script("tools/convert_checkpoint.py", "--checkpoint", MODELS["mask"], "--cfg-path",
                          CONFIGS["mask"], "--out-dir", tmp_path / target, "--to", target)
        assert proc.returncode == 0, proc.stderr
        diff = float(proc.stdout.rsplit(":", 1)[1])
        assert diff < 1e-4, proc.stdout
        assert describe_model(tmp_path / target / "checkpoint.pth").format == target


# ----------------------------------------------------------------------------- the bad-input catalogue

catalogue = Catalogue()
case = catalogue.case
UNWRITTEN = ("metrics.yaml", "pred")


def paddle_eval(w: Path, model: Path = MODELS["mask"], cfg: Path | None = CONFIGS["mask"]):
    return run_script("segmenter_eval.py", "--model", model, *(("--cfg-path", cfg) if cfg else ()), "--data-root",
                      GOLDEN, "--metrics-path", w / "metrics.yaml", "--pred-dir", w / "pred", "--device", "cpu",
                      "--precision", "fp32")


@case("{w}/evil.pdparams: refused", "posix.system", "numpy's array reconstruction", unwritten=UNWRITTEN + ("ran",))
def pdparams_with_a_foreign_global(w):
    import os

    class Runs:
        def __reduce__(self):
            return os.system, (f"touch {w}/ran",)

    weights = pickle.loads(MODELS["mask"].read_bytes())
    weights["backbone.cls_token"] = Runs()
    (w / "evil.pdparams").write_bytes(pickle.dumps(weights, protocol=4))
    return paddle_eval(w, w / "evil.pdparams")


@case("{w}/p.pdparams: missing key 'head.head.weight'", "match this checkpoint", unwritten=UNWRITTEN)
def pdparams_with_the_config_of_the_other_head(w):
    shutil.copy(MODELS["mask"], w / "p.pdparams")
    return paddle_eval(w, w / "p.pdparams", CONFIGS["linear"])


@case("p_linear/model.pdparams: key 'backbone.cls_token' has shape (1, 1, 192) in the checkpoint but (1, 1, 240)",
      unwritten=UNWRITTEN)
def pdparams_with_a_config_of_another_width(w):
    text = CONFIGS["linear"].read_text().replace("embed_dim: 192", "embed_dim: 240").replace(
        "'../_base_/ade20k.yml'", f"'{GOLDEN}/configs/_base_/ade20k.yml'")
    (w / "wide.yml").write_text(text)
    return paddle_eval(w, MODELS["linear"], w / "wide.yml")


@case("{w}/seg.yml: model.type='SegFormer' is not supported", "LinearSegmenter, MaskSegmenter", unwritten=UNWRITTEN)
def config_of_another_model_type(w):
    (w / "seg.yml").write_text(CONFIGS["linear"].read_text().replace("LinearSegmenter", "SegFormer").replace(
        "'../_base_/ade20k.yml'", f"'{GOLDEN}/configs/_base_/ade20k.yml'"))
    return paddle_eval(w, MODELS["linear"], w / "seg.yml")


@case("{w}/seg.yml: model.backbone.use_rel_pos is a setting this reader does not know", unwritten=UNWRITTEN)
def config_with_a_setting_it_does_not_know(w):
    (w / "seg.yml").write_text(CONFIGS["linear"].read_text().replace("final_norm: True", "final_norm: True\n    "
                                                                      "use_rel_pos: True").replace(
        "'../_base_/ade20k.yml'", f"'{GOLDEN}/configs/_base_/ade20k.yml'"))
    return paddle_eval(w, MODELS["linear"], w / "seg.yml")


@case("{w}/nowhere.yml: config file not found", "the _base_ of {w}/child.yml", unwritten=UNWRITTEN)
def config_base_pointing_nowhere(w):
    (w / "child.yml").write_text("_base_: nowhere.yml\nmodel:\n  type: MaskSegmenter\n")
    return paddle_eval(w, MODELS["mask"], w / "child.yml")


@case("_base_ files refer to each other in a loop", unwritten=UNWRITTEN)
def config_bases_in_a_loop(w):
    (w / "a.yml").write_text("_base_: b.yml\nmodel:\n  type: MaskSegmenter\n")
    (w / "b.yml").write_text("_base_: a.yml\n")
    return paddle_eval(w, MODELS["mask"], w / "a.yml")


@case("a PaddleSeg checkpoint holds no config", "give the model's PaddleSeg YAML config", unwritten=UNWRITTEN)
def pdparams_without_a_config(w):
    return paddle_eval(w, MODELS["mask"], None)


test_bad_input = catalogue.test()


# ----------------------------------------------------------------------------- the format table


READERS = ("torch.load", "pickle.load", "pickle.loads", "pickle.Unpickler")


def _reads_checkpoints(tree: ast.AST) -> list[int]:
    """Lines that call torch.load or pickle's loaders, or subclass pickle's Unpickler."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in READERS:
            found.append(node.lineno)
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b) in READERS for b in node.bases):
            found.append(node.lineno)
    return found


def _format_names_compared(tree: ast.AST) -> list[int]:
    """Lines that compare a value with a format's name or a checkpoint file suffix: asking 'which format is this'
    outside the table."""
    from segmenter.model.formats import FORMATS

    names = set(FORMATS) | {".pth", ".pt", ".pdparams", ".ckpt"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operand in operands:
                values = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                    found.append(node.lineno)
    return found


def test_the_format_table_is_the_only_place_that_knows_formats():
    """Checkpoints are read only in model/checkpoint.py (the containers, which model/loading.py calls with the table's
    formats); no module outside model/formats/ asks which format a file or description is by a format's name or a
    file suffix. Scanned: the package, the scripts and the tools (but the generator of MMSegmentation's references,
    which runs MMSegmentation itself)."""
    sources = [*(ROOT / "segmenter").rglob("*.py"), *ROOT.glob("*.py"), *(ROOT / "tools").glob("*.py")]
    readers, askers = [], []
    for path in sorted(sources):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "tools/make_mmseg_references.py":
            continue
        tree = ast.parse(path.read_text())
        if rel != "segmenter/model/checkpoint.py":
            readers += [f"{rel}:{line}" for line in _reads_checkpoints(tree)]
        if not rel.startswith("segmenter/model/formats/"):
            askers += [f"{rel}:{line}" for line in _format_names_compared(tree)]
    assert not readers, f"checkpoints read outside model/checkpoint.py: {readers}"
    assert not askers, f"formats asked by name outside model/formats/: {askers}"
    probe = ast.parse("if variant.format == 'mmseg' or path.suffix in ('.pth', '.pt'):\n    x = torch.load(path)")
    assert _format_names_compared(probe) == [1, 1] and _reads_checkpoints(probe) == [2]  # the scan finds them


def test_a_pdparams_is_read_without_running_anything_but_numpy(tmp_path):
    weights = pickle.loads(MODELS["linear"].read_bytes())
    weights["extra"] = torch.zeros(2)  # a torch tensor pickles torch's globals: refused by name
    (tmp_path / "t.pdparams").write_bytes(pickle.dumps(weights, protocol=4))
    from segmenter.errors import SegmenterError

    with pytest.raises(SegmenterError, match="reading it would need torch._utils._rebuild_tensor_v2"):
        load_model(tmp_path / "t.pdparams", CONFIGS["linear"])


def test_ray_resume_report_and_auto_take_a_paddleseg_model(tmp_path):
    """The same checkpoint and config on the Ray route with a journal and a report (labels as PaddleSeg's), and with
    the default auto device and precision."""
    pred, metrics = tmp_path / "pred", tmp_path / "metrics.yaml"
    proc = run_script("segmenter_eval.py", "--model", MODELS["mask"], "--cfg-path", CONFIGS["mask"], "--data-root",
                      GOLDEN, "--metrics-path", metrics, "--pred-dir", pred, "--report", tmp_path / "report",
                      "--resume", "--ray", "--device", "cpu", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    for stem in STEMS:
        labels = cv2.imread(str(pred / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert np.mean(labels == reference("mask", "pred", stem)) >= 0.9999
    assert (tmp_path / "report" / "report.html").is_file() and metrics.with_name("metrics.yaml.journal.jsonl").is_file()
    assert "paddleseg_mean_iou" in yaml.safe_load(metrics.read_text())
    proc = run_script("segmenter_eval.py", "--model", MODELS["mask"], "--cfg-path", CONFIGS["mask"], "--data-root",
                      GOLDEN, "--metrics-path", tmp_path / "auto.yaml", env={"SEGMENTER_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "auto:" in proc.stdout and (tmp_path / "auto.yaml").is_file()
