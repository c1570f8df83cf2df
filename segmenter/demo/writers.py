"""Generated scenes written in each data set's layout and label conventions: demo and test data.

The scenes are drawn in Cityscapes' train ids (scenes.py); each writer maps them to its data set's
classes and stores them as that data set does. One writer per data set, in WRITERS.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..data.datasets import ade20k, cityscapes, dataset_spec, pascal_context
from ..data.images import write_image
from .scenes import scenes

# The scenes' 19 classes (Cityscapes train ids) in the other data sets' classes; None: not scored
ADE20K_FROM_STREET = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "signboard", "tree",
                      "grass", "sky", "person", "person", "car", "truck", "bus", None, "minibike", "bicycle")
PASCAL_FROM_STREET = ("road", "sidewalk", "building", "wall", "fence", "background", "light", "sign", "tree",
                      "grass", "sky", "person", "person", "car", "truck", "bus", "train", "motorbike", "bicycle")
CITIES = {"train": ("aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf"),
          "val": ("frankfurt", "lindau", "munster")}


def lookup_from_street(values: list[int], unlabelled: int) -> np.ndarray:
    """A 256-entry table from the scenes' classes (Cityscapes train ids, 255 = unlabelled) to a data set's values."""
    table = np.full(256, unlabelled, np.uint8)
    table[:len(values)] = values
    return table


def write_cityscapes(data_root: Path, split: str, n_images: int, hw: tuple[int, int], seed: int) -> list[Path]:
    """Street scenes as `<city>_<seq>_<frame>` with train-id, label-id and instance-id maps."""
    root = data_root / cityscapes.FOLDER
    cities = CITIES.get(split, ("city",))
    paths = []
    for i, scene in enumerate(scenes(split, n_images, hw, seed)):
        city = cities[i % len(cities)]
        stem = f"{city}_{i // len(cities):06d}_{i % 1000:06d}"
        image_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
        write_image(image_dir / f"{stem}{cityscapes.IMAGE_SUFFIX}", scene.bgr())
        write_image(gt_dir / f"{stem}{cityscapes.GT_SUFFIX}", scene.train_ids)
        write_image(gt_dir / f"{stem}_gtFine_labelIds.png", scene.label_ids)
        write_image(gt_dir / f"{stem}_gtFine_instanceIds.png", scene.instance_ids.astype(np.uint16))
        paths.append(image_dir / f"{stem}{cityscapes.IMAGE_SUFFIX}")
    return paths


def write_ade20k(data_root: Path, split: str, n_images: int, hw: tuple[int, int], seed: int) -> list[Path]:
    """Scenes as `ADE_<split>_<8 digits>.jpg` with annotations stored as class + 1 (0: other)."""
    root = data_root / ade20k.FOLDER
    stored = lookup_from_street([ade20k.CLASSES.index(c) + 1 if c else 0 for c in ADE20K_FROM_STREET], unlabelled=0)
    tag = {"validation": "val", "training": "train"}.get(split, split)
    paths = []
    for i, scene in enumerate(scenes(split, n_images, hw, seed)):
        image = root / "images" / split / f"ADE_{tag}_{i + 1:08d}.jpg"
        write_image(image, scene.bgr())
        write_image(root / "annotations" / split / f"{image.stem}.png", stored[scene.train_ids])
        paths.append(image)
    return paths


def write_pascal_context(data_root: Path, split: str, n_images: int, hw: tuple[int, int], seed: int) -> list[Path]:
    """Scenes as `2008_<6 digits>.jpg`, label maps with 0 = background and 255 = ignore, and the split's list."""
    voc = data_root / pascal_context.FOLDER / "VOC2010"
    stored = lookup_from_street([pascal_context.CLASSES.index(c) for c in PASCAL_FROM_STREET], unlabelled=255)
    names, paths = [], []
    for i, scene in enumerate(scenes(split, n_images, hw, seed)):
        name = f"2008_{i:06d}"
        write_image(voc / "JPEGImages" / f"{name}.jpg", scene.bgr())
        write_image(voc / "SegmentationClassContext" / f"{name}.png", stored[scene.train_ids])
        names.append(name)
        paths.append(voc / "JPEGImages" / f"{name}.jpg")
    listing = voc / "ImageSets" / "SegmentationContext" / f"{split}.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{n}\n" for n in names))
    return paths


WRITERS: dict[str, Callable[[Path, str, int, tuple[int, int], int], list[Path]]] = {
    "cityscapes": write_cityscapes, "ade20k": write_ade20k, "pascal_context": write_pascal_context}


def write_split(data_root: str | Path, split: str | None, n_images: int, hw: tuple[int, int], seed: int = 0,
                dataset: str = "cityscapes") -> list[Path]:
    """Write n_images scenes of size hw in the layout of `dataset` under data_root (split: the data set's name for
    it, default its validation split); returns the image paths."""
    spec = dataset_spec(dataset)
    return WRITERS[spec.name](Path(data_root), spec.split_name(split), n_images, tuple(hw), seed)
