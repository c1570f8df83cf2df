"""What the pipeline needs to know about a data set: its layout, classes, palette and label conventions."""
from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import SegmenterError
from ...files import FileDigest, read_digested

IGNORE_INDEX = 255  # train id of pixels that are not scored


@dataclass(frozen=True)
class Sample:
    """One image of a data set and its ground-truth label file."""

    image_path: Path
    gt_path: Path

    @property
    def name(self) -> str:  # e.g. frankfurt_000000_000294_leftImg8bit.png
        return self.image_path.name

    @property
    def stem(self) -> str:  # what ais_bench keeps of it: the name up to its first dot
        return self.image_path.name.split(".")[0]


@dataclass(frozen=True)
class DatasetSpec:
    """A data set as the evaluation sees it. One module per data set fills one in (see __init__.py)."""

    name: str  # as variant.yml's dataset_kwargs.dataset names it
    title: str
    folder: str  # the data set's top folder under the data root
    classes: tuple[str, ...]  # train id -> class name
    palette: tuple[tuple[int, int, int], ...]  # train id -> RGB
    box_ratio: int  # images are resized to fit (box_ratio * S, S)
    image_size: int  # S of the upstream evaluation
    default_split: str
    list_samples: Callable[[Path, str], list[Sample]]  # (data root, split) -> samples, sorted
    to_train_ids: Callable[[np.ndarray, Path], np.ndarray]  # stored label values -> train ids (255 = ignore)
    label_ids: tuple[int, ...] | None = None  # ids saved beside predictions for an official evaluator
    categories: dict[str, tuple[int, ...]] | None = None  # category -> train ids, for category IoU
    split_aliases: dict[str, str] = field(default_factory=dict)
    mmseg_type: str = ""  # the dataset_type MMSegmentation's configs name it by
    paddle_type: str = ""  # the data set class PaddleSeg's configs name it by

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a model's description may give it: this package's, MMSegmentation's, PaddleSeg's."""
        return tuple(n for n in (self.name, self.mmseg_type, self.paddle_type) if n)

    @property
    def n_cls(self) -> int:
        return len(self.classes)

    def split_name(self, split: str | None) -> str:
        split = split or self.default_split
        return self.split_aliases.get(split, split)

    def samples(self, data_root: str | Path, split: str | None = None) -> list[Sample]:
        return self.list_samples(Path(data_root), self.split_name(split))

    def colourize(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) train ids -> (H, W, 3) uint8 BGR in the data set's palette; 255 (ignore) black."""
        lut = np.zeros((256, 3), np.uint8)
        lut[:self.n_cls] = np.asarray(self.palette, np.uint8)[:, ::-1]
        return lut[labels]

    def to_label_ids(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) train ids -> the ids the data set's official evaluator reads (Cityscapes' label ids)."""
        if not self.label_ids:
            raise ValueError(f"{self.title} has no label ids besides its train ids")
        lut = np.arange(256, dtype=np.uint8)
        lut[:self.n_cls] = self.label_ids
        return lut[labels]

    def load_labels(self, path: str | Path, hw: tuple[int, int] | None = None) -> tuple[np.ndarray, FileDigest]:
        """(H, W) uint8 train ids of a label file (255 = ignore), which must have the image's size `hw` when
        given, and the digest of the bytes read."""
        data, digest = read_digested(path)
        labels = decode_label_file(data, path)
        if hw is not None and labels.shape != tuple(hw):
            raise SegmenterError(f"{path}: ground truth is {labels.shape[0]}x{labels.shape[1]} but its image is "
                                 f"{hw[0]}x{hw[1]}")
        return self.to_train_ids(labels, Path(path)), digest

    def read_labels(self, path: str | Path, hw: tuple[int, int]) -> np.ndarray:
        """(H, W) uint8 train ids of a label file (255 = ignore); it must have the image's size."""
        return self.load_labels(path, hw)[0]


def read_label_file(path: str | Path) -> np.ndarray:
    """A single-channel label PNG as stored (palette PNGs as their indices), read through Python."""
    return decode_label_file(read_digested(path)[0], path)


def decode_label_file(data: bytes, path: str | Path) -> np.ndarray:
    """A label image's bytes as stored values (palette PNGs as their indices); `path` names it in errors."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(BytesIO(data)) as image:
            labels = np.asarray(image)
    except (UnidentifiedImageError, ValueError, SyntaxError, OSError):
        raise SegmenterError(f"{path}: cannot be decoded as a label image") from None
    if labels.ndim != 2:
        raise SegmenterError(f"{path}: expected a single-channel label PNG, got shape {labels.shape}")
    return labels


def checked_ids(labels: np.ndarray, path: Path, n_cls: int) -> np.ndarray:
    """uint8 train ids whose values are < n_cls or 255; any other value is an error naming it."""
    bad = (labels >= n_cls) & (labels != IGNORE_INDEX)
    if bad.any():
        raise SegmenterError(f"{path}: holds label {int(labels[bad].max())}, above the {n_cls} classes "
                             f"(0..{n_cls - 1}, {IGNORE_INDEX} = ignore)")
    return labels.astype(np.uint8, copy=False)


def require_split(splits: Path, split: str, data_root: Path, top: str) -> Path:
    """The folder of a split inside `splits`; a missing one is an error listing the splits there."""
    folder = splits / split
    if not folder.is_dir() and splits.is_dir():
        found = sorted(p.name for p in splits.iterdir() if p.is_dir())
        raise SegmenterError(f"{folder}: no split '{split}' in {splits} (found: {', '.join(found) or 'none'}); "
                             "choose one of those splits")
    require_folder(folder, data_root, top)
    return folder


def require_folder(folder: Path, data_root: Path, top: str) -> None:
    """A data set folder that must exist; the error says what the data root must hold."""
    if not folder.is_dir():
        raise SegmenterError(f"{folder}: folder not found; the data root ({data_root}) must be the folder that "
                             f"contains {top}/")
