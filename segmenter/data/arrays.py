"""Window files between the guide's steps: raw float32 `.bin` (ais_bench's BIN) or `.npy`, checked before use.

A window file holds one array of a known shape: a model input (1, 3, H, W) or an output (1, K, H, W),
the leading 1 optional in `.npy`. The checks read only sizes and `.npy` headers, so a whole folder is
checked before the first file is used; every mismatch is one error naming the file and both shapes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SegmenterError

SUFFIXES = (".bin", ".npy")


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a .npy file from its header, without reading the data; a file whose size does
    not match its header is an error."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise SegmenterError(f"{path}: not a readable .npy file ({str(exc)[:120]})") from None
    if not dtype.hasobject and path.stat().st_size != offset + int(np.prod(shape)) * dtype.itemsize:
        raise SegmenterError(f"{path}: not a readable .npy file (its size does not match its header {dtype} {shape}: "
                             "truncated?)")
    return tuple(shape), dtype


def shapes_of(item_shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The shapes a window file of one item may have: with the batch axis of 1 (as written), or without."""
    return (1, *item_shape), tuple(item_shape)


def check_window_file(path: Path, item_shape: tuple[int, ...], what: str,
                      size_hint: Callable[[int], str] | None = None) -> None:
    """A .bin of exactly prod(item_shape) float32 values, or a float .npy of one item; else an error naming
    the file, what it holds and what is expected (`size_hint` says what a .bin of a wrong size may be)."""
    shapes = shapes_of(item_shape)
    if path.suffix == ".npy":
        shape, dtype = npy_header(path)
        if shape not in shapes or dtype.kind != "f":
            raise SegmenterError(f"{path}: holds {dtype} {shape}, expected float32 {shapes[0]} ({what})")
        return
    expected = int(np.prod(item_shape)) * 4
    size = path.stat().st_size
    if size != expected:
        hint = f": {size_hint(size)}" if size_hint else ""
        raise SegmenterError(f"{path}: {size} bytes, expected {expected} (float32 "
                             f"{'x'.join(map(str, shapes[0]))}, {what}){hint}")


def read_window_file(path: Path, item_shape: tuple[int, ...], what: str) -> np.ndarray:
    """One window file as a (1, *item_shape) float32 array, checked first."""
    check_window_file(path, item_shape, what)
    try:
        data = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.fromfile(path, np.float32)
    except (OSError, ValueError, EOFError) as exc:
        raise SegmenterError(f"{path}: cannot be read ({str(exc)[:120]})") from None
    return data.astype(np.float32, copy=False).reshape(1, *item_shape)
