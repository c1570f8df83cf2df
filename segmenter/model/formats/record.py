"""What a checkpoint format is: how its files are recognised, described, renamed onto this package's model, and
written; one record per format (formats/__init__.py lists them)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass
class Renamed:
    """A checkpoint's weights under this package's names, and how the file names and shapes each of them (for
    messages that speak of the file as its publisher wrote it)."""

    state: dict[str, Any]  # our key -> tensor
    names: dict[str, str] = field(default_factory=dict)  # our key -> the file's key
    shapes: dict[str, tuple] = field(default_factory=dict)  # our key -> its shape as the file stores it
    name_of_missing: Callable[[str], str] = str  # how the file would name one of our keys it lacks


@dataclass(frozen=True)
class Format:
    """A checkpoint format: one publisher's files.

    `container` is how its files are written: "torch" (torch.save's archive, or its older pickle) or "pickle" (a
    plain pickle of numpy arrays). `holds(obj)` says whether a loaded file is of this format, and `unpack(obj)`
    gives its weights (under the file's names) and meta. A model's description comes from a description file
    when one is given (`reads_description(text)` says whether a file's text is this format's, and
    `read_description(path, meta)` reads it), else from `own_description(checkpoint)` (a file beside it, the
    config inside, or a one-line error naming what to give). `to_ours(state, path)` renames the weights onto
    this package's model; `write(model, variant, dataset, folder)`, where the format can be written, saves a
    model in it and returns the files and what it could not carry over.
    """

    name: str  # as Variant.format and the provenance record say it: "upstream", "mmseg", "paddle"
    title: str  # in messages: "the upstream release", "MMSegmentation", "PaddleSeg"
    container: str
    holds: Callable[[Any], bool]
    unpack: Callable[[Any], tuple[dict, dict]]
    reads_description: Callable[[str], bool]
    read_description: Callable[[Path, dict | None], Any]
    own_description: Callable[[Any], Any]
    to_ours: Callable[[dict, Path], Renamed]
    write: Callable[..., tuple[list[Path], list[str]]] | None = None
    admitted_globals: tuple = ()  # (stand-in, "module.name") pairs torch.load may build for this format's files
    extra_metrics: tuple[str, ...] = ()  # metrics of the publisher's own definition, recorded beside the usual ones


def rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    """A key renamed by the first rule that matches it, or None. A rule is (source, target): a prefix of a key, or
    a whole key when it ends in `$`; `{i}` stands for a block index, carried into the target."""
    for source, target in rules:
        whole = source.endswith("$")
        pattern = "^" + re.escape(source.rstrip("$")).replace(re.escape("{i}"), r"(\d+)") + ("$" if whole else "")
        found = re.match(pattern, key)
        if found:
            renamed = target.rstrip("$").replace("{i}", found.group(1)) if found.groups() else target.rstrip("$")
            return renamed + key[found.end():]
    return None
