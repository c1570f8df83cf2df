"""Loading released checkpoints into our model, and writing released-format ones with random weights."""
from __future__ import annotations

import io
import math
import os
import pickle
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from ..defaults import default_stride
from ..errors import SegmenterError
from ..files import atomic_write, check_regular
from .mmseg import is_mmseg_state, mmseg_key, to_our_keys
from .mmseg_config import evaluate_config_text
from .network import Segmenter
from .variant import ModelConfig, parse_variant

# Keys present in released files but unused by segmentation (the ImageNet classifier heads).
UNUSED_PREFIXES = ("encoder.head.", "encoder.head_dist.")


class Inert:
    """What a harmless global of a checkpoint's training state becomes when read: nothing, whatever it is given.

    mmengine's Runner saves, beside the weights, its message hub (HistoryBuffer objects holding numpy
    arrays). Those globals are read as this stand-in: no mmengine or numpy code runs, and the values,
    which inference does not need, are dropped.
    """

    def __init__(self, *_, **__) -> None:
        pass

    def __setstate__(self, _) -> None:
        pass


def _inert(*_, **__) -> Inert:
    return Inert()


# Globals admitted (as stand-ins) besides tensors and plain containers: mmengine's training state only.
HARMLESS_GLOBALS = [(Inert, "mmengine.logging.history_buffer.HistoryBuffer"), (Inert, "numpy.ndarray"),
                    (Inert, "numpy.dtype"), (_inert, "builtins.getattr")] + [
    (_inert, f"{module}.{name}") for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")]


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds for inference: its weights under the file's own names, its meta, its format."""

    state: dict[str, torch.Tensor]
    meta: dict
    format: str  # "upstream" (`model`, encoder.* keys) or "mmseg" (`state_dict`, backbone.* / decode_head.* keys)
    path: Path


ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL = b"\x80"


def checkpoint_kind(path: str | Path) -> str | None:
    """How a file is written, from its first bytes: "zip" (torch.save's archive), "pickle" (older torch.save, and
    pickled dicts of arrays), or None (not a checkpoint: an exported model, or something else)."""
    path = check_regular(path, "model file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == ZIP_MAGIC and zipfile.is_zipfile(path):
        return "zip"
    return "pickle" if head[:1] == PICKLE_PROTOCOL else None


def is_checkpoint(path: str | Path) -> bool:
    """A checkpoint (the engines export it first), as opposed to an exported model: read from the content, never
    from the file's name."""
    return checkpoint_kind(path) is not None


# Bytes per element of each storage type torch.save names (torch/storage.py's legacy typed storages)
STORAGE_ITEMSIZE = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
                    "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1,
                    "BoolStorage": 1, "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8, "UntypedStorage": 1}
MAX_PICKLE_BYTES = 256 << 20  # the object tree of a checkpoint (its weights are separate records)


class _Named(Inert):
    """A global of the archive's pickle, never looked up: a stand-in that only knows its name."""

    name = ""

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        pass

    def extend(self, values) -> None:
        pass


class _StorageScan(pickle.Unpickler):
    """Reads a torch archive's data.pkl only to list the storages it declares (key, type, element count); every
    global it names becomes an inert stand-in, so nothing of the file runs."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.storages: list[tuple] = []

    def find_class(self, module: str, name: str):
        return type(name, (_Named,), {"name": f"{module}.{name}"})

    def persistent_load(self, pid):
        self.storages.append(pid)
        return None


_VERIFIED: dict[tuple, bool] = {}


def check_archive(path: Path) -> bool:
    """Every weight record of a torch.save archive agrees with the storage it backs: present, exactly the bytes its
    type and element count need, its CRC intact; returns whether every record is stored uncompressed (then it can
    be memory-mapped; a re-zipped, compressed archive is read through the decompressor). Checked once per
    process for an unchanged file."""
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _VERIFIED:
        return _VERIFIED[key]

    def damaged(what: str) -> SegmenterError:
        return SegmenterError(f"{path}: damaged checkpoint ({what}); download or copy it again")

    try:
        with zipfile.ZipFile(path) as archive:
            records = {info.filename: info for info in archive.infolist()}
            pickles = [n for n in records if n.endswith("data.pkl") and n.count("/") <= 1]
            if len(pickles) != 1:
                raise damaged("no data.pkl record, or several: not an archive torch.save writes")
            prefix = pickles[0][: -len("data.pkl")]
            if records[pickles[0]].file_size > MAX_PICKLE_BYTES:
                raise damaged(f"its object record holds {records[pickles[0]].file_size:,} bytes")
            scan = _StorageScan(archive.read(pickles[0]))
            try:
                scan.load()
            except Exception as exc:  # noqa: BLE001 - damaged pickle data fails anywhere in the unpickler
                raise damaged(f"unreadable object record: {str(exc)[:80] or type(exc).__name__}") from None
            declared: dict[str, int] = {}
            for pid in scan.storages:
                if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                        and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
                    raise damaged(f"a storage reference of unknown form {str(pid)[:60]}")
                kind = getattr(pid[1], "name", "").rsplit(".", 1)[-1]
                if kind not in STORAGE_ITEMSIZE:
                    raise damaged(f"storage {pid[2]} of unknown type {getattr(pid[1], 'name', pid[1])!r}")
                size = pid[4] * STORAGE_ITEMSIZE[kind]
                if declared.setdefault(pid[2], size) != size:
                    raise damaged(f"storage {pid[2]} declared with two sizes")
            for name, size in declared.items():
                info = records.get(f"{prefix}data/{name}")
                if info is None:
                    raise damaged(f"the record data/{name} of a tensor is missing")
                if info.file_size != size:
                    raise damaged(f"the record data/{name} holds {info.file_size:,} bytes but its tensor needs "
                                  f"{size:,}")
            for name in declared:  # zipfile checks each record's CRC once it has read the record to its end
                with archive.open(f"{prefix}data/{name}") as fh:
                    while fh.read(1 << 24):
                        pass
            stored = all(records[f"{prefix}data/{n}"].compress_type == zipfile.ZIP_STORED for n in declared)
    except zipfile.BadZipFile as exc:
        raise damaged(str(exc)[:100]) from None
    except (OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise damaged(f"{type(exc).__name__}: {str(exc)[:100]}") from None
    _VERIFIED[key] = stored
    return stored


def read_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint loaded without arbitrary unpickling, its format recognised from its content (keys and meta);
    an archive's records are checked against the tensors they back before any is read."""
    path = Path(path)
    kind = checkpoint_kind(check_regular(path, "checkpoint"))
    if kind is None:  # torch.save writes a zip, older ones a pickle
        raise SegmenterError(f"{path}: not a torch checkpoint (neither a zip archive nor a pickle); "
                             "give the released checkpoint.pth")
    mmap = check_archive(path) if kind == "zip" else False
    try:
        with torch.serialization.safe_globals(HARMLESS_GLOBALS):
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if not found:
            raise SegmenterError(f"{path}: damaged or not a torch checkpoint (unreadable pickle data)") from None
        raise SegmenterError(f"{path}: refused, loading it would need arbitrary unpickling (it references "
                             f"{found.group(1)}); only tensors, plain containers and mmengine's training records "
                             "are accepted") from None
    except Exception as exc:  # noqa: BLE001 - damaged data can fail anywhere in the unpickler
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise SegmenterError(f"{path}: damaged or not a torch checkpoint ({reason})") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict) and is_mmseg_state(ckpt["state_dict"]):
        meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
        state, fmt = ckpt["state_dict"], "mmseg"
    else:
        state = ckpt["model"] if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) else ckpt
        meta, fmt = {}, "upstream"
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                           for k, v in state.items()):
        raise SegmenterError(f"{path}: expected the released 'model' state dict, or MMSegmentation's 'state_dict', "
                             "of tensors")
    return Checkpoint(state, meta, fmt, path)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict under this package's names (MMSegmentation's keys mapped onto them)."""
    ckpt = read_checkpoint(path)
    return to_our_keys(ckpt.state, ckpt.path)[0] if ckpt.format == "mmseg" else ckpt.state


def embedded_config(ckpt: Checkpoint) -> dict:
    """The config an MMSegmentation checkpoint carries (meta['config'] from mmseg 0.x, meta['cfg'] from mmengine)."""
    text = ckpt.meta.get("config") or ckpt.meta.get("cfg")
    if not isinstance(text, str) or not text.strip():
        raise SegmenterError(f"{ckpt.path}: an MMSegmentation checkpoint without a config inside (meta['config'] "
                             "or meta['cfg']); give the model's config file with the config flag")
    return evaluate_config_text(text, f"{ckpt.path} (its meta config)")


def check_position_grid(n_positions: int, cfg: ModelConfig, path: str | Path) -> None:
    """The variant's patch grid must be the one the checkpoint's position embedding was trained on.

    The embedding stores positions, not its grid: `n_positions` grid positions fit a gh x gw grid for
    every factorization. Segmenter trains on square crops, so a square count is a square grid, and a
    variant that reads it as another shape (say 8x32 for 16x16) would scramble every position.
    """
    gh, gw = cfg.grid
    side = math.isqrt(n_positions)
    if side * side == n_positions and (gh, gw) != (side, side) and gh * gw == n_positions:
        raise SegmenterError(f"{path}: the variant's net_kwargs.image_size {list(cfg.image_size)} at patch "
                             f"{cfg.patch_size} is a {gh}x{gw} patch grid, but the checkpoint's position embedding "
                             f"was trained on a {side}x{side} grid ({n_positions} positions); set image_size to "
                             f"[{side * cfg.patch_size}, {side * cfg.patch_size}]")


def _file_name(key: str, names: dict[str, str] | None) -> str:
    """How the checkpoint's format names one of our keys (for a key it lacks)."""
    return (mmseg_key(key) or key) if names is not None else key


def check_state_dict(state: dict[str, torch.Tensor], model: Segmenter, path: str | Path,
                     names: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Drop the unused classifier keys; any other key or shape disagreement is an error naming it (under the
    file's own name, `names` mapping ours to it)."""
    name = lambda key: (names or {}).get(key, key)  # noqa: E731
    state = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}
    pos = state.get("encoder.pos_embed")
    if isinstance(pos, torch.Tensor) and pos.ndim == 3:
        check_position_grid(pos.shape[1] - model.cfg.n_extra_tokens, model.cfg, path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    for kind, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            key = name(keys[0]) if kind == "unexpected" else _file_name(keys[0], names)
            raise SegmenterError(f"{path}: {kind} key '{key}'{more}; does the variant (or config) match this "
                                 "checkpoint?")
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            shape = tuple(state[key].shape)
            if names is not None and key in ("decoder.proj_patch", "decoder.proj_classes"):
                shape = shape[::-1]  # as the file stores it (a Linear weight)
            raise SegmenterError(f"{path}: key '{name(key)}' has shape {shape} in the checkpoint but "
                                 f"{tuple(ref.shape)} in the model its variant or config describes")
    for key in expected:
        value = state[key]
        if not value.is_floating_point():
            raise SegmenterError(f"{path}: key '{name(key)}' holds {str(value.dtype).removeprefix('torch.')} values; "
                                 "weights are floating point: the checkpoint is damaged or not a Segmenter's")
        if not bool(torch.isfinite(value).all()):
            raise SegmenterError(f"{path}: key '{name(key)}' holds NaN or infinite weights: the checkpoint is damaged "
                                 "(or was saved from a diverged training); no prediction can come of it")
    return {k: v.float() for k, v in state.items()}


# Encoder shapes of the released backbones (upstream `config.yml`), and a tiny one for tests.
SIZES: dict[str, dict] = {
    "tiny": dict(d_model=64, n_heads=2, n_layers=2, backbone="vit_tiny_test"),
    "T": dict(d_model=192, n_heads=3, n_layers=12, backbone="vit_tiny_patch16_384"),
    "S": dict(d_model=384, n_heads=6, n_layers=12, backbone="vit_small_patch16_384"),
    "B": dict(d_model=768, n_heads=12, n_layers=12, backbone="vit_base_patch16_384"),
    "L": dict(d_model=1024, n_heads=16, n_layers=24, backbone="vit_large_patch16_384"),
}


def make_variant_dict(size: str = "tiny", *, n_cls: int = 19, image_size: int = 64, patch_size: int = 16,
                      decoder: str = "mask_transformer", decoder_layers: int = 2, distilled: bool = False,
                      normalization: str = "vit", dataset: str = "cityscapes", im_size: int | None = None,
                      window_stride: int | None = None, **shape_overrides) -> dict:
    """A variant.yml mapping laid out like the released ones (tuples become !!python/tuple).

    `shape_overrides` (d_model, n_heads, n_layers, backbone) change the preset of `size`.
    """
    if size not in SIZES:
        raise SegmenterError(f"unknown model size '{size}' (known: {', '.join(SIZES)})")
    shape = {**SIZES[size], **shape_overrides}
    net = {
        "backbone": shape["backbone"], "d_model": shape["d_model"], "n_heads": shape["n_heads"],
        "n_layers": shape["n_layers"], "n_cls": n_cls, "image_size": (image_size, image_size),
        "patch_size": patch_size, "normalization": normalization, "dropout": 0.0, "drop_path_rate": 0.1,
        "decoder": {"name": decoder, "drop_path_rate": 0.0, "dropout": 0.1, "n_layers": decoder_layers},
    }
    if decoder == "linear":
        net["decoder"] = {"name": "linear"}
    if distilled:
        net["distilled"] = True  # released files leave it out when false
    im_size = im_size or image_size
    return {
        "net_kwargs": net,
        "dataset_kwargs": {"dataset": dataset, "image_size": im_size, "crop_size": image_size,
                           "normalization": normalization, "batch_size": 8, "num_workers": 10, "split": "train"},
        "inference_kwargs": {"im_size": im_size, "window_size": image_size,
                             "window_stride": window_stride or default_stride(image_size)},
        "algorithm_kwargs": {"batch_size": 8, "eval_freq": 4, "num_epochs": 216, "start_epoch": 0},
        "optimizer_kwargs": {"opt": "sgd", "lr": 0.001, "weight_decay": 0.0, "momentum": 0.9,
                             "sched": "polynomial", "poly_power": 0.9, "min_lr": 1e-05},
        "amp": False, "resume": True, "version": "normal", "log_dir": "seg", "world_batch_size": 8,
    }


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """torch.save(obj, path) atomically; the archive inside is named after path, whatever the temporary file's name.

    torch.save names the zip's top folder after the file it writes, so saving straight to a temporary file
    would make the bytes depend on that name (and the process id in it).
    """
    path = Path(path)

    def write(tmp: str) -> None:
        with tempfile.TemporaryDirectory(prefix=".save.", dir=Path(tmp).parent) as folder:
            torch.save(obj, Path(folder) / path.name)
            os.replace(Path(folder) / path.name, tmp)

    atomic_write(path, write)
    return path


def save_released_format(out_dir: str | Path, model: Segmenter, variant: dict, epoch: int = 0) -> Path:
    """Write `checkpoint.pth` + `variant.yml` as the upstream training code does; returns the checkpoint path."""
    out_dir = Path(out_dir)
    state = dict(model.state_dict())
    D = model.cfg.d_model
    g = torch.Generator().manual_seed(0)
    state["encoder.head.weight"] = torch.randn(1000, D, generator=g) * 0.02  # unused ImageNet heads
    state["encoder.head.bias"] = torch.zeros(1000)
    if model.cfg.distilled:
        state["encoder.head_dist.weight"] = torch.randn(1000, D, generator=g) * 0.02
        state["encoder.head_dist.bias"] = torch.zeros(1000)
    ckpt = {
        "model": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": list(range(len(state)))}]},
        "n_cls": model.cfg.n_cls,
        "lr_scheduler": {"base_lrs": [0.001], "last_epoch": epoch, "power": 0.9, "min_lr": 1e-05},
        "epoch": epoch,
    }
    save_checkpoint(ckpt, out_dir / "checkpoint.pth")
    atomic_write(out_dir / "variant.yml", lambda tmp: Path(tmp).write_text(yaml.dump(variant)))
    return out_dir / "checkpoint.pth"


def write_random_checkpoint(out_dir: str | Path, size: str = "tiny", seed: int = 0, **variant_kwargs) -> Path:
    """A released-format checkpoint with random weights of a given size; returns the checkpoint path."""
    variant = make_variant_dict(size, **variant_kwargs)
    cfg: ModelConfig = parse_variant(variant, Path(out_dir) / "variant.yml").model
    model = Segmenter(cfg)
    model.init_weights(torch.Generator().manual_seed(seed))
    return save_released_format(out_dir, model, variant)
