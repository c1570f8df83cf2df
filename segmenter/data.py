"""Cityscapes-layout data sets and the image pipeline of the guide's preprocess."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import SegmenterError
from .variant import NORMALIZATIONS, Variant
from .windows import window_anchors

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
        raise SegmenterError(f"{image_dir}: folder not found; --data-root must be the folder that contains cityscapes/")
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


@dataclass(frozen=True)
class WindowConfig:
    """How images become windows: resize target, window, stride and normalization."""

    image_size: int  # images are resized to fit (2 * image_size, image_size), keeping the ratio
    window_size: int
    window_stride: int
    normalization: str

    def __post_init__(self) -> None:
        if self.window_stride <= 0:
            raise SegmenterError(f"window stride must be positive, got {self.window_stride}")
        if self.window_size <= 0 or self.image_size <= 0:
            raise SegmenterError(f"image size and window size must be positive, got {self.image_size}, "
                                 f"{self.window_size}")

    @classmethod
    def from_variant(cls, variant: Variant, image_size: int | None = None, window_size: int | None = None,
                     window_stride: int | None = None) -> WindowConfig:
        """Defaults: the variant's inference size and crop size; the guide's stride, crop size - 32."""
        window = window_size or variant.window_size
        return cls(image_size=image_size or variant.image_size, window_size=window,
                   window_stride=window_stride if window_stride is not None else window - 32,
                   normalization=variant.normalization)


def resized_size(hw: tuple[int, int], image_size: int) -> tuple[int, int]:
    """Keep-ratio size that fits (2*image_size, image_size): scale = min(2s/long, s/short), rounded half up."""
    h, w = hw
    scale = min(2 * image_size / max(h, w), image_size / min(h, w))
    return int(h * scale + 0.5), int(w * scale + 0.5)


def canvas_size(hw: tuple[int, int], window: int) -> tuple[int, int]:
    """Size after raising the short side to the window when it is smaller (the long side as int(ratio * window))."""
    h, w = hw
    if min(h, w) >= window:
        return h, w
    return (window, int(w / h * window)) if h < w else (int(h / w * window), window)


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SegmenterError(f"{path}: cannot be read as an image")
    return image


def read_ground_truth(path: Path, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 train ids (255 = ignore); must have the image's size."""
    gt = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if gt is None:
        raise SegmenterError(f"{path}: cannot be read as a label image")
    if gt.ndim != 2:
        raise SegmenterError(f"{path}: expected a single-channel train-id PNG, got shape {gt.shape}")
    if gt.shape != tuple(hw):
        raise SegmenterError(f"{path}: ground truth is {gt.shape[0]}x{gt.shape[1]} but its image is {hw[0]}x{hw[1]}")
    return gt


def preprocess_image(bgr: np.ndarray, cfg: WindowConfig) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, h, w) float32 normalized RGB on the window canvas.

    Resize to fit (2s, s) bilinearly on uint8, BGR -> RGB, (x - mean) / std, then raise the short
    side to the window size bilinearly when it is below it.
    """
    h, w = resized_size(bgr.shape[:2], cfg.image_size)
    if (h, w) != bgr.shape[:2]:
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    mean, std = (np.asarray(v, np.float32) for v in NORMALIZATIONS[cfg.normalization])
    rgb = (bgr[:, :, ::-1].astype(np.float32) - mean) * (1.0 / std)
    ch, cw = canvas_size((h, w), cfg.window_size)
    if (ch, cw) != (h, w):
        rgb = cv2.resize(rgb, (cw, ch), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


@dataclass(frozen=True)
class ImagePlan:
    """The window layout of one image: what the manifest records and postprocess needs."""

    name: str
    stem: str
    gt_path: str
    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    canvas_hw: tuple[int, int]
    anchors: list[tuple[int, int]]
    image_path: str = ""

    @classmethod
    def for_image(cls, sample: Sample, original_hw: tuple[int, int], cfg: WindowConfig) -> ImagePlan:
        resized = resized_size(original_hw, cfg.image_size)
        canvas = canvas_size(resized, cfg.window_size)
        return cls(sample.name, sample.stem, str(sample.gt_path), tuple(original_hw), resized, canvas,
                   window_anchors(canvas, cfg.window_size, cfg.window_stride), str(sample.image_path))

    def to_json(self) -> dict:
        return {"name": self.name, "stem": self.stem, "gt_path": self.gt_path, "original_hw": list(self.original_hw),
                "resized_hw": list(self.resized_hw), "canvas_hw": list(self.canvas_hw),
                "anchors": [list(a) for a in self.anchors], "image_path": self.image_path}

    @classmethod
    def from_json(cls, d: dict) -> ImagePlan:
        return cls(d["name"], d["stem"], d["gt_path"], tuple(d["original_hw"]), tuple(d["resized_hw"]),
                   tuple(d["canvas_hw"]), [tuple(a) for a in d["anchors"]], d.get("image_path", ""))
