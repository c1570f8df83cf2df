"""Writing result files atomically: a temporary file in the target's folder, renamed over it."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

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


def probe_write(folder: Path) -> None:
    """Create and remove a file in folder: OSError when it cannot be written."""
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
        probe_write(path.parent)
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
        probe_write(path)
    except OSError as exc:
        raise SegmenterError(f"{path}: the {what} cannot be written there ({exc.strerror}); "
                             "choose a writable folder") from None
    return path


Paths = Union[str, Path, None, Iterable[Union[str, Path]]]  # one path, or several


def _real_paths(paths) -> list[tuple[str, str]]:
    """(as given, real path) of one path or of each of several."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths or ())
    return [(str(p), os.path.realpath(p)) for p in items if p is not None and str(p)]


def refuse_overwrite(outputs: dict[str, str | Path | None], inputs: dict[str, Paths]) -> None:
    """No output of a run may be, or lie inside, a file or folder the run reads, and no output folder may hold one:
    compared by real path (symlinks and `..` resolved), before any work. `inputs` values are a path or several
    (a config's _base_ files, every image and ground truth of a data set)."""
    read = [(what, given, real) for what, paths in inputs.items() for given, real in _real_paths(paths)]
    for out_what, out in outputs.items():
        if out is None or not str(out):
            continue
        target = os.path.realpath(out)
        for in_what, given, source in read:
            if target == source:
                raise SegmenterError(f"{out}: the {out_what} would overwrite the {in_what} ({given}) read by this "
                                     "run; choose another path")
            if target.startswith(source.rstrip(os.sep) + os.sep):
                raise SegmenterError(f"{out}: the {out_what} lies inside the {in_what} ({given}) read by this run; "
                                     "choose a path outside it")
            if source.startswith(target.rstrip(os.sep) + os.sep):
                raise SegmenterError(f"{out}: the {out_what} holds the {in_what} ({given}) read by this run, which "
                                     "writing into it could overwrite; choose another folder")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


ORPHAN_NAMES = (r"^\..+\.(\d+)\.[^.]+\.tmp$", r"^\.staging-(\d+)$", r"^\..+\.(\d+)\.part\.[^.]+$")


def remove_orphans(folder: Path) -> None:
    """Delete temporary files and staging folders (named with a process id) whose process no longer runs."""
    for path in folder.glob(".*"):
        found = next((m for m in (re.match(p, path.name) for p in ORPHAN_NAMES) if m), None)
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


@dataclass(frozen=True)
class FileDigest:
    """What a file was when it was read: its path, size in bytes and content hash."""

    path: str
    size: int
    sha256: str

    @classmethod
    def of(cls, path: str | Path, data: bytes) -> FileDigest:
        return cls(str(path), len(data), hashlib.sha256(data).hexdigest())

    def to_json(self) -> list:
        return [self.path, self.size, self.sha256]


def check_regular(path: str | Path, what: str = "file") -> Path:
    """A path that names a regular file (symlinks followed): a folder, FIFO, device or socket would block or read
    without end; errors name the path."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SegmenterError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise SegmenterError(f"{path}: {what} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device" if (
            stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise SegmenterError(f"{path}: the {what} is {kind}; give a regular file")
    return path


def read_regular(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else is an error naming the path."""
    path = check_regular(path, what)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise SegmenterError(f"{path}: {what} cannot be read ({exc.strerror})") from None
    if len(data) > limit:
        raise SegmenterError(f"{path}: the {what} is larger than {limit:,} bytes; not a {what} of this kind")
    return data


def read_digested(path: str | Path) -> tuple[bytes, FileDigest]:
    """A file's bytes, read through Python (any path, any bytes in its name), and their digest."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SegmenterError(f"{path}: cannot be read ({exc.strerror})") from None
    return data, FileDigest.of(path, data)


_HASHES: dict[tuple, str] = {}


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    """The sha256 of a file's content (hex); computed once per process for an unchanged file."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def _canonical(value) -> object:
    """A JSON value that is the same for equal values in every process: dict items and set members sorted by their
    own canonical text (so mixed key types and string hashing do not change the order), tuples as lists, floats
    by repr."""
    if isinstance(value, dict):
        items = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return {"dict": sorted(items, key=lambda kv: json.dumps(kv[0]))}
    if isinstance(value, (set, frozenset)):
        return {"set": sorted((_canonical(v) for v in value), key=json.dumps)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return {"float": repr(value)}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return {type(value).__name__: repr(value)}


def digest_of(value) -> str:
    """The sha256 of a value built of dicts, lists, tuples, sets and scalars (a config): deterministic across
    processes and Python hash seeds."""
    return hashlib.sha256(json.dumps(_canonical(value), separators=(",", ":")).encode()).hexdigest()


def content_key(*parts) -> str:
    """A short key naming what a derived file was made from (content hashes, settings, versions)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _record_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.sha256")


def _check_record(target: Path, files: list[Path], source: str) -> str:
    """Why the files made before cannot be used ('' when they can): each must have its recorded size and hash."""
    try:
        record = json.loads(_record_path(target).read_text())
        recorded = record["files"]
        if record.get("source_sha256") != source or set(recorded) != {f.name for f in files}:
            return "was made from another source"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "has no readable record of its files"
    for f in files:
        try:
            size, digest = recorded[f.name]
        except (TypeError, ValueError):
            return "has no readable record of its files"
        if not f.is_file():
            return f"lacks {f.name}"
        if f.stat().st_size != size:
            return f"has {f.name} of {f.stat().st_size} bytes, {size} when it was written (cut short or replaced)"
        if file_sha256(f) != digest:
            return f"has {f.name} changed since it was written"
    return ""


def derived_files(target: Path, suffixes: tuple[str, ...], make: Callable[[list[str]], None], source: str,
                  what: str, log=print, prune: bool = True, reuse_note: str = "") -> Path:
    """Files made from a source (its content hash `source`) by make(temporary paths), one per suffix, reused
    while intact; returns `target` (the first).

    `target`'s name must carry a content key of everything it derives from (content_key). A record beside
    it (`<target>.sha256`) lists each file's size and hash, written last; before use every file is checked
    against it, so a file cut short, damaged or replaced is made again (with a note), never used. With
    `prune`, copies of the same kind beside it made from an earlier content of the source are removed;
    `reuse_note` is said when the files are reused.
    """
    files = [target.with_suffix(s) for s in suffixes]
    record = _record_path(target)
    if record.exists() or any(f.exists() for f in files):
        problem = _check_record(target, files, source)
        if not problem:
            if reuse_note:
                log(reuse_note)
            return target
        log(f"note: {target} {problem}; making it again")
    tag = target.stem.rsplit("-", 1)[0]  # e.g. model.int8: the kind, without the key
    for old in target.parent.glob(f"{glob.escape(tag)}-*.sha256") if prune else ():
        try:
            stale = json.loads(old.read_text()).get("source_sha256") != source
        except (OSError, ValueError, AttributeError):
            stale = False
        if stale and old != record:
            for f in old.parent.glob(f"{glob.escape(old.name[:-len('.sha256')].rsplit('.', 1)[0])}.*"):
                f.unlink(missing_ok=True)
    log(f"[INFO] writing {target} ({what}; cached for later runs)")
    remove_orphans(target.parent)
    tmps = [target.with_name(f".{target.stem}.{os.getpid()}.part{s}") for s in suffixes]
    try:
        make([str(t) for t in tmps])
        recorded = {}
        for tmp, final in zip(tmps, files):
            recorded[final.name] = [tmp.stat().st_size, file_sha256(tmp)]
        record.unlink(missing_ok=True)  # no record while the files change
        for tmp, final in zip(tmps, files):
            os.replace(tmp, final)
        atomic_write(record, lambda t: Path(t).write_text(json.dumps({"source_sha256": source, "files": recorded})))
    except OSError as exc:
        raise SegmenterError(f"{target}: cannot write the {what} here ({exc.strerror or exc}); put the model in a "
                             "writable folder") from None
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
    return target
