"""Writing result files atomically: a temporary file in the target's folder, renamed over it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import SegmenterError


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path) on a temporary file in path's folder, then rename it over path."""
    path = Path(path)
    if path.is_dir():
        raise SegmenterError(f"{path}: is a folder; give a file path to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise SegmenterError(f"{path}: cannot write here ({exc.strerror}); choose a writable output path") from None
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise SegmenterError(f"{path}: cannot write here ({exc.strerror}); choose a writable output path") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
