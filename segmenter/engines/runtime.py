"""From the model a user gives (checkpoint.pth or exported ONNX) to a ready engine, `auto` resolved by measuring.

Shared by segmenter_eval.py, segmenter_predict.py and the benchmarks: export through the cache for
the ONNX engines, the checkpoint itself for torch-cuda, calibration windows for static int8.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.arrays import read_window_file
from ..data.images import read_image, same_shape_windows
from ..data.plan import ImagePlan, WindowConfig
from ..defaults import CALIBRATION_IMAGES, MAX_CALIBRATION_WINDOWS
from ..errors import SegmenterError
from ..files import content_key, file_sha256
from ..model.cache import cache_dir, exported_model
from ..model.variant import Variant
from .autotune import choose_engine
from .backends import Engine, open_engine, require_window
from .quantize import Calibration, static_int8
from .table import needs_calibration, opens_checkpoint


def image_windows(paths: list[Path], cfg: WindowConfig, limit: int) -> list[np.ndarray]:
    """The windows of the images (all views), up to `limit` of them, spread over the images."""
    per_image = []
    for path in paths:
        bgr = read_image(path)
        plan = ImagePlan.for_image(path.name, "x", path, "", bgr.shape[:2], cfg)
        per_image.append(same_shape_windows(bgr, plan, cfg))
    windows = [w[k] for k in range(max(len(w) for w in per_image)) for w in per_image if k < len(w)]  # round robin
    return [windows[i] for i in np.linspace(0, len(windows) - 1, min(limit, len(windows))).astype(int)]


def spread(items: list, n: int) -> list:
    """n items evenly spread over the list (all of them if fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).astype(int)]


def calibration_from_images(paths: list[Path], cfg: WindowConfig, images: int = CALIBRATION_IMAGES) -> Calibration:
    """Calibration on the windows of `images` images spread over `paths` (the data to evaluate, or a folder)."""
    chosen = spread(sorted(paths), images)
    if not chosen:
        raise SegmenterError("no images to calibrate static int8 on")
    identity = content_key([file_sha256(p) for p in chosen], cfg.to_json(), MAX_CALIBRATION_WINDOWS)
    return Calibration(f"{len(chosen)} images ({chosen[0]} ...) {identity}",
                       lambda: image_windows(chosen, cfg, MAX_CALIBRATION_WINDOWS))


def onnx_io(model: Path) -> tuple[tuple[int, ...], int]:
    """(C, H, W) of one window as an exported ONNX model takes it (the batch axis dropped), and its class count K."""
    import onnx

    try:
        proto = onnx.load(str(model), load_external_data=False)
        graph, graph_metadata = proto.graph, proto.metadata_props
        dims_in = graph.input[0].type.tensor_type.shape.dim
        dims_out = graph.output[0].type.tensor_type.shape.dim
    except Exception as exc:  # noqa: BLE001 - protobuf's decode errors have no common type
        raise SegmenterError(f"{model}: not a readable ONNX model ({str(exc).splitlines()[0][:120]})") from None
    if len(dims_in) != 4 or len(dims_out) != 4:
        raise SegmenterError(f"{model}: expected input (N, 3, H, W) and output (N, K, H, W); export it with "
                             "segmenter_pytorch2onnx.py")
    shape = tuple(d.dim_value for d in dims_in[1:])
    window = {p.key: p.value for p in graph_metadata}.get("window_size", "")
    if not all(shape[1:]) and window.isdigit():  # dynamic height and width: the window its metadata records
        shape = (shape[0], int(window), int(window))
    return shape, dims_out[1].dim_value


def check_model_file(model: Path, cfg: WindowConfig, spec) -> None:
    """An exported model handed to other processes (Ray actors) must take the run's windows and give the data
    set's classes: checked here, before they start. A checkpoint is exported for the run, and an IR made from it."""
    if model.suffix != ".onnx":
        return
    shape, n_cls = onnx_io(model)
    require_window(shape[1:], cfg.window_size, model)
    if n_cls != spec.n_cls:
        raise SegmenterError(f"{model}: the model has {n_cls} classes but {spec.title} has {spec.n_cls}; is this "
                             "the model of that data set?")


def calibration_from_inputs(files: list[Path], model: Path, count: int = MAX_CALIBRATION_WINDOWS) -> Calibration:
    """Calibration on window files (.bin/.npy) of the file route, spread over the folder."""
    item_shape = onnx_io(model)[0]
    chosen = spread(files, count)
    identity = content_key([file_sha256(f) for f in chosen], item_shape)
    return Calibration(f"{len(chosen)} window files ({chosen[0]} ...) {identity}",
                       lambda: [read_window_file(f, item_shape, "a calibration window")[0] for f in chosen])


def prepared_model(model: Path, variant: Variant, cfg: WindowConfig, device: str, precision: str,
                   calibration: Calibration | None = None, log=print) -> Path:
    """The file the engine opens: the checkpoint itself for torch-cuda; else the ONNX export (a checkpoint is
    exported at the window size through the cache), or its static int8 IR for openvino int8."""
    if opens_checkpoint(device):
        return model
    if model.suffix in (".pth", ".pt"):
        model = exported_model(model, variant, (cfg.window_size, cfg.window_size), log)
    if needs_calibration(device, precision):
        model = static_int8(model, calibration, log=log)
    return model


def open_model_engine(model: Path, variant: Variant, cfg: WindowConfig, device: str, precision: str,
                      threads: int | None = None, batch_size: int = 1, calibration: Calibration | None = None,
                      log=print) -> Engine:
    """The engine for a checkpoint or an exported ONNX model at `precision` on `device`."""
    path = prepared_model(model, variant, cfg, device, precision, calibration, log)
    engine = open_engine(path, device, precision, threads, batch_size, variant=variant)
    require_window(engine.input_hw, cfg.window_size, model)
    return engine


def probe_windows(images: list[Path], cfg: WindowConfig, batch_size: int) -> np.ndarray:
    """(k, 3, window, window) windows of the first image to measure engines on: at least a batch, two at least."""
    if not images:
        raise SegmenterError("no image to measure the engines on")
    return np.stack(image_windows(images[:1], cfg, max(2, batch_size)))


def resolve_engine(model: Path, variant: Variant, cfg: WindowConfig, device: str, precision: str,
                   probe: np.ndarray | None, threads: int | None = None, batch_size: int = 1,
                   calibration: Calibration | None = None, log=print) -> tuple[str, str]:
    """`auto` device and precision, measured on the probe windows (once per machine and model: cached)."""
    if "auto" not in (device, precision):
        return device, precision
    choices = cache_dir("auto")  # an unusable cache is refused before anything is measured
    if probe is None or not len(probe):
        raise SegmenterError("no image to measure the engines on")
    if model.suffix == ".onnx":  # before any engine is timed
        require_window(onnx_io(model)[0][1:], cfg.window_size, model)
    quiet = lambda *_: None  # noqa: E731
    return choose_engine(
        device, precision,
        lambda d, p: open_model_engine(model, variant, cfg, d, p, threads, batch_size, calibration, quiet),
        probe, batch_size, file_sha256(model), choices, torch_ok=model.suffix in (".pth", ".pt"),
        calibration_ok=calibration is not None, log=log)
