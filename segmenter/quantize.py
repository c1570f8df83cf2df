"""Lower-precision copies of an exported model, made with the engines' own tools and cached beside it.

- ONNX Runtime int8: dynamic quantization (int8 MatMul weights, activations quantized per call).
- ONNX Runtime fp16 (CUDA): the graph converted, LayerNorm and Resize kept in fp32.
- OpenVINO int8: static post-training quantization with NNCF (model type TRANSFORMER, SmoothQuant) on
  calibration windows from the data being evaluated (or a folder); the parts measured to be sensitive
  stay in higher precision (KEEP_IN_FLOAT).
"""
from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import SegmenterError
from .files import atomic_write

# Kept out of static int8, by measurement on the demo model and the larger trained one (README): the patch
# embedding (a convolution on raw pixels, quantized per tensor it moves the most labels: pixel agreement
# with fp32 99.76 -> 99.88 % on the demo model, 99.71 -> 99.85 % on the larger one, at no measurable cost)
# and the decoder's mask products (class embeddings against patch embeddings: they decide the argmax
# and are cheap).
KEEP_IN_FLOAT = (r".*patch_embed.*", r".*/decoder/MatMul(_\d+)?$")
STATIC_INT8_VERSION = 2  # bump when the recipe changes: cached copies are remade


@contextmanager
def _quiet(*names: str):
    """Raise the level of chatty loggers (the quantizers') for the duration."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def derived_model(model_path: Path, tag: str, make, suffix: str = ".onnx", log=print) -> Path:
    """`<model>.<tag><suffix>` beside the model, (re)made by make(src, dst) when missing or older than the model."""
    target = model_path.with_name(f"{model_path.stem}.{tag}{suffix}")
    if not target.is_file() or target.stat().st_mtime < model_path.stat().st_mtime:
        log(f"[INFO] writing {target} (cached for later runs)")
        atomic_write(target, lambda tmp: make(str(model_path), tmp))
    return target


def dynamic_int8(src: str, dst: str) -> None:
    """ONNX Runtime's dynamic quantization: int8 matmul weights, activations quantized per call (VNNI on x86)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet(""):  # the quantizer logs advice on the root logger
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])


def fp16_graph(src: str, dst: str) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(src), keep_io_types=True, op_block_list=["LayerNormalization", "Resize"])
    onnx.save(model, dst)


@dataclass(frozen=True)
class Calibration:
    """Windows to calibrate static int8 on: `identity` names them (for the cache), `windows()` makes them."""

    identity: str
    windows: Callable[[], list[np.ndarray]]  # (3, H, W) float32 each


def static_int8(model_path: Path, calibration: Calibration | None, keep_in_float: tuple[str, ...] = KEEP_IN_FLOAT,
                log=print) -> Path:
    """An OpenVINO IR with int8 weights and activations (NNCF post-training quantization), cached beside the model
    under a name that depends on the model, the calibration data and the recipe."""
    if model_path.suffix == ".xml":  # already an IR (made before, e.g. shipped to a Ray actor)
        return model_path
    if calibration is None:
        raise SegmenterError(f"{model_path}: static int8 needs calibration windows: images of the data set to "
                             "evaluate, or a folder of images")
    stat = model_path.stat()
    key = hashlib.sha256(repr((stat.st_size, stat.st_mtime_ns, calibration.identity, keep_in_float,
                               STATIC_INT8_VERSION)).encode()).hexdigest()[:12]
    target = model_path.with_name(f"{model_path.stem}.int8-{key}.xml")
    if target.is_file() and target.with_suffix(".bin").is_file():
        return target
    try:
        import nncf
        import openvino  # noqa: F401 - NNCF quantizes OpenVINO models
    except ImportError:
        raise SegmenterError("static int8 needs NNCF and OpenVINO: pip install -r requirements.txt") from None
    windows = calibration.windows()
    if not windows:
        raise SegmenterError(f"{calibration.identity}: no calibration windows")
    log(f"[INFO] quantizing {model_path.name} to static int8 on {len(windows)} calibration windows "
        f"(NNCF, once; cached as {target.name})")
    model = read_openvino(model_path)
    with _quiet("nncf"):
        quantized = nncf.quantize(
            model, nncf.Dataset(windows, lambda w: np.ascontiguousarray(w[None], np.float32)),
            model_type=nncf.ModelType.TRANSFORMER, subset_size=len(windows),
            ignored_scope=nncf.IgnoredScope(patterns=list(keep_in_float), validate=False))
    save_ir(quantized, target)
    return target


def save_ir(model, target: Path, compress_to_fp16: bool = True) -> None:
    """Write an OpenVINO model as target (.xml) and its .bin, both renamed into place (never half written)."""
    import openvino as ov

    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.xml")
    try:
        ov.save_model(model, str(tmp), compress_to_fp16=compress_to_fp16)
        os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp, target)
    except (OSError, RuntimeError) as exc:
        raise SegmenterError(f"{target}: cannot write the converted model here ({str(exc).splitlines()[0][:160]}); "
                             "put the model in a writable folder") from None
    finally:
        for leftover in (tmp, tmp.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)


def fp16_ir(model_path: Path, log=print) -> Path:
    """An OpenVINO IR of an ONNX model with its weights stored in fp16 (half the bytes to read and keep), for
    bf16 inference, which rounds the weights further anyway; cached beside the model. An IR is returned as it is."""
    if model_path.suffix == ".xml":
        return model_path
    target = model_path.with_name(f"{model_path.stem}.fp16.xml")
    if (target.is_file() and target.with_suffix(".bin").is_file()
            and target.stat().st_mtime >= model_path.stat().st_mtime):
        return target
    model = read_openvino(model_path)
    log(f"[INFO] writing {target} (weights in fp16 for bf16 inference; cached for later runs)")
    try:
        save_ir(model, target, compress_to_fp16=True)
    except SegmenterError as exc:
        log(f"[WARN] {exc}; using the fp32 model as it is")
        return model_path
    return target


def read_openvino(model_path: Path):
    """The model as OpenVINO reads it (ONNX or IR), or a one-line error naming the file."""
    import openvino as ov

    try:
        return ov.Core().read_model(str(model_path))
    except RuntimeError as exc:
        raise SegmenterError(f"{model_path}: OpenVINO cannot read it ({str(exc).splitlines()[0][:160]})") from None
