"""A run's settings from the variant, the data set and the user's choices: which data set, which windows."""
from __future__ import annotations

from ..defaults import default_stride
from ..errors import SegmenterError
from ..model.variant import Variant
from .datasets import DATASETS, DatasetSpec, dataset_spec
from .plan import SINGLE_SCALE, View, WindowConfig


def resolve_dataset(variant: Variant, name: str | None = None) -> DatasetSpec:
    """The data set given, else the variant's dataset_kwargs.dataset; its classes must be the model's."""
    name = name or variant.dataset
    if name is None:
        raise SegmenterError(f"{variant.path}: names no data set (dataset_kwargs.dataset): give one of "
                             f"{', '.join(DATASETS)}")
    if name not in DATASETS:
        raise SegmenterError(f"{variant.path}: data set '{name}' is not one this software reads (known: "
                             f"{', '.join(DATASETS)}); give one of those")
    spec = dataset_spec(name)
    if spec.n_cls != variant.n_cls:
        raise SegmenterError(f"{variant.path}: the model has {variant.n_cls} classes but {spec.title} has "
                             f"{spec.n_cls}; is this the model of that data set?")
    return spec


def window_config(variant: Variant, spec: DatasetSpec, image_size: int | None = None, window_size: int | None = None,
                  window_stride: int | None = None, views: tuple[View, ...] = SINGLE_SCALE,
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
    return WindowConfig(image_size=size, window_size=window, window_stride=stride,
                        normalization=variant.normalization, box_ratio=spec.box_ratio, views=views)


def describe(cfg: WindowConfig, spec: DatasetSpec) -> str:
    """One line: the data set, the fit box, the windows and the views."""
    views = "single scale" if cfg.inference == "single_scale" else (
        f"{len(cfg.views)} views: scales {' '.join(f'{s:g}' for s in dict.fromkeys(v.scale for v in cfg.views))}"
        + (" each also flipped" if any(v.flip for v in cfg.views) else ""))
    return (f"{spec.title}: images resized to fit {cfg.box_ratio * cfg.image_size}x{cfg.image_size}, windows "
            f"{cfg.window_size} at stride {cfg.window_stride}, {views}")
