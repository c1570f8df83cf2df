"""The Python API: open a model once, segment image arrays with it, evaluate it on a data set.

    import cv2
    from segmenter.api import evaluate, open_model

    model = open_model("seg_base_mask/checkpoint.pth", device="openvino", precision="fp32")
    labels = model.segment(cv2.imread("photo.jpg"))      # (H, W) class indices at the photo's size
    result = evaluate(model, "/data", metrics_path="metrics.yaml")
    print(result.metrics["mean_iou"])

The scripts are command lines over these functions: segmenter_eval.py over open_model and evaluate,
segmenter_predict.py over open_model, segmenter_preprocess.py over run_settings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.datasets import DatasetSpec
from .data.images import header_size, read_image, same_shape_windows, sample_census, take_census
from .data.plan import SINGLE_SCALE, ImagePlan, View, WindowConfig
from .data.settings import resolve_dataset, window_config
from .defaults import BATCH_SIZE, CALIBRATION_IMAGES, WORKERS
from .engines.backends import Engine
from .engines.quantize import Calibration
from .engines.runtime import (
    calibration_from_images,
    check_model_file,
    open_model_engine,
    prepared_model,
    probe_windows,
    resolve_engine,
)
from .engines.table import DEVICES, PRECISIONS, device_record, needs_calibration, opens_checkpoint
from .errors import SegmenterError
from .evaluation.evaluate import EngineRoute, RayRoute, check_outputs, evaluate_dataset, open_journal
from .evaluation.journal import evaluation_fingerprint, journal_beside
from .evaluation.metrics import compute_scores, format_report, write_metrics
from .evaluation.pipeline import Finished, Job, run_pipeline
from .evaluation.provenance import (
    RunClock,
    data_record,
    engine_record,
    kept_labels,
    model_record,
    run_record,
    settings_record,
)
from .evaluation.scoring import ScoreBook
from .files import ensure_writable_dir, ensure_writable_file, refuse_overwrite
from .model.formats import FORMATS
from .model.loading import describe_model, read_description
from .model.variant import Variant
from .system import check_memory


def run_settings(description: str | Path | Variant, dataset: str | None = None, image_size: int | None = None,
                 window_size: int | None = None, window_stride: int | None = None,
                 views: tuple[View, ...] | str = SINGLE_SCALE, log=print) -> tuple[Variant, DatasetSpec, WindowConfig]:
    """The model's description (a Variant, or a variant.yml / MMSegmentation config to read), its data set and the
    run's window settings (given values, else the description's, else the data set's and the guide's defaults,
    each default said)."""
    variant = description if isinstance(description, Variant) else read_description(description)
    spec = resolve_dataset(variant, dataset)
    return variant, spec, window_config(variant, spec, image_size, window_size, window_stride, views, log)


class Model:
    """A model opened for inference: its file, variant, data set, window settings, and the engine it runs on.

    The engine is opened when first needed; `auto` device or precision are decided by measuring on the
    images the model is given (resolve), for a run of as many windows as they have, once per machine and model
    (cached); a later, longer run decides again, measuring only what a shorter one skipped.
    """

    def __init__(self, path: Path, variant: Variant, spec: DatasetSpec, cfg: WindowConfig, device: str,
                 precision: str, batch_size: int = BATCH_SIZE, workers: int = WORKERS, threads: int | None = None,
                 calibration: Calibration | None = None, calibration_count: int = CALIBRATION_IMAGES,
                 log=print) -> None:
        self.path, self.variant, self.spec, self.cfg = path, variant, spec, cfg
        self.requested = (device, precision)  # as given, `auto` included
        self.device, self.precision = device, precision
        self.batch_size, self.workers, self.threads = batch_size, workers, threads
        self.calibration, self.calibration_count, self.log = calibration, calibration_count, log
        self.calibration_images: list[Path] = []  # the files calibration reads, when given (not the data's)
        self._engine: Engine | None = None
        self._decided_for = 0  # windows of the run the `auto` choice was made for
        self.choice = None  # what auto measured and chose (engines.autotune.Choice), once it has

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    def provenance(self) -> dict:
        """The parts of the provenance record the model knows: the model file, the settings, the engine."""
        return {"model": model_record(self.path, self.variant), "evaluation": settings_record(self.cfg),
                "engine": engine_record(self.device, self.precision, self.batch_size, self.threads, self.requested,
                                        self.choice)}

    def reads(self) -> dict:
        """The files the model was opened from (for the checks that no output overwrites them)."""
        return {"model": self.path, "model's description": self.variant.sources or self.variant.path,
                "calibration images": self.calibration_images}

    @property
    def resolved(self) -> bool:
        return "auto" not in (self.device, self.precision)

    def needs_measuring(self, run_windows: int) -> bool:
        """Whether an `auto` choice is still to be made (or remade) for a run of this many windows."""
        return "auto" in self.requested and (not self.resolved or run_windows > self._decided_for)

    def resolve(self, probe: np.ndarray, run_windows: int = 1) -> None:
        """Decide an `auto` device or precision on (k, 3, window, window) windows of the data at hand, measuring
        only what can pay for itself in a run of `run_windows` windows; the engine the measuring opened last is
        kept when it is the one chosen."""
        if not self.needs_measuring(run_windows):
            return
        choice = resolve_engine(self.path, self.variant, self.cfg, *self.requested, probe, self.threads,
                                self.batch_size, self.calibration, self.log, run_windows)
        if (choice.device, choice.precision) != (self.device, self.precision) or choice.engine is not None:
            self._engine = None
        self.device, self.precision, self._decided_for = choice.device, choice.precision, run_windows
        self.choice = choice
        if choice.engine is not None:
            self._engine = choice.engine
            self.log(f"{self._engine.name}, batch size {self.batch_size}")

    def resolve_on(self, images: list[Path], run_windows: int | None = None) -> None:
        """resolve on windows of the first of these image files, for a run of `run_windows` windows (default:
        every window of them); static int8, if no calibration images were given, is calibrated on them."""
        if self.calibration is None and images and any(needs_calibration(d, p) for d, p in self._candidates()):
            self.calibration = calibration_from_images(images, self.cfg, self.calibration_count)
        if run_windows is None:
            run_windows = take_census(images, self.cfg).windows if self.needs_measuring(1) else 0
        if self.needs_measuring(run_windows):
            self.resolve(probe_windows(images, self.cfg, self.batch_size), run_windows)

    def release(self) -> None:
        """Close the engine (it is opened again when next needed)."""
        self._engine = None

    def _candidates(self) -> list[tuple[str, str]]:
        """(device, precision) pairs the model may end on: every one of the table's where auto is asked."""
        device, precision = self.requested
        devices = DEVICES if device == "auto" else [device]
        return [(d, p) for d in devices for p in DEVICES[d].precisions if precision in ("auto", p)]

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            if not self.resolved:
                raise SegmenterError("the engine is 'auto': measure first on images of the data (Model.resolve), or "
                                     "give a device and a precision")
            self._engine = open_model_engine(self.path, self.variant, self.cfg, self.device, self.precision,
                                             self.threads, self.batch_size, self.calibration, self.log)
            self.log(f"{self._engine.name}, batch size {self.batch_size}")
        return self._engine

    def model_file(self) -> Path:
        """The file other processes (Ray actors) open: the export, its int8 IR, or the checkpoint itself."""
        return prepared_model(self.path, self.variant, self.cfg, self.device, self.precision, self.calibration,
                              self.log)

    def segment(self, image: np.ndarray | str | Path, rgb: bool = False, scores: bool = False):
        """Class indices of an image: (H, W) uint8 at the image's own size.

        `image` is (H, W, 3) uint8, BGR as OpenCV reads it (`rgb=True` for RGB, as PIL gives it), (H, W)
        grayscale, or the path of an image file. With `scores=True`, also (K, H, W) float32: the merged window
        logits for a single view, the mean class probabilities for several.
        """
        is_path = isinstance(image, (str, os.PathLike))
        bgr = None if is_path else _as_bgr(image, rgb)
        hw = header_size(image) if is_path else bgr.shape[:2]
        plan = ImagePlan.for_image("image", "image", "", "", hw, self.cfg)
        check_memory(plan.merge_bytes(self.spec.n_cls), f"{image if is_path else 'an image'} ({hw[0]}x{hw[1]}, "
                     f"{plan.n_windows} windows): merging its windows")  # before any pixel is decoded
        if bgr is None:
            bgr = read_image(image)
        if self.needs_measuring(plan.n_windows):
            self.resolve(same_shape_windows(bgr, plan, self.cfg), plan.n_windows)
        done: list[Finished] = []
        run_pipeline([Job(lambda: (plan, bgr, None))], self.cfg, self.engine, done.append, self.batch_size, 1)
        labels = done[0].merger.labels()
        return (labels, done[0].merger.scores()) if scores else labels


def _as_bgr(image: np.ndarray, rgb: bool) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise SegmenterError(f"expected an image array ((H, W, 3) uint8) or an image file's path, got "
                             f"{type(image).__name__}")
    if image.dtype != np.uint8:
        raise SegmenterError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim in (2, 3) and min(image.shape[:2]) == 0:
        raise SegmenterError(f"an empty image (shape {image.shape}): nothing to segment")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise SegmenterError(f"expected an (H, W, 3) image, got shape {image.shape}")
    image = image[:, :, :3]
    return np.ascontiguousarray(image[:, :, ::-1] if rgb else image)


def open_model(model: str | Path, cfg_path: str | Path | None = None, *, dataset: str | None = None,
               device: str = "auto", precision: str = "auto", batch_size: int = BATCH_SIZE, workers: int = WORKERS,
               threads: int | None = None, image_size: int | None = None, window_size: int | None = None,
               window_stride: int | None = None, views: tuple[View, ...] | str = SINGLE_SCALE,
               calibration_images: list[str | Path] | None = None, calibration_count: int = CALIBRATION_IMAGES,
               log=print) -> Model:
    """Open a checkpoint, released or MMSegmentation's (exported at the window size through the cache), or an
    exported ONNX model.

    `cfg_path` is its variant.yml or MMSegmentation config (default: an MMSegmentation checkpoint's own
    config, else variant.yml beside the model); the window settings default to its. `views` may be
    "multiscale": the model's own multi-scale + flip views. Static int8 is calibrated on `calibration_count`
    of `calibration_images` (evaluate gives the data set's when none are given).
    """
    model = Path(model)
    if device != "auto":  # an unknown device, or a precision it lacks, is one line listing what there is
        device_record(device, None if precision == "auto" else precision)
    elif precision != "auto" and precision not in PRECISIONS:
        raise SegmenterError(f"unknown precision '{precision}' (known: {', '.join(PRECISIONS)})")
    variant, spec, cfg = run_settings(describe_model(model, cfg_path), dataset, image_size, window_size,
                                      window_stride, views, log)
    calibration = calibration_from_images([Path(p) for p in calibration_images], cfg, calibration_count) \
        if calibration_images else None
    opened = Model(model, variant, spec, cfg, device, precision, batch_size, workers, threads, calibration,
                   calibration_count, log)
    opened.calibration_images = [Path(p) for p in calibration_images or ()]
    return opened


@dataclass
class Evaluation:
    """What evaluate found: the metrics (as the metrics file holds them), the counts they come from, and the record
    of what produced them (evaluation/provenance.py)."""

    metrics: dict
    book: ScoreBook
    spec: DatasetSpec
    run: dict | None = None

    @property
    def confusion(self) -> np.ndarray:
        return self.book.confusion.matrix

    def table(self) -> str:
        """The per-class table and the summary lines, as the scripts print them."""
        return format_report(self.confusion, self.spec, self.metrics["inference"])


def check_evaluation_outputs(reads: dict, data_root: str | Path, metrics_path: str | Path | None,
                             pred_dir: str | Path | None, report: str | Path | None, resume: bool) -> None:
    """Before any work: every output writable, none an input or another output (nor inside or holding one: `reads`
    are the model's files, as Model.reads gives them), the journal's place free."""
    outputs = {"metrics file": metrics_path, "prediction folder": pred_dir, "report": report}
    if metrics_path and resume:
        outputs["journal"] = journal_beside(metrics_path)
    refuse_overwrite(outputs, {**reads, "data root": data_root})
    check_outputs(metrics_path, pred_dir, report, resume)
    if metrics_path:
        ensure_writable_file(metrics_path, "metrics file")
    for folder, what in ((pred_dir, "prediction folder"), (report, "report folder")):
        if folder:
            ensure_writable_dir(folder, what)


def evaluate(model: Model, data_root: str | Path, split: str | None = None, *, metrics_path: str | Path | None = None,
             pred_dir: str | Path | None = None, report: str | Path | None = None, resume: bool = False,
             ray: str | None = None, ray_actors: int = 1, title: str | None = None) -> Evaluation:
    """Evaluate an opened model on its data set under `data_root`: the metrics, written to `metrics_path` when
    given (with the provenance record as its `run:` block), with predictions (`pred_dir`), an HTML report
    (`report`, a folder), a journal to resume from (`resume`, beside the metrics file) and Ray (`ray`: "local" or
    a cluster's address) on request."""
    clock = RunClock()
    log = model.log
    if resume and not metrics_path:
        raise SegmenterError("resuming keeps a journal beside the metrics file: give a metrics path")
    check_evaluation_outputs(model.reads(), data_root, metrics_path, pred_dir, report, resume)
    spec, cfg = model.spec, model.cfg
    samples = spec.samples(data_root, split)
    refuse_overwrite({"metrics file": metrics_path, "prediction folder": pred_dir, "report": report},
                     {"images": [s.image_path for s in samples], "ground truth": [s.gt_path for s in samples]})
    census = sample_census(samples, cfg)
    model.resolve_on([s.image_path for s in samples], census.windows)
    record = {**model.provenance(), "data": data_record(spec, split, data_root, samples)}
    uses_calibration = needs_calibration(model.device, model.precision)
    session = {"started": clock.started, "started_unix": clock.started_unix, "command": clock.command,
               "record": record}
    journal = open_journal(metrics_path, resume, lambda: evaluation_fingerprint(
        model.path, model.variant.digest, spec.name, spec.split_name(split), data_root, samples, cfg.to_json(),
        model.device, model.precision, model.calibration.identity if uses_calibration else None), spec.n_cls,
        log, session) if metrics_path else None
    try:
        if ray is not None:
            model.release()  # the actors open their own; the measuring's engine is not held here
            route = RayRoute(model.model_file(), model.device, model.precision, ray, ray_actors, model.threads,
                             model.batch_size, model.variant if opens_checkpoint(model.device) else None)
            check_model_file(route.model_path, cfg, spec)
        else:
            route = EngineRoute(model.engine, model.batch_size, model.workers)
        book = evaluate_dataset(census.plans, spec, cfg, route, Path(pred_dir) if pred_dir else None,
                                report is not None, journal, log)
    finally:
        if journal is not None:
            journal.close()
    run = clock.finish(book.work[1], book.work[0], route="ray" if ray is not None else "stream")
    if journal is not None and journal.sessions:  # resumed: the first run's record, every run's time
        record = {**(journal.first_record() or record)}
        run["sessions"] = journal.history(clock.started_unix) + [
            {k: run[k] for k in ("started", "command", "images", "wall_seconds")}]
    record = run_record_of(record, run)
    matrix = book.confusion.matrix
    extra = FORMATS[model.variant.format].extra_metrics
    scores = write_metrics(metrics_path, matrix, spec, cfg.inference, extra, record) if metrics_path else \
        compute_scores(matrix, spec, cfg.inference, extra)
    if report is not None:
        from .outputs.report import write_report

        write_report(report, book, spec, scores, title or default_title(record), log, record)
    return Evaluation(scores, book, spec, record)


def run_record_of(parts: dict, run: dict) -> dict:
    """The provenance record in its reading order, from its parts and the run block."""
    return run_record(parts["model"], parts["engine"], run, parts["evaluation"], parts.get("data"))


def default_title(record: dict) -> str:
    """A report's title: the model and the data set it was evaluated on."""
    data, model = record.get("data") or {}, record["model"]
    name = model["architecture"].split(",")[0]
    return f"{name} ({model['file']}) on {data.get('dataset', '')} {data.get('split', '')}".strip()


def headline(metrics: dict, record: dict) -> str:
    """The result in one line, saying when auto chose a precision other than fp32 (the figure is that
    precision's, and how much of fp32's labels it kept on the probe)."""
    engine = record["engine"]
    line = f"mIoU {metrics['mean_iou']:.2f} at {engine['device']} {engine['precision']}"
    kept = kept_labels(engine)
    if engine["chosen_by"] == "auto" and engine["precision"] != "fp32":
        line += (f", which kept {100 * kept:.1f} % of fp32's labels on the probe" if kept is not None else "") + \
            "; give --precision fp32 for fp32's figure"
    return line
