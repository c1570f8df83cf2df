"""File-for-file stand-in for `python3 -m ais_bench` (batching, padding, naming, summary, throughput line)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

from ..data.arrays import SUFFIXES, check_window_file, read_window_file, window_file_shape, write_window_file
from ..engines.backends import Engine
from ..errors import SegmenterError
from ..evaluation.provenance import RunClock, machine_record, versions_record
from ..files import atomic_write, ensure_writable_dir
from ..progress import track
from .manifest import read_stamp


def natural_key(name: str) -> list:
    """Digit-aware sort key: img_2 before img_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_inputs(spec: str) -> list[Path]:
    """Input files of a folder (or comma-separated folders / files), in natural order."""
    files: list[Path] = []
    for item in filter(None, spec.split(",")):
        path = Path(item)
        if path.is_dir():
            found = [p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file()]
            files += sorted(found, key=lambda p: natural_key(p.name))
        elif path.is_file():
            files.append(path)
        else:
            raise SegmenterError(f"{path}: input folder or file not found")
    if not files:
        raise SegmenterError(f"{spec}: no .bin or .npy input files")
    return files


MODEL_INPUT = "one window of the model's input"


def output_name(input_path: Path, index: int, fmt: str) -> str:
    """`<input name up to its first dot>_<output index>.<fmt>`."""
    return f"{input_path.name.split('.')[0]}_{index}.{fmt}"


def batches_of(files: list[Path], item_shape: tuple[int, ...], batch_size: int) -> list[list[Path]]:
    """Consecutive files in batches of batch_size, a batch ending early where the window shape changes (windows
    smaller than the crop, in .npy files, cannot share a batch with full ones)."""
    groups: list[list[Path]] = []
    shape = None
    for f in files:
        this = window_file_shape(f, item_shape)
        if not groups or len(groups[-1]) == batch_size or this != shape:
            groups.append([])
        groups[-1].append(f)
        shape = this
    return groups


def time_summary(ms: list[float]) -> dict:
    """ais_bench's NPU_compute_time block from per-inference times in milliseconds."""
    t = np.asarray(ms, np.float64)
    return {"min": float(t.min()), "max": float(t.max()), "mean": float(t.mean()), "median": float(np.median(t)),
            "percentile(99%)": float(np.percentile(t, 99)), "count": len(t)}


def timed(engine: Engine, batch: np.ndarray, timings: list[float]) -> np.ndarray:
    start = time.perf_counter()
    out = engine(batch)
    timings.append((time.perf_counter() - start) * 1000)
    return out


def run_benchmark(engine: Engine, *, inputs: list[Path] | None, output_dir: Path | None, outfmt: str = "BIN",
                  batch_size: int = 1, loop: int = 1, warmup: int = 1, log=print, record: dict | None = None) -> dict:
    """Run like ais_bench; returns the summary dict (also written beside output_dir when given). With `record`
    (the model and engine parts of a provenance record), the summary adds a `provenance` block: those, the run's
    time and windows, the machine and the versions (ais_bench's readers ignore it)."""
    clock = RunClock()
    if batch_size < 1 or loop < 1 or warmup < 0:
        raise SegmenterError("batch size and loop must be >= 1 and warm-up count >= 0")
    fmt = outfmt.lower()
    if fmt not in ("bin", "npy"):
        raise SegmenterError(f"output format {outfmt}: only BIN and NPY are written")
    item_shape = (3, *engine.input_hw)
    ms: list[float] = []
    filesinfo: dict[str, dict] = {}
    if output_dir is not None:
        ensure_writable_dir(output_dir, "output folder")
    if inputs is None:  # pure inference on zeros
        batch = np.zeros((batch_size, *item_shape), np.float32)
        for _ in range(warmup):
            engine(batch)
        for _ in track(range(loop), desc=f"infer bs{batch_size}", unit="batch"):
            timed(engine, batch, ms)
    else:
        for f in inputs:  # every input before the first inference: no half-written result folder
            check_window_file(f, item_shape, MODEL_INPUT, smaller=engine.dynamic)
        groups = batches_of(inputs, item_shape, batch_size)
        for n, group in enumerate(track(groups, desc=f"infer bs{batch_size}", unit="batch")):
            files = group + [group[-1]] * (batch_size - len(group))  # pad the last batch by repetition
            batch = np.concatenate([read_window_file(f, item_shape, MODEL_INPUT, engine.dynamic) for f in files])
            if n == 0:
                for _ in range(warmup):
                    engine(batch)
            for _ in range(loop):
                out = timed(engine, batch, ms)
            outfiles = []
            for f, logits in zip(group, out):  # no output for padding
                if output_dir is not None:
                    target = output_dir / output_name(f, 0, fmt)
                    write_window_file(target, logits[None], fmt)
                    outfiles.append(str(target))
            filesinfo[str(n)] = {"infiles": [str(f) for f in group], "outfiles": outfiles}
    stats = time_summary(ms)
    throughput = 1000 * batch_size / stats["mean"]
    summary = {"NPU_compute_time": stats, "H2D_latency": {}, "D2H_latency": {}, "throughput": throughput,
               "batchsize": batch_size, "engine": engine.name, "filesinfo": filesinfo}
    if record is not None:
        windows = len(inputs) if inputs is not None else batch_size * loop
        summary["provenance"] = {**record, "run": clock.finish(windows, 0, loop=loop),
                                 "machine": machine_record(), "versions": versions_record()}
    folders = {f.parent for f in inputs or ()}
    if len(folders) == 1 and (fingerprint := read_stamp(folders.pop())):
        summary["layout_fingerprint"] = fingerprint  # lets postprocess tell outputs of another layout
    if output_dir is not None:
        target = output_dir.parent / f"{output_dir.name}_summary.json"
        atomic_write(target, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    log(f"[INFO] NPU_compute_time (ms): min = {stats['min']:.3f}, max = {stats['max']:.3f}, "
        f"mean = {stats['mean']:.3f}, median = {stats['median']:.3f}, percentile(99%) = {stats['percentile(99%)']:.3f}")
    log(f"[INFO] throughput 1000*batchsize.mean({batch_size})/NPU_compute_time.mean({stats['mean']:.3f}): "
        f"{throughput:.4f}")
    return summary
