"""Cityscapes-layout data sets, reading images and labels, and the image pipeline of the guide's preprocess."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import SegmenterError
from .plan import ImagePlan, View, WindowConfig
from .variant import NORMALIZATIONS
from .windows import cut_windows

IMAGE_SUFFIX = "_leftImg8bit.png"
GT_SUFFIX = "_gtFine_labelTrainIds.png"
IGNORE_INDEX = 255


@dataclass(frozen=True)
class Sample:
    """One image of the data set and its train-id ground truth."""

    image_path: Path
    gt_path: Path

    @property
    def name(self) -> str:  # e.g. frankfurt_000000_000294_leftImg8bit.png
        return self.image_path.name

    @property
    def stem(self) -> str:  # the prefix of its window files
        return self.image_path.name.split(".")[0]


def list_cityscapes(data_root: str | Path, split: str = "val") -> list[Sample]:
    """Images of `<data_root>/cityscapes/leftImg8bit/<split>/<city>/` with their gtFine train-id maps."""
    root = Path(data_root) / "cityscapes"
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        if (root / "leftImg8bit").is_dir():
            found = sorted(p.name for p in (root / "leftImg8bit").iterdir() if p.is_dir())
            raise SegmenterError(f"{image_dir}: no split '{split}' in {root / 'leftImg8bit'} "
                                 f"(found: {', '.join(found) or 'none'}); choose one of those splits")
        raise SegmenterError(f"{image_dir}: folder not found; the data root must be the folder that contains "
                             "cityscapes/")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise SegmenterError(f"{image_dir}: no <city>/*{IMAGE_SUFFIX} images in it")
    samples = []
    for image in images:
        gt = root / "gtFine" / split / image.parent.name / image.name.replace(IMAGE_SUFFIX, GT_SUFFIX)
        if not gt.is_file():
            raise SegmenterError(f"{gt}: ground truth missing for {image.name}; "
                                 "create *_labelTrainIds.png with cityscapesscripts' createTrainIdLabelImgs")
        samples.append(Sample(image.resolve(), gt.resolve()))
    return samples


def _decode(path: str | Path, flags: int, what: str) -> np.ndarray:
    """Read the file's bytes in Python (any path, any bytes in its name) and decode them with OpenCV."""
    try:
        data = np.frombuffer(Path(path).read_bytes(), np.uint8)
    except OSError as exc:
        raise SegmenterError(f"{path}: cannot be read ({exc.strerror})") from None
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise SegmenterError(f"{path}: cannot be decoded as {what}")
    return image


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR."""
    return _decode(path, cv2.IMREAD_COLOR, "an image")


def read_ground_truth(path: str | Path, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 train ids (255 = ignore); must have the image's size."""
    gt = _decode(path, cv2.IMREAD_UNCHANGED, "a label image")
    if gt.ndim != 2:
        raise SegmenterError(f"{path}: expected a single-channel train-id PNG, got shape {gt.shape}")
    if gt.shape != tuple(hw):
        raise SegmenterError(f"{path}: ground truth is {gt.shape[0]}x{gt.shape[1]} but its image is {hw[0]}x{hw[1]}")
    return gt


def preprocess_view(bgr: np.ndarray, layout_resized: tuple[int, int], canvas: tuple[int, int], view: View,
                    normalization: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, h, w) float32 normalized RGB on one view's canvas.

    Resize to the view's size bilinearly on uint8, BGR -> RGB, (x - mean) / std, flip when the view
    is flipped, then raise the short side to the window size bilinearly when it is below it.
    """
    h, w = layout_resized
    if (h, w) != bgr.shape[:2]:
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    mean, std = (np.asarray(v, np.float32) for v in NORMALIZATIONS[normalization])
    rgb = (bgr[:, :, ::-1].astype(np.float32) - mean) * (1.0 / std)
    if view.flip:
        rgb = rgb[:, ::-1]
    if canvas != (h, w):
        rgb = cv2.resize(rgb, (canvas[1], canvas[0]), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def view_windows(bgr: np.ndarray, plan: ImagePlan, cfg: WindowConfig) -> Iterator[np.ndarray]:
    """An image's windows, one (n_anchors, 3, window, window) float32 array per view, views in order."""
    w = cfg.window_size
    for layout in plan.views:
        image = preprocess_view(bgr, layout.resized_hw, layout.canvas_hw, layout.view, cfg.normalization)
        yield cut_windows(image, layout.anchors, w)
