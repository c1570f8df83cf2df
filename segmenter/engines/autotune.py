"""`auto` device and precision, decided by measuring, at a cost bounded by what the measuring can save.

The probe first times the fp32 reference on windows of the data at the batch size in use: that gives
the run's cost (its window count x the reference's seconds per window) and the reference's labels.
Every other candidate, the cheapest to make and measure first, is measured only when the run is
long enough for its expected gain over the best measured so far to pay back what measuring it costs:
opening it, its timed calls and, for a candidate that must first be made (static int8's calibration, a
TensorRT engine), making it. A candidate is eligible when its labels agree with fp32's on at least
AGREEMENT_BUDGET of the pixels; the fastest eligible one wins, and its engine, the last opened, is
handed to the run. Candidates are opened one at a time, each released before the next.

What was measured, and what was skipped for how long a run, is cached per machine (CPU model and
features, GPUs), model file, engine versions, batch and window size: a later run of the same model
uses it without measuring, and a longer one measures only what a shorter one skipped.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SegmenterError
from ..files import atomic_write
from ..system import cpu_model, gpu_names, package_version, release_memory
from .backends import Engine, available_devices, cpu_has_bf16
from .table import DEVICES

AGREEMENT_BUDGET = 0.99  # least share of probe pixels whose class equals fp32's
MAX_TIMED_CALLS = 3  # timed calls per candidate after one warm-up call; the fastest counts (noise only slows)
PROBE_SHARE = 0.05  # extra timed calls only while they cost less than this share of the run's estimate
CACHE_VERSION = 2


def machine_id() -> str:
    """What decides engine speed here: the CPU model, its relevant features, the core count and the GPUs."""
    import os

    model, features = cpu_model()
    return f"{model}; {' '.join(features)}; {os.cpu_count()} cores; gpus: {', '.join(gpu_names()) or 'none'}"


def engine_versions() -> str:
    """The installed engines' versions (from their metadata, without importing them)."""
    return ", ".join(f"{name} {v}" for name in ("onnxruntime", "onnxruntime-gpu", "openvino", "nncf", "torch")
                     if (v := package_version(name)))


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


def _name(pair) -> str:
    return f"{pair[0]} {pair[1]}"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


@dataclass
class Choice:
    """What `auto` became: a device and precision, the engine already open for it (or None), and why."""

    device: str
    precision: str
    engine: Engine | None = None
    explanation: str = ""
    measured: dict = field(default_factory=dict)  # "device precision" -> seconds_per_window, agreement (share of fp32)


def _seconds(value, zero: bool = False) -> bool:
    """A positive (or, with zero, non-negative) finite number of seconds; not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        value >= 0 if zero else value > 0)


def _fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def read_cached_choice(path: Path, pairs: list[tuple[str, str]]) -> tuple[dict | None, str]:
    """The cached record, or (None, why it cannot be used; empty when there is none).

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
    if not (isinstance(found.get("device"), str) and isinstance(found.get("precision"), str)):
        return None, "lacks a valid 'device' or 'precision'"
    if not _seconds(found.get("seconds_per_window")):
        return None, "lacks a valid 'seconds_per_window'"
    measured, skipped = found.get("measured"), found.get("skipped")
    if not isinstance(measured, dict) or not isinstance(skipped, dict):
        return None, "lacks a valid 'measured' or 'skipped'"
    if (found["device"], found["precision"]) not in pairs:
        return None, f"names {found['device']} {found['precision']}, not installed or offered here"
    if not all(isinstance(r, dict) and _seconds(r.get("seconds_per_window")) and _fraction(r.get("agreement"))
               and (r.get("open_seconds") is None or _seconds(r["open_seconds"], zero=True))
               for r in measured.values()):
        return None, "holds a measurement without valid seconds or agreement"
    if not all(isinstance(v, str) for v in skipped.values()):
        return None, "holds a skipped candidate without a reason"
    fp32 = [r["seconds_per_window"] for name, r in measured.items() if name.endswith(" fp32")]
    if fp32 and found["seconds_per_window"] > min(fp32):
        return None, (f"names {found['device']} {found['precision']} at {found['seconds_per_window']:.3g} s/window, "
                      f"slower than fp32's {min(fp32):.3g}")
    return found, ""


class Probe:
    """Times candidates one at a time on the probe windows, with the clock given (tests give a fake one)."""

    def __init__(self, open_engine: Callable[[str, str], Engine], windows: np.ndarray, batch_size: int,
                 clock: Callable[[], float]) -> None:
        self.open_engine, self.batch_size, self.clock = open_engine, batch_size, clock
        self.batch = windows[np.arange(batch_size) % len(windows)]
        self.engine: Engine | None = None  # the last one opened, until the next opens
        self.engine_pair: tuple[str, str] | None = None

    def release(self) -> None:
        self.engine = self.engine_pair = None
        release_memory()

    def measure(self, pair: tuple[str, str], calls: Callable[[float], int]) -> dict:
        """Open it (making what it needs), one warm-up call, then timed calls: as many as `calls(seconds of the
        first)` says. Seconds per window (the fastest call), its labels, the seconds it took to open."""
        self.release()
        start = self.clock()
        self.engine = self.open_engine(*pair)
        self.engine_pair = pair
        opened = self.clock()
        self.engine(self.batch)
        times: list[float] = []
        while not times or len(times) < calls(times[0]):
            begin = self.clock()
            out = self.engine(self.batch)
            times.append(self.clock() - begin)
        return {"seconds_per_window": min(times) / self.batch_size, "open_seconds": opened - start,
                "labels": out.argmax(1)}


def _calls(run_seconds: float, per_call: float) -> int:
    """Timed calls a candidate gets: one, and more while they stay a small share of the run's cost."""
    if per_call <= 0:
        return MAX_TIMED_CALLS
    return int(min(MAX_TIMED_CALLS, max(1, PROBE_SHARE * run_seconds / per_call)))


def expected_seconds(pair: tuple[str, str], measured: dict, reference: tuple[str, str]) -> float:
    """Seconds per window a candidate is expected to take, from the table's ratios: scaled from the measured
    candidate of the same device expected closest to it (bf16 for int8), else from the reference."""
    ratio = lambda p: DEVICES[p[0]].expected_ratio(p[1])  # noqa: E731
    anchors = [tuple(name.split(" ", 1)) for name in measured if name.split(" ", 1)[0] == pair[0]] or [reference]
    anchor = min(anchors, key=lambda a: abs(ratio(a) - ratio(pair)))
    return ratio(pair) / ratio(anchor) * measured[_name(anchor)]["seconds_per_window"]


def choose_engine(device: str, precision: str, open_engine: Callable[[str, str], Engine], probe: np.ndarray,
                  batch_size: int, model_key: str, cache: Path, run_windows: int = 1,
                  preparation: Callable[[str, str, float], tuple[float, str]] | None = None, torch_ok: bool = False,
                  calibration_ok: bool = False, log=print, budget: float = AGREEMENT_BUDGET,
                  clock: Callable[[], float] = time.perf_counter) -> Choice:
    """Replace `auto` in device and precision by the fastest candidate that keeps fp32's predictions, measuring
    only what can pay for itself in a run of `run_windows` windows.

    `open_engine(device, precision)` opens (and makes) a candidate; `probe` is (k, 3, H, W) windows of the data;
    `model_key` identifies the model (a file hash); `preparation(device, precision, reference seconds per
    window)` gives the seconds still needed to make a candidate (0 once made) and why it cannot be made here
    (empty when it can); `budget` is the least share of pixels that must agree with fp32's.
    """
    if device != "auto" and precision != "auto":
        return Choice(device, precision)
    pairs = candidates(device, precision, torch_ok, calibration_ok)
    if not pairs:
        raise SegmenterError(f"no engine offers precision {precision} on device {device} here")
    if len(pairs) == 1:
        return Choice(*pairs[0])
    preparation = preparation or (lambda d, p, t: (0.0, ""))
    key = hashlib.sha256(repr((CACHE_VERSION, machine_id(), engine_versions(), model_key, batch_size,
                               probe.shape[1:], pairs, budget)).encode()).hexdigest()[:16]
    path = cache / f"{key}.json"
    found, problem = read_cached_choice(path, pairs)
    if problem:
        log(f"note: auto: the cached choice {path} {problem}; measuring again")
    measured = {k: v for k, v in (found or {}).get("measured", {}).items() if tuple(k.split(" ", 1)) in pairs}
    runner = Probe(open_engine, probe, batch_size, clock)
    labels: dict[str, np.ndarray] = {}  # the reference's labels, once measured in this run
    # the reference: an fp32 engine that needs nothing made, the one expected fastest first
    ratio = lambda p: DEVICES[p[0]].expected_ratio(p[1])  # noqa: E731
    references = sorted((p for p in pairs if p[1] == "fp32"), key=lambda p: (bool(DEVICES[p[0]].preparation_of(
        p[1])), ratio(p))) or pairs[:1]
    reference = next((p for p in references if _name(p) in measured), None)

    def calls_for(seconds: float) -> int:
        return _calls(run_windows * seconds / batch_size, seconds)

    def measuring_cost(seconds_per_window: float, opening: float) -> float:
        return opening + (1 + calls_for(batch_size * seconds_per_window)) * batch_size * seconds_per_window

    def measure_reference() -> None:
        nonlocal reference
        for pair in references:
            result = _open_or_skip(runner, pair, calls_for, log)
            if result is not None:
                reference, labels["reference"] = pair, result.pop("labels")
                measured[_name(pair)] = {**result, "agreement": 1.0}
                return
        raise SegmenterError(f"none of the fp32 engines could open the model: {', '.join(map(_name, references))}")

    if reference is None:
        log(f"auto: measuring {_name(references[0])}, then what can pay for itself in {run_windows} windows "
            f"(batch size {batch_size}); once for this machine and model")
        measure_reference()
    t_ref = measured[_name(reference)]["seconds_per_window"]
    opening = measured[_name(reference)].get("open_seconds", 0.0)
    skipped: dict[str, str] = {}
    # cheapest to try first (nothing to make), so that an expensive one must beat the best of the cheap ones
    plans = []
    for pair in pairs:
        if _name(pair) not in measured:
            make, refusal = preparation(pair[0], pair[1], t_ref)
            estimate = make + measuring_cost(expected_seconds(pair, measured, reference), opening)
            plans.append((estimate, pair, make, refusal))
    for _, pair, make, refusal in sorted(plans, key=lambda plan: plan[0]):
        if refusal:
            skipped[_name(pair)] = refusal
            continue
        expected = expected_seconds(pair, measured, reference)
        cost = make + measuring_cost(expected, opening)
        if "reference" not in labels:  # measured in an earlier run: its labels are timed again to compare with
            cost += measuring_cost(t_ref, opening)
        best = min(r["seconds_per_window"] for r in measured.values() if r["agreement"] >= budget)
        saving = run_windows * (best - expected)
        if saving <= 0:
            skipped[_name(pair)] = f"expected {expected:.3g} s, no faster"
            continue
        if saving <= cost:
            what = f"making it takes about {_duration(make)}, " if make >= 1 else ""
            skipped[_name(pair)] = (f"{run_windows} windows here could save about {_duration(saving)}, {what}"
                                    f"measuring it about {_duration(cost - make)}: give device {pair[0]} and "
                                    f"precision {pair[1]} to use it anyway")
            continue
        if "reference" not in labels:
            measure_reference()
        result = _open_or_skip(runner, pair, calls_for, log)
        if result is None:
            skipped[_name(pair)] = "unavailable here"
            continue
        agreement = float(np.mean(result.pop("labels") == labels["reference"]))
        measured[_name(pair)] = {**result, "agreement": agreement}
    eligible = {k: r for k, r in measured.items() if r["agreement"] >= budget}
    best_name = min(eligible, key=lambda k: eligible[k]["seconds_per_window"])
    best_pair = tuple(best_name.split(" ", 1))
    explanation = _explain(best_name, measured, skipped, _name(reference), budget)
    if not labels and found is not None:
        explanation += f"\n  (measured before on this machine; {path})"
    log(explanation)
    record = {"device": best_pair[0], "precision": best_pair[1],
              "seconds_per_window": measured[best_name]["seconds_per_window"], "measured": measured,
              "skipped": skipped, "run_windows": run_windows, "machine": machine_id(), "engines": engine_versions()}
    if found is None or measured != found["measured"] or skipped != found["skipped"]:
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    engine = runner.engine if runner.engine_pair == best_pair else None
    if engine is None:
        runner.release()
    return Choice(best_pair[0], best_pair[1], engine, explanation, measured)


def _open_or_skip(runner: Probe, pair: tuple[str, str], calls: Callable[[float], int], log) -> dict | None:
    try:
        return runner.measure(pair, calls)
    except SegmenterError as exc:
        log(f"  {_name(pair)}: unavailable ({exc})")
        runner.release()
        return None


def _explain(best: str, measured: dict, skipped: dict, reference: str, budget: float) -> str:
    """One or two lines: the choice and its speed against the reference, then every other candidate: measured
    (seconds per window, share of fp32's labels kept), off the budget, or not measured and why."""
    r = measured[best]
    head = f"auto: {best}, {r['seconds_per_window']:.3g} s/window"
    if best != reference and reference in measured:
        ratio = measured[reference]["seconds_per_window"] / r["seconds_per_window"]
        head += f", {ratio:.1f}x {reference}, {100 * r['agreement']:.2f} % of its labels (budget {100 * budget:g} %)"
    others = []
    for name, m in measured.items():
        if name == best:
            continue
        note = f"{name} {m['seconds_per_window']:.3g} s"
        if name == reference:
            note += " (the fp32 reference)"
        elif m["agreement"] < budget:
            note += f" but {100 * m['agreement']:.2f} % of fp32's labels, under the {100 * budget:g} % budget"
        else:
            note += f", {100 * m['agreement']:.2f} %"
        others.append(note)
    others += [f"{name} not measured ({why})" for name, why in skipped.items()]
    return head + ("\n  " + "; ".join(others) if others else "")
