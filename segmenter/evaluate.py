"""Streaming evaluation: images -> windows -> engine -> merge -> metrics, with no intermediate files.

The same plans, preprocessing, merge and scoring code as the file route, so the metrics are identical
for the same engine outputs.
"""
from __future__ import annotations

from pathlib import Path

from .data import read_image
from .datasets import DatasetSpec, Sample
from .engines import Engine
from .errors import SegmenterError
from .files import staged
from .journal import Entry, Journal, journal_beside
from .pipeline import Finished, Job, run_pipeline
from .plan import ImagePlan, WindowConfig, assign_prefixes
from .progress import progress
from .scoring import ScoreBook, check_ground_truths, score_image


def with_prefixes(samples: list[Sample]) -> list[tuple[Sample, str]]:
    """Each sample with the unique window prefix the file route gives it too."""
    return list(zip(samples, assign_prefixes([s.name for s in samples])))


def sample_job(sample: Sample, prefix: str, cfg: WindowConfig) -> Job:
    def load():
        bgr = read_image(sample.image_path)
        return ImagePlan.for_image(sample.name, prefix, sample.image_path, sample.gt_path, bgr.shape[:2], cfg), bgr
    return Job(load, sample)


def resume_from(journal: Journal | None, items: list[tuple[Sample, str]], book: ScoreBook
                ) -> list[tuple[Sample, str]]:
    """Add what the journal holds to the book; the items still to score."""
    if journal is None:
        return items
    done = {prefix for _, prefix in items} & set(journal.entries)
    for prefix in sorted(done):
        entry = journal.entries[prefix]
        book.add_counts(entry.name, entry.prefix, entry.confusion)
    return [(s, p) for s, p in items if p not in done]


def stream_evaluate(samples: list[Sample], spec: DatasetSpec, cfg: WindowConfig, engine: Engine,
                    batch_size: int = 1, workers: int = 2, pred_dir: Path | None = None, images_ahead: int = 2,
                    log=print, journal: Journal | None = None) -> ScoreBook:
    """Score `engine` over `samples` of data set `spec`; batches hold `batch_size` windows across images.

    Returns the ScoreBook (total confusion matrix, per-image results). With a journal, the images it holds are
    not scored again and each newly scored one is journaled as it finishes; predictions are then written as
    they come (the journal says which are complete) rather than staged.
    """
    if engine.n_cls != spec.n_cls:
        raise SegmenterError(f"the model has {engine.n_cls} classes but {spec.title} has {spec.n_cls}")
    check_ground_truths(samples)
    book = ScoreBook(spec.n_cls)
    todo = resume_from(journal, with_prefixes(samples), book)
    with progress(total=len(todo), desc="evaluate", unit="img") as bar, \
            staged(pred_dir if journal is None else None) as stage:
        out = stage if journal is None else pred_dir

        def sink(done: Finished) -> None:
            score = score_image(done.merger, spec, done.merger.plan.gt_path, out)
            book.add(score)
            if journal is not None:
                journal.record(Entry(score.plan.name, score.plan.prefix, score.confusion))
            bar.update(1)

        run_pipeline([sample_job(s, p, cfg) for s, p in todo], cfg, engine, sink, batch_size, workers, images_ahead)
        book.check(log)
    return book


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
