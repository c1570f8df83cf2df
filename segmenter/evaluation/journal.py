"""A journal of scored images, so that a stopped evaluation resumes where it stopped.

`<metrics file>.journal.jsonl`: a first line with the fingerprint of everything that decides the
result (model and variant file hashes, data set, split and data root, the list of images, windows,
views, engine, precision, the static-int8 calibration); a line per run that wrote to it (its start,
command line and, for the first, the provenance record of the run: a resumed evaluation reports the
first run's record and every run's time); then one line per scored image: its confusion counts
(non-zero cells only), its labelled pixel count, the path, size and content hash of its image and
ground truth as they were read, where its predictions were saved, and when it was scored. Every line
carries a checksum. Each line is written whole and flushed to disk as its image finishes; a line cut short by a
crash is ignored when read back, and a line that fails its checks is named and its image scored again.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SegmenterError
from ..files import FileDigest, content_key, file_sha256

JOURNAL_VERSION = 3


def journal_beside(metrics_path: str | Path) -> Path:
    return Path(f"{metrics_path}.journal.jsonl")


@dataclass(frozen=True)
class Entry:
    """One scored image as the journal holds it."""

    name: str
    prefix: str
    confusion: np.ndarray  # (K, K) int64
    image: FileDigest | None = None
    gt: FileDigest | None = None
    pred_dir: str | None = None  # real path of the folder its predictions were saved in, if any
    line: int = 0  # where it was read from
    scored_at: float = 0.0  # unix time it was journaled

    @property
    def labelled(self) -> int:
        return int(self.confusion.sum())


def _checksum(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _signed(doc: dict) -> str:
    return json.dumps({**doc, "check": _checksum(doc)})


def _encode(entry: Entry) -> str:
    flat = entry.confusion.ravel()
    cells = np.flatnonzero(flat)
    return _signed({"name": entry.name, "prefix": entry.prefix, "cells": cells.tolist(),
                    "counts": flat[cells].tolist(), "labelled": entry.labelled,
                    "image": entry.image.to_json() if entry.image else None,
                    "gt": entry.gt.to_json() if entry.gt else None, "pred_dir": entry.pred_dir,
                    "t": round(time.time(), 3)})


def _digest(value) -> FileDigest | None:
    if value is None:
        return None
    path, size, sha = value
    if not (isinstance(path, str) and isinstance(size, int) and isinstance(sha, str)):
        raise ValueError("a file record must be [path, size, sha256]")
    return FileDigest(path, size, sha)


def _decode(line: str, number: int, n_cls: int) -> Entry:
    """An entry from a journal line; ValueError saying what is wrong with it."""
    try:
        doc = json.loads(line)
    except ValueError:
        raise ValueError("not a JSON line") from None
    if not isinstance(doc, dict) or doc.pop("check", None) != _checksum(doc):
        raise ValueError("its checksum does not match its content")
    cells, counts = doc.get("cells"), doc.get("counts")
    if not (isinstance(cells, list) and isinstance(counts, list) and len(cells) == len(counts)):
        raise ValueError("cells and counts must be lists of the same length")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in cells + counts):
        raise ValueError("cells and counts must be integers")
    if any(c < 0 or c >= n_cls * n_cls for c in cells) or len(set(cells)) != len(cells):
        raise ValueError(f"a cell is repeated or outside the {n_cls}x{n_cls} matrix")
    if any(c < 0 for c in counts):
        raise ValueError("a count is negative")
    if sum(counts) != doc.get("labelled"):
        raise ValueError(f"its counts sum to {sum(counts)}, not its {doc.get('labelled')} labelled pixels")
    if not isinstance(doc.get("name"), str) or not isinstance(doc.get("prefix"), str):
        raise ValueError("name and prefix must be strings")
    flat = np.zeros(n_cls * n_cls, np.int64)
    flat[np.asarray(cells, np.int64)] = np.asarray(counts, np.int64)
    try:
        image, gt = _digest(doc.get("image")), _digest(doc.get("gt"))
    except (TypeError, ValueError):
        raise ValueError("its image and ground-truth records must be [path, size, sha256]") from None
    pred_dir, scored_at = doc.get("pred_dir"), doc.get("t")
    return Entry(doc["name"], doc["prefix"], flat.reshape(n_cls, n_cls), image, gt,
                 pred_dir if isinstance(pred_dir, str) else None, number,
                 float(scored_at) if isinstance(scored_at, (int, float)) and not isinstance(scored_at, bool) else 0.0)


class Journal:
    """Open for appending; `entries` holds what an earlier run of the same fingerprint scored."""

    def __init__(self, path: Path, fingerprint: dict, n_cls: int, log=print, session: dict | None = None) -> None:
        if path.is_dir():
            raise SegmenterError(f"{path}: the journal of --resume is a folder here; move it, or give another "
                                 "metrics path")
        self.path, self.n_cls, self.log = path, n_cls, log
        self.entries: dict[str, Entry] = {}
        self.sessions: list[dict] = []  # the runs that wrote to it before this one: start, command, record
        self._fresh = not path.exists()
        fingerprint = {"journal_version": JOURNAL_VERSION, **fingerprint}
        if not self._fresh:
            self._read(fingerprint)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise SegmenterError(f"{path}: the journal cannot be written ({exc.strerror}); choose a writable "
                                 "metrics path") from None
        if self._fresh:
            self._write_line(_signed({"fingerprint": fingerprint}))
        if session is not None:
            self._write_line(_signed({"session": session}))

    def _read(self, fingerprint: dict) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # anything after the last newline was cut short by a crash
        lines = data[:end].decode("utf-8", errors="replace").splitlines()
        if not lines:  # not even the first line was written: start afresh
            self.path.write_bytes(b"")
            self._fresh = True
            return
        try:
            head = json.loads(lines[0])
            check = head.pop("check")
            recorded = head["fingerprint"]
            assert isinstance(recorded, dict) and check == _checksum(head)
        except (ValueError, KeyError, TypeError, AttributeError, AssertionError):
            raise SegmenterError(f"{self.path}: not a journal of this software, or its first line is damaged; "
                                 "delete it to start afresh") from None
        differs = [f"{k}: {_short(recorded.get(k))} then, {_short(v)} now" for k, v in fingerprint.items()
                   if recorded.get(k) != v]
        if differs:
            raise SegmenterError(f"{self.path}: the journal is of another evaluation ({'; '.join(differs)}); "
                                 "resume with the same settings and data, or delete it to start afresh")
        for number, line in enumerate(lines[1:], 2):
            session = _session(line)
            if session is not None:
                self.sessions.append(session)
                continue
            try:
                entry = _decode(line, number, self.n_cls)
            except ValueError as exc:
                self.log(f"warning: {self.path}:{number}: {exc}; that image is scored again")
                continue
            self.entries[entry.prefix] = entry  # a later line for the same image (scored again) wins
        if end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(end)

    def _write_line(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def history(self, until: float) -> list[dict]:
        """The earlier runs (those before `until`, this run's start): when each started, its command, how many
        images it scored and for how long (to its last scored image)."""
        starts = [s.get("started_unix", 0.0) for s in self.sessions] + [until]
        runs = []
        for i, session in enumerate(self.sessions):
            times = [e.scored_at for e in self.entries.values() if starts[i] <= e.scored_at < starts[i + 1]]
            runs.append({"started": session.get("started"), "command": session.get("command"),
                         "images": len(times), "wall_seconds": round(max(times) - starts[i], 3) if times else 0.0})
        return runs

    def first_record(self) -> dict | None:
        """The provenance record of the run that began the journal, if it wrote one."""
        record = self.sessions[0].get("record") if self.sessions else None
        return record if isinstance(record, dict) else None

    def forget(self, prefix: str) -> None:
        """Drop an entry read back, so that its image is scored (and journaled) again."""
        self.entries.pop(prefix, None)

    def record(self, entry: Entry) -> None:
        """Journal an image once; a second result for the same image (a retried task) is left out."""
        if entry.prefix in self.entries:
            return
        self.entries[entry.prefix] = entry
        self._write_line(_encode(entry))

    def close(self) -> None:
        self.file.close()


def _session(line: str) -> dict | None:
    """A run's line (checked), or None for any other line."""
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("session"), dict):
        return None
    check = doc.pop("check", None)
    return doc["session"] if check == _checksum(doc) else None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def evaluation_fingerprint(model: Path, description_digest: str, dataset: str, split: str, data_root: str | Path,
                           samples: list, cfg_json: dict, device: str, precision: str,
                           calibration: str | None = None) -> dict:
    """Everything that decides an evaluation's result, as the journal records it: the model file's content, its
    description's (variant.yml, or the MMSegmentation config with its _base_ files merged), the data
    (its root and every image with its ground truth; their content is checked image by image on resume), the
    settings, the engine, and the calibration of static int8 where it is used."""
    images = [(s.name, os.path.realpath(s.image_path), os.path.realpath(s.gt_path)) for s in samples]
    return {"model_sha256": file_sha256(model), "description_sha256": description_digest, "dataset": dataset,
            "split": split, "data_root": os.path.realpath(data_root), "images": f"{len(images)} images, "
            f"{content_key(images)}", **cfg_json, "device": device, "precision": precision,
            "calibration": calibration}
