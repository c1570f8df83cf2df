"""A config file and the `_base_` files it names, read bounded: what MMSegmentation's and PaddleSeg's configs share.

Each format says how one file's text becomes its own settings and the bases it names (`parse`), and how
those combine with what the bases give (`combine`); the chain itself is walked here: bases relative to the
file naming them, no loops, regular files only, MAX_FILE_BYTES each, MAX_FILES and MAX_TOTAL_BYTES in all,
and the merged config of a config's size once written out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ...errors import SegmenterError
from ...files import read_regular
from ..strict import check_size, show

MAX_BASES = 32  # _base_ files in one chain: a loop is a mistake
MAX_FILES = 64  # config files read for one config, bases of bases included
MAX_FILE_BYTES = 1 << 20  # one config file (a dumped zoo config is about 10 KB)
MAX_TOTAL_BYTES = 8 << 20  # all the files of one config

Parse = Callable[[Path, str], tuple[dict, object]]  # (path, text) -> (its own settings, the _base_ value it names)
Combine = Callable[[Path, dict, list[dict]], dict]  # (path, its own settings, its bases' configs) -> its config


def base_names(path: Path, bases: object) -> list[str]:
    """`_base_` as a list of file names: a name or a list of them; anything else is an error naming the file."""
    bases = [bases] if isinstance(bases, str) else [] if bases is None else bases
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) and b for b in bases):
        raise SegmenterError(f"{path}: _base_ must be a file name or a list of them, got {show(bases)}")
    return list(bases)


def read_chain(path: str | Path, parse: Parse, combine: Combine) -> tuple[dict, tuple[Path, ...]]:
    """The merged config of a file and its `_base_` chain, and every file read for it (for the checks that no
    output of a run overwrites them)."""
    files: list[Path] = []

    def visit(path: Path, chain: tuple[Path, ...]) -> dict:
        if len(chain) > MAX_BASES or path.resolve() in chain:
            raise SegmenterError(f"{path}: _base_ files refer to each other in a loop")
        if len(files) >= MAX_FILES:
            raise SegmenterError(f"{chain[0]}: its _base_ files name more than {MAX_FILES} files in all; not a "
                                 "config")
        if not path.exists():
            where = f" (the _base_ of {chain[-1]})" if chain else ""
            raise SegmenterError(f"{path}: config file not found{where}")
        data = read_regular(path, MAX_FILE_BYTES, "config file")
        files.append(path)
        if sum(f.stat().st_size for f in files) > MAX_TOTAL_BYTES:
            raise SegmenterError(f"{chain[0] if chain else path}: its config files hold more than "
                                 f"{MAX_TOTAL_BYTES:,} bytes in all; not a config")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SegmenterError(f"{path}: cannot be read as UTF-8 text ({exc.reason} at byte {exc.start})") from None
        own, bases = parse(path, text)
        inherited = [visit(path.parent / base, chain + (path.resolve(),)) for base in base_names(path, bases)]
        return combine(path, own, inherited)

    config = visit(Path(path), ())
    check_size(config, path, "its merged config")
    return config, tuple(files)
