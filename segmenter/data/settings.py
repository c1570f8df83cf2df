"""A run's settings from the variant, the data set and the user's choices: which data set, which windows."""
from __future__ import annotations

from dataclasses import replace

from ..defaults import default_stride
from ..errors import SegmenterError
from ..model.variant import Variant
from .datasets import DATASETS, DatasetSpec, dataset_spec
from .plan import MULTISCALE_RATIOS, SINGLE_SCALE, View, WindowConfig, make_views


def resolve_dataset(variant: Variant, name: str | None = None) -> DatasetSpec:
    """The data set given, else the variant's (dataset_kwargs.dataset, or an MMSegmentation config's
    dataset_type); its classes must be the model's. Class names and palette the checkpoint carries replace
    the data set's, for pictures and per-class tables."""
    name = name or variant.dataset
    if name is None:
        raise SegmenterError(f"{variant.path}: names no data set (dataset_kwargs.dataset): give one of "
                             f"{', '.join(DATASETS)}")
    known = {n for spec in DATASETS.values() for n in spec.names}
    if name not in known:
        raise SegmenterError(f"{variant.path}: data set '{name}' is not one this software reads (known: "
                             f"{', '.join(DATASETS)}); give one of those")
    spec = dataset_spec(name)
    if spec.n_cls != variant.n_cls:
        raise SegmenterError(f"{variant.path}: the model has {variant.n_cls} classes but {spec.title} has "
                             f"{spec.n_cls}; is this the model of that data set?")
    if variant.classes:
        spec = replace(spec, classes=variant.classes, palette=variant.palette or spec.palette)
    return spec


MODEL_MULTISCALE = "multiscale"  # the views the model's own evaluation uses for multi-scale + flip


def model_views(variant: Variant) -> tuple[View, ...]:
    """The model's multi-scale + flip views: its config's (MMSegmentation), else upstream's --multiscale."""
    if variant.tta:
        return tuple(View(scale, flip, variant.tta_of_image) for scale, flip in variant.tta)
    return make_views(list(MULTISCALE_RATIOS), flip=True)


def window_config(variant: Variant, spec: DatasetSpec, image_size: int | None = None, window_size: int | None = None,
                  window_stride: int | None = None, views: tuple[View, ...] | str = SINGLE_SCALE,
                  log=print) -> WindowConfig:
    """Given values, else the upstream evaluation's: S from the variant (inference_kwargs.im_size, then
    dataset_kwargs.image_size), else the data set's; the window from the variant; the stride the variant's own,
    else the guide's (window - 32)."""
    for note in variant.notes:
        log(f"note: {note}")
    size = image_size if image_size is not None else variant.image_size
    if size is None:
        size = spec.image_size
        log(f"note: {variant.path.name} has no inference_kwargs.im_size or dataset_kwargs.image_size: images "
            f"resized with S = {size}, the upstream evaluation's for {spec.title}")
    window = window_size if window_size is not None else variant.window_size
    stride = next(s for s in (window_stride, variant.window_stride, default_stride(window)) if s is not None)
    if views == MODEL_MULTISCALE:
        views = model_views(variant)
    return WindowConfig(image_size=size, window_size=window, window_stride=stride,
                        normalization=variant.normalization, box_ratio=variant.box_ratio or spec.box_ratio,
                        views=views, raise_to_window=variant.raise_to_window, resize_rule=variant.resize_rule,
                        view_merge=variant.view_merge)


def describe(cfg: WindowConfig, spec: DatasetSpec) -> str:
    """One line: the data set, the fit box, the windows and the views."""
    of = " of the image" if any(v.of_image for v in cfg.views) else ""
    views = "single scale" if cfg.inference == "single_scale" else (
        f"{len(cfg.views)} views: scales{of} {' '.join(f'{s:g}' for s in dict.fromkeys(v.scale for v in cfg.views))}"
        + (" each also flipped" if any(v.flip for v in cfg.views) else ""))
    resize = f"their short side resized to {cfg.image_size}" if cfg.resize_rule == "short-side-float" else \
        f"resized to fit {cfg.box_ratio * cfg.image_size}x{cfg.image_size}"
    return f"{spec.title}: images {resize}, windows {cfg.window_size} at stride {cfg.window_stride}, {views}"
