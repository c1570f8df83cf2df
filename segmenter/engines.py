"""Inference engines behind one interface: (B, 3, H, W) float32 windows -> (B, K, H, W) float32 logits."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import SegmenterError

DEVICES = ("cpu", "cuda", "tensorrt")
PRECISIONS = ("fp32",)


class Engine(Protocol):
    name: str  # e.g. "onnxruntime-cpu fp32"
    input_hw: tuple[int, int]
    n_cls: int

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def _onnx_io(model_path: Path) -> tuple[tuple[int, int], int]:
    """(H, W) of the model's `input` and K of its `output`, from the graph (weights not loaded)."""
    import onnx

    try:
        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for a bad file
        raise SegmenterError(f"{model_path}: not a readable ONNX model ({str(exc).splitlines()[0][:120]})") from None
    dims_in = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    dims_out = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    if len(dims_in) != 4 or dims_in[1] != 3 or not dims_in[2] or not dims_in[3] or len(dims_out) != 4 or not dims_out[1]:
        raise SegmenterError(f"{model_path}: expected input (N, 3, H, W) and output (N, K, H, W) with fixed H, W, K; "
                             "export it with segmenter_pytorch2onnx.py")
    return (dims_in[2], dims_in[3]), dims_out[1]


class OnnxRuntimeEngine:
    """ONNX Runtime on the CPU, CUDA or TensorRT execution provider."""

    PROVIDERS = {"cpu": ["CPUExecutionProvider"],
                 "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                 "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}

    def __init__(self, model_path: Path, device: str = "cpu", precision: str = "fp32", threads: int | None = None):
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = self.PROVIDERS[device][0]
        if wanted not in available:
            raise SegmenterError(f"--device {device} needs ONNX Runtime's {wanted}, which this onnxruntime lacks "
                                 f"(available: {', '.join(available)}); install onnxruntime-gpu for cuda/tensorrt")
        self.input_hw, self.n_cls = _onnx_io(model_path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        self.session = ort.InferenceSession(str(model_path), options, providers=self.PROVIDERS[device])
        self.name = f"onnxruntime-{device} {precision}"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(["output"], {"input": batch})[0]


def open_engine(model_path: str | Path, device: str = "cpu", precision: str = "fp32",
                threads: int | None = None) -> Engine:
    """The engine for an exported ONNX model on `device` at `precision`."""
    model_path = Path(model_path)
    if model_path.suffix == ".om":
        raise SegmenterError(f"{model_path}: .om models run on Ascend hosts with `python3 -m ais_bench`")
    if not model_path.is_file():
        raise SegmenterError(f"{model_path}: model file not found")
    if device not in DEVICES:
        raise SegmenterError(f"unknown device '{device}' (known: {', '.join(DEVICES)})")
    if precision not in PRECISIONS:
        raise SegmenterError(f"unknown precision '{precision}' (known: {', '.join(PRECISIONS)})")
    return OnnxRuntimeEngine(model_path, device, precision, threads)
