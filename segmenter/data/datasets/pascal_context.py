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
FROM_STREET = ("road", "sidewalk", "building", "wall", "fence", "background", "light", "sign", "tree", "grass",
               "sky", "person", "person", "car", "truck", "bus", "train", "motorbike", "bicycle")


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


def write_fake(data_root: str | Path, split: str, n_images: int, hw: tuple[int, int], seed: int = 0) -> list[Path]:
    """Generated scenes as `2008_<6 digits>.jpg`, label maps with 0 = background and 255 = ignore, and the list."""
    from ...demo.scenes import lookup_from_street, scenes, write_png

    voc = _voc(Path(data_root))
    stored = lookup_from_street([CLASSES.index(c) for c in FROM_STREET], unlabelled=255)
    names, paths = [], []
    for i, scene in enumerate(scenes(split, n_images, hw, seed)):
        name = f"2008_{i:06d}"
        write_png(voc / "JPEGImages" / f"{name}.jpg", scene.bgr(), ".jpg")
        write_png(voc / "SegmentationClassContext" / f"{name}.png", stored[scene.train_ids])
        names.append(name)
        paths.append(voc / "JPEGImages" / f"{name}.jpg")
    listing = voc / "ImageSets" / "SegmentationContext" / f"{split}.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{n}\n" for n in names))
    return paths


SPEC = DatasetSpec(name="pascal_context", title="Pascal Context", folder=FOLDER, classes=CLASSES, palette=PALETTE,
                   box_ratio=8, image_size=520, default_split="val", list_samples=list_samples,
                   to_train_ids=to_train_ids, write_fake=write_fake)
