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

# Kept out of static int8, by measurement on the demo model and the larger trained one (README): the
# decoder's class and patch projections and the mask product, whose cosine similarities are then
# LayerNorm-ed over the classes, decide the argmax and are cheap.
KEEP_IN_FLOAT = (r".*/decoder/MatMul(_\d+)?$",)
STATIC_INT8_VERSION = 1  # bump when the recipe changes: cached copies are remade


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
        import openvino as ov
    except ImportError:
        raise SegmenterError("static int8 needs NNCF and OpenVINO: pip install -r requirements.txt") from None
    windows = calibration.windows()
    if not windows:
        raise SegmenterError(f"{calibration.identity}: no calibration windows")
    log(f"[INFO] quantizing {model_path.name} to static int8 on {len(windows)} calibration windows "
        f"(NNCF, once; cached as {target.name})")
    model = ov.Core().read_model(str(model_path))
    with _quiet("nncf"):
        quantized = nncf.quantize(
            model, nncf.Dataset(windows, lambda w: np.ascontiguousarray(w[None], np.float32)),
            model_type=nncf.ModelType.TRANSFORMER, subset_size=len(windows),
            ignored_scope=nncf.IgnoredScope(patterns=list(keep_in_float), validate=False))
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.xml")
    try:
        ov.save_model(quantized, str(tmp))
        os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, tmp.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)
    return target
