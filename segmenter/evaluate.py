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
from .pipeline import Finished, Job, run_pipeline
from .plan import ImagePlan, WindowConfig, assign_prefixes
from .progress import progress
from .scoring import ScoreBook, check_ground_truths, score_image


def sample_jobs(samples: list[Sample], cfg: WindowConfig) -> list[Job]:
    """A job per sample, with the unique window prefix the file route gives it too."""

    def job(sample: Sample, prefix: str) -> Job:
        def load():
            bgr = read_image(sample.image_path)
            return ImagePlan.for_image(sample.name, prefix, sample.image_path, sample.gt_path, bgr.shape[:2], cfg), bgr
        return Job(load, sample)

    return [job(s, p) for s, p in zip(samples, assign_prefixes([s.name for s in samples]))]


def stream_evaluate(samples: list[Sample], spec: DatasetSpec, cfg: WindowConfig, engine: Engine,
                    batch_size: int = 1, workers: int = 2, pred_dir: Path | None = None, images_ahead: int = 2,
                    log=print, book: ScoreBook | None = None) -> ScoreBook:
    """Score `engine` over `samples` of data set `spec`; batches hold `batch_size` windows across images.

    Returns the ScoreBook (total confusion matrix, per-image results); `book` may be one to add to.
    """
    if engine.n_cls != spec.n_cls:
        raise SegmenterError(f"the model has {engine.n_cls} classes but {spec.title} has {spec.n_cls}")
    check_ground_truths(samples)
    book = book or ScoreBook(spec.n_cls)
    with progress(total=len(samples), desc="evaluate", unit="img") as bar, staged(pred_dir) as stage:
        def sink(done: Finished) -> None:
            book.add(score_image(done.merger, spec, done.merger.plan.gt_path, stage))
            bar.update(1)

        run_pipeline(sample_jobs(samples, cfg), cfg, engine, sink, batch_size, workers, images_ahead)
        book.check(log)
    return book
