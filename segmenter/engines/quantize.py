"""Lower-precision copies of an exported model, made with the engines' own tools and cached beside it.

- ONNX Runtime int8: dynamic quantization (int8 MatMul weights, activations quantized per call).
- ONNX Runtime fp16 (CUDA): the graph converted, LayerNorm and Resize kept in fp32.
- OpenVINO int8: static post-training quantization with NNCF (model type TRANSFORMER, SmoothQuant) on
  calibration windows from the data being evaluated (or a folder); the parts measured to be sensitive
  stay in higher precision (KEEP_IN_FLOAT).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SegmenterError
from ..extras import require
from ..files import content_key, derived_files, file_sha256

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


def copy_target(model_path: Path, kind: str, calibration: Calibration | None = None,
                keep_in_float: tuple[str, ...] = KEEP_IN_FLOAT) -> Path:
    """Where the converted copy of a kind goes beside the model (named by the model's content, and for static
    int8 by the calibration and the recipe too)."""
    source = file_sha256(model_path)
    if kind == "static-int8":
        key = content_key(source, calibration.identity if calibration else None, keep_in_float, STATIC_INT8_VERSION)
        return model_path.with_name(f"{model_path.stem}.int8-{key}.xml")
    if kind == "fp16-ir":
        return model_path.with_name(f"{model_path.stem}.fp16-{content_key(source, 'fp16-ir')}.xml")
    tag = {"dynamic-int8": "int8", "fp16-graph": "fp16"}[kind]
    return model_path.with_name(f"{model_path.stem}.{tag}-{content_key(source, tag)}.onnx")


def copy_made(model_path: Path, kind: str, calibration: Calibration | None = None) -> bool:
    """Whether the converted copy of a kind was made already (its record written: it is checked when used)."""
    if not kind or model_path.suffix == ".xml":
        return True
    target = copy_target(model_path, kind, calibration)
    return target.with_name(f"{target.name}.sha256").is_file()


def derived_model(model_path: Path, kind: str, make, what: str, log=print) -> Path:
    """`<model>.<tag>-<key>.onnx` beside the model, made by make(src, dst) once per content of the model."""
    target = copy_target(model_path, kind)
    return derived_files(target, (".onnx",), lambda tmps: make(str(model_path), tmps[0]), file_sha256(model_path),
                         what, log)


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
    count: int = 0  # how many windows that is (for the cost of quantizing, before it is made)


def static_int8(model_path: Path, calibration: Calibration | None, keep_in_float: tuple[str, ...] = KEEP_IN_FLOAT,
                log=print) -> Path:
    """An OpenVINO IR with int8 weights and activations (NNCF post-training quantization), cached beside the model
    under a name that depends on the model, the calibration data and the recipe."""
    if model_path.suffix == ".xml":  # already an IR (made before, e.g. shipped to a Ray actor)
        return model_path
    if calibration is None:
        raise SegmenterError(f"{model_path}: static int8 needs calibration windows: images of the data set to "
                             "evaluate, or a folder of images")
    source = file_sha256(model_path)
    target = copy_target(model_path, "static-int8", calibration, keep_in_float)
    nncf = require("nncf", "int8", "static int8 on OpenVINO")

    def quantize(tmps: list[str]) -> None:
        windows = calibration.windows()
        if not windows:
            raise SegmenterError(f"{calibration.identity}: no calibration windows")
        log(f"[INFO] quantizing {model_path.name} to static int8 on {len(windows)} calibration windows (NNCF, once)")
        model = read_openvino(model_path)
        with _quiet("nncf"):
            quantized = nncf.quantize(
                model, nncf.Dataset(windows, lambda w: np.ascontiguousarray(w[None], np.float32)),
                model_type=nncf.ModelType.TRANSFORMER, subset_size=len(windows),
                ignored_scope=nncf.IgnoredScope(patterns=list(keep_in_float), validate=False))
        save_ir(quantized, tmps[0])

    return derived_files(target, (".xml", ".bin"), quantize, source, "static int8 IR", log)


def save_ir(model, path: str, compress_to_fp16: bool = True) -> None:
    """Write an OpenVINO model as path (.xml) and its .bin beside it."""
    import openvino as ov

    try:
        ov.save_model(model, path, compress_to_fp16=compress_to_fp16)
    except RuntimeError as exc:
        raise SegmenterError(f"{path}: cannot write the converted model here ({str(exc).splitlines()[0][:160]}); "
                             "put the model in a writable folder") from None


def fp16_ir(model_path: Path, log=print) -> Path:
    """An OpenVINO IR of an ONNX model with its weights stored in fp16 (half the bytes to read and keep), for
    bf16 inference, which rounds the weights further anyway; cached beside the model. An IR is returned as it is;
    where the IR cannot be written, the model as it is (with a warning)."""
    if model_path.suffix == ".xml":
        return model_path
    source = file_sha256(model_path)
    target = copy_target(model_path, "fp16-ir")
    try:
        return derived_files(target, (".xml", ".bin"), lambda tmps: save_ir(read_openvino(model_path), tmps[0]),
                             source, "weights in fp16 for bf16 inference", log)
    except SegmenterError as exc:
        log(f"[WARN] {exc}; using the fp32 model as it is")
        return model_path


def read_openvino(model_path: Path):
    """The model as OpenVINO reads it (ONNX or IR), or a one-line error naming the file."""
    import openvino as ov

    try:
        return ov.Core().read_model(str(model_path))
    except RuntimeError as exc:
        raise SegmenterError(f"{model_path}: OpenVINO cannot read it ({str(exc).splitlines()[0][:160]})") from None
