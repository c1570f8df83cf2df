"""A model's description (Variant) and weights in either format, recognised from the files' content, never
their names.

- The upstream release: `checkpoint.pth` (`model`: encoder.* / decoder.* keys) with `variant.yml` beside it.
- MMSegmentation: a checkpoint (`state_dict`: backbone.* / decode_head.* keys, `meta`) that carries its
  config, or a config file given with it (a dumped config, or a model-zoo one with `_base_` files).
"""
from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

from ..errors import SegmenterError
from ..files import check_regular, read_regular
from .checkpoint import check_state_dict, embedded_config, is_checkpoint, read_checkpoint
from .mmseg import describe_config, to_our_keys
from .mmseg_config import MAX_FILE_BYTES, read_config_files
from .network import Segmenter
from .variant import Variant, load_variant, variant_beside

__all__ = ["describe_model", "is_checkpoint", "load_model", "read_description"]


def _is_python_config(text: str) -> bool:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(s, ast.Assign) for s in tree.body)  # what else it holds, the reader refuses by line


def read_description(path: str | Path, meta: dict | None = None) -> Variant:
    """A variant.yml, or an MMSegmentation config (Python text, read without running it)."""
    path = Path(path)
    if not path.exists():
        raise SegmenterError(f"{path}: variant file not found; give the variant.yml (or MMSegmentation config) path, "
                             "or put variant.yml beside the checkpoint")
    data = read_regular(path, MAX_FILE_BYTES, "variant or config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SegmenterError(f"{path}: cannot be read as UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if _is_python_config(text):  # a variant.yml is never Python with assignments; a config always is
        config, files = read_config_files(path)
        return replace(describe_config(config, path, meta), sources=files)
    return load_variant(path)


def describe_model(model: str | Path, cfg_path: str | Path | None = None) -> Variant:
    """The description of a checkpoint or an exported model: from `cfg_path` when given; else an MMSegmentation
    checkpoint's own config, or the variant.yml beside the file. Class names and palette come from an
    MMSegmentation checkpoint's meta either way."""
    model = Path(model)
    ckpt = read_checkpoint(model) if is_checkpoint(model) else None
    meta = ckpt.meta if ckpt is not None and ckpt.format == "mmseg" else None
    if cfg_path is not None:
        return read_description(cfg_path, meta)
    if meta is not None:
        return replace(describe_config(embedded_config(ckpt), model, meta), sources=(model,))
    return read_description(variant_beside(model))


def load_model(checkpoint: str | Path, variant: str | Path | Variant | None = None) -> tuple[Segmenter, Variant]:
    """The model of a checkpoint in either format, built as `variant` describes it (a Variant, a variant.yml or an
    MMSegmentation config; default: describe_model's), its weights checked key by key and loaded."""
    check_regular(checkpoint, "checkpoint")
    if not isinstance(variant, Variant):
        variant = describe_model(checkpoint, variant)
    ckpt = read_checkpoint(checkpoint)
    state, names = to_our_keys(ckpt.state, ckpt.path) if ckpt.format == "mmseg" else (ckpt.state, None)
    model = Segmenter(variant.model)
    model.load_state_dict(check_state_dict(state, model, checkpoint, names), strict=True)
    return model.eval(), variant
