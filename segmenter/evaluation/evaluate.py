"""Evaluation of a data set, one entry for the three routes: an engine in this process, Ray actors, or the
window outputs of the guide's file route.

`evaluate_dataset` checks the inputs (every ground truth present and of its image's size, the largest
merge within memory), resumes from the journal, has the route segment the images, and completes the
report's gallery of worst images. Every route merges and scores with the same code, so the metrics are
identical for the same window logits.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.datasets import DatasetSpec
from ..data.images import header_size, load_image
from ..data.plan import ImagePlan, WindowConfig
from ..defaults import BATCH_SIZE, WORKERS
from ..engines.backends import Engine
from ..errors import SegmenterError
from ..files import file_sha256, staged
from ..progress import progress, track
from ..system import check_memory
from .journal import Entry, Journal, journal_beside
from .pipeline import Finished, Job, run_pipeline
from .scoring import ImageMerger, ScoreBook, score_image


def image_job(plan: ImagePlan, cfg: WindowConfig) -> Job:
    """The job of an image of a census: its plan made again from the size it decodes to."""
    def load():
        bgr, digest = load_image(plan.image_path)
        return ImagePlan.for_image(plan.name, plan.prefix, plan.image_path, plan.gt_path, bgr.shape[:2], cfg), bgr, \
            digest
    return Job(load, plan)


def check_inputs(plans: list[ImagePlan], n_cls: int) -> None:
    """Before any work: each ground truth exists and has its image's size (from the headers), and the largest
    image can be merged in the memory available."""
    for plan in plans:
        if not plan.gt_path or not Path(plan.gt_path).is_file():
            raise SegmenterError(f"{plan.gt_path or plan.name}: ground truth of {plan.name} not found")
        h, w = header_size(plan.gt_path)
        if (h, w) != plan.original_hw:
            raise SegmenterError(f"{plan.gt_path}: ground truth is {h}x{w} but its image is "
                                 f"{plan.original_hw[0]}x{plan.original_hw[1]}")
    if plans:
        plan = max(plans, key=lambda p: p.merge_bytes(n_cls))
        h, w = plan.original_hw
        check_memory(plan.merge_bytes(n_cls), f"{plan.image_path or plan.name} ({h}x{w}, {plan.n_windows} windows): "
                                              "merging its windows")


# ----------------------------------------------------------------------------- the routes


@dataclass
class EngineRoute:
    """Images decoded, cut, inferred and merged in this process, overlapped (pipeline.py)."""

    engine: Engine
    batch_size: int = BATCH_SIZE
    workers: int = WORKERS
    desc: str = "evaluate"

    def session(self, log):
        return nullcontext()

    def segment(self, plans, spec, cfg, book, journal, out, keep_labels, log) -> None:
        if self.engine.n_cls != spec.n_cls:
            raise SegmenterError(f"the model has {self.engine.n_cls} classes but {spec.title} has {spec.n_cls}")
        saved_in = os.path.realpath(out) if out is not None and journal is not None else None
        with progress(total=len(plans), desc=self.desc, unit="img") as bar:
            def sink(done: Finished) -> None:
                score = score_image(done.merger, spec, done.merger.plan.gt_path, out)
                book.add_counts(score.plan.name, score.plan.prefix, score.confusion, score.plan,
                                score.labels if keep_labels else None)
                if journal is not None:
                    journal.record(Entry(score.plan.name, score.plan.prefix, score.confusion, done.digest,
                                         score.gt_digest, saved_in))
                bar.update(1)

            run_pipeline([image_job(p, cfg) for p in plans], cfg, self.engine, sink, self.batch_size, self.workers)


@dataclass
class RayRoute:
    """Images segmented by Ray actors (distributed.py), each opening `model_path` on `device`."""

    model_path: Path
    device: str
    precision: str
    address: str | None = None
    actors: int = 1
    threads: int | None = None
    batch_size: int = BATCH_SIZE
    variant: object = None  # the description of a checkpoint that the engine opens itself (torch-cuda)

    def session(self, log):
        from .distributed import ray_session

        return ray_session(self.address, log)

    def segment(self, plans, spec, cfg, book, journal, out, keep_labels, log) -> None:
        from .distributed import ray_evaluate

        ray_evaluate(plans, spec, cfg, self.model_path, self.device, self.precision, self.threads, self.batch_size,
                     self.actors, self.address, out, journal, book, keep_labels=keep_labels or out is not None,
                     variant=self.variant, log=log)


@dataclass
class FilesRoute:
    """The guide's file route: each image's window outputs read from files (checked before, postprocess.py)."""

    files: dict[str, list[tuple[Path, tuple[int, int]]]]  # prefix -> (output file, window (h, w)) in window order
    read: Callable[[Path, tuple[int, int]], np.ndarray]  # (path, (h, w)) -> (K, h, w) float32 logits

    def session(self, log):
        return nullcontext()

    def segment(self, plans, spec, cfg, book, journal, out, keep_labels, log) -> None:
        for plan in track(plans, desc="postprocess", unit="img"):
            merger = ImageMerger(plan, spec.n_cls, cfg.window_size)
            for k, (path, hw) in enumerate(self.files[plan.prefix]):
                merger.add(k, self.read(path, hw))
            score = score_image(merger, spec, plan.gt_path, out)
            book.add_counts(plan.name, plan.prefix, score.confusion, plan, score.labels if keep_labels else None)


# ----------------------------------------------------------------------------- resuming


def _same_file(recorded, path: str | Path, journal: Journal) -> None:
    """A file the journal scored must be unchanged: same path, size and content."""
    if recorded is None or os.path.realpath(recorded.path) != os.path.realpath(path):
        raise SegmenterError(f"{journal.path}: scored {recorded.path if recorded else 'another file'} where the data "
                             f"now has {path}; resume with the same data, or delete the journal to start afresh")
    size = os.path.getsize(path)
    if size != recorded.size or file_sha256(path) != recorded.sha256:
        raise SegmenterError(f"{path}: changed since {journal.path} scored it ({recorded.size} bytes, sha256 "
                             f"{recorded.sha256[:12]} then; {size} bytes, sha256 {file_sha256(path)[:12]} now); "
                             "resume with the data it scored, or delete the journal to start afresh")


def _has_predictions(entry: Entry, pred_dir: Path) -> bool:
    return entry.pred_dir == os.path.realpath(pred_dir) and (pred_dir / "labels" / f"{entry.prefix}.png").is_file()


def resume_from(journal: Journal | None, plans: list[ImagePlan], book: ScoreBook, spec: DatasetSpec,
                pred_dir: Path | None = None, log=print) -> list[ImagePlan]:
    """Add what the journal holds to the book, each image checked unchanged; the images still to score.

    An entry whose counts do not add up to its ground truth's labelled pixels, or whose predictions are not in
    the prediction folder asked for now, is scored again.
    """
    if journal is None:
        return plans
    todo, without_predictions = [], 0
    for plan in plans:
        entry = journal.entries.get(plan.prefix)
        if entry is None:
            todo.append(plan)
            continue
        _same_file(entry.image, plan.image_path, journal)
        _same_file(entry.gt, plan.gt_path, journal)
        labels, _ = spec.load_labels(plan.gt_path)
        labelled = int((labels != 255).sum())
        if labelled != entry.labelled:
            log(f"warning: {journal.path}:{entry.line}: counts {entry.labelled} pixels but {plan.gt_path} labels "
                f"{labelled}; that image is scored again")
        elif pred_dir is not None and not _has_predictions(entry, pred_dir):
            without_predictions += 1
        else:
            book.add_counts(entry.name, entry.prefix, entry.confusion)
            continue
        journal.forget(plan.prefix)
        todo.append(plan)
    if without_predictions:
        log(f"note: {without_predictions} images scored before have no predictions in {pred_dir}: they are "
            "segmented again")
    log(f"resuming from {journal.path}: {len(plans) - len(todo)} images already scored, {len(todo)} to go")
    return todo


def open_journal(metrics_path: str | Path, resume: bool, fingerprint, n_cls: int, log=print,
                 session: dict | None = None) -> Journal | None:
    """The journal beside the metrics file when resuming (fingerprint() computed then; `session`, this run's start,
    command and provenance record, journaled); without resuming, an existing journal is an error rather than
    silently ignored or replaced."""
    path = journal_beside(metrics_path)
    if not resume:
        if path.exists():
            raise SegmenterError(f"{path}: a journal of an earlier resumable run is here; resume that run, or "
                                 "delete the journal to start afresh")
        return None
    return Journal(path, fingerprint(), n_cls, log, session)


# ----------------------------------------------------------------------------- the entry


def evaluate_dataset(plans: list[ImagePlan], spec: DatasetSpec, cfg: WindowConfig, route, pred_dir: Path | None = None,
                     report: bool = False, journal: Journal | None = None, log=print) -> ScoreBook:
    """Score every image of `plans` (a census's, or a manifest's) on the route; returns the ScoreBook (confusion
    matrix, per-image results, worst images).

    With a journal, the images it holds (checked unchanged) are not scored again and each newly scored one is
    journaled as it finishes; predictions are then written as they come (the journal says which are complete)
    rather than staged. With `report`, the predictions of the worst images are kept, and those of worst images
    resumed from the journal are read back from the prediction folder or made again.
    """
    check_inputs(plans, spec.n_cls)
    book = ScoreBook(spec.n_cls, keep_worst=6 if report else 0)
    todo = resume_from(journal, plans, book, spec, pred_dir, log)
    book.work = (len(todo), sum(p.n_windows for p in todo))
    with staged(pred_dir if journal is None else None) as stage, route.session(log):
        out = stage if journal is None else pred_dir
        route.segment(todo, spec, cfg, book, journal, out, report, log)
        missing = set(book.missing_pictures())
        if missing:
            _complete_gallery(book, [p for p in plans if p.prefix in missing], spec, cfg, route, pred_dir, log)
        book.check(log)
    return book


def _complete_gallery(book: ScoreBook, plans: list[ImagePlan], spec, cfg, route, pred_dir, log) -> None:
    """Predictions of worst images scored by an earlier run: from the prediction folder, else segmented again."""
    from ..data.datasets.spec import read_label_file

    again = []
    for plan in plans:
        saved = pred_dir / "labels" / f"{plan.prefix}.png" if pred_dir is not None else None
        if saved is not None and saved.is_file():
            labels = read_label_file(saved)
            book.add_picture(ImagePlan(plan.name, plan.prefix, plan.image_path, plan.gt_path, labels.shape), labels)
        else:
            again.append(plan)
    if again:
        log(f"note: segmenting again {len(again)} of the worst images, scored by an earlier run, for the report")
        pictures = ScoreBook(spec.n_cls, keep_worst=len(again))
        route.segment(again, spec, cfg, pictures, None, None, True, log)
        for _, plan, labels in pictures.worst_images():
            book.add_picture(plan, labels)


def check_outputs(metrics_path: str | Path | None, pred_dir: str | Path | None, report: str | Path | None,
                  resume: bool) -> None:
    """Before any work: each output has a path of its own, and the journal's path is free for a file."""
    named = [(what, os.path.realpath(p)) for what, p in (("metrics file", metrics_path), ("prediction folder",
             pred_dir), ("report folder", report)) if p is not None]
    for i, (what, path) in enumerate(named):
        for other, other_path in named[i + 1:]:
            if path == other_path:
                raise SegmenterError(f"{path}: given as both the {what} and the {other}; give each its own path")
    if resume and metrics_path is not None and journal_beside(metrics_path).is_dir():
        raise SegmenterError(f"{journal_beside(metrics_path)}: the journal of a resumable run would go here, but it "
                             "is a folder; move it, or give another metrics path")
