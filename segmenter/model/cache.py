"""A cache of models exported from checkpoints, so that a run from checkpoint.pth exports once.

Folder: $SEGMENTER_CACHE_DIR, else $XDG_CACHE_HOME/segmenter, else ~/.cache/segmenter. An entry is
keyed by the checkpoint's content hash, the variant's text, the input size and the export code's
version, and checked against its record of sizes and hashes before use; files in it may be deleted at
any time. Temporary files of runs that were killed while writing are removed by the next run.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import SegmenterError
from ..files import content_key, derived_files, file_sha256, probe_write
from ..system import release_memory
from .variant import Variant

EXPORT_VERSION = 2  # bump when the exported graph changes for the same checkpoint


def cache_dir(sub: str = "") -> Path:
    """The cache folder (or its `sub` folder), created and checked writable; an unusable one is an error naming
    the variable that chose it."""
    if os.environ.get("SEGMENTER_CACHE_DIR"):
        root, variable = Path(os.environ["SEGMENTER_CACHE_DIR"]), "SEGMENTER_CACHE_DIR"
    else:
        base = os.environ.get("XDG_CACHE_HOME")
        variable = "XDG_CACHE_HOME" if base else "HOME"
        root = Path(base or os.path.join(os.path.expanduser("~"), ".cache")) / "segmenter"
    for folder in (root, root / sub) if sub else (root,):
        if folder.exists() and not folder.is_dir():
            problem = f"{folder} is a file"
        else:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe_write(folder)
                continue
            except OSError as exc:
                problem = f"{folder} cannot be written ({exc.strerror})"
        raise SegmenterError(f"{variable}={os.environ.get(variable, '')}: the cache folder {problem}; set "
                             "SEGMENTER_CACHE_DIR to a writable folder")
    return folder


def exported_model(checkpoint: Path, variant: Variant, input_size: tuple[int, int], log=print) -> Path:
    """An ONNX export of the checkpoint at input_size, from the cache or exported into it now.

    Keyed by the checkpoint's and the description's content, the input size and the export code's version;
    checked against its record before use (derived_files). A model whose windows may be smaller than the
    crop (MMSegmentation's) is exported with dynamic height and width.
    """
    try:
        source = file_sha256(checkpoint)
    except OSError as exc:
        raise SegmenterError(f"{checkpoint}: checkpoint not readable ({exc.strerror})") from None
    dynamic = not variant.raise_to_window
    key = content_key(source, variant.digest, tuple(input_size), dynamic, EXPORT_VERSION)
    target = cache_dir("onnx") / f"{checkpoint.parent.name or 'model'}-{key}.onnx"

    def export(tmps: list[str]) -> None:
        from .export import export_onnx
        from .loading import forget_checkpoints, load_model

        model, _ = load_model(checkpoint, variant)
        log(f"exporting {checkpoint} at {input_size[0]}x{input_size[1]} into the cache {target.parent}")
        export_onnx(model, tmps[0], input_size, log=log, dynamic_hw=dynamic)
        del model
        forget_checkpoints()
        release_memory()  # the PyTorch model and the checkpoint read are gone before any engine compiles

    return derived_files(target, (".onnx",), export, source, f"export of {checkpoint.name}", log,
                         prune=False, reuse_note=f"using the export of {checkpoint} cached in {target}")
