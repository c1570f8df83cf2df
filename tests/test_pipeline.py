"""The guide's chain end to end (export, preprocess, infer, postprocess) against independent references."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import GOLDEN, GOLDEN_CASES, plain_miou, run_script

from segmenter.data.windows import WindowMerger, cut_windows, window_anchors
from segmenter.demo.writers import write_split
from segmenter.model.loading import load_model
from segmenter.model.variant import NORMALIZATIONS

N_IMAGES = 3
IMAGE_HW = (100, 200)  # resized to fit (2*48, 48), then raised to the 64 window: both resize steps run


# ----------------------------------------------------------------------------- plain references


def reference_labels(model, bgr: np.ndarray, im_size: int, window: int, stride: int, norm: str) -> np.ndarray:
    """Upstream-style evaluation of one image, written plainly: torch resizes, explicit window loops."""
    h, w = bgr.shape[:2]
    s = min(2 * im_size / max(h, w), im_size / min(h, w))
    nh, nw = int(h * s + 0.5), int(w * s + 0.5)
    img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else bgr
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATIONS[norm])
    x = (torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1).float() - mean) / std
    x = x[None]
    if min(nh, nw) < window:
        size = (window, int(nw / nh * window)) if nh < nw else (int(nh / nw * window), window)
        x = F.interpolate(x, size, mode="bilinear")
    H, W = x.shape[2:]
    logit = torch.zeros(model.n_cls, H, W)
    count = torch.zeros(1, H, W)
    for ha in [a for a in range(0, H, stride) if a < H - window] + [H - window]:
        for wa in [a for a in range(0, W, stride) if a < W - window] + [W - window]:
            with torch.no_grad():
                logit[:, ha:ha + window, wa:wa + window] += model(x[:, :, ha:ha + window, wa:wa + window])[0]
            count[:, ha:ha + window, wa:wa + window] += 1
    logit = F.interpolate((logit / count)[None], (h, w), mode="bilinear")[0]
    return F.softmax(logit, 0).argmax(0).numpy()


def official_cityscapes_miou(pred_dir: Path, data_root: Path) -> tuple[float, dict]:
    """csEvalPixelLevelSemanticLabeling on the saved label-id PNGs: (class mIoU %, category IoU %)."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev

    if not hasattr(np, "in1d"):  # the evaluator still calls np.in1d, which NumPy 2.4 removed
        np.in1d = lambda a, b, **kw: np.isin(np.ravel(a), b, **kw)
    gts = sorted((data_root / "cityscapes" / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    args = ev.args
    args.predictionPath, args.predictionWalk = str(pred_dir), None
    args.quiet, args.JSONOutput, args.evalInstLevelScore = True, False, True
    preds = [ev.getPrediction(args, str(g)) for g in gts]
    result = ev.evaluateImgLists(preds, [str(g) for g in gts], args)
    cats = {k: 100 * v for k, v in result["categoryScores"].items() if k != "void"}  # void: ignored
    return 100 * result["averageScoreClasses"], cats


# ----------------------------------------------------------------------------- the chain


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Tiny released-format model, generated data, export, preprocess: the shared start of the chain."""
    root = tmp_path_factory.mktemp("chain")
    run = lambda *a: run_script(*a)  # noqa: E731
    assert run("tools/make_dataset.py", "--data-root", root / "data", "--n-images", N_IMAGES,
               "--size", *IMAGE_HW, "--seed", "3").returncode == 0
    proc = run("tools/make_random_checkpoint.py", "--out-dir", root / "model", "--im-size", "48", "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    proc = run("segmenter_pytorch2onnx.py", "-c", root / "model" / "checkpoint.pth", "-o", root / "model.onnx")
    assert proc.returncode == 0, proc.stderr
    proc = run("segmenter_preprocess.py", "--cfg-path", root / "model" / "variant.yml", "--data-root", root / "data",
               "--bin-dir", root / "bins", "--gt-path", root / "gt_file.txt", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    return root


def infer(chain: Path, batch: int, *extra) -> Path:
    proc = run_script("segmenter_infer.py", "--model", chain / "model.onnx", "--input", chain / "bins",
                      "--output", chain / "result", "--output_dirname", f"result_bs{batch}", "--batchsize", batch,
                      *extra)
    assert proc.returncode == 0, proc.stderr
    return chain / "result" / f"result_bs{batch}"


def postprocess(chain: Path, result_dir: Path, tag: str, *extra):
    metrics = chain / f"metrics_{tag}.yaml"
    proc = run_script("segmenter_postprocess.py", "--result-dir", result_dir, "--gt-path", chain / "gt_file.txt",
                      "--metrics-path", metrics, *extra)
    return proc, metrics


def test_preprocess_layout(chain):
    bins = sorted(p.name for p in (chain / "bins").glob("*.bin"))
    manifest = json.loads((chain / "gt_file.json").read_text())
    assert manifest["window_size"] == 64 and manifest["window_stride"] == 32 and manifest["n_cls"] == 19
    first = manifest["images"][0]
    assert first["original_hw"] == list(IMAGE_HW) and first["prefix"] == first["name"].split(".")[0]
    view = first["views"][0]
    assert view["scale"] == 1.0 and view["flip"] is False
    assert view["resized_hw"] == [48, 96] and view["canvas_hw"] == [64, 128]
    assert view["anchors"] == [[0, 0], [0, 32], [0, 64]]
    assert len(bins) == N_IMAGES * 3 and all(n.endswith(tuple(f"_{k}.bin" for k in range(3))) for n in bins)
    assert all((chain / "bins" / n).stat().st_size == 3 * 64 * 64 * 4 for n in bins)
    lines = (chain / "gt_file.txt").read_text().splitlines()
    assert len(lines) == N_IMAGES
    name, gt = lines[0].split("\t")
    assert name.endswith("_leftImg8bit.png") and gt.endswith("_gtFine_labelTrainIds.png") and Path(gt).is_file()


def test_infer_layout_and_summary(chain):
    out = infer(chain, 4)  # 9 windows: the last batch is padded with 3 repeats
    names = sorted(p.name for p in out.iterdir())
    expected = sorted(p.name.replace(".bin", "_0.bin") for p in (chain / "bins").glob("*.bin"))
    assert names == expected  # one output per input, none for padding
    summary = json.loads((chain / "result" / "result_bs4_summary.json").read_text())
    assert set(summary["NPU_compute_time"]) == {"min", "max", "mean", "median", "percentile(99%)", "count"}
    assert summary["NPU_compute_time"]["count"] == 3
    assert summary["throughput"] == pytest.approx(4000 / summary["NPU_compute_time"]["mean"])
    assert len(summary["filesinfo"]["2"]["infiles"]) == 1
    manifest = json.loads((chain / "gt_file.json").read_text())
    assert summary["layout_fingerprint"] == manifest["fingerprint"]  # passed on from the bin folder


def test_infer_pure_inference_prints_throughput():
    import tempfile

    from segmenter.demo.checkpoints import write_random_checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        write_random_checkpoint(tmp, "tiny")
        proc = run_script("segmenter_pytorch2onnx.py", "-c", f"{tmp}/checkpoint.pth", "-o", f"{tmp}/m.onnx")
        assert proc.returncode == 0, proc.stderr
        proc = run_script("segmenter_infer.py", "--model", f"{tmp}/m.onnx", "--loop", "5", "--batchsize", "3")
    assert proc.returncode == 0, proc.stderr
    last = [line for line in proc.stdout.splitlines() if "throughput" in line][-1]
    assert "batchsize.mean(3)" in last and float(last.rsplit(":", 1)[1]) > 0


def test_chain_metrics_match_independent_references(chain):
    """bs1 and a padded bs4 give the same metrics; they equal a plain PyTorch sliding-window reference
    and the official Cityscapes evaluator on the saved label-id PNGs."""
    proc1, m1 = postprocess(chain, infer(chain, 1), "bs1", "--pred-dir", chain / "pred")
    assert proc1.returncode == 0, proc1.stderr
    proc4, m4 = postprocess(chain, infer(chain, 4), "bs4")
    assert proc4.returncode == 0, proc4.stderr
    s1, s4 = yaml.safe_load(m1.read_text()), yaml.safe_load(m4.read_text())
    assert s1["mean_iou"] == pytest.approx(s4["mean_iou"], abs=0.02)
    assert set(s1) >= {"mean_iou", "pixel_accuracy", "mean_accuracy", "cat_iou", "inference"}
    assert len(s1["cat_iou"]) == 19 and s1["inference"] == "single_scale"
    assert "road" in proc1.stdout and "category IoU" in proc1.stdout  # per-class table with names

    model, variant = load_model(chain / "model" / "checkpoint.pth")
    gts, refs, ours = [], [], []
    for line in (chain / "gt_file.txt").read_text().splitlines():
        name, gt_path = line.split("\t")
        image = next((chain / "data").rglob(name))
        ref = reference_labels(model, cv2.imread(str(image)), 48, 64, 32, variant.normalization)
        gts.append(cv2.imread(gt_path, cv2.IMREAD_UNCHANGED))
        refs.append(ref)
        stem = name.split(".")[0]
        assert (chain / "pred" / "color" / f"{stem}.png").is_file()
        label_ids = cv2.imread(str(chain / "pred" / "labelIds" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        lut = np.full(256, 255, np.uint8)
        lut[[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]] = np.arange(19)
        ours.append(lut[label_ids])
    agreement = np.mean([np.mean(r == o) for r, o in zip(refs, ours)])
    assert agreement > 0.999, agreement
    assert s1["mean_iou"] == pytest.approx(plain_miou(gts, refs, 19), abs=0.05)
    assert s1["mean_iou"] == pytest.approx(plain_miou(gts, ours, 19), abs=0.006)

    official, categories = official_cityscapes_miou(chain / "pred" / "labelIds", chain / "data")
    assert s1["mean_iou"] == pytest.approx(official, abs=0.006)
    ours_cats = yaml.safe_load(m1.read_text())["cat_iou_categories"]
    assert set(categories) == set(ours_cats) and len(categories) == 7
    for name, value in categories.items():
        if not np.isnan(value):
            assert ours_cats[name] == pytest.approx(value, abs=0.006), name


# ----------------------------------------------------------------------------- windows vs the goldens


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_sliding_window_matches_golden(case):
    data = np.load(GOLDEN / case / "golden.npz")
    image, window, stride = data["window_image"][0], int(data["window_size"]), int(data["window_stride"])
    anchors = window_anchors(image.shape[1:], window, stride)
    assert anchors == [tuple(a) for a in data["window_anchors"].tolist()]
    model, _ = load_model(GOLDEN / case / "checkpoint.pth")
    with torch.no_grad():
        logits = model(torch.from_numpy(cut_windows(image, anchors, window))).numpy()
    merger = WindowMerger(model.n_cls, image.shape[1:], anchors, window)
    for k, window_logits in enumerate(logits):
        merger.add(k, window_logits)
    probs = torch.softmax(torch.from_numpy(merger.mean()), 0).numpy()
    assert np.abs(probs - data["merged_probs"]).max() <= 1e-5


def test_window_anchor_rule():
    from segmenter.data.windows import axis_anchors

    assert axis_anchors(1024, 768, 736) == [0, 256]
    assert axis_anchors(2048, 768, 736) == [0, 736, 1280]  # the guide's 6 windows
    assert axis_anchors(2048, 768, 512) == [0, 512, 1024, 1280]  # upstream's 8 windows with 1024 rows
    assert axis_anchors(768, 768, 512) == [0]
    assert axis_anchors(832, 768, 64) == [0, 64]  # L - w a multiple of the stride: no duplicate


def test_fakecity_layout_is_seeded(tmp_path):
    a = write_split(tmp_path / "a", "val", 2, (64, 128), seed=5)
    b = write_split(tmp_path / "b", "val", 2, (64, 128), seed=5)
    assert [p.name for p in a] == ["frankfurt_000000_000000_leftImg8bit.png", "lindau_000000_000001_leftImg8bit.png"]
    assert (cv2.imread(str(a[0])) == cv2.imread(str(b[0]))).all()
    gt_dir = tmp_path / "a" / "cityscapes" / "gtFine" / "val" / "frankfurt"
    for suffix in ("labelTrainIds", "labelIds", "instanceIds"):
        assert (gt_dir / f"frankfurt_000000_000000_gtFine_{suffix}.png").is_file()


def test_guide_layout_without_manifest(tmp_path):
    """Outputs of the guide's own preprocess (no manifest): 1024x2048, 6 windows of 768, 19 classes."""
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 19, (1024, 2048)).astype(np.uint8)
    gt[:10] = 255
    gt_path = tmp_path / "frankfurt_000000_000294_gtFine_labelTrainIds.png"
    cv2.imwrite(str(gt_path), gt)
    (tmp_path / "gt_file.txt").write_text(f"frankfurt_000000_000294_leftImg8bit.png\t{gt_path}\n")
    result = tmp_path / "result_bs1"
    result.mkdir()
    anchors = [(0, 0), (0, 736), (0, 1280), (256, 0), (256, 736), (256, 1280)]
    canvas, count = torch.zeros(19, 1024, 2048), torch.zeros(1024, 2048)
    for k, (ha, wa) in enumerate(anchors):
        small = torch.from_numpy(rng.normal(size=(1, 19, 24, 24)).astype(np.float32))
        logits = F.interpolate(small, (768, 768), mode="bilinear")[0]  # smooth, like real outputs
        logits.numpy().tofile(result / f"frankfurt_000000_000294_leftImg8bit_{k}_0.bin")
        canvas[:, ha:ha + 768, wa:wa + 768] += logits
        count[ha:ha + 768, wa:wa + 768] += 1
    ref = (canvas / count).argmax(0).numpy()
    proc = run_script("segmenter_postprocess.py", "--result-dir", result, "--gt-path", tmp_path / "gt_file.txt",
                      "--metrics-path", tmp_path / "m.yaml")
    assert proc.returncode == 0, proc.stderr
    got = yaml.safe_load((tmp_path / "m.yaml").read_text())
    assert got["mean_iou"] == pytest.approx(plain_miou([gt], [ref], 19), abs=0.006)
    assert got["pixel_accuracy"] == pytest.approx(100 * np.mean(ref[gt != 255] == gt[gt != 255]), abs=0.006)
