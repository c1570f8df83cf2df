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


def _fits(shape: tuple[int, ...], item_shape: tuple[int, ...]) -> bool:
    """A window of at most item_shape's height and width, the leading axes equal."""
    return len(shape) == len(item_shape) and shape[:-2] == item_shape[:-2] and \
        all(0 < a <= b for a, b in zip(shape[-2:], item_shape[-2:]))


def window_file_shape(path: Path, item_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The item shape a window file holds: a .npy's from its header, a .bin's is item_shape's."""
    if path.suffix != ".npy":
        return tuple(item_shape)
    shape, _ = npy_header(path)
    return tuple(shape[1:]) if len(shape) == len(item_shape) + 1 and shape[0] == 1 else tuple(shape)


def check_window_file(path: Path, item_shape: tuple[int, ...], what: str,
                      size_hint: Callable[[int], str] | None = None, smaller: bool = False) -> None:
    """A .bin of exactly prod(item_shape) float32 values, or a float .npy of one item; else an error naming
    the file, what it holds and what is expected (`size_hint` says what a .bin of a wrong size may be). With
    `smaller`, a .npy may hold a window of a smaller height and width (windows cut smaller than the crop)."""
    shapes = shapes_of(item_shape)
    if path.suffix == ".npy":
        shape, dtype = npy_header(path)
        fits = shape in shapes or smaller and any(_fits(shape, s) for s in shapes)
        if not fits or dtype.kind != "f":
            bound = " or smaller in height and width" if smaller else ""
            raise SegmenterError(f"{path}: holds {dtype} {shape}, expected float32 {shapes[0]}{bound} ({what})")
        return
    expected = int(np.prod(item_shape)) * 4
    size = path.stat().st_size
    if size != expected:
        hint = f": {size_hint(size)}" if size_hint else ""
        raise SegmenterError(f"{path}: {size} bytes, expected {expected} (float32 "
                             f"{'x'.join(map(str, shapes[0]))}, {what}){hint}")


def read_window_file(path: Path, item_shape: tuple[int, ...], what: str, smaller: bool = False) -> np.ndarray:
    """One window file as a (1, *shape) float32 array, checked first; its shape is item_shape, or with `smaller`
    the (smaller) one a .npy holds."""
    check_window_file(path, item_shape, what, smaller=smaller)
    try:
        data = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.fromfile(path, np.float32)
    except (OSError, ValueError, EOFError) as exc:
        raise SegmenterError(f"{path}: cannot be read ({str(exc)[:120]})") from None
    return data.astype(np.float32, copy=False).reshape(1, *window_file_shape(path, item_shape))


def write_window_file(target: Path, window: np.ndarray, fmt: str = "bin") -> None:
    """One window (1, C, h, w) as raw float32 bytes (BIN) or .npy, renamed into place when written."""
    tmp = target.with_name(f".{target.name}.tmp")
    if fmt == "npy":
        with open(tmp, "wb") as fh:
            np.save(fh, window)
    else:
        window.astype(np.float32, copy=False).tofile(tmp)
    tmp.replace(target)
