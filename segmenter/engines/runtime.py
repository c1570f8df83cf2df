"""From the model a user gives (checkpoint.pth or exported ONNX) to a ready engine, `auto` resolved by measuring.

Shared by segmenter_eval.py, segmenter_predict.py and the benchmarks: export through the cache for
the ONNX engines, the checkpoint itself for torch-cuda, calibration windows for static int8.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.arrays import read_window_file
from ..data.images import read_image, same_shape_windows, spread, take_census
from ..data.plan import ImagePlan, WindowConfig
from ..defaults import CALIBRATION_IMAGES, calibration_windows
from ..errors import SegmenterError
from ..files import content_key, file_sha256
from ..model.cache import cache_dir, exported_model
from ..model.checkpoint import is_checkpoint
from ..model.variant import Variant
from ..system import available_memory
from .autotune import Choice, choose_engine
from .backends import Engine, available_devices, open_engine, require_window
from .quantize import Calibration, copy_made, static_int8
from .table import DEVICES, needs_calibration, opens_checkpoint


def image_windows(paths: list[Path], cfg: WindowConfig, limit: int) -> list[np.ndarray]:
    """`limit` windows of the images (all views), spread over the images and over each image's windows. One image
    is read at a time and only its share of windows is kept, so memory holds `limit` windows, not all of them. Images
    that cannot be read are passed over (the run that reaches them reports them); none readable is an error."""
    share = -(-limit // max(len(paths), 1))
    per_image, problems = [], []
    for path in paths:
        try:
            bgr = read_image(path)
        except SegmenterError as exc:
            problems.append(str(exc))
            continue
        plan = ImagePlan.for_image(path.name, "x", path, "", bgr.shape[:2], cfg)
        per_image.append(same_shape_windows(bgr, plan, cfg, share))
    if not per_image:
        raise SegmenterError(problems[0] if problems else "no image to take windows of")
    windows = [w[k] for k in range(max(len(w) for w in per_image)) for w in per_image if k < len(w)]  # round robin
    return spread(windows, limit)


def calibration_from_images(paths: list[Path], cfg: WindowConfig, images: int = CALIBRATION_IMAGES) -> Calibration:
    """Calibration on windows of `images` images spread over `paths` (the data to evaluate, or a folder): as many as
    defaults.calibration_windows gives, spread over the images and over each image's windows."""
    chosen = spread(sorted(paths), images)
    if not chosen:
        raise SegmenterError("no images to calibrate static int8 on")
    limit = calibration_windows(cfg.window_size, len(chosen))
    identity = content_key([file_sha256(p) for p in chosen], cfg.to_json(), limit, "spread per image")
    share = -(-limit // len(chosen))
    count = min(limit, sum(min(share, p.n_windows) for p in take_census(chosen, cfg).plans))
    return Calibration(f"{len(chosen)} images ({chosen[0]} ...) {identity}",
                       lambda: image_windows(chosen, cfg, limit), count)


def onnx_io(model: Path) -> tuple[tuple[int, ...], int]:
    """(C, H, W) of one window as an exported ONNX model takes it (the batch axis dropped), and its class count K."""
    import onnx

    try:
        proto = onnx.load(str(model), load_external_data=False)
        graph, graph_metadata = proto.graph, proto.metadata_props
        dims_in = graph.input[0].type.tensor_type.shape.dim
        dims_out = graph.output[0].type.tensor_type.shape.dim
    except Exception as exc:  # noqa: BLE001 - protobuf's decode errors have no common type
        raise SegmenterError(f"{model}: neither a PyTorch checkpoint nor a readable ONNX model "
                             f"({str(exc).splitlines()[0][:120]})") from None
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
    if is_checkpoint(model):
        return
    shape, n_cls = onnx_io(model)
    require_window(shape[1:], cfg.window_size, model)
    if n_cls != spec.n_cls:
        raise SegmenterError(f"{model}: the model has {n_cls} classes but {spec.title} has {spec.n_cls}; is this "
                             "the model of that data set?")


def calibration_from_inputs(files: list[Path], model: Path, count: int | None = None) -> Calibration:
    """Calibration on window files (.bin/.npy) of the file route, spread over the folder (as many as
    defaults.calibration_windows gives for the model's window, unless `count` says)."""
    item_shape = onnx_io(model)[0]
    chosen = spread(files, count or calibration_windows(item_shape[-1]))
    identity = content_key([file_sha256(f) for f in chosen], item_shape)
    return Calibration(f"{len(chosen)} window files ({chosen[0]} ...) {identity}",
                       lambda: [read_window_file(f, item_shape, "a calibration window")[0] for f in chosen],
                       len(chosen))


def prepared_model(model: Path, variant: Variant, cfg: WindowConfig, device: str, precision: str,
                   calibration: Calibration | None = None, log=print) -> Path:
    """The file the engine opens: the checkpoint itself for torch-cuda; else the ONNX export (a checkpoint is
    exported at the window size through the cache), or its static int8 IR for openvino int8."""
    if opens_checkpoint(device):
        return model
    if is_checkpoint(model):
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
    for path in images:  # the first that can be read
        try:
            return np.stack(image_windows([path], cfg, max(2, batch_size)))
        except SegmenterError as exc:
            problem = exc
    raise SegmenterError(f"no image could be read to measure the engines on ({problem})")


# Seconds to make a converted copy, per MB of the model file and fixed, measured on 2 cores of an AMD EPYC (README);
# static int8 also runs each calibration window through the model about STATIC_INT8_PASSES times, and holds
# about STATIC_INT8_MEMORY times the model file in memory while it quantizes (NNCF: 3.8 GB for Seg-B's 413 MB).
MAKING = {"fp16-ir": (0.002, 0.5), "dynamic-int8": (0.006, 0.5), "fp16-graph": (0.004, 1.0),
          "tensorrt-engine": (0.2, 60.0), "static-int8": (0.03, 4.0)}
STATIC_INT8_PASSES = 2.4
STATIC_INT8_MEMORY = 9.5


def making_cost(model: Path, device: str, precision: str, calibration: Calibration | None,
                seconds_per_window: float) -> tuple[float, str]:
    """Estimated seconds to make what a candidate needs before it runs (0 when it is made already), and why it
    cannot be made on this machine (empty when it can)."""
    kind = DEVICES[device].preparation_of(precision)
    if not kind or (kind != "tensorrt-engine" and copy_made(model, kind, calibration)):
        return 0.0, ""
    per_mb, fixed = MAKING[kind]
    size = model.stat().st_size
    seconds = fixed + per_mb * size / 1e6
    if kind == "static-int8":
        seconds += STATIC_INT8_PASSES * (calibration.count if calibration else 0) * seconds_per_window
        need, free = STATIC_INT8_MEMORY * size, available_memory()
        if need > free:
            return seconds, (f"quantizing it needs about {need / 2**30:.1f} GiB of memory, {free / 2**30:.1f} GiB "
                             f"are available; give device {device} and precision {precision} to try anyway")
    return seconds, ""


def resolve_engine(model: Path, variant: Variant, cfg: WindowConfig, device: str, precision: str,
                   probe: np.ndarray | None, threads: int | None = None, batch_size: int = 1,
                   calibration: Calibration | None = None, log=print, run_windows: int = 1) -> Choice:
    """`auto` device and precision, measured on the probe windows for a run of `run_windows` windows (once per
    machine and model: cached); the engine of the choice comes open when the probe opened it last."""
    if "auto" not in (device, precision):
        return Choice(device, precision)
    choices = cache_dir("auto")  # an unusable cache is refused before anything is measured
    if probe is None or not len(probe):
        raise SegmenterError("no image to measure the engines on")
    onnx = None if is_checkpoint(model) else model
    if onnx is not None:  # before any engine is timed
        require_window(onnx_io(model)[0][1:], cfg.window_size, model)
    if onnx is None and any(not opens_checkpoint(d) for d in available_devices()):
        onnx = exported_model(model, variant, (cfg.window_size, cfg.window_size), log)  # before the clock: all
        # candidates but the PyTorch engine open it

    def preparation(d: str, p: str, seconds_per_window: float) -> tuple[float, str]:
        return making_cost(onnx, d, p, calibration, seconds_per_window) if not opens_checkpoint(d) else (0.0, "")

    def opener(d: str, p: str) -> Engine:
        return open_model_engine(model if opens_checkpoint(d) else onnx, variant, cfg, d, p, threads, batch_size,
                                 calibration, log)

    return choose_engine(
        device, precision, opener,
        probe, batch_size, file_sha256(model), choices, run_windows, preparation,
        torch_ok=is_checkpoint(model), calibration_ok=calibration is not None, log=log)
