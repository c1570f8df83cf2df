"""Checkpoint files as containers: recognising them from their bytes, reading them without running anything,
checking their weights against the model, and writing them.

Two containers hold the released weights: torch.save's archive (or its older pickle), read with
torch.load(weights_only=True) after every record of the archive has been checked against the storage
it backs; and a plain pickle of numpy arrays (PaddleSeg's .pdparams), read by an unpickler that builds
numpy arrays and nothing else. Which publisher's format a file holds is the format table's business
(formats/); what it means for the model is checked here, key by key.
"""
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
from typing import TYPE_CHECKING, Any

from ..errors import SegmenterError
from ..files import atomic_write, check_regular

if TYPE_CHECKING:
    from .formats.record import Renamed
    from .network import Segmenter
    from .variant import ModelConfig

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


def inert(*_, **__) -> Inert:
    return Inert()


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds for inference: its weights under the file's own names, its meta, its format."""

    state: dict
    meta: dict
    format: str  # the name of its format in the table (formats/)
    path: Path


ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL = b"\x80"
TORCH_LEGACY = b"\x8a\x0a"  # older torch.save begins with its magic number, pickled as a 10-byte long


def checkpoint_kind(path: str | Path, what: str = "model file") -> str | None:
    """How a file is written, from its first bytes: "zip" (torch.save's archive), "torch-pickle" (older
    torch.save), "pickle" (a plain pickle: PaddleSeg's .pdparams), or None (not a checkpoint: an exported model,
    or something else)."""
    path = check_regular(path, what)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == ZIP_MAGIC and zipfile.is_zipfile(path):
        return "zip"
    if head[:1] != PICKLE_PROTOCOL:
        return None
    return "torch-pickle" if head[2:4] == TORCH_LEGACY else "pickle"


def is_checkpoint(path: str | Path) -> bool:
    """A checkpoint (the engines export it first), as opposed to an exported model: read from the content, never
    from the file's name."""
    return checkpoint_kind(path) is not None


def is_tensor_state(state: Any) -> bool:
    """A non-empty dict of str keys and torch tensors."""
    import torch

    return isinstance(state, dict) and bool(state) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())


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


def load_torch(path: Path, kind: str, admitted: list) -> Any:
    """What torch.save wrote, read with weights_only (tensors, plain containers, and the `admitted` globals as the
    stand-ins given); an archive's records are checked first and memory-mapped when stored uncompressed."""
    import torch

    mmap = check_archive(path) if kind == "zip" else False
    try:
        with torch.serialization.safe_globals(admitted):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if not found:
            raise SegmenterError(f"{path}: damaged or not a torch checkpoint (unreadable pickle data)") from None
        raise SegmenterError(f"{path}: refused, loading it would need arbitrary unpickling (it references "
                             f"{found.group(1)}); only tensors, plain containers and the training records of the "
                             "known formats are accepted") from None
    except Exception as exc:  # noqa: BLE001 - damaged data can fail anywhere in the unpickler
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise SegmenterError(f"{path}: damaged or not a torch checkpoint ({reason})") from None


def _numpy_globals() -> dict[str, Any]:
    """The globals a pickle of numpy arrays names: array reconstruction, the array and dtype types, scalars."""
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 / 1
    found = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[f"{module}._reconstruct"] = multiarray._reconstruct
        found[f"{module}.scalar"] = multiarray.scalar
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType",
                 "Int8DType", "UInt8DType", "BoolDType"):  # numpy 2 pickles a dtype by its class
        if hasattr(np.dtypes, name):
            found[f"numpy.dtypes.{name}"] = getattr(np.dtypes, name)
    return found


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers; any other global is refused by name, nothing else runs."""

    def __init__(self, fh) -> None:
        super().__init__(fh)
        self.allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        found = self.allowed.get(f"{module}.{name}")
        if found is None:
            raise pickle.UnpicklingError(f"GLOBAL {module}.{name}")
        return found

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("a persistent reference, which a pickle of arrays does not hold")


def load_array_pickle(path: Path) -> Any:
    """A plain pickle of numpy arrays and containers (PaddleSeg's .pdparams), read without paddle and without
    running anything of the file."""
    try:
        with open(path, "rb") as fh:
            return _ArrayUnpickler(fh).load()
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:
            raise SegmenterError(f"{path}: refused, reading it would need {found.group(1)}; a weight file of numpy "
                                 "arrays names only numpy's array reconstruction") from None
        raise SegmenterError(f"{path}: damaged or not a checkpoint ({str(exc)[:120]})") from None
    except Exception as exc:  # noqa: BLE001 - damaged data can fail anywhere in the unpickler
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise SegmenterError(f"{path}: damaged or not a checkpoint ({reason})") from None


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


def check_state_dict(renamed: Renamed, model: Segmenter, path: str | Path) -> dict:
    """The weights the model loads: the unused classifier keys dropped; any other key or shape disagreement, or a
    weight that is not a finite float, is an error naming it as the file names it."""
    import torch

    name = lambda key: renamed.names.get(key, key)  # noqa: E731
    state = {k: v for k, v in renamed.state.items() if not k.startswith(UNUSED_PREFIXES)}
    pos = state.get("encoder.pos_embed")
    if isinstance(pos, torch.Tensor) and pos.ndim == 3:
        check_position_grid(pos.shape[1] - model.cfg.n_extra_tokens, model.cfg, path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    for kind, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            key = name(keys[0]) if kind == "unexpected" else renamed.name_of_missing(keys[0])
            raise SegmenterError(f"{path}: {kind} key '{key}'{more}; does the variant (or config) match this "
                                 "checkpoint?")
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            shape = renamed.shapes.get(key, tuple(state[key].shape))  # as the file stores it
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


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """torch.save(obj, path) atomically; the archive inside is named after path, whatever the temporary file's name.

    torch.save names the zip's top folder after the file it writes, so saving straight to a temporary file
    would make the bytes depend on that name (and the process id in it).
    """
    path = Path(path)

    import torch

    def write(tmp: str) -> None:
        with tempfile.TemporaryDirectory(prefix=".save.", dir=Path(tmp).parent) as folder:
            torch.save(obj, Path(folder) / path.name)
            os.replace(Path(folder) / path.name, tmp)

    atomic_write(path, write)
    return path
