"""Evaluation of a data set, one entry for both routes: streaming in this process, or on Ray.

Images -> windows -> engine -> merge -> metrics, with no intermediate files; the same plans,
preprocessing, merge and scoring code as the file route, so the metrics are identical for the same
engine outputs. `evaluate_dataset` checks the inputs (every ground truth present and of its image's
size, the largest merge within memory, the model's windows and classes), resumes from the journal,
runs the route, and completes the report's gallery of worst images.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from ..data.datasets import DatasetSpec, Sample
from ..data.images import Census, header_size, load_image, sample_census
from ..data.plan import ImagePlan, WindowConfig, assign_prefixes
from ..engines.backends import Engine
from ..errors import SegmenterError
from ..files import file_sha256, staged
from ..progress import progress
from .journal import Entry, Journal, journal_beside
from .pipeline import Finished, Job, run_pipeline
from .scoring import ScoreBook, check_ground_truths, score_image


def with_prefixes(samples: list[Sample]) -> list[tuple[Sample, str]]:
    """Each sample with the unique window prefix the file route gives it too."""
    return list(zip(samples, assign_prefixes([s.name for s in samples])))


def sample_job(sample: Sample, prefix: str, cfg: WindowConfig) -> Job:
    def load():
        bgr, digest = load_image(sample.image_path)
        plan = ImagePlan.for_image(sample.name, prefix, sample.image_path, sample.gt_path, bgr.shape[:2], cfg)
        return plan, bgr, digest
    return Job(load, sample)


def check_inputs(census: Census, spec: DatasetSpec) -> None:
    """Before any work: each ground truth exists and has its image's size (from the headers), and the largest
    image can be merged in the memory available."""
    check_ground_truths(census.plans)
    for plan in census.plans:
        if plan.gt_path:
            h, w = header_size(plan.gt_path)
            if (h, w) != plan.original_hw:
                raise SegmenterError(f"{plan.gt_path}: ground truth is {h}x{w} but its image is "
                                     f"{plan.original_hw[0]}x{plan.original_hw[1]}")
    census.check_memory(spec.n_cls)


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


def resume_from(journal: Journal | None, items: list[tuple[Sample, str]], book: ScoreBook, spec: DatasetSpec,
                pred_dir: Path | None = None, log=print) -> list[tuple[Sample, str]]:
    """Add what the journal holds to the book, each image checked unchanged; the items still to score.

    An entry whose counts do not add up to its ground truth's labelled pixels, or whose predictions are not in
    the prediction folder asked for now, is scored again.
    """
    if journal is None:
        return items
    todo, without_predictions = [], 0
    for sample, prefix in items:
        entry = journal.entries.get(prefix)
        if entry is None:
            todo.append((sample, prefix))
            continue
        _same_file(entry.image, sample.image_path, journal)
        _same_file(entry.gt, sample.gt_path, journal)
        labels, _ = spec.load_labels(sample.gt_path)
        labelled = int((labels != 255).sum())
        if labelled != entry.labelled:
            log(f"warning: {journal.path}:{entry.line}: counts {entry.labelled} pixels but {sample.gt_path} labels "
                f"{labelled}; that image is scored again")
        elif pred_dir is not None and not _has_predictions(entry, pred_dir):
            without_predictions += 1
        else:
            book.add_counts(entry.name, entry.prefix, entry.confusion)
            continue
        journal.forget(prefix)
        todo.append((sample, prefix))
    if without_predictions:
        log(f"note: {without_predictions} images scored before have no predictions in {pred_dir}: they are "
            "segmented again")
    log(f"resuming from {journal.path}: {len(items) - len(todo)} images already scored, {len(todo)} to go")
    return todo


@dataclass
class Route:
    """Where the images are segmented: an engine in this process, or Ray actors (the model file prepared)."""

    engine: Engine | None = None
    ray_address: str | None = None
    ray_actors: int = 1
    model_path: Path | None = None
    device: str = "cpu"
    precision: str = "fp32"
    threads: int | None = None
    variant_path: Path | None = None  # beside a checkpoint run by torch-cuda on Ray


def _stream(items, spec: DatasetSpec, cfg: WindowConfig, engine: Engine, book: ScoreBook, journal: Journal | None,
            out: Path | None, batch_size: int, workers: int, keep_labels: bool, desc: str = "evaluate") -> None:
    pred_dir = os.path.realpath(out) if out is not None and journal is not None else None
    with progress(total=len(items), desc=desc, unit="img") as bar:
        def sink(done: Finished) -> None:
            score = score_image(done.merger, spec, done.merger.plan.gt_path, out)
            if score.confusion is None:
                raise SegmenterError(f"{score.plan.name}: no ground truth to score it on")
            book.add_counts(score.plan.name, score.plan.prefix, score.confusion, score.plan,
                            score.labels if keep_labels else None)
            if journal is not None:
                journal.record(Entry(score.plan.name, score.plan.prefix, score.confusion, done.digest,
                                     score.gt_digest, pred_dir))
            bar.update(1)

        run_pipeline([sample_job(s, p, cfg) for s, p in items], cfg, engine, sink, batch_size, workers)


def _segment(route: Route, items, spec, cfg, book, journal, out, batch_size, workers, keep_labels, log) -> None:
    if route.engine is not None:
        _stream(items, spec, cfg, route.engine, book, journal, out, batch_size, workers, keep_labels)
        return
    from .distributed import ray_evaluate

    ray_evaluate(items, spec, cfg, route.model_path, route.device, route.precision, route.threads, batch_size,
                 route.ray_actors, route.ray_address, out, journal, book, keep_labels=keep_labels or out is not None,
                 variant_path=route.variant_path, log=log)


def evaluate_dataset(samples: list[Sample], census: Census, spec: DatasetSpec, cfg: WindowConfig, route: Route,
                     batch_size: int = 1, workers: int = 2, pred_dir: Path | None = None, report: bool = False,
                     journal: Journal | None = None, log=print) -> ScoreBook:
    """Score every sample on the route; returns the ScoreBook (confusion matrix, per-image results, worst images).

    With a journal, the images it holds (checked unchanged) are not scored again and each newly scored one is
    journaled as it finishes; predictions are then written as they come (the journal says which are complete)
    rather than staged. With `report`, the predictions of the worst images are kept, and those of worst images
    resumed from the journal are read back from the prediction folder or made again.
    """
    if route.engine is not None and route.engine.n_cls != spec.n_cls:
        raise SegmenterError(f"the model has {route.engine.n_cls} classes but {spec.title} has {spec.n_cls}")
    check_inputs(census, spec)
    book = ScoreBook(spec.n_cls, keep_worst=6 if report else 0)
    items = with_prefixes(samples)
    todo = resume_from(journal, items, book, spec, pred_dir, log)
    with staged(pred_dir if journal is None else None) as stage, _session(route, log):
        out = stage if journal is None else pred_dir
        _segment(route, todo, spec, cfg, book, journal, out, batch_size, workers, report, log)
        missing = set(book.missing_pictures())
        if missing:
            _complete_gallery(book, [(s, p) for s, p in items if p in missing], spec, cfg, route, pred_dir,
                              batch_size, workers, log)
        book.check(log)
    return book


def _session(route: Route, log):
    """A Ray session for the Ray route; nothing for an engine in this process."""
    if route.engine is not None:
        return nullcontext()
    from .distributed import ray_session

    return ray_session(route.ray_address, log)


def stream_evaluate(samples: list[Sample], spec: DatasetSpec, cfg: WindowConfig, engine: Engine, batch_size: int = 1,
                    workers: int = 2, pred_dir: Path | None = None, log=print, journal: Journal | None = None,
                    report: bool = False) -> ScoreBook:
    """evaluate_dataset in this process with an open engine."""
    return evaluate_dataset(samples, sample_census(samples, cfg), spec, cfg, Route(engine=engine), batch_size, workers,
                            pred_dir, report, journal, log)


def _complete_gallery(book: ScoreBook, items, spec, cfg, route, pred_dir, batch_size, workers, log) -> None:
    """Predictions of worst images scored by an earlier run: from the prediction folder, else segmented again."""
    from ..data.datasets.spec import read_label_file

    again = []
    for sample, prefix in items:
        saved = pred_dir / "labels" / f"{prefix}.png" if pred_dir is not None else None
        if saved is not None and saved.is_file():
            labels = read_label_file(saved)
            book.add_picture(ImagePlan(sample.name, prefix, str(sample.image_path), str(sample.gt_path),
                                       labels.shape), labels)
        else:
            again.append((sample, prefix))
    if again:
        log(f"note: segmenting again {len(again)} of the worst images, scored by an earlier run, for the report")
        pictures = ScoreBook(spec.n_cls, keep_worst=len(again))
        _segment(route, again, spec, cfg, pictures, None, None, batch_size, workers, True, log)
        for _, plan, labels in pictures.worst_images():
            book.add_picture(plan, labels)


def open_journal(metrics_path: str | Path, resume: bool, fingerprint, n_cls: int, log=print) -> Journal | None:
    """The journal beside the metrics file when resuming (fingerprint() computed then); without resuming, an
    existing journal is an error rather than silently ignored or replaced."""
    path = journal_beside(metrics_path)
    if not resume:
        if path.exists():
            raise SegmenterError(f"{path}: a journal of an earlier resumable run is here; resume that run, or "
                                 "delete the journal to start afresh")
        return None
    return Journal(path, fingerprint(), n_cls, log)


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
