"""The data sets of the released models. Adding one: a module that fills in a DatasetSpec, and a line below."""
from __future__ import annotations

from ...errors import SegmenterError
from . import ade20k, cityscapes, pascal_context
from .spec import IGNORE_INDEX, DatasetSpec, Sample

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (cityscapes.SPEC, ade20k.SPEC, pascal_context.SPEC)}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a data set by any of its names (this package's, MMSegmentation's, PaddleSeg's)."""
    for spec in DATASETS.values():
        if name in spec.names:
            return spec
    raise SegmenterError(f"unknown data set '{name}' (known: {', '.join(DATASETS)})")


def top_folders() -> str:
    """The data sets' top folders, as a help text names them: `cityscapes/, ADEChallengeData2016/ or VOCdevkit/`."""
    folders = [f"{spec.folder}/" for spec in DATASETS.values()]
    return ", ".join(folders[:-1]) + f" or {folders[-1]}"


def default_splits() -> str:
    """Each data set's default split, as a help text names them."""
    return "; ".join(f"{spec.title} {spec.default_split}" for spec in DATASETS.values())


__all__ = ["DATASETS", "IGNORE_INDEX", "DatasetSpec", "Sample", "dataset_spec", "default_splits", "top_folders"]
