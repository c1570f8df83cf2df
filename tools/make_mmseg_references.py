#!/usr/bin/env python3
"""Write the MMSegmentation references of tests/data/mmseg/ with MMSegmentation's own code (run once, not in tests).

What the golden set (tests/data/golden/mmseg_tiny) does not cover, computed by mmseg 1.2.2 itself:
- `wide/`: an image whose resized short side is below the crop (windows smaller than the crop, not padded
  to it), through the golden mask model: labels, logits, window anchors and sizes, one window's logits.
- `tta/`: multi-scale + flip with the config's tta_pipeline and SegTTAModel, on the golden images and the
  wide one: labels, mean probabilities, IoUMetric.
- `runner/`: a checkpoint written by mmengine's Runner (meta with cfg and dataset_meta, message_hub with
  HistoryBuffer objects, optimizer, param_schedulers) after one training iteration of a tiny model, and
  its labels and logits on the golden images.
- `configs/`: model-zoo configs with `_base_` (copied from mmseg's package, unchanged) and children that
  make the golden models from them; `merged.json` holds mmengine's merge of each child.

It runs in an environment with mmsegmentation 1.2.2, mmengine 0.10.7, mmcv-lite 2.1.0, ftfy, regex and a
CPU build of torch (see SPEC section 10), nothing of this project imported:
  python tools/make_mmseg_references.py --golden tests/data/golden/mmseg_tiny --out-dir tests/data/mmseg
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import torch

ROWS = 16  # every ROWS-th row and column of a logit map is stored (and the last)


def stub_mmcv_ops() -> None:
    """mmcv-lite has no compiled ops; mmseg.models imports two of them unguarded (never called by Segmenter)."""
    ops = types.ModuleType("mmcv.ops")

    def unavailable(*_, **__):
        raise RuntimeError("mmcv.ops is not built in mmcv-lite")

    ops.point_sample = ops.sigmoid_focal_loss = unavailable

    def missing(name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ModuleNotFoundError(f"mmcv.ops.{name}")

    ops.__getattr__ = missing
    sys.modules["mmcv.ops"] = ops


def sub(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices kept of an (H, W) map."""
    h, w = a.shape[-2:]
    return (np.unique(np.r_[np.arange(0, h, ROWS), h - 1]), np.unique(np.r_[np.arange(0, w, ROWS), w - 1]))


def write_wide_image(root: Path, rng: np.random.Generator) -> str:
    """A 120x800 image (6.7:1): resized to fit (2048, 512) it is 307x2048, below the 512 crop in height."""
    h, w = 120, 800
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        image[..., c] = 128 + 80 * np.sin(xx / (23 + 9 * c) + c) * np.cos(yy / (17 + 5 * c))
    image += rng.normal(0, 6, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    name = "ADE_val_00000103"
    cv2.imwrite(str(root / "images" / "validation" / f"{name}.jpg"), image,
                [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    return name


def build(config, checkpoint=None):
    from mmseg.registry import MODELS

    config.model.pretrained = None
    model = MODELS.build(config.model)
    if checkpoint is not None:  # a file this script made or the golden set holds: trusted
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"], strict=True)
    return model.eval()


def dataset_of(config, data_root: Path, pipeline=None):
    from mmseg.registry import DATASETS

    cfg = config.test_dataloader.dataset.copy()
    cfg.data_root = str(data_root)
    if pipeline is not None:
        cfg.pipeline = pipeline
    return DATASETS.build(cfg)


def metrics(config, dataset, samples) -> dict:
    from mmengine.evaluator import Evaluator

    evaluator = Evaluator(config.test_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    evaluator.process(samples)
    return {k: float(v) for k, v in evaluator.evaluate(len(samples)).items()}


def single_scale(model, dataset, out: dict, tag: str, windows: bool = False) -> list:
    """Run mmseg's test step per image; store labels, subsampled logits (and window records when asked)."""
    from mmengine.dataset import pseudo_collate

    recorded = []
    if windows:
        original = model.encode_decode

        def recording(inputs, metas):
            logits = original(inputs, metas)
            recorded.append((inputs.detach().clone(), logits.detach().clone()))
            return logits
        model.encode_decode = recording
    samples = []
    for i in range(len(dataset)):
        recorded.clear()
        with torch.no_grad():
            result = model.test_step(pseudo_collate([dataset[i]]))[0]
        samples.append(result)
        logits = result.seg_logits.data.numpy()
        rows, cols = sub(logits)
        name = Path(result.img_path).name
        out[f"{tag}{i}_name"] = np.array(name)
        out[f"{tag}{i}_pred"] = result.pred_sem_seg.data[0].numpy().astype(np.uint8)
        out[f"{tag}{i}_logits"] = logits[:, rows][:, :, cols]
        out[f"{tag}{i}_rows"], out[f"{tag}{i}_cols"] = rows, cols
        if windows:
            out[f"{tag}{i}_window_hw"] = np.array([r[0].shape[2:] for r in recorded], np.int64)
            first_in, first_out = recorded[0]
            out[f"{tag}{i}_window_input"] = first_in.numpy()
            wr, wc = sub(first_out[0])
            out[f"{tag}{i}_window_logits"] = first_out.numpy()[:, :, wr][:, :, :, wc]
            out[f"{tag}{i}_window_rows"], out[f"{tag}{i}_window_cols"] = wr, wc
            out[f"{tag}{i}_resized_hw"] = np.array(first_in.shape[2:])  # one window spans the resized height
    if windows:
        model.encode_decode = original
    return samples


def annotate(root: Path, name: str, labels: np.ndarray, rng: np.random.Generator) -> None:
    """An annotation from a prediction, perturbed so that the metrics are not trivial (0 = other, c + 1 = c)."""
    stored = labels.astype(np.int32) + 1
    blocks = rng.random((stored.shape[0] // 8 + 1, stored.shape[1] // 8 + 1)) < 0.2
    noise = np.kron(blocks, np.ones((8, 8), bool))[:stored.shape[0], :stored.shape[1]]
    stored[noise] = rng.integers(1, 151, int(noise.sum()))
    stored[:4] = 0
    cv2.imwrite(str(root / "annotations" / "validation" / f"{name}.png"), stored.astype(np.uint8))


def write_configs(out: Path, mmseg_configs: Path) -> dict:
    """The zoo's configs (unchanged) under configs/, a child per golden model, and mmengine's merge of each."""
    from mmengine.config import Config

    folder = out / "configs"
    for rel in ("segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py",
                "segmenter/segmenter_vit-s_mask_8xb1-160k_ade20k-512x512.py",
                "segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512.py",
                "_base_/models/segmenter_vit-b16_mask.py", "_base_/datasets/ade20k.py",
                "_base_/default_runtime.py", "_base_/schedules/schedule_160k.py"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mmseg_configs / rel, folder / rel)
    tiny = folder / "tiny"
    tiny.mkdir(exist_ok=True)
    (tiny / "mask.py").write_text(
        "_base_ = '../segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py'\n"
        "embed = 64\n"
        "model = dict(\n"
        "    backbone=dict(embed_dims=embed, num_layers=2, num_heads=2),\n"
        "    decode_head=dict(in_channels=embed, channels=embed, embed_dims=embed, num_heads=2, num_layers=1))\n")
    (tiny / "linear.py").write_text(
        "_base_ = ['../segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512.py']\n"
        "model = dict(\n"
        "    backbone=dict(embed_dims=64, num_layers=2, num_heads=2),\n"
        "    decode_head=dict(in_channels=64, channels=64))\n")
    merged = {name: Config.fromfile(str(tiny / f"{name}.py")).to_dict() for name in ("mask", "linear")}
    (out / "merged.json").write_text(json.dumps(merged, indent=1, sort_keys=True, default=list))
    return merged


def runner_checkpoint(golden: Path, out: Path, work: Path):
    """Train a tiny Segmenter one iteration with mmengine's Runner; its checkpoint is written as the Runner does."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    data = work / "runner_data"
    for split in ("training", "validation"):
        for kind, ext in (("images", "jpg"), ("annotations", "png")):
            (data / kind / split).mkdir(parents=True, exist_ok=True)
            for f in (golden / "ADEChallengeData2016" / kind / "validation").glob(f"*.{ext}"):
                shutil.copy(f, data / kind / split / f.name)
    config = Config.fromfile(str(golden / "mask" / "config.py"))
    config.model.pretrained = None
    config.model.backbone.update(embed_dims=32, num_layers=1, num_heads=1)
    config.model.decode_head.update(in_channels=32, channels=32, embed_dims=32, num_heads=1, num_layers=1)
    config.work_dir = str(work / "runner")
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        config[loader].dataset.data_root = str(data)
        config[loader].num_workers = 0
        config[loader].persistent_workers = False
    config.train_dataloader.batch_size = 1
    config.train_cfg = dict(type="IterBasedTrainLoop", max_iters=1, val_interval=1000)
    config.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False, interval=1)
    config.default_hooks.visualization = dict(type="SegVisualizationHook", draw=False)
    config.default_hooks.logger = dict(type="LoggerHook", interval=1)
    config.optim_wrapper.optimizer.momentum = 0.0  # no momentum buffers: a smaller file
    config.env_cfg.dist_cfg = dict(backend="gloo")
    config.launcher = "none"
    torch.manual_seed(13)
    runner = Runner.from_cfg(config)
    runner.train()
    written = Path(config.work_dir) / "iter_1.pth"
    (out / "runner").mkdir(parents=True, exist_ok=True)
    shutil.copy(written, out / "runner" / "checkpoint.pth")
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example:\n  python tools/make_mmseg_references.py --golden "
                                            "tests/data/golden/mmseg_tiny --out-dir tests/data/mmseg")
    parser.add_argument("--golden", required=True, help="The golden mmseg_tiny folder (images, mask model).")
    parser.add_argument("--out-dir", required=True, help="Folder to write the references into.")
    parser.add_argument("--work-dir", default="/tmp/mmseg_references", help="Scratch folder.")
    args = parser.parse_args()
    stub_mmcv_ops()
    import mmseg
    from mmengine.config import Config
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    golden, out, work = Path(args.golden), Path(args.out_dir), Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7102)

    # data: the golden images and the wide one, in ADE20K's layout
    data = out / "ADEChallengeData2016"
    for kind in ("images", "annotations"):
        (data / kind / "validation").mkdir(parents=True, exist_ok=True)
        for f in (golden / "ADEChallengeData2016" / kind / "validation").iterdir():
            shutil.copy(f, data / kind / "validation" / f.name)
    wide = write_wide_image(data, rng)
    config = Config.fromfile(str(golden / "mask" / "config.py"))
    model = build(config, golden / "mask" / "checkpoint.pth")

    # wide: windows smaller than the crop
    (data / "annotations" / "validation" / f"{wide}.png").write_bytes(
        cv2.imencode(".png", np.zeros((120, 800), np.uint8))[1].tobytes())  # replaced below
    only_wide = dataset_of(config, data)
    index = [Path(p["img_path"]).stem for p in only_wide.load_data_list()].index(wide)
    refs: dict = {}
    from mmengine.dataset import pseudo_collate

    with torch.no_grad():
        pred = model.test_step(pseudo_collate([only_wide[index]]))[0].pred_sem_seg.data[0].numpy()
    annotate(data, wide, pred, rng)
    dataset = dataset_of(config, data)
    samples = single_scale(model, dataset, refs, "image", windows=True)
    refs_metrics = metrics(config, dataset, samples)
    for i in range(len(dataset) - 1):  # the golden set holds the golden images' windows already
        for key in ("window_input", "window_logits", "window_rows", "window_cols"):
            refs.pop(f"image{i}_{key}")
    np.savez_compressed(out / "single.npz", **refs)
    (out / "single.json").write_text(json.dumps(refs_metrics, indent=1))

    # tta: the config's tta_pipeline and SegTTAModel
    from mmseg.models.segmentors.seg_tta import SegTTAModel

    tta = SegTTAModel(module=model).eval()
    tta_data = dataset_of(config, data, config.tta_pipeline)
    tta_refs, tta_samples = {}, []
    for i in range(len(tta_data)):
        item = tta_data[i]
        batch = [pseudo_collate([dict(inputs=x, data_samples=s)]) for x, s in zip(item["inputs"],
                                                                                  item["data_samples"])]
        with torch.no_grad():
            views = [model.test_step(b)[0] for b in batch]
        merged = tta.merge_preds([views])[0]
        probs = torch.stack([v.seg_logits.data.softmax(0) for v in views]).mean(0).numpy()
        rows, cols = sub(probs)
        tta_refs[f"image{i}_name"] = np.array(Path(merged.img_path).name)
        tta_refs[f"image{i}_pred"] = merged.pred_sem_seg.data.numpy().astype(np.uint8).reshape(probs.shape[1:])
        tta_refs[f"image{i}_probs"] = probs[:, rows][:, :, cols]
        tta_refs[f"image{i}_rows"], tta_refs[f"image{i}_cols"] = rows, cols
        tta_refs[f"image{i}_view_hw"] = np.array([v.img_shape for v in views], np.int64)
        merged.gt_sem_seg = views[0].gt_sem_seg
        tta_samples.append(merged)
    np.savez_compressed(out / "tta.npz", **tta_refs)
    (out / "tta.json").write_text(json.dumps(metrics(config, tta_data, tta_samples), indent=1))

    # a checkpoint written by mmengine's Runner, and what it predicts
    runner_config = runner_checkpoint(golden, out, work)
    runner_model = build(runner_config, out / "runner" / "checkpoint.pth")
    runner_refs: dict = {}
    golden_only = dataset_of(config, golden / "ADEChallengeData2016")
    runner_samples = single_scale(runner_model, golden_only, runner_refs, "image")
    np.savez_compressed(out / "runner" / "golden.npz", **runner_refs)
    (out / "runner" / "metrics.json").write_text(json.dumps(metrics(config, golden_only, runner_samples), indent=1))

    write_configs(out, Path(mmseg.__file__).parent / ".mim" / "configs")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
