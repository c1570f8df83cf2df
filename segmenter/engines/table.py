"""The engine table: one record per `--device`, read by every part that chooses, opens or places an engine.

int8 on cpu is ONNX Runtime's dynamic quantization of the MatMul weights; on openvino, static int8 made
with NNCF on calibration windows (quantize.py). bf16 on openvino needs a CPU with bf16 instructions
(AVX512-BF16 or AMX). fp16 on cuda converts the graph, on tensorrt builds fp16 kernels. torch-cuda runs
the checkpoint itself (no ONNX Runtime GPU build or TensorRT needed) with scaled-dot-product attention.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import SegmenterError


@dataclass(frozen=True)
class Device:
    """What a `--device` is: its engine, precisions, hardware, the file it opens and how it is installed, and
    what the measured `auto` choice expects of it before measuring (autotune.py)."""

    name: str
    engine: str
    precisions: tuple[str, ...]
    gpu: bool  # runs on a GPU (Ray gives its actors one each)
    opens: str  # "onnx": an exported model (or an IR made from one); "checkpoint": the checkpoint itself
    install: str
    calibrated: tuple[str, ...] = ()  # precisions made from calibration windows (static int8)
    cpu_bf16: tuple[str, ...] = ()  # precisions that need bfloat16 instructions on the CPU
    # Seconds per window expected of each precision, relative to the fp32 reference the probe measures first
    # (OpenVINO fp32 on a CPU, ONNX Runtime CUDA fp32 on a GPU), from this project's measurements (README).
    expected: tuple[tuple[str, float], ...] = ()
    # What each precision needs made before it runs (a converted copy, cached), as quantize.py makes it
    preparation: tuple[tuple[str, str], ...] = ()

    def expected_ratio(self, precision: str) -> float:
        return dict(self.expected).get(precision, 1.0)

    def preparation_of(self, precision: str) -> str:
        return dict(self.preparation).get(precision, "")


DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("cpu", "ONNX Runtime, CPU", ("fp32", "int8"), False, "onnx", "requirements.txt",
           expected=(("fp32", 1.1), ("int8", 0.6)), preparation=(("int8", "dynamic-int8"),)),
    Device("openvino", "OpenVINO, CPU", ("fp32", "bf16", "int8"), False, "onnx", "requirements.txt",
           calibrated=("int8",), cpu_bf16=("bf16",), expected=(("fp32", 1.0), ("bf16", 0.5), ("int8", 0.35)),
           preparation=(("bf16", "fp16-ir"), ("int8", "static-int8"))),
    Device("cuda", "ONNX Runtime, CUDA", ("fp32", "fp16"), True, "onnx", "requirements-gpu.txt",
           expected=(("fp32", 1.0), ("fp16", 0.5)), preparation=(("fp16", "fp16-graph"),)),
    Device("tensorrt", "ONNX Runtime, TensorRT", ("fp32", "fp16"), True, "onnx",
           "requirements-gpu.txt and TensorRT", expected=(("fp32", 0.8), ("fp16", 0.3)),
           preparation=(("fp32", "tensorrt-engine"), ("fp16", "tensorrt-engine"))),
    Device("torch-cuda", "this package's PyTorch model on a CUDA GPU, SDPA attention", ("bf16", "fp16", "fp32"), True,
           "checkpoint", "a CUDA build of PyTorch", expected=(("bf16", 0.5), ("fp16", 0.5), ("fp32", 1.0))),
)}
PRECISIONS = tuple(dict.fromkeys(p for d in DEVICES.values() for p in d.precisions))


def device_record(name: str, precision: str | None = None) -> Device:
    """The record of a device; an unknown device, or a precision it does not offer, is an error."""
    if name not in DEVICES:
        raise SegmenterError(f"unknown device '{name}' (known: {', '.join(DEVICES)})")
    record = DEVICES[name]
    if precision is not None and precision not in record.precisions:
        raise SegmenterError(f"device {name} offers precisions {', '.join(record.precisions)}, not '{precision}'")
    return record


def is_gpu(device: str) -> bool:
    return device_record(device).gpu


def opens_checkpoint(device: str) -> bool:
    return device_record(device).opens == "checkpoint"


def needs_calibration(device: str, precision: str) -> bool:
    return precision in device_record(device).calibrated
