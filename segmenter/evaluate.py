"""Streaming evaluation: images -> windows -> engine -> merge -> metrics, with no intermediate files.

Three stages overlap: a thread pool decodes and preprocesses images (OpenCV and NumPy release the
GIL), the calling thread batches windows across image boundaries into the engine, and one thread
merges each finished image, scores it and saves its prediction. Bounded queues keep a few images in
flight. It uses the same plans, preprocessing, merge and scoring code as the file route, so the
metrics are identical for the same engine outputs.
"""
from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from .data import read_image, view_windows
from .datasets import DatasetSpec, Sample
from .engines import Engine
from .errors import SegmenterError
from .files import staged
from .metrics import ConfusionMatrix
from .plan import ImagePlan, WindowConfig, assign_prefixes
from .scoring import ImageMerger, ScoreBook, score_image

_DONE = object()


def plan_samples(samples: list[Sample]) -> list[tuple[Sample, str]]:
    """Each sample with its unique window prefix (the same as the file route gives it)."""
    return list(zip(samples, assign_prefixes([s.name for s in samples])))


def _prepared(samples: list[tuple[Sample, str]], cfg: WindowConfig, workers: int, ahead: int
              ) -> Iterator[tuple[ImagePlan, np.ndarray]]:
    """(plan, (n_windows, 3, w, w) windows) per image, in order, at most `ahead` images decoded in advance."""

    def prepare(item: tuple[Sample, str]) -> tuple[ImagePlan, np.ndarray]:
        sample, prefix = item
        bgr = read_image(sample.image_path)
        plan = ImagePlan.for_image(sample.name, prefix, sample.image_path, sample.gt_path, bgr.shape[:2], cfg)
        return plan, np.concatenate(list(view_windows(bgr, plan, cfg)))

    with ThreadPoolExecutor(workers) as pool:
        todo = iter(samples)
        pending = deque(pool.submit(prepare, s) for s in itertools.islice(todo, max(1, ahead)))
        while pending:
            result = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(pool.submit(prepare, following))
            yield result


class _Scorer(threading.Thread):
    """Consumes finished mergers: predict, compare with the ground truth, optionally save PNGs."""

    def __init__(self, spec: DatasetSpec, pred_dir: Path | None, bar: tqdm, on_image=None, depth: int = 1) -> None:
        super().__init__(daemon=True)
        self.inbox: queue.Queue = queue.Queue(maxsize=depth)
        self.book = ScoreBook(spec.n_cls)
        self.spec, self.pred_dir, self.bar, self.on_image, self.error = spec, pred_dir, bar, on_image, None

    def run(self) -> None:
        while (merger := self.inbox.get()) is not _DONE:
            if self.error is not None:
                continue  # drain after a failure
            try:
                score = score_image(merger, self.spec, merger.plan.gt_path, self.pred_dir)
                self.book.add(score)
                if self.on_image is not None:
                    self.on_image(score)
                self.bar.update(1)
            except Exception as exc:  # noqa: BLE001 - handed to the main thread
                self.error = exc

    def put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.inbox.put(item)


def stream_evaluate(samples: list[Sample], spec: DatasetSpec, cfg: WindowConfig, engine: Engine,
                    batch_size: int = 1, workers: int = 2, pred_dir: Path | None = None, images_ahead: int = 2,
                    log=print, on_image=None) -> ConfusionMatrix:
    """Confusion matrix of `engine` over `samples` of data set `spec`; batches hold `batch_size` windows across
    images.

    `on_image(ImageScore)` is called for each image as it is scored.
    """
    if engine.input_hw != (cfg.window_size, cfg.window_size):
        raise SegmenterError(f"the model's input is {engine.input_hw[0]}x{engine.input_hw[1]} but the windows are "
                             f"{cfg.window_size}x{cfg.window_size}; export at the window size or change the window "
                             "size")
    with tqdm(total=len(samples), desc="evaluate", unit="img") as bar, staged(pred_dir) as stage:
        if engine.n_cls != spec.n_cls:
            raise SegmenterError(f"the model has {engine.n_cls} classes but {spec.title} has {spec.n_cls}")
        scorer = _Scorer(spec, stage, bar, on_image)
        scorer.start()
        try:
            pending: list[tuple[ImageMerger, int, np.ndarray]] = []  # windows waiting for a batch

            def run_batch(items: list) -> None:
                windows = np.stack([w for *_, w in items])
                if len(items) < batch_size:  # engines are tuned for one batch size: pad, as ais_bench does
                    windows = np.concatenate([windows, np.repeat(windows[-1:], batch_size - len(items), axis=0)])
                logits = engine(windows)
                if logits.shape[1] != engine.n_cls or not np.isfinite(logits[:len(items)]).all():
                    raise SegmenterError(f"the engine {engine.name} returned NaN/inf or a wrong shape {logits.shape}")
                for (merger, k, _), out in zip(items, logits):
                    merger.add(k, out)
                    if merger.complete:
                        scorer.put(merger)

            for plan, windows in _prepared(plan_samples(samples), cfg, workers, images_ahead):
                merger = ImageMerger(plan, engine.n_cls, cfg.window_size)
                for k, window in enumerate(windows):
                    pending.append((merger, k, window))
                    if len(pending) == batch_size:
                        run_batch(pending)
                        pending = []
            if pending:
                run_batch(pending)
        finally:
            scorer.inbox.put(_DONE)
            scorer.join()
        if scorer.error is not None:
            raise scorer.error
        return scorer.book.check(log)
