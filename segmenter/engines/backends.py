"""Inference engines behind one interface: (B, 3, H, W) float32 windows -> (B, K, H, W) float32 logits.

ONNX Runtime (CPU, CUDA and TensorRT providers) and OpenVINO on exported models; which device offers
what is the engine table's (table.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import SegmenterError
from ..extras import installed
from ..system import check_memory, cpu_threads, gpu_names, package_version
from .quantize import Calibration, derived_model, dynamic_int8, fp16_graph, fp16_ir, read_openvino, static_int8
from .table import device_record

INPUT_NAME, OUTPUT_NAME = "input", "output"  # the names segmenter_pytorch2onnx.py gives the graph's ends

class Engine(Protocol):
    name: str  # e.g. "onnxruntime-cpu fp32"
    input_hw: tuple[int, int]  # the full window (H, W)
    n_cls: int
    dynamic: bool  # also takes windows smaller than input_hw (MMSegmentation's slide inference cuts them)

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def checked_io(model_path: Path, names_in: list[str], names_out: list[str], dims_in: list, dims_out: list,
               window: str | None = None) -> tuple[tuple[int, int], int, bool]:
    """(H, W) of the model's input, K of its output, and whether it takes other heights and widths, from their
    names and shapes (ints, or names for dynamic axes) and, for a graph of dynamic height and width, the window
    size its metadata records."""
    if names_in != [INPUT_NAME] or not names_out or names_out[0] != OUTPUT_NAME:
        raise SegmenterError(f"{model_path}: the model's inputs are {names_in} and its outputs {names_out}; needed: "
                             f"one input '{INPUT_NAME}' and a first output '{OUTPUT_NAME}'; export it with "
                             "segmenter_pytorch2onnx.py")
    static = lambda d: isinstance(d, int) and d > 0  # noqa: E731
    dynamic = len(dims_in) == 4 and not any(map(static, dims_in[2:])) and window is not None and window.isdigit()
    if len(dims_in) != 4 or dims_in[1] != 3 or not (dynamic or all(map(static, dims_in[2:]))) \
            or len(dims_out) != 4 or not static(dims_out[1]):
        raise SegmenterError(f"{model_path}: expected input (N, 3, H, W) and output (N, K, H, W) with fixed H, W, K, "
                             f"got {dims_in} and {dims_out}; export it with segmenter_pytorch2onnx.py")
    hw = (int(window), int(window)) if dynamic else (dims_in[2], dims_in[3])
    return hw, dims_out[1], dynamic


class OnnxRuntimeEngine:
    """ONNX Runtime on its CPU, CUDA or TensorRT execution provider; any batch size."""

    PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                 "tensorrt": "TensorrtExecutionProvider"}

    def __init__(self, model_path: Path, device: str, precision: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        provider = self.PROVIDERS[device]
        if provider not in ort.get_available_providers():
            both = package_version("onnxruntime") and package_version("onnxruntime-gpu")
            fix = ("onnxruntime and onnxruntime-gpu are both installed and overwrite each other's module: pip "
                   "uninstall -y onnxruntime onnxruntime-gpu && pip install -r requirements-gpu.txt") if both else \
                "pip install -r requirements-gpu.txt on a CUDA host (it replaces onnxruntime)"
            raise SegmenterError(f"device {device} needs ONNX Runtime's {provider}, which this onnxruntime lacks "
                                 f"(available: {', '.join(ort.get_available_providers())}); {fix}")
        if precision == "int8":
            model_path = derived_model(model_path, "dynamic-int8", dynamic_int8, "dynamic int8 weights")
        elif precision == "fp16" and device == "cuda":
            model_path = derived_model(model_path, "fp16-graph", fp16_graph, "fp16 graph")
        providers: list = [provider]
        if device == "tensorrt":  # callers pad to one batch size, so one engine is built (and cached)
            providers = [(provider, {
                "trt_fp16_enable": precision == "fp16", "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(model_path.parent / f"{model_path.stem}.trt_cache"),
            }), "CUDAExecutionProvider"]
        if device != "cpu":
            providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or cpu_threads()
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            reason = str(exc).splitlines()[0][:160]
            raise SegmenterError(f"{model_path}: ONNX Runtime cannot load it ({reason})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        window = self.session.get_modelmeta().custom_metadata_map.get("window_size")
        self.input_hw, self.n_cls, self.dynamic = checked_io(model_path, [i.name for i in inputs],
                                                             [o.name for o in outputs], inputs[0].shape,
                                                             outputs[0].shape, window)
        self.name = f"onnxruntime-{device} {precision}"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if not self.dynamic and tuple(batch.shape[2:]) != tuple(self.input_hw):
            raise SegmenterError(f"{self.name}: the model takes windows of {self.input_hw[0]}x{self.input_hw[1]} only, "
                                 f"not {batch.shape[2]}x{batch.shape[3]}; export it again with dynamic height and "
                                 "width (segmenter_pytorch2onnx.py does, for models whose windows may shrink)")
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]


class OpenVinoEngine:
    """OpenVINO on the CPU, compiled for a fixed batch size (smaller batches are padded) and the full window; a
    graph of dynamic height and width gets a second compiled model for smaller windows, made when first needed."""

    def __init__(self, model_path: Path, precision: str, threads: int | None = None, batch_size: int = 1,
                 calibration: Calibration | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise SegmenterError("the openvino device needs OpenVINO: pip install -r requirements.txt") from None
        core = ov.Core()
        if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise SegmenterError("precision bf16: this processor has no bfloat16 instructions (AVX512-BF16 or AMX)")
        self.batch_size = batch_size
        if precision == "int8":
            model_path = static_int8(model_path, calibration)  # the IR as it is, when given one
        elif precision == "bf16":
            model_path = fp16_ir(model_path)  # half the weight bytes to read: a lower peak memory
        model = read_openvino(model_path)
        shape = lambda port: [d.get_length() if d.is_static else "?" for d in port.get_partial_shape()]  # noqa: E731
        names = lambda ports: [p.get_any_name() if p.get_names() else "" for p in ports]  # noqa: E731
        window = model.get_rt_info(["framework", "window_size"]).astype(str) \
            if model.has_rt_info(["framework", "window_size"]) else None
        self.input_hw, self.n_cls, self.dynamic = checked_io(model_path, names(model.inputs), names(model.outputs),
                                                             shape(model.inputs[0]), shape(model.outputs[0]), window)
        check_batch_memory(batch_size, self.input_hw, self.n_cls)
        model.reshape({model.inputs[0]: [batch_size, 3, *self.input_hw]})
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads or cpu_threads()}
        if precision != "int8":  # int8: the float remainder (attention, softmax, norms) at OpenVINO's default for
            self.config["INFERENCE_PRECISION_HINT"] = "bf16" if precision == "bf16" else "f32"  # the CPU: bf16
        self.core, self.model_path = core, model_path  # with AMX
        self.compiled = core.compile_model(model, "CPU", self.config)
        self.request = self.compiled.create_infer_request()
        self._smaller = None  # the compiled model of dynamic height and width, once a smaller window comes
        self.name = f"openvino-cpu {precision}"

    def _infer_smaller(self, batch: np.ndarray) -> np.ndarray:
        if not self.dynamic:
            raise SegmenterError(f"{self.model_path}: the model takes windows of {self.input_hw[0]}x{self.input_hw[1]}"
                                 f" only, not {batch.shape[2]}x{batch.shape[3]}; export it again with dynamic height "
                                 "and width (segmenter_pytorch2onnx.py does, for models whose windows may shrink)")
        if self._smaller is None:
            model = read_openvino(self.model_path)
            model.reshape({model.inputs[0]: [-1, 3, -1, -1]})
            self._smaller = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        out = self._smaller.infer({0: np.ascontiguousarray(batch)})
        return np.array(out[self._smaller.model_outputs[0]], np.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if tuple(batch.shape[2:]) != tuple(self.input_hw):
            return self._infer_smaller(batch)
        n = batch.shape[0]
        if n > self.batch_size:
            return np.concatenate([self(batch[i:i + self.batch_size]) for i in range(0, n, self.batch_size)])
        if n < self.batch_size:
            batch = np.concatenate([batch, np.repeat(batch[-1:], self.batch_size - n, axis=0)])
        out = self.request.infer({0: np.ascontiguousarray(batch)})[self.compiled.output(0)]
        return np.array(out[:n], np.float32)  # a copy: the request reuses its output buffer


def require_window(input_hw: tuple[int, int], window_size: int, model: Path | str = "") -> None:
    """Refuse a model whose (H, W) input is not the window size the plan cuts."""
    if tuple(input_hw) != (window_size, window_size):
        raise SegmenterError(f"{f'{model}: ' if model else ''}the model's input is {input_hw[0]}x{input_hw[1]} but "
                             f"the windows are {window_size}x{window_size}; export at the window size or change the "
                             "window size")


def check_batch_memory(batch_size: int, input_hw: tuple[int, int], n_cls: int) -> None:
    """Refuse a batch whose inputs and outputs alone (each held twice) exceed the available memory."""
    per_window = (3 + n_cls) * input_hw[0] * input_hw[1] * 4 * 2
    check_memory(batch_size * per_window, f"a batch of {batch_size} windows of {input_hw[0]}x{input_hw[1]}")


def open_engine(model_path: str | Path, device: str = "cpu", precision: str = "fp32", threads: int | None = None,
                batch_size: int = 1, calibration: Calibration | None = None, variant=None) -> Engine:
    """The engine for an exported ONNX model (a checkpoint for torch-cuda, with its variant) on `device` at
    `precision`, tuned for `batch_size` windows; static int8 is calibrated on `calibration`."""
    model_path = Path(model_path)
    if model_path.suffix == ".om":
        raise SegmenterError(f"{model_path}: .om models run on Ascend hosts with `python3 -m ais_bench`")
    if not model_path.is_file():
        raise SegmenterError(f"{model_path}: model file not found")
    if device_record(device, precision).opens == "checkpoint":
        from .torch_engine import TorchEngine

        return TorchEngine(model_path, variant, "cuda", precision, batch_size)
    if device == "openvino":
        return OpenVinoEngine(model_path, precision, threads, batch_size, calibration)
    engine = OnnxRuntimeEngine(model_path, device, precision, threads)
    check_batch_memory(batch_size, engine.input_hw, engine.n_cls)
    return engine


def available_devices() -> list[str]:
    """Devices whose engine is installed and usable here, GPUs first."""
    import onnxruntime as ort

    providers = ort.get_available_providers()
    found = [d for d in ("tensorrt", "cuda") if OnnxRuntimeEngine.PROVIDERS[d] in providers]
    if installed("torch") and gpu_names():  # PyTorch is imported by the engine that runs, not to ask
        found.append("torch-cuda")
    if installed("openvino"):
        found.append("openvino")
    return found + ["cpu"]


def cpu_has_bf16() -> bool:
    """bfloat16 instructions of any kind (AVX512-BF16 or AMX), as OpenVINO sees them."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
