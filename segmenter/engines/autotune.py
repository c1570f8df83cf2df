"""`auto` device and precision, decided by measuring: a short probe of each candidate on the model at hand.

Each installed engine/precision runs a few windows of the data at the batch size in use; a candidate
is eligible when its predicted classes agree with fp32's on at least AGREEMENT_BUDGET of the pixels;
the fastest eligible one wins. The result is cached per machine (CPU model and features, GPUs), model
file, engine versions, batch and window size, so the probe runs once.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SegmenterError
from ..files import atomic_write
from .backends import Engine, available_devices, cpu_has_bf16
from .table import DEVICES

AGREEMENT_BUDGET = 0.99  # least share of probe pixels whose class equals fp32's
PROBE_CALLS = 3  # timed calls per candidate, after WARMUP_CALLS; the fastest call counts (noise only slows)
WARMUP_CALLS = 2
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")


def machine_id() -> str:
    """What decides engine speed here: the CPU model, its relevant features, the core count and the GPUs."""
    import os

    model, flags = "?", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    gpus = []
    try:
        import torch

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch or no driver: no GPU
        pass
    features = [f for f in CPU_FEATURES if f in flags]
    return f"{model}; {' '.join(features)}; {os.cpu_count()} cores; gpus: {', '.join(gpus) or 'none'}"


def engine_versions() -> str:
    versions = []
    for name in ("onnxruntime", "openvino", "nncf", "torch"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            pass
    return ", ".join(versions)


def candidates(device: str, precision: str, torch_ok: bool, calibration_ok: bool) -> list[tuple[str, str]]:
    """(device, precision) pairs to probe for the given choices, fp32 references first."""
    devices = [DEVICES[d] for d in (available_devices() if device == "auto" else [device]) if d in DEVICES]
    if device == "auto" and any(d.gpu for d in devices):
        devices = [d for d in devices if d.gpu]  # a GPU beats these CPUs; probe the GPU engines
    pairs = []
    for d in devices:
        if d.opens == "checkpoint" and not torch_ok:
            continue
        for p in d.precisions if precision == "auto" else [precision]:
            if p not in d.precisions or (p in d.cpu_bf16 and not cpu_has_bf16()) or (p in d.calibrated
                                                                                       and not calibration_ok):
                continue
            pairs.append((d.name, p))
    return sorted(pairs, key=lambda dp: dp[1] != "fp32")


def _probe(engine: Engine, probe: np.ndarray, batch_size: int) -> tuple[float, np.ndarray]:
    """(seconds per window at batch_size, predicted classes of every probe window)."""
    batch = probe[np.arange(batch_size) % len(probe)]
    for _ in range(WARMUP_CALLS):
        engine(batch)
    calls = []
    for _ in range(PROBE_CALLS):
        start = time.perf_counter()
        engine(batch)
        calls.append(time.perf_counter() - start)
    return min(calls) / batch_size, engine(probe).argmax(1)


def read_cached_choice(path: Path, pairs: list[tuple[str, str]]) -> tuple[dict | None, str]:
    """The cached choice, or (None, why it cannot be used; empty when there is none).

    Whatever a crash or an edit may leave is treated as absent: an empty or cut file, another JSON type,
    missing or mistyped keys, an engine not among this machine's candidates, a choice slower than fp32.
    """
    if not path.is_file():
        return None, ""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"is unreadable ({str(exc)[:80]})"
    if not isinstance(found, dict):
        return None, f"holds a JSON {type(found).__name__}, not a choice"
    for key, kind in (("device", str), ("precision", str), ("note", str), ("seconds_per_window", (int, float)),
                      ("probed", list)):
        if not isinstance(found.get(key), kind) or isinstance(found.get(key), bool):
            return None, f"lacks a valid '{key}'"
    if (found["device"], found["precision"]) not in pairs:
        return None, f"names {found['device']} {found['precision']}, not installed or offered here"
    fp32 = [r.get("seconds_per_window") for r in found["probed"]
            if isinstance(r, dict) and r.get("precision") == "fp32"]
    fp32 = [t for t in fp32 if isinstance(t, (int, float)) and not isinstance(t, bool)]
    if fp32 and found["seconds_per_window"] > min(fp32):
        return None, (f"names {found['device']} {found['precision']} at {found['seconds_per_window']:.3g} s/window, "
                      f"slower than fp32's {min(fp32):.3g}")
    return found, ""


def choose_engine(device: str, precision: str, open_engine: Callable[[str, str], Engine], probe: np.ndarray,
                  batch_size: int, model_key: str, cache: Path, torch_ok: bool = False, calibration_ok: bool = False,
                  log=print, budget: float = AGREEMENT_BUDGET) -> tuple[str, str]:
    """Replace `auto` in device and precision by the fastest candidate that keeps fp32's predictions.

    `open_engine(device, precision)` opens a candidate; `probe` is (k, 3, H, W) windows of the data;
    `model_key` identifies the model (a file hash); `budget` is the least share of pixels that must agree.
    """
    if device != "auto" and precision != "auto":
        return device, precision
    pairs = candidates(device, precision, torch_ok, calibration_ok)
    if not pairs:
        raise SegmenterError(f"no engine offers precision {precision} on device {device} here")
    if len(pairs) == 1:
        return pairs[0]
    machine, versions = machine_id(), engine_versions()
    key = hashlib.sha256(repr((machine, versions, model_key, batch_size, probe.shape[1:],
                               pairs, budget)).encode()).hexdigest()[:16]
    path = cache / f"{key}.json"
    found, problem = read_cached_choice(path, pairs)
    if found is not None:
        log(f"auto: {found['device']} {found['precision']}, {found['note']} (measured before on this machine; "
            f"{path})")
        return found["device"], found["precision"]
    if problem:
        log(f"note: auto: the cached choice {path} {problem}; measuring again")
    log(f"auto: probing {len(pairs)} engine/precision choices on {len(probe)} windows at batch size {batch_size}, "
        "once for this machine and model")
    results, reference = [], None
    for d, p in pairs:
        try:
            engine = open_engine(d, p)
        except SegmenterError as exc:
            log(f"  {d} {p}: unavailable ({exc})")
            continue
        seconds, classes = _probe(engine, probe, batch_size)
        del engine
        if reference is None:
            reference = classes  # the first candidate is an fp32 one
        agreement = float(np.mean(classes == reference))
        results.append({"device": d, "precision": p, "seconds_per_window": seconds, "agreement": agreement})
        log(f"  {d} {p}: {seconds:.3f} s/window, {100 * agreement:.2f} % of pixels as fp32")
    if not results:
        raise SegmenterError(f"none of the engines could open the model: {', '.join(f'{d} {p}' for d, p in pairs)}")
    eligible = [r for r in results if r["agreement"] >= budget]
    best = min(eligible, key=lambda r: r["seconds_per_window"])
    fp32 = min((r["seconds_per_window"] for r in results if r["precision"] == "fp32"), default=None)
    note = (f"{fp32 / best['seconds_per_window']:.1f}x faster than fp32 here" if fp32 and best["precision"] != "fp32"
            else "the fastest here")
    log(f"auto: {best['device']} {best['precision']}, {note}")
    record = {**best, "note": note, "machine": machine, "engines": versions, "probed": results}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    return best["device"], best["precision"]
