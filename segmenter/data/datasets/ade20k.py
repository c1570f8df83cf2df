"""ADE20K (SceneParsing): `ADEChallengeData2016/{images,annotations}/<split>/`, 150 classes.

Annotations store class c as c + 1 and 0 for "other", which is not scored: 0 becomes 255 and every
other value is shifted down by one ("reduce zero label").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SegmenterError
from .spec import IGNORE_INDEX, DatasetSpec, Sample, require_split

FOLDER = "ADEChallengeData2016"
CLASSES = tuple("""wall, building, sky, floor, tree, ceiling, road, bed, windowpane, grass, cabinet, sidewalk, person,
earth, door, table, mountain, plant, curtain, chair, car, water, painting, sofa, shelf, house, sea, mirror, rug, field,
armchair, seat, fence, desk, rock, wardrobe, lamp, bathtub, railing, cushion, base, box, column, signboard,
chest of drawers, counter, sand, sink, skyscraper, fireplace, refrigerator, grandstand, path, stairs, runway, case,
pool table, pillow, screen door, stairway, river, bridge, bookcase, blind, coffee table, toilet, flower, book, hill,
bench, countertop, stove, palm, kitchen island, computer, swivel chair, boat, bar, arcade machine, hovel, bus, towel,
light, truck, tower, chandelier, awning, streetlight, booth, television receiver, airplane, dirt track, apparel, pole,
land, bannister, escalator, ottoman, bottle, buffet, poster, stage, van, ship, fountain, conveyer belt, canopy, washer,
plaything, swimming pool, stool, barrel, basket, waterfall, tent, bag, minibike, cradle, oven, ball, food, step, tank,
trade name, microwave, pot, animal, bicycle, lake, dishwasher, screen, blanket, sculpture, hood, sconce, vase,
traffic light, tray, ashcan, fan, pier, crt screen, plate, monitor, bulletin board, shower, radiator, glass, clock,
flag""".replace("\n", " ").split(", "))
_RGB = """
120 120 120 180 120 120 6 230 230 80 50 50 4 200 3 120 120 80 140 140 140 204 5 255 230 230 230 4 250 7 224 5 255
235 255 7 150 5 61 120 120 70 8 255 51 255 6 82 143 255 140 204 255 4 255 51 7 204 70 3 0 102 200 61 230 250 255 6 51
11 102 255 255 7 71 255 9 224 9 7 230 220 220 220 255 9 92 112 9 255 8 255 214 7 255 224 255 184 6 10 255 71 255 41 10
7 255 255 224 255 8 102 8 255 255 61 6 255 194 7 255 122 8 0 255 20 255 8 41 255 5 153 6 51 255 235 12 255 160 150 20
0 163 255 140 140 140 250 10 15 20 255 0 31 255 0 255 31 0 255 224 0 153 255 0 0 0 255 255 71 0 0 235 255 0 173 255
31 0 255 11 200 200 255 82 0 0 255 245 0 61 255 0 255 112 0 255 133 255 0 0 255 163 0 255 102 0 194 255 0 0 143 255
51 255 0 0 82 255 0 255 41 0 255 173 10 0 255 173 255 0 0 255 153 255 92 0 255 0 255 255 0 245 255 0 102 255 173 0
255 0 20 255 184 184 0 31 255 0 255 61 0 71 255 255 0 204 0 255 194 0 255 82 0 10 255 0 112 255 51 0 255 0 194 255
0 122 255 0 255 163 255 153 0 0 255 10 255 112 0 143 255 0 82 0 255 163 255 0 255 235 0 8 184 170 133 0 255 0 255 92
184 0 255 255 0 31 0 184 255 0 214 255 255 0 112 92 255 0 0 224 255 112 224 255 70 184 160 163 0 255 153 0 255
71 255 0 255 0 163 255 204 0 255 0 143 0 255 235 133 255 0 255 0 235 245 0 255 255 0 122 255 245 0 10 190 212
214 255 0 0 204 255 20 0 255 255 255 0 0 153 255 0 41 255 0 255 204 41 0 255 41 255 0 173 0 255 0 245 255 71 0 255
122 0 255 0 255 184 0 92 255 184 255 0 0 133 255 255 214 0 25 194 194 102 255 0 92 0 255"""
_values = [int(v) for v in _RGB.split()]
PALETTE = tuple(tuple(_values[i:i + 3]) for i in range(0, len(_values), 3))  # the benchmark's standard colours


def list_samples(data_root: Path, split: str) -> list[Sample]:
    """`images/<split>/*.jpg` with `annotations/<split>/<same name>.png`."""
    root = data_root / FOLDER
    image_dir = require_split(root / "images", split, data_root, FOLDER)
    images = sorted(image_dir.glob("*.jpg"))
    if not images:
        raise SegmenterError(f"{image_dir}: no *.jpg images in it")
    samples = []
    for image in images:
        gt = root / "annotations" / split / f"{image.stem}.png"
        if not gt.is_file():
            raise SegmenterError(f"{gt}: annotation missing for {image.name}")
        samples.append(Sample(image.resolve(), gt.resolve()))
    return samples


def to_train_ids(labels: np.ndarray, path: Path) -> np.ndarray:
    """Stored 0..150 -> train ids: 0 (other) -> 255, c + 1 -> c."""
    if labels.max(initial=0) > len(CLASSES):
        raise SegmenterError(f"{path}: holds value {int(labels.max())}, above the {len(CLASSES)} classes of ADE20K "
                             f"(stored as 1..{len(CLASSES)}, 0 = other)")
    return np.where(labels == 0, IGNORE_INDEX, labels.astype(np.int32) - 1).astype(np.uint8)


SPEC = DatasetSpec(name="ade20k", title="ADE20K", folder=FOLDER, classes=CLASSES, palette=PALETTE, box_ratio=4,
                   image_size=512, default_split="validation", list_samples=list_samples, to_train_ids=to_train_ids,
                   split_aliases={"val": "validation", "train": "training"}, mmseg_type="ADE20KDataset",
                   paddle_type="ADE20K")
