"""Cityscapes: `cityscapes/leftImg8bit/<split>/<city>/*_leftImg8bit.png` with gtFine train-id maps."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SegmenterError
from .spec import DatasetSpec, Sample, checked_ids, require_split

FOLDER = "cityscapes"
IMAGE_SUFFIX = "_leftImg8bit.png"
GT_SUFFIX = "_gtFine_labelTrainIds.png"
CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)  # the official evaluator's ids
PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
           (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
           (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))
CATEGORIES = {"flat": (0, 1), "construction": (2, 3, 4), "object": (5, 6, 7), "nature": (8, 9), "sky": (10,),
              "human": (11, 12), "vehicle": (13, 14, 15, 16, 17, 18)}


def list_samples(data_root: Path, split: str) -> list[Sample]:
    """Images of `<data_root>/cityscapes/leftImg8bit/<split>/<city>/` with their gtFine train-id maps."""
    root = data_root / FOLDER
    image_dir = require_split(root / "leftImg8bit", split, data_root, FOLDER)
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


def to_train_ids(labels: np.ndarray, path: Path) -> np.ndarray:
    return checked_ids(labels, path, len(CLASSES))


SPEC = DatasetSpec(name="cityscapes", title="Cityscapes", folder=FOLDER, classes=CLASSES, palette=PALETTE,
                   box_ratio=2, image_size=1024, default_split="val", list_samples=list_samples,
                   to_train_ids=to_train_ids, label_ids=LABEL_IDS, categories=CATEGORIES,
                   mmseg_type="CityscapesDataset", paddle_type="Cityscapes")
