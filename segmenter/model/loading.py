"""A model's description (Variant) and weights in any format of the table (formats/), recognised from the files'
content, never their names.

A checkpoint is read once per process while it is unchanged (the last one read is kept, until
`forget_checkpoints`): its container (checkpoint.py), then the format that holds it. Its description
comes from the description file given (whose format its content tells), else from the format's own
rule (the variant.yml beside it, the config inside it, or a one-line error naming what to give).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import SegmenterError
from ..extras import require
from ..files import check_regular, read_regular
from .checkpoint import Checkpoint, check_state_dict, checkpoint_kind, is_checkpoint, load_array_pickle, load_torch
from .formats import FORMATS, description_format
from .formats.chain import MAX_FILE_BYTES
from .variant import Variant, variant_beside

__all__ = ["describe_model", "forget_checkpoints", "is_checkpoint", "load_model", "read_checkpoint",
           "read_description"]

_LAST: dict[tuple, Checkpoint] = {}


def forget_checkpoints() -> None:
    """Drop the checkpoint kept in memory (before engines compile, so that it does not add to their peak)."""
    _LAST.clear()


def read_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint loaded without arbitrary unpickling, its format recognised from its content (the container,
    then the keys and meta); torch archives checked record by record before any weight is read."""
    path = Path(path)
    kind = checkpoint_kind(check_regular(path, "checkpoint"), "checkpoint")
    if kind is None:
        raise SegmenterError(f"{path}: not a checkpoint (neither a torch archive nor a pickle); give the released "
                             "checkpoint.pth, an MMSegmentation .pth or a PaddleSeg .pdparams")
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _LAST:
        return _LAST[key]
    container = "pickle" if kind == "pickle" else "torch"
    if container == "torch":
        require("torch", "torch", f"reading {path.name}, a PyTorch checkpoint,")
        admitted = [g for f in FORMATS.values() if f.container == "torch" for g in f.admitted_globals]
        obj = load_torch(path, kind, admitted)
    else:
        obj = load_array_pickle(path)
    found = next((f for f in FORMATS.values() if f.container == container and f.holds(obj)), None)
    if found is None:
        titles = ", ".join(f.title for f in FORMATS.values() if f.container == container)
        raise SegmenterError(f"{path}: holds no weights of a Segmenter in a known format ({titles}); expected the "
                             "released 'model' state dict, MMSegmentation's 'state_dict' or PaddleSeg's arrays")
    state, meta = found.unpack(obj)
    _LAST.clear()
    _LAST[key] = Checkpoint(state, meta, found.name, path)
    return _LAST[key]


def read_description(path: str | Path, meta: dict | None = None) -> Variant:
    """A description file: a variant.yml, an MMSegmentation config or a PaddleSeg config, told apart by content."""
    path = Path(path)
    if not path.exists():
        raise SegmenterError(f"{path}: variant file not found; give the variant.yml (or the model's config) path, "
                             "or put variant.yml beside the checkpoint")
    data = read_regular(path, MAX_FILE_BYTES, "variant or config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SegmenterError(f"{path}: cannot be read as UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return description_format(text).read_description(path, meta)


def describe_model(model: str | Path, cfg_path: str | Path | None = None) -> Variant:
    """The description of a checkpoint or an exported model: from `cfg_path` when given (class names and palette
    from a checkpoint's meta); else the checkpoint format's own (the variant.yml beside it, the config inside it),
    or, for an exported model, the variant.yml beside it."""
    model = Path(model)
    ckpt = read_checkpoint(model) if is_checkpoint(model) else None
    if cfg_path is not None:
        return read_description(cfg_path, ckpt.meta if ckpt is not None else None)
    if ckpt is not None:
        return FORMATS[ckpt.format].own_description(ckpt)
    return read_description(variant_beside(model))


def load_model(checkpoint: str | Path, variant: str | Path | Variant | None = None):
    """The model of a checkpoint in any format, built as `variant` describes it (a Variant, or a description file;
    default: describe_model's), its weights checked key by key and loaded; returns (model, variant)."""
    check_regular(checkpoint, "checkpoint")
    require("torch", "torch", "building the PyTorch model of a checkpoint (to export or run it)")
    from .network import Segmenter

    if not isinstance(variant, Variant):
        variant = describe_model(checkpoint, variant)
    ckpt = read_checkpoint(checkpoint)
    renamed = FORMATS[ckpt.format].to_ours(ckpt.state, ckpt.path)
    model = Segmenter(variant.model)
    model.load_state_dict(check_state_dict(renamed, model, checkpoint), strict=True)
    return model.eval(), variant
