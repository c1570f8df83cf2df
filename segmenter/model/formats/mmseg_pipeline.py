"""MMSegmentation's test-time data handling, read strictly: the resize box, the mean / std and channel order, the
test-time views.

mmseg 1.x: the model's `data_preprocessor` (SegDataPreProcessor) normalizes, the test pipeline
`Resize(scale=(2048, 512), keep_ratio=True)` sets the box, `tta_pipeline` (TestTimeAug) the multi-scale
views, resizing the image itself (`scale_factor`) or fitting it into a box (`scale`). mmseg 0.x: the
test pipeline's `MultiScaleFlipAug(img_scale, img_ratios, flip)` with `Normalize(mean, std, to_rgb=True)`
inside. Every step and setting is checked: one this reader does not know, or a value it does not
build (a vertical flip, a padding step, a resize without keep_ratio), is an error naming it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..strict import boolean, choice, fail, ignored, named, numbers, pair, read_section, show
from ..variant import NORMALIZATIONS


def _kind(step: Any, where: str, source: Path) -> str:
    if not isinstance(step, dict) or not isinstance(step.get("type"), str):
        raise fail(source, f"{where} must be a transform dict with a type, got {show(step)}")
    return step["type"].removeprefix("mmseg.").removeprefix("mmcv.")


def _positive_float(value: Any, where: str, source: Path) -> float:
    """mmcv's scale_factor: a float, or two equal floats (an int is refused, as mmcv refuses it)."""
    items = [value] * 2 if isinstance(value, float) else list(value) if isinstance(value, tuple) else None
    if items is None or len(items) != 2 or not all(isinstance(v, float) and v > 0 for v in items):
        raise fail(source, f"{where} must be a positive float (or two), got {show(value)}")
    if items[0] != items[1]:
        raise fail(source, f"{where}={show(value)}: only equal height and width factors are supported")
    return items[0]


RESIZE = {"type": ignored, "scale": pair(None), "scale_factor": ignored, "keep_ratio": boolean(False),
          "clip_object_border": ignored, "backend": choice("cv2", "cv2"),
          "interpolation": choice("bilinear", "bilinear")}
# mmseg 0.x's Resize inside MultiScaleFlipAug: its scale comes from the aug
RESIZE_0X = {"type": ignored, "img_scale": ignored, "multiscale_mode": ignored, "ratio_range": ignored,
             "keep_ratio": boolean(True), "min_size": ignored}
FLIP = {"type": ignored, "prob": ignored, "flip_ratio": ignored, "direction": choice("horizontal", "horizontal"),
        "swap_seg_labels": ignored}
LOAD_IMAGE = {"type": ignored, "to_float32": boolean(False), "color_type": choice("color", "color"),
              "imdecode_backend": choice("cv2", "cv2"), "backend_args": ignored, "file_client_args": ignored,
              "ignore_empty": ignored}
# Steps that load labels or pack results: their settings do not touch the image (labels follow the data set's
# own convention, data/datasets/)
PASSIVE = ("LoadAnnotations", "PackSegInputs", "ImageToTensor", "Collect", "DefaultFormatBundle")


def _box(scale: tuple[int, int], where: str, source: Path) -> tuple[int, int]:
    """(short side, long / short) of a keep-ratio box."""
    long, short = max(scale), min(scale)
    if long % short:
        raise fail(source, f"{where} {scale}: the long side must be a multiple of the short one")
    return short, long // short


def test_pipeline(cfg: dict) -> list:
    """The steps mmseg runs on a test image (1.x test_dataloader, 0.x data.test, or the bare variable)."""
    for path in (("test_dataloader", "dataset", "pipeline"), ("data", "test", "pipeline"), ("test_pipeline",),
                 ("val_dataloader", "dataset", "pipeline")):
        node: Any = cfg
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, list):
            return node
    return []


class TestPipeline:
    """What a config's test pipeline does to an image: resize box, Normalize (0.x) and 0.x's multi-scale views."""

    def __init__(self, cfg: dict, source: Path) -> None:
        self.source = source
        self.box: tuple[int, int] | None = None  # (short side, ratio)
        self.normalize: dict | None = None  # 0.x Normalize settings
        self.views: tuple[tuple[float, bool], ...] = ()  # 0.x MultiScaleFlipAug img_ratios x flips
        steps = test_pipeline(cfg)
        if not steps:
            raise fail(source, "no test pipeline (test_dataloader.dataset.pipeline, data.test.pipeline or "
                       "test_pipeline) in the config")
        for i, step in enumerate(steps):
            self._step(step, f"test pipeline step {i + 1}")
        if self.box is None:
            raise fail(source, "the test pipeline has no keep-ratio Resize (or 0.x MultiScaleFlipAug img_scale): "
                       "the size images are evaluated at is unknown")

    def _step(self, step: Any, where: str, inside_aug: bool = False) -> None:
        kind, source = _kind(step, where, self.source), self.source
        where = f"{where} ({kind})"
        if kind == "LoadImageFromFile":
            read_section(step, LOAD_IMAGE, where, source)
        elif kind == "Resize" and inside_aug:
            read_section(step, RESIZE_0X, where, source)
            if not step.get("keep_ratio", True):
                raise fail(source, f"{where} keep_ratio=False: only keep-ratio resizing is supported")
        elif kind == "Resize":
            settings = read_section(step, RESIZE, where, source)
            if settings["scale"] is None or "scale_factor" in step or not settings["keep_ratio"]:
                raise fail(source, f"{where}: only Resize(scale=(long, short), keep_ratio=True) is supported as "
                           "the test resize")
            self._set_box(_box(settings["scale"], f"{where} scale", source), where)
        elif kind == "MultiScaleFlipAug" and not inside_aug:
            self._multi_scale(step, where)
        elif kind == "RandomFlip" and inside_aug:
            read_section(step, FLIP, where, source)
        elif kind == "Normalize" and inside_aug:
            read_section(step, {"type": ignored, "mean": ignored, "std": ignored, "to_rgb": boolean(True)}, where,
                         source)
            self.normalize = step
        elif kind in PASSIVE:
            pass
        else:
            raise fail(source, f"{where} is a step this reader does not build (known: LoadImageFromFile, Resize, "
                       f"MultiScaleFlipAug, RandomFlip, Normalize, {', '.join(PASSIVE)}); its effect on the image "
                       "would be lost")

    def _set_box(self, box: tuple[int, int], where: str) -> None:
        if self.box is not None and self.box != box:
            raise fail(self.source, f"{where}: a second resize in the test pipeline is not supported")
        self.box = box

    def _multi_scale(self, step: dict, where: str) -> None:
        rules = {"type": ignored, "img_scale": pair(None), "img_ratios": ignored, "flip": boolean(False),
                 "flip_direction": choice("horizontal", "horizontal"), "transforms": ignored}
        settings = read_section(step, rules, where, self.source)
        if settings["img_scale"] is None:
            raise fail(self.source, f"{where} without img_scale (ratios of the image itself) is not supported")
        self._set_box(_box(settings["img_scale"], f"{where} img_scale", self.source), where)
        ratios = step.get("img_ratios")
        if ratios is not None:
            ratios = [ratios] if isinstance(ratios, (int, float)) and not isinstance(ratios, bool) else ratios
            if not isinstance(ratios, (list, tuple)) or not ratios or not all(
                    isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in ratios):
                raise fail(self.source, f"{where} img_ratios must be positive numbers, got {show(ratios)}")
            flips = (False, True) if settings["flip"] else (False,)
            self.views = tuple((float(r), f) for r in ratios for f in flips)
        inner = step.get("transforms") or []
        if not isinstance(inner, list):
            raise fail(self.source, f"{where} transforms must be a list, got {show(inner)}")
        for i, t in enumerate(inner):
            self._step(t, f"{where} transform {i + 1}", inside_aug=True)


PREPROCESSOR = {"type": named("SegDataPreProcessor"), "mean": ignored,
                "std": ignored, "size": ignored, "size_divisor": ignored, "pad_val": ignored, "seg_pad_val": ignored,
                "bgr_to_rgb": boolean(False), "rgb_to_bgr": boolean(False), "batch_augments": ignored,
                "test_cfg": ignored}


def normalization(model: dict, pipeline: TestPipeline, source: Path) -> str:
    """The name of the mean / std and channel order the model takes: the model's data_preprocessor (1.x), else
    the test pipeline's Normalize (0.x), as each publisher's code applies it."""
    pre = model.get("data_preprocessor")
    if pre is not None:
        where = "model.data_preprocessor"
        settings = read_section(pre, PREPROCESSOR, where, source)
        if settings["bgr_to_rgb"] and settings["rgb_to_bgr"]:
            raise fail(source, f"{where} sets both bgr_to_rgb and rgb_to_bgr; mmseg refuses that too")
        to_rgb = settings["bgr_to_rgb"] or settings["rgb_to_bgr"]  # either swaps the channels of the BGR image
        test_cfg = pre.get("test_cfg")
        if test_cfg and (not isinstance(test_cfg, dict) or any(test_cfg.get(k) is not None for k in test_cfg)):
            raise fail(source, f"{where}.test_cfg={show(test_cfg)} pads every test image; not supported")
        norm = pre
    elif pipeline.normalize is not None:
        where, norm = "the test pipeline's Normalize", pipeline.normalize
        to_rgb = norm.get("to_rgb", True)  # mmseg 0.x's Normalize defaults to_rgb to True
    else:
        raise fail(source, "no mean / std: neither model.data_preprocessor (mmseg 1.x) nor a Normalize step in the "
                   "test pipeline (0.x); without them mmseg would feed raw pixels, which this reader does not build")
    if norm.get("mean") is None or norm.get("std") is None:
        raise fail(source, f"{where} has no mean or std: unnormalized input is not supported")
    mean, std = numbers(norm["mean"], f"{where}.mean", source), numbers(norm["std"], f"{where}.std", source)
    if not to_rgb:
        raise fail(source, f"{where}: the model takes BGR input (no channel swap); not supported")
    for name, (known_mean, known_std) in NORMALIZATIONS.items():
        if all(abs(a - b) < 1e-6 for a, b in zip(mean + std, known_mean + known_std)):
            return name
    raise fail(source, f"{where} mean {mean} / std {std} is not one of the known normalizations "
               f"({', '.join(NORMALIZATIONS)})")


def _tta_resize(step: dict, where: str, box: tuple[int, int], source: Path) -> tuple[float, bool]:
    """(ratio, of the image itself) of one TestTimeAug Resize: scale_factor r, or a keep-ratio box that is the test
    box scaled by some r (the box of view r is (int(r * ratio * S), int(r * S)))."""
    settings = read_section(step, RESIZE, where, source)
    if not settings["keep_ratio"]:
        raise fail(source, f"{where} keep_ratio=False: only keep-ratio resizing is supported")
    if ("scale_factor" in step) == (settings["scale"] is not None):
        raise fail(source, f"{where} must give exactly one of scale and scale_factor (as mmcv's Resize requires)")
    if settings["scale"] is None:
        return _positive_float(step["scale_factor"], f"{where} scale_factor", source), True
    long, short = max(settings["scale"]), min(settings["scale"])
    S, ratio = box
    r = short / S
    if (int(r * ratio * S), int(r * S)) != (long, short):
        raise fail(source, f"{where} scale {settings['scale']} is not the test box ({ratio * S}, {S}) scaled by "
                   "one ratio; not supported")
    return r, False


def _tta_flip(step: dict, where: str, source: Path) -> bool:
    settings = read_section(step, FLIP, where, source)
    prob = step.get("prob")
    if not isinstance(prob, float) or prob not in (0.0, 1.0):
        raise fail(source, f"{where} prob={show(prob)}: test-time views flip always (1.0) or never (0.0)")
    del settings
    return prob == 1.0


def tta_views(cfg: dict, box: tuple[int, int], source: Path) -> tuple[tuple[tuple[float, bool], ...], bool] | None:
    """The 1.x tta_pipeline's views (ratio, flip) and whether the ratios scale the image itself; None without one."""
    tta = cfg.get("tta_pipeline")
    if tta is None:
        return None
    if not isinstance(tta, list):
        raise fail(source, f"tta_pipeline must be a list of steps, got {show(tta)}")
    aug = None
    for i, step in enumerate(tta):
        where = f"tta_pipeline step {i + 1}"
        kind = _kind(step, where, source)
        if kind == "LoadImageFromFile":
            read_section(step, LOAD_IMAGE, f"{where} ({kind})", source)
        elif kind == "TestTimeAug" and aug is None:
            aug = step
        else:
            raise fail(source, f"{where} ({kind}) is a step this reader does not build (known: LoadImageFromFile, "
                       "one TestTimeAug)")
    if aug is None:
        raise fail(source, "tta_pipeline has no TestTimeAug step")
    read_section(aug, {"type": ignored, "transforms": ignored}, "tta_pipeline TestTimeAug", source)
    groups = aug.get("transforms")
    if not isinstance(groups, list) or not all(isinstance(g, list) and g for g in groups):
        raise fail(source, "tta_pipeline TestTimeAug transforms must be a list of non-empty lists of steps")
    resizes, flips = None, [False]
    for g, group in enumerate(groups):
        where = f"tta_pipeline TestTimeAug group {g + 1}"
        kinds = {_kind(t, where, source) for t in group}
        if kinds == {"Resize"} and resizes is None:
            resizes = [_tta_resize(t, f"{where} Resize {i + 1}", box, source) for i, t in enumerate(group)]
        elif kinds == {"RandomFlip"} and flips == [False]:
            flips = [_tta_flip(t, f"{where} RandomFlip {i + 1}", source) for i, t in enumerate(group)]
        elif not kinds <= set(PASSIVE):
            raise fail(source, f"{where} holds {', '.join(sorted(kinds))}: only one group of Resize steps, one of "
                       f"RandomFlip steps and {', '.join(PASSIVE)} are read")
    if resizes is None:
        resizes = [(1.0, True)]
    if len({of_image for _, of_image in resizes}) > 1:
        raise fail(source, "tta_pipeline mixes Resize by scale_factor and by scale; not supported")
    return tuple((r, f) for r, _ in resizes for f in flips), resizes[0][1]
