"""Writing result files atomically: a temporary file in the target's folder, renamed over it."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import SegmenterError


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path) on a temporary file in path's folder, then rename it over path."""
    path = Path(path)
    if path.is_dir():
        raise SegmenterError(f"{path}: is a folder; give a file path to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def _probe_write(folder: Path) -> None:
    fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
    os.close(fd)
    os.remove(probe)


def ensure_writable_file(path: str | Path, what: str = "output file") -> Path:
    """Check now, before any work, that `path` can be written (creating its folder); errors name the path."""
    path = Path(path)
    if path.is_dir():
        raise SegmenterError(f"{path}: is a folder; give a file path for the {what}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _probe_write(path.parent)
    except OSError as exc:
        raise SegmenterError(f"{path}: the {what} cannot be written there ({exc.strerror}); "
                             "choose a writable path") from None
    return path


def ensure_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create `path` if needed and check that files can be written in it; errors name the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SegmenterError(f"{path}: is a file; give a folder for the {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe_write(path)
    except OSError as exc:
        raise SegmenterError(f"{path}: the {what} cannot be written there ({exc.strerror}); "
                             "choose a writable folder") from None
    return path


def refuse_overwrite(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """No output path of a run may be one of its input files or folders."""
    resolved = {what: Path(os.path.realpath(p)) for what, p in inputs.items() if p is not None}
    for out_what, out in outputs.items():
        if out is None:
            continue
        target = Path(os.path.realpath(out))
        for in_what, source in resolved.items():
            if target == source:
                raise SegmenterError(f"{out}: the {out_what} would overwrite the {in_what} ({source}) "
                                     "read by this run; choose another path")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(folder: Path) -> None:
    """Delete temporary files and staging folders (named with a process id) whose process no longer runs."""
    for path in folder.glob(".*"):
        found = re.match(r"^\..+\.(\d+)\.[^.]+\.tmp$", path.name) or re.match(r"^\.staging-(\d+)$", path.name)
        if found and not pid_alive(int(found.group(1))):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextmanager
def staged(folder: Path | None) -> Iterator[Path | None]:
    """Write into a hidden staging folder inside `folder`; its files move into place only if the block succeeds.

    So a run that fails half-way leaves no partial set of results beside complete ones from before.
    """
    if folder is None:
        yield None
        return
    remove_orphans(folder)
    stage = folder / f".staging-{os.getpid()}"
    stage.mkdir(parents=True, exist_ok=True)
    try:
        yield stage
        for source in sorted(p for p in stage.rglob("*") if p.is_file()):
            target = folder / source.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
