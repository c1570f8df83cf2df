"""The data sets of the released models. Adding one: a module that fills in a DatasetSpec, and a line below."""
from __future__ import annotations

from ...errors import SegmenterError
from . import ade20k, cityscapes, pascal_context
from .spec import IGNORE_INDEX, DatasetSpec, Sample

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (cityscapes.SPEC, ade20k.SPEC, pascal_context.SPEC)}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise SegmenterError(f"unknown data set '{name}' (known: {', '.join(DATASETS)})")
    return DATASETS[name]


__all__ = ["DATASETS", "IGNORE_INDEX", "DatasetSpec", "Sample", "dataset_spec"]
