"""Pascal Context: `VOCdevkit/VOC2010/`, 60 classes (background included), images named by the split's list."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SegmenterError
from .ade20k import PALETTE as ADE_PALETTE
from .spec import DatasetSpec, Sample, checked_ids, require_folder

FOLDER = "VOCdevkit"
CLASSES = tuple("""background, aeroplane, bicycle, bird, boat, bottle, bus, car, cat, chair, cow, table, dog, horse,
motorbike, person, pottedplant, sheep, sofa, train, tvmonitor, bag, bed, bench, book, building, cabinet, ceiling,
cloth, computer, cup, door, fence, floor, flower, food, grass, ground, keyboard, light, mountain, mouse, curtain,
platform, sign, plate, road, rock, shelves, sidewalk, sky, snow, bedclothes, track, tree, truck, wall, water, window,
wood""".replace("\n", " ").split(", "))
PALETTE = ADE_PALETTE[:len(CLASSES)]  # the colours the benchmark's common tools use for it


def _voc(data_root: Path) -> Path:
    return data_root / FOLDER / "VOC2010"


def list_samples(data_root: Path, split: str) -> list[Sample]:
    """The images named in `ImageSets/SegmentationContext/<split>.txt`, with `SegmentationClassContext/<id>.png`."""
    voc = _voc(data_root)
    require_folder(voc, data_root, FOLDER)
    listing = voc / "ImageSets" / "SegmentationContext" / f"{split}.txt"
    if not listing.is_file():
        raise SegmenterError(f"{listing}: image list of split '{split}' not found")
    names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not names:
        raise SegmenterError(f"{listing}: lists no images")
    samples = []
    for number, name in enumerate(names, 1):
        image, gt = voc / "JPEGImages" / f"{name}.jpg", voc / "SegmentationClassContext" / f"{name}.png"
        for path, what in ((image, "image"), (gt, "label map")):
            if not path.is_file():
                raise SegmenterError(f"{path}: {what} of {name} (line {number} of {listing}) not found")
        samples.append(Sample(image.resolve(), gt.resolve()))
    return sorted(samples, key=lambda s: s.name)


def to_train_ids(labels: np.ndarray, path: Path) -> np.ndarray:
    return checked_ids(labels, path, len(CLASSES))


SPEC = DatasetSpec(name="pascal_context", title="Pascal Context", folder=FOLDER, classes=CLASSES, palette=PALETTE,
                   box_ratio=8, image_size=520, default_split="val", list_samples=list_samples,
                   to_train_ids=to_train_ids, mmseg_type="PascalContextDataset",
                   paddle_type="PascalContext")
