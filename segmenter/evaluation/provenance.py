"""What produced a figure: one record of the model, the data, the evaluation settings, the engine, the run, the
machine and the versions, written beside every result (metrics.yaml's `run:` block, the report's panel,
predict's run.yaml, perf.sh's CSV), so that a figure can be traced, compared with a publisher's table and
reproduced.

Each part is a plain dict (YAML-ready) built by one function here; `RunClock` times a run and says its
command line. Nothing here imports an engine or PyTorch: versions come from the packages' metadata.
"""
from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

from ..files import content_key, file_sha256
from ..system import cpu_model, cpu_threads, gpu_names, package_version

SIZE_NAMES = {(192, 12): "T", (384, 12): "S", (768, 12): "B", (1024, 24): "L"}  # (width, depth) of the released ViTs
PACKAGE = "segmenter-infer"
VERSIONED = ("onnxruntime", "onnxruntime-gpu", "openvino", "nncf", "torch", "numpy", "opencv-python-headless")


def architecture(variant) -> str:
    """The model in words, as the papers and zoos name it: "Seg-B-Mask/16, 150 classes"."""
    cfg = variant.model
    size = SIZE_NAMES.get((cfg.d_model, cfg.n_layers), f"D{cfg.d_model}x{cfg.n_layers}")
    head = "Mask" if cfg.decoder == "mask_transformer" else "Linear"
    deit = "-DeiT" if cfg.distilled else ""
    return f"Seg-{size}{deit}-{head}/{cfg.patch_size}, {cfg.n_cls} classes"


def model_record(path: str | Path, variant) -> dict:
    """The model file (its content hash), its format, its description file and digest, and what it is."""
    from ..model.checkpoint import is_checkpoint

    path = Path(path)
    description = variant.path if Path(variant.path) != path else None
    return {"path": str(path.resolve()), "file": path.name, "sha256": file_sha256(path),
            "format": variant.format if is_checkpoint(path) else "onnx",
            "description_format": variant.format,
            "config": str(Path(description).resolve()) if description else "inside the checkpoint",
            "config_digest": variant.digest, "architecture": architecture(variant)}


def data_record(spec, split: str | None, root: str | Path, samples: list) -> dict:
    """The data set, split, root and images, and a key of the image and ground-truth list (the journal's)."""
    images = [(s.name, os.path.realpath(s.image_path), os.path.realpath(s.gt_path)) for s in samples]
    return {"dataset": spec.title, "split": spec.split_name(split), "root": str(Path(root).resolve()),
            "images": len(samples), "fingerprint": content_key(images)}


def settings_record(cfg) -> dict:
    """How images became windows: short side, resize rule, window, stride, views."""
    views = [f"{v.scale:g}{' of the image' if v.of_image else ''}{' flipped' if v.flip else ''}" for v in cfg.views]
    return {"image_size": cfg.image_size, "resize": cfg.resize_rule, "window": cfg.window_size,
            "stride": cfg.window_stride, "views": views, "inference": cfg.inference}


def engine_record(device: str, precision: str, batch_size: int, threads: int | None, requested: tuple[str, str],
                  choice=None) -> dict:
    """The engine that ran, whether auto chose it (with what it measured: seconds per window and the share of fp32's
    labels each candidate kept on the probe) or it was given."""
    record = {"device": device, "precision": precision, "batch_size": batch_size, "threads": threads or cpu_threads(),
              "chosen_by": "auto" if "auto" in requested else "given"}
    if choice is not None and choice.measured:
        record["auto"] = {name: {"seconds_per_window": round(r["seconds_per_window"], 4),
                                 "labels_kept": round(r["agreement"], 5)} for name, r in choice.measured.items()}
    return record


def kept_labels(engine: dict) -> float | None:
    """The share of fp32's labels the engine that ran kept on auto's probe, where auto measured it."""
    return (engine.get("auto") or {}).get(f"{engine['device']} {engine['precision']}", {}).get("labels_kept")


def machine_record() -> dict:
    model, features = cpu_model()
    return {"cpu": model, "features": list(features), "cores": cpu_threads(), "gpus": gpu_names() or ["none"]}


def versions_record() -> dict:
    found = {"segmenter": package_version(PACKAGE) or "not installed", "python": platform.python_version()}
    return {**found, **{name: v for name in VERSIONED if (v := package_version(name))}}


class RunClock:
    """A run's command line and start; `finish` gives the run block with its wall time and rates."""

    def __init__(self) -> None:
        self.command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
        self.started_unix = time.time()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_unix))
        self._start = time.perf_counter()

    def finish(self, windows: int, images: int, **extra) -> dict:
        seconds = max(time.perf_counter() - self._start, 1e-9)
        return {"command": self.command, "started": self.started, "wall_seconds": round(seconds, 3),
                "windows": windows, "images": images, "seconds_per_window": round(seconds / max(windows, 1), 4),
                "windows_per_second": round(windows / seconds, 3), "images_per_second": round(images / seconds, 3),
                **extra}


def run_record(model: dict, engine: dict, run: dict, settings: dict, data: dict | None = None) -> dict:
    """The whole record, in the order a reader looks for things."""
    return {"model": model, **({"data": data} if data else {}), "evaluation": settings, "engine": engine, "run": run,
            "machine": machine_record(), "versions": versions_record()}


def summary_line(record: dict) -> str:
    """The console's last line: how long the run took and how fast."""
    run = record["run"]
    return (f"{run['windows']} windows in {run['wall_seconds']:.1f} s: {run['windows_per_second']:.2f} windows/s, "
            f"{run['images_per_second']:.2f} images/s ({record['engine']['device']} {record['engine']['precision']}, "
            f"batch size {record['engine']['batch_size']})")


def description_record(variant) -> dict:
    """The model's description as the file route's manifest records it: its file, format, digest and what it is."""
    return {"config": str(Path(variant.path).resolve()), "description_format": variant.format,
            "config_digest": variant.digest, "architecture": architecture(variant)}


def exported_model_record(path: str | Path) -> dict:
    """An exported model file (the inference step's): its path and content hash."""
    path = Path(path)
    return {"path": str(path.resolve()), "file": path.name, "sha256": file_sha256(path), "format": "onnx"}


def file_route_record(layout, summary: dict | None, clock: RunClock, images: int) -> dict:
    """The record of the guide's file route, put together by postprocess: the model and engine from the inference
    summary (segmenter_infer.py writes them; ais_bench does not), the description, data set and settings from the
    manifest, the inference's time and this postprocess's."""
    summary = summary if isinstance(summary, dict) else {}
    part = lambda d, key: d.get(key) if isinstance(d.get(key), dict) else {}  # noqa: E731 - a file: typed loosely
    inferred = part(summary, "provenance")
    model = {**(part(inferred, "model") or {"note": "the inference summary holds no record (ais_bench's)"}),
             **layout.description}
    engine = part(inferred, "engine") or {"device": str(summary.get("engine", "unknown")), "precision": "unknown",
                                          "batch_size": str(summary.get("batchsize", "unknown"))}
    windows = sum(p.n_windows for p in layout.plans)
    run = {"inference": part(inferred, "run"), "postprocess": clock.finish(windows, images)}
    data = {"dataset": layout.dataset, "split": layout.split, "images": len(layout.plans),
            "fingerprint": layout.fingerprint}
    return {"model": model, "data": data, "evaluation": settings_record(layout.cfg), "engine": engine, "run": run,
            "machine": machine_record(), "versions": versions_record()}


def perf_columns(model: str | Path) -> dict:
    """The columns perf.sh's CSV adds to each row: the model file and its hash, when, on what, with what."""
    path = Path(model)
    machine, versions = machine_record(), versions_record()
    return {"model": path.name, "model_sha256": file_sha256(path) if path.is_file() else "",
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": machine["cpu"],
            "cpu_features": " ".join(machine["features"]), "cores": machine["cores"], "gpus": " ".join(machine["gpus"]),
            "versions": " ".join(f"{k} {v}" for k, v in versions.items())}
