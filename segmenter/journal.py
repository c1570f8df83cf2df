"""A journal of scored images, so that a stopped evaluation resumes where it stopped.

`<metrics file>.journal.jsonl`: a first line with the fingerprint of everything that decides the
result (model file hash, variant, data set and split, windows, views, engine, precision), then one
line per scored image with its confusion counts (non-zero cells only). Each line is written whole
and flushed to disk as its image finishes; a line cut short by a crash is ignored when read back.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SegmenterError


def journal_beside(metrics_path: str | Path) -> Path:
    return Path(f"{metrics_path}.journal.jsonl")


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Entry:
    """One scored image as the journal holds it."""

    name: str
    prefix: str
    confusion: np.ndarray  # (K, K) int64


def _encode(entry: Entry) -> str:
    flat = entry.confusion.ravel()
    cells = np.flatnonzero(flat)
    return json.dumps({"name": entry.name, "prefix": entry.prefix,
                       "cells": cells.tolist(), "counts": flat[cells].tolist()})


def _decode(line: str, n_cls: int) -> Entry:
    doc = json.loads(line)
    flat = np.zeros(n_cls * n_cls, np.int64)
    flat[np.asarray(doc["cells"], np.int64)] = np.asarray(doc["counts"], np.int64)
    return Entry(doc["name"], doc["prefix"], flat.reshape(n_cls, n_cls))


class Journal:
    """Open for appending; `entries` holds what an earlier run of the same fingerprint scored."""

    def __init__(self, path: Path, fingerprint: dict, n_cls: int, log=print) -> None:
        self.path, self.n_cls = path, n_cls
        self.entries: dict[str, Entry] = {}
        self._fresh = not path.exists()
        if not self._fresh:
            self._read(fingerprint, log)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")
        if self._fresh:
            self._write_line(json.dumps({"fingerprint": fingerprint}))

    def _read(self, fingerprint: dict, log) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # anything after the last newline was cut short by a crash
        lines = data[:end].decode("utf-8", errors="replace").splitlines()
        if not lines:  # not even the first line was written: start afresh
            self.path.write_bytes(b"")
            self._fresh = True
            return
        try:
            recorded = json.loads(lines[0])["fingerprint"]
        except (ValueError, KeyError, TypeError):
            raise SegmenterError(f"{self.path}: not a journal of this software; delete it to start afresh") from None
        differs = [f"{k}: {recorded.get(k)!r} then, {v!r} now" for k, v in fingerprint.items() if recorded.get(k) != v]
        if differs:
            raise SegmenterError(f"{self.path}: the journal is of another evaluation ({'; '.join(differs)}); "
                                 "resume with the same settings, or delete it to start afresh")
        for line in lines[1:]:
            try:
                entry = _decode(line, self.n_cls)
            except (ValueError, KeyError, TypeError, IndexError):
                continue  # damaged: that image is scored again
            self.entries.setdefault(entry.prefix, entry)
        if end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
        log(f"resuming from {self.path}: {len(self.entries)} images already scored")

    def _write_line(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def record(self, entry: Entry) -> None:
        """Journal an image once; a second result for the same image (a retried task) is left out."""
        if entry.prefix in self.entries:
            return
        self.entries[entry.prefix] = entry
        self._write_line(_encode(entry))

    def close(self) -> None:
        self.file.close()


def evaluation_fingerprint(model: Path, variant_path: Path, dataset: str, split: str, cfg_json: dict, device: str,
                           precision: str) -> dict:
    """Everything that decides an evaluation's result, as the journal records it."""
    return {"model_sha256": file_sha256(model), "variant_sha256": file_sha256(variant_path), "dataset": dataset,
            "split": split, **cfg_json, "device": device, "precision": precision}
