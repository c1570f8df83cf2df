"""Reading PaddleSeg's YAML configs as PaddleSeg merges them, without PaddleSeg.

A config is YAML (read with a safe loader: no tags that build objects). `_base_` (a path or a list of
them, relative to the file) names configs read first; the file is merged over each in turn, so the
file wins over its bases and an earlier base over a later one: dicts key by key, any other value (lists
included) replaced, and a dict holding `_inherited_: False` replacing the base's dict whole
(paddleseg/cvlibs/config.py). Bounded as the MMSegmentation reader is: regular files only, 1 MB each,
64 files and 8 MB in all, values of a config's size once aliases are expanded, no loops.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ...errors import SegmenterError
from ..strict import check_size, show
from .chain import read_chain

INHERIT, BASE = "_inherited_", "_base_"


def parse_yaml(path: Path, text: str) -> Any:
    """One YAML document, safely: tags refused, aliases bounded once expanded."""
    try:
        doc = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        raise SegmenterError(f"{path}: refused YAML tag ({str(exc.problem)[:80]}); a config holds plain values") \
            from None
    except yaml.YAMLError as exc:
        raise SegmenterError(f"{path}: not valid YAML ({str(exc).splitlines()[0][:120]})") from None
    except RecursionError:
        raise SegmenterError(f"{path}: YAML nested too deeply to be a config") from None
    check_size(doc, path, "its YAML")
    return doc


def merge(child: dict, base: dict, source: Path) -> dict:
    """PaddleSeg's merge of `child` over `base`."""
    if not child.get(INHERIT, True):
        return {k: v for k, v in child.items() if k != INHERIT}
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and key in out:
            if not isinstance(out[key], dict):
                raise SegmenterError(f"{source}: '{key}' is a mapping here but {show(out[key])} in its _base_; "
                                     "PaddleSeg cannot merge them either")
            out[key] = merge(value, out[key], source)
        else:
            out[key] = value
    return out


def read_config_files(path: str | Path) -> tuple[dict, tuple[Path, ...]]:
    """The merged config of a file and its `_base_` chain (the file merged over each base in turn), and every
    file read for it."""
    return read_chain(path, _parse, _combine)


def _parse(path: Path, text: str) -> tuple[dict, object]:
    doc = parse_yaml(path, text)
    if not isinstance(doc, dict):
        raise SegmenterError(f"{path}: a PaddleSeg config is a YAML mapping, got {type(doc).__name__}")
    return doc, doc.pop(BASE, None)


def _combine(path: Path, own: dict, inherited: list[dict]) -> dict:
    for base in inherited:
        own = merge(own, base, path)
    return own
