"""Procedural street scenes in the exact Cityscapes layout (images, train-id, label-id and instance-id maps).

Every class is drawn as shapes with a class-specific colour range and texture, per-instance jitter,
perspective scaling, blur and sensor noise: learnable, not trivial. Seeded: the same arguments give
the same files.
"""
from __future__ import annotations

import zlib
from typing import Iterator

import cv2
import numpy as np

from ..data.datasets.cityscapes import LABEL_IDS as CITYSCAPES_LABEL_IDS
from ..data.datasets.spec import IGNORE_INDEX

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)
EGO_VEHICLE_LABEL_ID = 1  # void in the evaluation: train id 255


class Scene:
    """An RGB float image and its train-id / instance-id maps, painted back to front."""

    def __init__(self, h: int, w: int, rng: np.random.Generator) -> None:
        self.h, self.w, self.rng = h, w, rng
        self.image = np.zeros((h, w, 3), np.float32)
        self.train_ids = np.full((h, w), IGNORE_INDEX, np.uint8)
        self.instance_ids = np.zeros((h, w), np.int32)
        self.label_ids = np.zeros((h, w), np.uint8)
        self.n_instances: dict[int, int] = {}

    def bgr(self) -> np.ndarray:
        """The image as (H, W, 3) uint8 BGR."""
        return np.clip(self.image, 0, 255).round().astype(np.uint8)[:, :, ::-1]

    def new_instance(self, cls: int) -> int:
        self.n_instances[cls] = self.n_instances.get(cls, 0) + 1
        return CITYSCAPES_LABEL_IDS[cls] * 1000 + self.n_instances[cls] - 1

    def paint(self, mask: np.ndarray, cls: int | None, colour, texture: str = "noise", amount: float = 12.0,
              period: float = 6.0, instance: int | None = None, label_id: int | None = None) -> None:
        """Fill `mask` with a textured colour; record class (None: keep the labels), instance and label id."""
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return
        colour = np.asarray(colour, np.float32)
        pattern = self._texture(texture, ys, xs, period)
        self.image[ys, xs] = colour + amount * pattern[:, None] + self.rng.normal(0, abs(amount) / 4, (ys.size, 3))
        if cls is not None:
            self.train_ids[ys, xs] = cls
            lid = CITYSCAPES_LABEL_IDS[cls]
            self.label_ids[ys, xs] = lid
            self.instance_ids[ys, xs] = instance if instance is not None else lid
        elif label_id is not None:
            self.train_ids[ys, xs] = IGNORE_INDEX
            self.label_ids[ys, xs] = label_id
            self.instance_ids[ys, xs] = label_id

    def _texture(self, kind: str, ys: np.ndarray, xs: np.ndarray, period: float) -> np.ndarray:
        phase = self.rng.uniform(0, 2 * np.pi)
        if kind == "hstripes":
            return np.sign(np.sin(ys * 2 * np.pi / period + phase))
        if kind == "vstripes":
            return np.sign(np.sin(xs * 2 * np.pi / period + phase))
        if kind == "grid":  # windows / tiles
            return ((ys % period < period * 0.55) & (xs % period < period * 0.55)).astype(np.float32) * 2 - 1
        if kind == "blotch":  # leafy low-frequency noise
            small = self.rng.normal(0, 1, (self.h // 6 + 2, self.w // 6 + 2)).astype(np.float32)
            big = cv2.resize(small, (self.w, self.h), interpolation=cv2.INTER_CUBIC)
            return np.clip(big[ys, xs], -2, 2)
        if kind == "gradient":
            return (ys / self.h) * 2 - 1
        return self.rng.normal(0, 1, ys.size)

    def mask(self, draw) -> np.ndarray:
        m = np.zeros((self.h, self.w), np.uint8)
        draw(m)
        return m.astype(bool)

    def box(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Mask of the filled rectangle with corners (x0, y0) and (x1, y1)."""
        return self.mask(lambda m: cv2.rectangle(m, _poly((x0, y0)), _poly((x1, y1)), 1, -1))


def _jitter(rng: np.random.Generator, colour, spread: float) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, spread, 3), 0, 255)


def _poly(points) -> np.ndarray:
    return np.round(np.asarray(points)).astype(np.int32)


def draw_person(s: Scene, x: float, foot: float, height: float, cls: int = PERSON) -> None:
    rng = s.rng
    inst = s.new_instance(cls)
    w = height * 0.28
    shirts = [(200, 40, 60), (60, 60, 160), (230, 200, 40), (40, 140, 60), (230, 120, 30)]
    shirt = _jitter(rng, rng.choice(shirts), 25)
    legs = _jitter(rng, (40, 40, 70), 15)
    torso = s.box(x - w / 2, foot - height * 0.8, x + w / 2, foot - height * 0.42)
    s.paint(torso, cls, shirt, "noise", 10, instance=inst)
    for dx in (-w * 0.3, w * 0.3):
        leg = s.box(x + dx - w * 0.14, foot - height * 0.43, x + dx + w * 0.14, foot)
        s.paint(leg, cls, legs, "noise", 8, instance=inst)
    head = s.mask(lambda m: cv2.circle(m, _poly((x, foot - height * 0.89)), max(1, int(height * 0.1)), 1, -1))
    s.paint(head, cls, _jitter(rng, (225, 180, 150), 20), "noise", 6, instance=inst)


def draw_two_wheeler(s: Scene, x: float, ground: float, size: float, motor: bool, with_rider: bool) -> None:
    rng = s.rng
    cls = MOTORCYCLE if motor else BICYCLE
    inst = s.new_instance(cls)
    r = size * (0.2 if motor else 0.18)
    length = size * (0.9 if motor else 0.75)
    colour = _jitter(rng, (30, 30, 200) if motor else (150, 20, 40), 20)
    thickness = max(2, int(size * (0.1 if motor else 0.08)))
    wheels = [(x - length / 2, ground - r), (x + length / 2, ground - r)]
    for cx, cy in wheels:
        ring = s.mask(lambda m, c=(cx, cy): cv2.circle(m, _poly(c), max(2, int(r)), 1, thickness))
        s.paint(ring, cls, (25, 25, 25), "noise", 5, instance=inst)
    frame = s.mask(lambda m: cv2.polylines(m, [_poly([wheels[0], (x, ground - size * 0.55), wheels[1]])], False, 1,
                                           thickness + 1))
    s.paint(frame, cls, colour, "noise", 10, instance=inst)
    if motor:
        body = s.mask(lambda m: cv2.ellipse(m, _poly((x, ground - size * 0.5)), _poly((length * 0.4, size * 0.18)),
                                            0, 0, 360, 1, -1))
        s.paint(body, cls, colour, "gradient", 20, instance=inst)
    if with_rider:
        draw_person(s, x, ground - size * 0.3, size * 1.5, cls=RIDER)


def draw_vehicle(s: Scene, cls: int, x: float, ground: float, scale: float) -> None:
    """Car, truck, bus or train, seen from the side, bottom at `ground`, `scale` = car height in pixels."""
    rng = s.rng
    inst = s.new_instance(cls)
    if cls == CAR:
        w, h = scale * 2.2, scale
        paints = [(20, 30, 120), (180, 180, 185), (150, 20, 20), (30, 30, 30), (230, 230, 230)]
        body = _jitter(rng, rng.choice(paints), 20)
        parts = [("body", (x - w / 2, ground - h * 0.6, x + w / 2, ground - h * 0.15), body, "gradient"),
                 ("cabin", (x - w * 0.3, ground - h, x + w * 0.28, ground - h * 0.55), (60, 80, 110), "vstripes")]
    elif cls == TRUCK:
        w, h = scale * 3.4, scale * 1.8
        body = _jitter(rng, (200, 200, 190), 25)
        parts = [("box", (x - w / 2, ground - h, x + w * 0.22, ground - h * 0.15), body, "hstripes"),
                 ("cab", (x + w * 0.24, ground - h * 0.7, x + w / 2, ground - h * 0.15), _jitter(rng, (20, 60, 20), 20),
                  "noise")]
    elif cls == BUS:
        w, h = scale * 4.5, scale * 1.9
        body = _jitter(rng, (230, 180, 20), 20)
        parts = [("body", (x - w / 2, ground - h, x + w / 2, ground - h * 0.12), body, "noise"),
                 ("windows", (x - w * 0.46, ground - h * 0.9, x + w * 0.46, ground - h * 0.55), (40, 50, 70),
                  "vstripes")]
    else:  # TRAIN (tram)
        w, h = scale * 7.0, scale * 2.0
        body = _jitter(rng, (210, 40, 40), 20)
        parts = [("body", (x - w / 2, ground - h, x + w / 2, ground - h * 0.05), body, "hstripes"),
                 ("windows", (x - w * 0.48, ground - h * 0.85, x + w * 0.48, ground - h * 0.55), (200, 220, 230),
                  "grid")]
    for _, (x0, y0, x1, y1), colour, texture in parts:
        m = s.box(x0, y0, x1, y1)
        s.paint(m, cls, colour, texture, 14, period=max(3.0, scale / 5), instance=inst)
    wheel_r = max(2, int(h * (0.17 if cls == CAR else 0.13)))
    for fx in ((-0.32, 0.32) if cls == CAR else (-0.38, -0.2, 0.35)):
        wheel = s.mask(lambda m, fx=fx: cv2.circle(m, _poly((x + fx * w, ground - wheel_r)), wheel_r, 1, -1))
        s.paint(wheel, cls, (20, 20, 20), "noise", 6, instance=inst)


def draw_street_scene(h: int, w: int, seed: int) -> Scene:
    """One procedural street scene of size (h, w)."""
    rng = np.random.default_rng(seed)
    s = Scene(h, w, rng)
    horizon = h * rng.uniform(0.38, 0.5)
    full = np.ones((h, w), bool)
    # sky, then buildings along the horizon
    s.paint(full, SKY, _jitter(rng, (110, 160, 220), 15), "gradient", -25)
    x = -rng.uniform(0, w * 0.1)
    while x < w:
        bw = rng.uniform(0.08, 0.25) * w
        top = rng.uniform(0.02, 0.75) * horizon
        facade = _jitter(rng, rng.choice([(120, 110, 100), (170, 150, 120), (90, 90, 95), (150, 100, 80)]), 15)
        m = s.box(x, top, x + bw, horizon + 2)
        s.paint(m, BUILDING, facade, "grid", 30, period=rng.uniform(0.03, 0.06) * h)
        x += bw + rng.uniform(-0.02, 0.05) * w
    # trees and hedges in front of the buildings
    for _ in range(rng.integers(1, 5)):
        cx, cy = rng.uniform(0, w), horizon - rng.uniform(0.05, 0.25) * h
        ax, ay = rng.uniform(0.04, 0.12) * w, rng.uniform(0.08, 0.18) * h
        m = s.mask(lambda m, c=(cx, cy), a=(ax, ay): cv2.ellipse(m, _poly(c), _poly(a), 0, 0, 360, 1, -1))
        s.paint(m, VEGETATION, _jitter(rng, (70, 120, 40), 12), "blotch", 25)
        trunk = s.box(cx - 0.006 * w, cy + ay * 0.7, cx + 0.006 * w, horizon + 0.02 * h)
        s.paint(trunk, VEGETATION, (80, 60, 40), "noise", 8)
    # ground: road trapezoid towards a vanishing point, sidewalks, terrain strips
    vx = w * rng.uniform(0.35, 0.65)
    road_l, road_r = w * rng.uniform(-0.3, 0.15), w * rng.uniform(0.85, 1.3)
    ground = s.box(0, horizon, w, h)
    s.paint(ground, SIDEWALK, _jitter(rng, (175, 150, 160), 12), "grid", 18, period=rng.uniform(0.02, 0.04) * h)
    for side in (-1, 1):
        if rng.random() < 0.6:
            edge = road_l if side < 0 else road_r
            outer = edge + side * w * rng.uniform(0.15, 0.3)
            pts = [(vx + side * w * 0.1, horizon), (vx + side * w * 0.2, horizon), (outer, h),
                   (edge + side * w * 0.25, h)]
            m = s.mask(lambda m, p=pts: cv2.fillPoly(m, [_poly(p)], 1))
            m &= ground
            s.paint(m, TERRAIN, _jitter(rng, (150, 170, 90), 12), "noise", 18)
    road = s.mask(lambda m: cv2.fillPoly(m, [_poly([(vx - w * 0.04, horizon), (vx + w * 0.04, horizon),
                                                     (road_r, h), (road_l, h)])], 1))
    s.paint(road, ROAD, _jitter(rng, (95, 85, 100), 8), "noise", 10)
    for t in np.linspace(0.1, 1.0, 7):  # dashed centre line, part of the road
        y0, y1 = horizon + (h - horizon) * t ** 2, horizon + (h - horizon) * min(1.0, (t + 0.07) ** 2)
        half = 0.002 * w + 0.008 * w * t
        m = s.box(vx - half, y0, vx + half, y1)
        s.paint(m & road, ROAD, (225, 225, 220), "noise", 5)
    # a wall or fence along the sidewalk's far edge
    for _ in range(rng.integers(1, 3)):
        x0 = rng.uniform(0, w * 0.8)
        x1 = x0 + rng.uniform(0.1, 0.35) * w
        top = horizon - rng.uniform(0.04, 0.1) * h
        m = s.box(x0, top, x1, horizon + 0.02 * h)
        if rng.random() < 0.5:
            s.paint(m, WALL, _jitter(rng, (125, 125, 160), 12), "hstripes", 12, period=0.02 * h)
        else:
            bars = m & (np.arange(w)[None, :] % max(4, int(0.016 * w)) < max(2, int(0.008 * w)))
            bars |= m & (np.abs(np.arange(h)[:, None] - top) < max(2, 0.01 * h))
            s.paint(bars, FENCE, _jitter(rng, (190, 160, 150), 12), "noise", 10)
    # poles with signs and traffic lights
    for _ in range(rng.integers(1, 5)):
        px = rng.uniform(0.02, 0.98) * w
        foot = horizon + rng.uniform(0.05, 0.35) * (h - horizon)
        height = (foot - horizon) * rng.uniform(2.5, 4.0) + 0.1 * h
        pw = max(4.0, 0.012 * w * (foot - horizon) / (h - horizon) + 3)
        m = s.box(px - pw / 2, foot - height, px + pw / 2, foot)
        s.paint(m, POLE, _jitter(rng, (150, 150, 150), 10), "vstripes", 15, period=3)
        top = foot - height
        size = max(8.0, pw * 3)
        if rng.random() < 0.55:
            m = s.mask(lambda m, a=(px, top, size): cv2.circle(m, _poly((a[0], a[1] + a[2])), int(a[2]), 1, -1))
            colour = _jitter(rng, rng.choice([(220, 210, 20), (30, 80, 200), (220, 30, 30)]), 15)
            s.paint(m, SIGN, colour, "noise", 10)
        else:
            m = s.box(px - size * 0.5, top, px + size * 0.5, top + size * 2.2)
            s.paint(m, LIGHT, (30, 30, 25), "noise", 5)
            lamp_y = top + size * (0.5 + rng.integers(3) * 0.6)
            lamp = s.mask(lambda m: cv2.circle(m, _poly((px, lamp_y)), max(1, int(size * 0.3)), 1, -1))
            s.paint(lamp, LIGHT, rng.choice([(250, 170, 30), (240, 40, 20), (40, 230, 80)]), "noise", 5)
    # traffic and people, far to near
    objects = []
    for _ in range(rng.integers(4, 10)):
        t = rng.uniform(0.2, 1.0)
        objects.append((t, rng.choice([CAR, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE, PERSON, PERSON])))
    for t, cls in sorted(objects):
        ground_y = horizon + (h - horizon) * t
        scale = 0.06 * h + 0.3 * h * t
        if cls in (CAR, TRUCK, BUS, TRAIN):
            lo, hi = vx + (road_l - vx) * t, vx + (road_r - vx) * t
            draw_vehicle(s, cls, rng.uniform(lo, hi), ground_y, scale * 0.45)
        elif cls in (MOTORCYCLE, BICYCLE):
            x = rng.uniform(0.05, 0.95) * w
            draw_two_wheeler(s, x, ground_y, scale * 0.6, cls == MOTORCYCLE, rng.random() < 0.7)
        else:
            draw_person(s, rng.uniform(0, w), ground_y, scale * 1.1)
    # ego vehicle: the hood at the bottom, void in the evaluation
    hood = s.mask(lambda m: cv2.ellipse(m, _poly((w / 2, h * 1.05)), _poly((w * 0.55, h * 0.1)), 0, 180, 360, 1, -1))
    s.paint(hood, None, (35, 35, 40), "gradient", 15, label_id=EGO_VEHICLE_LABEL_ID)
    # camera: blur, brightness, sensor noise
    s.image = cv2.GaussianBlur(s.image, (0, 0), 0.7) * rng.uniform(0.8, 1.15) + rng.normal(0, 4, s.image.shape)
    return s


def scenes(split: str, n_images: int, hw: tuple[int, int], seed: int = 0) -> Iterator[Scene]:
    """The seeded scenes of a generated split: the same arguments give the same scenes."""
    for i in range(n_images):
        yield draw_street_scene(*hw, seed=zlib.crc32(f"{seed}/{split}/{i}".encode()))


def lookup_from_street(values: list[int], unlabelled: int) -> np.ndarray:
    """A 256-entry table from the scenes' classes (Cityscapes train ids, 255 = unlabelled) to a data set's values."""
    table = np.full(256, unlabelled, np.uint8)
    table[:len(values)] = values
    return table
