"""ONNX export: a tracing-safe wrapper, then onnx.checker and an ONNX Runtime vs PyTorch comparison."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..defaults import DEFAULT_OPSET, EXPORT_TOLERANCE
from ..errors import SegmenterError
from ..files import atomic_write
from .network import Segmenter, set_fused_attention

CHECK_BATCH = 2


class ExportWrapper(nn.Module):
    """The traced module: one tensor in, `input` (N, 3, H, W) float32, one out, `output` (N, K, H, W) float32."""

    def __init__(self, model: Segmenter) -> None:
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the graph's input name
        return self.model(input)


def max_diff_onnxruntime(model: Segmenter, onnx_path: str | Path, input_size: tuple[int, int],
                         batch: int = CHECK_BATCH, seed: int = 0) -> float:
    """Max absolute difference between ONNX Runtime (CPU) and PyTorch on a random batch."""
    import onnxruntime as ort

    x = torch.randn(batch, 3, *input_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = session.run(["output"], {"input": x.numpy()})[0]
    if out.shape != ref.shape:
        raise SegmenterError(f"{onnx_path}: ONNX output shape {out.shape} differs from PyTorch's {ref.shape}")
    return float(np.abs(out - ref).max())


def export_onnx(model: Segmenter, onnx_path: str | Path, input_size: tuple[int, int],
                opset: int = DEFAULT_OPSET, tolerance: float = EXPORT_TOLERANCE, log=print,
                dynamic_hw: bool = False) -> float:
    """Export with a dynamic batch axis (and, with `dynamic_hw`, dynamic height and width up to `input_size`,
    for the windows smaller than the crop that MMSegmentation's evaluation cuts), check, compare with PyTorch;
    write atomically. Returns the max diff.

    The graph is traced with the plain attention formula: it exports to MatMul/Softmax at every opset and
    is what ONNX Runtime, OpenVINO and TensorRT pattern-match into their fused attention kernels. The
    comparison runs PyTorch with scaled_dot_product_attention, at `input_size` and, for a dynamic graph,
    at a smaller window too. The graph's metadata records the window size (`window_size`) and whether it
    takes smaller windows (`dynamic_hw`). Raises SegmenterError (and leaves no file) when a difference
    exceeds `tolerance`.
    """
    import onnx

    H, W = input_size
    if H <= 0 or W <= 0:
        raise SegmenterError(f"input size must be positive, got {H} x {W}")
    model = model.eval()
    set_fused_attention(model, False)
    model.dynamic_hw = dynamic_hw
    result: dict[str, float] = {}
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}

    def write(tmp: str) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            # sizes read as Python ints are constants of the graph on purpose (only the batch axis is dynamic)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", ".*legacy TorchScript-based ONNX export", DeprecationWarning)
            torch.onnx.export(
                ExportWrapper(model), (torch.zeros(1, 3, H, W),), tmp, dynamo=False,
                input_names=["input"], output_names=["output"], opset_version=opset,
                dynamic_axes={"input": axes, "output": axes}, do_constant_folding=True,
            )
        graph = onnx.load(tmp)
        out_dims = graph.graph.output[0].type.tensor_type.shape.dim
        for dim, value in zip(out_dims[1:], (model.n_cls,) if dynamic_hw else (model.n_cls, H, W)):
            dim.Clear()  # the tracer leaves these symbolic
            dim.dim_value = value
        for key, value in (("window_size", str(H)), ("dynamic_hw", str(dynamic_hw).lower())):
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, tmp)
        del graph
        onnx.checker.check_model(tmp)
        model.dynamic_hw = False
        set_fused_attention(model, True)
        sizes = [(H, W)] + ([(max(1, H // 2 + 3), max(1, W - 5))] if dynamic_hw else [])
        diff = max(max_diff_onnxruntime(model, tmp, size) for size in sizes)
        log(f"onnx.checker passed; max |ONNX Runtime - PyTorch| on a random batch of {CHECK_BATCH}: "
            f"{diff:.3g} (tolerance {tolerance:g})")
        if not diff <= tolerance:
            raise SegmenterError(f"{onnx_path}: exported model differs from PyTorch by {diff:.3g} > {tolerance:g}; "
                                 "file not written")
        result["diff"] = diff

    try:
        atomic_write(onnx_path, write)
    finally:
        model.dynamic_hw = False
        set_fused_attention(model, True)
    return result["diff"]
