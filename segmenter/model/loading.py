"""A model's description (Variant) and weights in either format, recognised from the files' content, never
their names.

- The upstream release: `checkpoint.pth` (`model`: encoder.* / decoder.* keys) with `variant.yml` beside it.
- MMSegmentation: a checkpoint (`state_dict`: backbone.* / decode_head.* keys, `meta`) that carries its
  config, or a config file given with it (a dumped config, or a model-zoo one with `_base_` files).
"""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

from ..errors import SegmenterError
from .checkpoint import check_state_dict, embedded_config, read_checkpoint
from .mmseg import describe_config, to_our_keys
from .mmseg_config import read_config
from .network import Segmenter
from .variant import Variant, load_variant, variant_beside

CHECKPOINT_SUFFIXES = (".pth", ".pt")


def is_checkpoint(path: str | Path) -> bool:
    """A PyTorch checkpoint (the engines export it first), as opposed to an exported model (ONNX, IR)."""
    return Path(path).suffix in CHECKPOINT_SUFFIXES


def _is_python_config(text: str) -> bool:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    return any(isinstance(s, ast.Assign) for s in tree.body)  # what else it holds, the reader refuses by line


def read_description(path: str | Path, meta: dict | None = None) -> Variant:
    """A variant.yml, or an MMSegmentation config (Python text, read without running it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SegmenterError(f"{path}: variant file not found; give the variant.yml (or MMSegmentation config) path, "
                             "or put variant.yml beside the checkpoint") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SegmenterError(f"{path}: cannot be read ({exc})") from None
    try:
        looks_yaml = isinstance(yaml.safe_load(text), dict)
    except yaml.constructor.ConstructorError:
        looks_yaml = True  # a tag: the variant reader names it
    except yaml.YAMLError:
        looks_yaml = False
    if not looks_yaml and _is_python_config(text):
        return describe_config(read_config(path), path, meta)
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
        return describe_config(embedded_config(ckpt), model, meta)
    return read_description(variant_beside(model))


def load_model(checkpoint: str | Path, variant: str | Path | Variant | None = None) -> tuple[Segmenter, Variant]:
    """The model of a checkpoint in either format, built as `variant` describes it (a Variant, a variant.yml or an
    MMSegmentation config; default: describe_model's), its weights checked key by key and loaded."""
    if not isinstance(variant, Variant):
        variant = describe_model(checkpoint, variant)
    ckpt = read_checkpoint(checkpoint)
    state, names = to_our_keys(ckpt.state, ckpt.path) if ckpt.format == "mmseg" else (ckpt.state, None)
    model = Segmenter(variant.model)
    model.load_state_dict(check_state_dict(state, model, checkpoint, names), strict=True)
    return model.eval(), variant
