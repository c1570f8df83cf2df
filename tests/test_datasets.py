"""The three data sets on both routes, and multi-scale + flip against a plain re-implementation of upstream's."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import plain_miou, read_metrics, run_script
from PIL import Image

from segmenter.data.datasets import DATASETS, dataset_spec
from segmenter.data.images import view_windows
from segmenter.data.plan import MULTISCALE_RATIOS, ImagePlan, WindowConfig, make_views
from segmenter.demo.checkpoints import write_random_checkpoint
from segmenter.demo.writers import write_split
from segmenter.evaluation.scoring import ImageMerger
from segmenter.model.loading import load_model
from segmenter.model.variant import NORMALIZATIONS

# ----------------------------------------------------------------------------- multi-scale parity


def plain_multiscale_probs(model, bgr: np.ndarray, S: int, ratio_max: int, window: int, stride: int, norm: str,
                           ratios, flips) -> torch.Tensor:
    """SPEC section 9, written plainly: per view resize to fit, normalize, flip, raise, slide, merge, resize to the
    original size, softmax, flip back; the mean over views. (K, H, W) probabilities."""
    h, w = bgr.shape[:2]
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATIONS[norm])
    total = 0
    for ratio in ratios:
        for flip in flips:
            long_box, short_box = int(ratio * ratio_max * S), int(ratio * S)
            s = min(long_box / max(h, w), short_box / min(h, w))
            nh, nw = int(h * s + 0.5), int(w * s + 0.5)
            img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else bgr
            x = (torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1).float() - mean) / std
            if flip:
                x = torch.flip(x, dims=[2])
            x = x[None]
            if min(nh, nw) < window:
                size = (window, int(nw / nh * window)) if nh < nw else (int(nh / nw * window), window)
                x = F.interpolate(x, size, mode="bilinear", align_corners=False)
            H, W = x.shape[2:]
            logit, count = torch.zeros(model.n_cls, H, W), torch.zeros(1, H, W)
            tops = [a for a in range(0, H, stride) if a < H - window] + [H - window]
            lefts = [a for a in range(0, W, stride) if a < W - window] + [W - window]
            for top in tops:
                for left in lefts:
                    with torch.no_grad():
                        logit[:, top:top + window, left:left + window] += \
                            model(x[:, :, top:top + window, left:left + window])[0]
                    count[:, top:top + window, left:left + window] += 1
            logit = F.interpolate((logit / count)[None], (h, w), mode="bilinear", align_corners=False)[0]
            probs = F.softmax(logit, 0)
            total = total + (torch.flip(probs, dims=[2]) if flip else probs)
    return total / (len(ratios) * len(flips))


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    model, variant = load_model(write_random_checkpoint(tmp_path_factory.mktemp("ms"), "tiny", seed=11))
    return model, variant


@pytest.mark.parametrize("S, hw, raised", [(48, (100, 200), True), (160, (200, 300), False)])
def test_multiscale_flip_matches_plain_upstream(small_model, S, hw, raised):
    model, variant = small_model
    rng = np.random.default_rng(S)
    small = rng.integers(0, 255, (hw[0] // 8, hw[1] // 8, 3)).astype(np.uint8)
    bgr = cv2.resize(small, hw[::-1], interpolation=cv2.INTER_CUBIC)  # smooth, like a photo
    cfg = WindowConfig(S, 64, 32, variant.normalization, 2, make_views(list(MULTISCALE_RATIOS), flip=True))
    plan = ImagePlan.for_image("x.png", "x", "", "", hw, cfg)
    assert any(min(v.resized_hw) < 64 for v in plan.views) == raised  # small ratios need the raise, or not
    merger = ImageMerger(plan, model.n_cls, 64)
    k = 0
    for windows in view_windows(bgr, plan, cfg):
        with torch.no_grad():
            for logits in model(torch.from_numpy(windows)).numpy():
                merger.add(k, logits)
                k += 1
    assert k == plan.n_windows and len(plan.views) == 12
    reference = plain_multiscale_probs(model, bgr, S, 2, 64, 32, variant.normalization, MULTISCALE_RATIOS,
                                       (False, True)).numpy()
    ours = merger.probabilities()
    assert np.abs(ours - reference).max() <= 1e-5
    assert (merger.labels() == reference.argmax(0)).all()


# ----------------------------------------------------------------------------- each data set, both routes


def plain_train_ids(dataset: str, path: str) -> np.ndarray:
    """Each data set's label convention, written plainly from SPEC section 8."""
    stored = np.asarray(Image.open(path)).astype(np.int64)
    if dataset == "ade20k":
        return np.where(stored == 0, 255, stored - 1)
    return stored


@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("views", [(), ("--scales", 0.75, 1.25, "--flip")], ids=["single", "multi"])
def test_dataset_on_both_routes(tmp_path, dataset, views):
    spec = dataset_spec(dataset)
    steps = [("tools/make_dataset.py", "--data-root", tmp_path / "data", "--dataset", dataset, "--n-images", 3,
              "--size", 80, 120, "--seed", 4),
             ("tools/make_random_checkpoint.py", "--out-dir", tmp_path / "model", "--dataset", dataset,
              "--im-size", 48, "--seed", 5),
             ("segmenter_pytorch2onnx.py", "-c", tmp_path / "model" / "checkpoint.pth", "-o", tmp_path / "m.onnx"),
             ("segmenter_preprocess.py", "--cfg-path", tmp_path / "model" / "variant.yml", "--data-root",
              tmp_path / "data", "--bin-dir", tmp_path / "bins", "--gt-path", tmp_path / "gt.txt", *views),
             ("segmenter_infer.py", "--model", tmp_path / "m.onnx", "--input", tmp_path / "bins", "--output",
              tmp_path / "result", "--output_dirname", "bs2", "--batchsize", 2),
             ("segmenter_postprocess.py", "--result-dir", tmp_path / "result" / "bs2", "--gt-path", tmp_path / "gt.txt",
              "--metrics-path", tmp_path / "files.yaml", "--pred-dir", tmp_path / "pred_files"),
             ("segmenter_eval.py", "--model", tmp_path / "m.onnx", "--cfg-path", tmp_path / "model" / "variant.yml",
              "--data-root", tmp_path / "data", "--metrics-path", tmp_path / "stream.yaml", "--pred-dir",
              tmp_path / "pred_stream", "--device", "cpu", "--precision", "fp32", "--batch-size", 3, *views)]
    for step in steps:
        proc = run_script(*step)
        assert proc.returncode == 0, (step[0], proc.stderr)
    files = read_metrics(tmp_path / "files.yaml")
    assert files == read_metrics(tmp_path / "stream.yaml")
    assert files["dataset"] == dataset and files["inference"] == ("multi_scale" if views else "single_scale")
    assert list(files["per_class_iou"]) == list(spec.classes) and len(files["cat_iou"]) == spec.n_cls
    assert ("cat_iou_categories" in files) == (dataset == "cityscapes")
    manifest = json.loads((tmp_path / "gt.json").read_text())
    assert manifest["dataset"] == dataset and len(manifest["views"]) == (4 if views else 1)
    gts, preds = [], []
    for image in manifest["images"]:
        labels = cv2.imread(str(tmp_path / "pred_files" / "labels" / f"{image['prefix']}.png"), cv2.IMREAD_UNCHANGED)
        assert (labels == cv2.imread(str(tmp_path / "pred_stream" / "labels" / f"{image['prefix']}.png"),
                                     cv2.IMREAD_UNCHANGED)).all()
        gts.append(plain_train_ids(dataset, image["gt_path"]))
        preds.append(labels)
    assert files["mean_iou"] == pytest.approx(plain_miou(gts, preds, spec.n_cls), abs=0.006)
    if dataset == "ade20k":  # the shift matters: without it the metric differs
        raw = [np.asarray(Image.open(i["gt_path"])) for i in manifest["images"]]
        assert max(int(r.max()) for r in raw) <= 150 and any((r == 0).any() for r in raw)
        unshifted = plain_miou([np.where(r == 0, 255, r) for r in raw], preds, spec.n_cls)
        assert abs(unshifted - files["mean_iou"]) > 0.01


def test_generated_layouts(tmp_path):
    """Each generator writes its data set's layout, which the data set's listing then reads."""
    for name, spec in DATASETS.items():
        paths = write_split(tmp_path / name, spec.default_split, 2, (40, 60), seed=1, dataset=name)
        samples = spec.samples(tmp_path / name)
        assert [s.image_path for s in samples] == sorted(p.resolve() for p in paths)
        for sample in samples:
            labels = spec.read_labels(sample.gt_path, (40, 60))
            assert labels.dtype == np.uint8 and set(np.unique(labels)) <= set(range(spec.n_cls)) | {255}
    assert (tmp_path / "ade20k" / "ADEChallengeData2016" / "annotations" / "validation").is_dir()
    listing = tmp_path / "pascal_context" / "VOCdevkit" / "VOC2010" / "ImageSets" / "SegmentationContext" / "val.txt"
    assert listing.read_text().split() == ["2008_000000", "2008_000001"]
    assert Path(tmp_path / "cityscapes" / "cityscapes" / "gtFine" / "val" / "frankfurt").is_dir()
