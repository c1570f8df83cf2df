"""The guide's preprocess: one float32 .bin per window, gt_file.txt, and a manifest of the window layout."""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
from tqdm import tqdm

from .data import ImagePlan, Sample, WindowConfig, list_cityscapes, preprocess_image, read_image
from .engines import cpu_threads
from .errors import SegmenterError
from .files import atomic_write
from .windows import GUIDE_LAYOUT, cut_windows, window_anchors

MANIFEST_VERSION = 1


def manifest_beside(gt_path: str | Path) -> Path:
    """The manifest lives beside the gt file: same name, .json suffix."""
    return Path(gt_path).with_suffix(".json")


def write_manifest(path: Path, cfg: WindowConfig, n_cls: int, plans: list[ImagePlan], **extra) -> None:
    doc = {"version": MANIFEST_VERSION, "n_cls": n_cls, "window_size": cfg.window_size,
           "window_stride": cfg.window_stride, "image_size": cfg.image_size, "normalization": cfg.normalization,
           **extra, "images": [plan.to_json() for plan in plans]}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1)))


def write_gt_file(path: Path, plans: list[ImagePlan]) -> None:
    """The guide's gt_file.txt: `<image file name>\\t<gt path>` per line."""
    atomic_write(path, lambda tmp: Path(tmp).write_text("".join(f"{p.name}\t{p.gt_path}\n" for p in plans)))


def read_gt_file(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise SegmenterError(f"{path}: gt file not found; run segmenter_preprocess.py first")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise SegmenterError(f"{path}:{number}: expected '<image file name>\\t<gt path>'")
        entries.append((parts[0], parts[1]))
    if not entries:
        raise SegmenterError(f"{path}: lists no images")
    return entries


def read_layout(gt_path: Path, manifest_path: Path | None = None) -> tuple[dict, list[ImagePlan]]:
    """Window layout of every image of the gt file, from the manifest or, without one, the guide's fixed layout."""
    entries = read_gt_file(gt_path)
    manifest_path = manifest_path or manifest_beside(gt_path)
    if manifest_path.is_file():
        try:
            doc = json.loads(manifest_path.read_text())
            plans = {d["name"]: ImagePlan.from_json(d) for d in doc["images"]}
            meta = {k: doc[k] for k in ("n_cls", "window_size", "window_stride")}
        except (ValueError, KeyError, TypeError) as exc:
            raise SegmenterError(f"{manifest_path}: not a valid manifest ({exc})") from None
        missing = [name for name, _ in entries if name not in plans]
        if missing:
            raise SegmenterError(f"{manifest_path}: no entry for {missing[0]} listed in {gt_path}")
        return meta, [plans[name] for name, _ in entries]
    if manifest_path != manifest_beside(gt_path):
        raise SegmenterError(f"{manifest_path}: manifest not found")
    # The guide's own preprocess writes no manifest: its layout is fixed.
    meta = {k: GUIDE_LAYOUT[k] for k in ("n_cls", "window_size", "window_stride")}
    hw = GUIDE_LAYOUT["image_hw"]
    anchors = window_anchors(hw, meta["window_size"], meta["window_stride"])
    return meta, [ImagePlan(name, name.split(".")[0], gt, hw, hw, hw, anchors) for name, gt in entries]


def _preprocess_one(job: tuple[Sample, WindowConfig, Path]) -> ImagePlan:
    sample, cfg, bin_dir = job
    bgr = read_image(sample.image_path)
    plan = ImagePlan.for_image(sample, bgr.shape[:2], cfg)
    image = preprocess_image(bgr, cfg)
    assert image.shape[1:] == plan.canvas_hw
    for k, window in enumerate(cut_windows(image, plan.anchors, cfg.window_size)):
        target = bin_dir / f"{plan.stem}_{k}.bin"
        tmp = target.with_name(f".{target.name}.tmp")
        window[None].tofile(tmp)  # (1, 3, window, window) float32, as the model's input
        os.replace(tmp, target)
    return plan


def _init_worker() -> None:
    cv2.setNumThreads(1)


def run_preprocess(data_root: Path, bin_dir: Path, gt_path: Path, cfg: WindowConfig, n_cls: int,
                   split: str = "val", workers: int | None = None, **manifest_extra) -> list[ImagePlan]:
    """Write every window of the split into bin_dir, then gt_file.txt and its manifest (last, atomically)."""
    samples = list_cityscapes(data_root, split)
    try:
        bin_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegmenterError(f"{bin_dir}: cannot create the bin folder ({exc.strerror})") from None
    stale = [p for p in bin_dir.glob("*.bin") if not any(p.name.startswith(s.stem + "_") for s in samples)]
    if stale:
        print(f"warning: {bin_dir} holds {len(stale)} .bin files of other images (e.g. {stale[0].name}); "
              "an inference run on the folder will include them")
    jobs = [(s, cfg, bin_dir) for s in samples]
    workers = workers or min(len(jobs), cpu_threads())
    bar = dict(total=len(jobs), desc="preprocess", unit="img")
    if workers <= 1:
        _init_worker()
        plans = [_preprocess_one(j) for j in tqdm(jobs, **bar)]
    else:
        with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
            plans = list(tqdm(pool.map(_preprocess_one, jobs), **bar))
    write_gt_file(gt_path, plans)
    write_manifest(manifest_beside(gt_path), cfg, n_cls, plans, split=split, **manifest_extra)
    return plans
