"""A cache of models exported from checkpoints, so that a run from checkpoint.pth exports once.

Folder: $SEGMENTER_CACHE_DIR, else $XDG_CACHE_HOME/segmenter, else ~/.cache/segmenter. An entry is
keyed by the checkpoint (path, size, modification time), the variant's text, the input size and the
export code's version; files in it may be deleted at any time. Temporary files of runs that were
killed while writing are removed by the next run.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import SegmenterError
from .files import ensure_writable_dir, remove_orphans
from .variant import Variant

EXPORT_VERSION = 1  # bump when the exported graph changes for the same checkpoint


def cache_dir() -> Path:
    if os.environ.get("SEGMENTER_CACHE_DIR"):
        return Path(os.environ["SEGMENTER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "segmenter"


def exported_model(checkpoint: Path, variant: Variant, input_size: tuple[int, int], log=print) -> Path:
    """An ONNX export of the checkpoint at input_size, from the cache or exported into it now."""
    try:
        stat = checkpoint.stat()
    except OSError as exc:
        raise SegmenterError(f"{checkpoint}: checkpoint not readable ({exc.strerror})") from None
    key = hashlib.sha256(repr((os.path.realpath(checkpoint), stat.st_size, stat.st_mtime_ns,
                               variant.path.read_bytes(), tuple(input_size), EXPORT_VERSION)).encode()).hexdigest()
    folder = ensure_writable_dir(cache_dir() / "onnx", "model cache")
    remove_orphans(folder)
    target = folder / f"{checkpoint.parent.name or 'model'}-{key[:16]}.onnx"
    if target.is_file():
        log(f"using the export of {checkpoint} cached in {target}")
        return target
    from .checkpoint import load_model
    from .export import export_onnx

    model, _ = load_model(checkpoint, variant)
    log(f"exporting {checkpoint} at {input_size[0]}x{input_size[1]} into the cache {folder}")
    export_onnx(model, target, input_size, log=log)
    return target
