"""What happens to each image: its views (scale, flip), their canvases and window anchors, its file prefix.

An image is looked at through one or more views. A view resizes the image to fit a box (the data
set's box scaled by the view's ratio; or, for MMSegmentation 1.x's test-time views, the image itself
scaled by the ratio), flips it when asked, raises its short side to the window size when smaller
(upstream; MMSegmentation cuts a smaller window instead), and cuts windows at the anchors.
Single-scale evaluation is one view (ratio 1, unflipped). Window files are numbered k = 0, 1, ...
across all views of an image, view by view.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SegmenterError
from .windows import axis_window_count, window_anchors, window_shape

MAX_WINDOWS_PER_IMAGE = 100_000  # a layout beyond this is a mistake, not an image


@dataclass(frozen=True)
class View:
    """A resize ratio of the fit box (or, `of_image`, of the image itself) and an optional horizontal flip."""

    scale: float = 1.0
    flip: bool = False
    of_image: bool = False

    def to_json(self) -> dict:
        return {"scale": self.scale, "flip": self.flip, **({"of_image": True} if self.of_image else {})}


SINGLE_SCALE = (View(),)
MULTISCALE_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # upstream --multiscale, each also flipped


MAX_SCALE = 4.0  # resize ratios beyond this are mistakes (evaluation uses up to 1.75), not views
MAX_VIEWS = 64
# How an image is resized for its views: "fit-box", into the data set's box (r * S, S) scaled by the view's ratio,
# side = int(x * scale + 0.5), on uint8 pixels (the upstream release, mmcv's imrescale); "short-side-float", its short
# side to S (the other side int(round(x * S / short))) on float pixels, then the view's ratio of that size
# (PaddleSeg's ResizeByShort, then aug_inference's scales)
RESIZE_RULES = ("fit-box", "short-side-float")
# How views are combined: "softmax", the mean of their probabilities at the original size (upstream, mmseg);
# "mean-logits", the mean of their logits at the resized (ratio 1) size, then resized to the original (PaddleSeg)
VIEW_MERGES = ("softmax", "mean-logits")


def check_scale(scale: float) -> None:
    if not 0 < scale <= MAX_SCALE:
        raise SegmenterError(f"scale {scale:g} must be above 0 and at most {MAX_SCALE:g}")


def make_views(scales: list[float] | None = None, flip: bool = False, of_image: bool = False) -> tuple[View, ...]:
    """Views of the given ratios (default 1.0), each followed by its flipped twin when flip is set."""
    views = []
    for scale in scales or [1.0]:
        check_scale(scale)
        views += [View(float(scale), False, of_image)] + ([View(float(scale), True, of_image)] if flip else [])
    if len(views) > MAX_VIEWS:
        raise SegmenterError(f"{len(views)} views: at most {MAX_VIEWS}")
    return tuple(views)


@dataclass(frozen=True)
class WindowConfig:
    """How images become windows: fit box, window, stride, normalization and views."""

    image_size: int  # S: images are resized to fit (box_ratio * S, S) keeping their ratio
    window_size: int
    window_stride: int
    normalization: str
    box_ratio: int = 2  # the data set's long / short side of the fit box (Cityscapes 2)
    views: tuple[View, ...] = SINGLE_SCALE
    raise_to_window: bool = True  # a short side below the window raised to it (upstream), else smaller windows
    resize_rule: str = "fit-box"  # one of RESIZE_RULES
    view_merge: str = "softmax"  # one of VIEW_MERGES

    def __post_init__(self) -> None:
        if self.resize_rule not in RESIZE_RULES or self.view_merge not in VIEW_MERGES:
            raise SegmenterError(f"resize rule {self.resize_rule!r} / view merge {self.view_merge!r}: known are "
                                 f"{', '.join(RESIZE_RULES)} / {', '.join(VIEW_MERGES)}")
        if self.window_size <= 0:
            raise SegmenterError(f"window size must be positive, got {self.window_size}")
        if self.image_size <= 0:
            raise SegmenterError(f"image size must be positive, got {self.image_size}")
        if self.window_stride <= 0:
            raise SegmenterError(f"window stride must be positive, got {self.window_stride}")
        if self.window_stride > self.window_size:
            raise SegmenterError(f"window stride {self.window_stride} is larger than the window size "
                                 f"{self.window_size}: pixels between windows would not be covered; "
                                 "use a stride of at most the window size")
        if not self.views:
            raise SegmenterError("no views: give at least one scale")
        for view in self.views:
            check_scale(view.scale)

    @property
    def inference(self) -> str:
        """What the metrics file records: single_scale for one unflipped ratio-1 view, else multi_scale."""
        return "single_scale" if self.views == SINGLE_SCALE else "multi_scale"

    def fit_box(self, view: View) -> tuple[int, int]:
        """(long side, short side) of the box a view's image is resized to fit."""
        return int(view.scale * self.box_ratio * self.image_size), int(view.scale * self.image_size)

    def base_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The ratio-1 size of an image under the resize rule (the size view logits are merged at, for mean-logits)."""
        if self.resize_rule == "short-side-float":
            return short_side_size(hw, self.image_size)
        return resized_size(hw, self.fit_box(View()))

    @classmethod
    def from_json(cls, doc: dict) -> WindowConfig:
        """The settings to_json wrote (by this package, for another of its processes: not checked as a file is)."""
        views = tuple(View(v["scale"], v["flip"], v.get("of_image", False)) for v in doc["views"])
        return cls(doc["image_size"], doc["window_size"], doc["window_stride"], doc["normalization"],
                   doc["box_ratio"], views, doc.get("raise_to_window", True), doc.get("resize_rule", "fit-box"),
                   doc.get("view_merge", "softmax"))

    def to_json(self) -> dict:
        return {"image_size": self.image_size, "window_size": self.window_size, "window_stride": self.window_stride,
                "normalization": self.normalization, "box_ratio": self.box_ratio,
                "views": [v.to_json() for v in self.views],
                **({} if self.raise_to_window else {"raise_to_window": False}),
                **({} if self.resize_rule == "fit-box" else {"resize_rule": self.resize_rule}),
                **({} if self.view_merge == "softmax" else {"view_merge": self.view_merge})}


def resized_size(hw: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """Keep-ratio size that fits box (long, short): scale = min(long/L, short/S), sides int(x*scale + 0.5) >= 1."""
    h, w = hw
    scale = min(box[0] / max(h, w), box[1] / min(h, w))
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


def short_side_size(hw: tuple[int, int], short: int) -> tuple[int, int]:
    """PaddleSeg's ResizeByShort: the short side to `short`, each side int(round(side * short / short side))."""
    h, w = hw
    scale = short / min(h, w)
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def scaled_size(hw: tuple[int, int], ratio: float) -> tuple[int, int]:
    """The image itself scaled by a ratio, keeping its aspect, as mmcv does it (Resize(scale_factor=r,
    keep_ratio=True)): the target (int(w*r + 0.5), int(h*r + 0.5)), then the keep-ratio fit to it."""
    h, w = hw
    target = (int(w * ratio + 0.5), int(h * ratio + 0.5))
    return resized_size(hw, (max(target), min(target)))


def canvas_size(hw: tuple[int, int], window: int) -> tuple[int, int]:
    """Size after raising the short side to the window when it is smaller (the long side as int(ratio * window))."""
    h, w = hw
    if min(h, w) >= window:
        return h, w
    return (window, int(w / h * window)) if h < w else (int(h / w * window), window)


@dataclass(frozen=True)
class ViewLayout:
    """One view of one image: its resized size, canvas and window anchors (top, left)."""

    view: View
    resized_hw: tuple[int, int]
    canvas_hw: tuple[int, int]
    anchors: tuple[tuple[int, int], ...]
    window_hw: tuple[int, int] = (0, 0)  # (h, w) of its windows: the window, or a shorter side of the canvas

    def to_json(self) -> dict:
        return {**self.view.to_json(), "resized_hw": list(self.resized_hw), "canvas_hw": list(self.canvas_hw),
                "anchors": [list(a) for a in self.anchors]}


def view_size(original_hw: tuple[int, int], view: View, cfg: WindowConfig) -> tuple[int, int]:
    """The size a view resizes the image to, by the resize rule (and, for mmseg 1.x's views, of the image itself)."""
    if cfg.resize_rule == "short-side-float":
        h, w = cfg.base_size(original_hw)  # aug_inference: int(side * scale + 0.5) of the ResizeByShort size
        return max(1, int(h * view.scale + 0.5)), max(1, int(w * view.scale + 0.5))
    return scaled_size(original_hw, view.scale) if view.of_image else resized_size(original_hw, cfg.fit_box(view))


def layout_view(original_hw: tuple[int, int], view: View, cfg: WindowConfig) -> ViewLayout:
    resized = view_size(original_hw, view, cfg)
    canvas = canvas_size(resized, cfg.window_size) if cfg.raise_to_window else resized
    count = axis_window_count(canvas[0], cfg.window_size, cfg.window_stride) * \
        axis_window_count(canvas[1], cfg.window_size, cfg.window_stride)
    if count > MAX_WINDOWS_PER_IMAGE:
        raise SegmenterError(f"an image of {original_hw[0]}x{original_hw[1]} would need {count} windows "
                             f"(canvas {canvas[0]}x{canvas[1]}); more than {MAX_WINDOWS_PER_IMAGE} per image")
    return ViewLayout(view, resized, canvas, tuple(window_anchors(canvas, cfg.window_size, cfg.window_stride)),
                      window_shape(canvas, cfg.window_size))


@dataclass(frozen=True)
class ImagePlan:
    """One image of a run: where it is, its unique window-file prefix, its size and its views' windows."""

    name: str  # its file name, as gt_file.txt lists it
    prefix: str  # unique in the run and dot-free: window k is `<prefix>_<k>.bin`
    image_path: str
    gt_path: str
    original_hw: tuple[int, int]
    views: tuple[ViewLayout, ...] = field(default=())
    merge_hw: tuple[int, int] | None = None  # None: views combined as probabilities at the original size; else
    # their logits averaged at this size (the mean-logits merge), then resized to the original

    @classmethod
    def for_image(cls, name: str, prefix: str, image_path: str | Path, gt_path: str | Path,
                  original_hw: tuple[int, int], cfg: WindowConfig) -> ImagePlan:
        hw = (int(original_hw[0]), int(original_hw[1]))
        merge = cfg.base_size(hw) if cfg.view_merge == "mean-logits" else None
        return cls(name, prefix, str(image_path), str(gt_path), hw,
                   tuple(layout_view(hw, view, cfg) for view in cfg.views), merge)

    @property
    def n_windows(self) -> int:
        return sum(len(v.anchors) for v in self.views)

    def merge_bytes(self, n_cls: int) -> int:
        """Memory to merge the image's windows: one view's (K, canvas) sum and three (K, H, W) maps at the original
        size (the resized view, the views' sum, a softmax), float32; and the sum at merge_hw where views merge
        there."""
        canvas = max(v.canvas_hw[0] * v.canvas_hw[1] for v in self.views)
        merged = self.merge_hw[0] * self.merge_hw[1] if self.merge_hw else 0
        return 4 * n_cls * (canvas + merged + 3 * self.original_hw[0] * self.original_hw[1])

    def window_name(self, k: int) -> str:
        return f"{self.prefix}_{k}"

    def to_json(self) -> dict:
        return {"name": self.name, "prefix": self.prefix, "image_path": self.image_path, "gt_path": self.gt_path,
                "original_hw": list(self.original_hw), "views": [v.to_json() for v in self.views],
                **({"merge_hw": list(self.merge_hw)} if self.merge_hw else {})}


def stem_of(name: str) -> str:
    """What ais_bench keeps of an input's name: everything before the first dot."""
    return name.split(".")[0]


def assign_prefixes(names: list[str]) -> list[str]:
    """A unique, dot-free window prefix per image: its stem, plus `-2`, `-3`, ... for repeated stems.

    ais_bench names outputs after the input's name up to its first dot, so two images whose names
    share that part would overwrite each other's windows and outputs without this.
    """
    stems = [stem_of(n) or "image" for n in names]
    all_stems, used = set(stems), set()
    prefixes = []
    for stem in stems:
        prefix, n = stem, 1
        while prefix in used:
            n += 1
            prefix = f"{stem}-{n}"
            if prefix in all_stems:  # another image's own stem
                prefix = stem
        used.add(prefix)
        prefixes.append(prefix)
    return prefixes


def layout_fingerprint(cfg: WindowConfig, plans: list[ImagePlan]) -> str:
    """A short hash of everything that decides the window files: settings, prefixes and image sizes."""
    doc = {"cfg": cfg.to_json(), "images": [[p.prefix, *p.original_hw] for p in plans]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
