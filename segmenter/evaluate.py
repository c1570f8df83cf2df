"""Streaming evaluation: images -> windows -> engine -> merge -> metrics, with no intermediate files.

Three stages overlap: a thread pool decodes and preprocesses images (OpenCV and NumPy release the
GIL), the calling thread batches windows across image boundaries into the engine, and one thread
merges each finished image, scores it and saves its prediction. Bounded queues keep a few images in
flight. It uses the same preprocessing, merge and metric code as the file route, so the metrics are
identical for the same engine outputs.
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

from .data import ImagePlan, Sample, WindowConfig, preprocess_image, read_ground_truth, read_image
from .engines import Engine
from .errors import SegmenterError
from .metrics import ConfusionMatrix, save_prediction_pngs
from .windows import WindowMerger, cut_windows, predict_from_windows

_DONE = object()


def _prepared(samples: list[Sample], cfg: WindowConfig, workers: int, ahead: int
              ) -> Iterator[tuple[ImagePlan, np.ndarray]]:
    """(plan, (k, 3, w, w) windows) per image, in order, at most `ahead` images decoded in advance."""

    def prepare(sample: Sample) -> tuple[ImagePlan, np.ndarray]:
        bgr = read_image(sample.image_path)
        plan = ImagePlan.for_image(sample, bgr.shape[:2], cfg)
        return plan, cut_windows(preprocess_image(bgr, cfg), plan.anchors, cfg.window_size)

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

    def __init__(self, n_cls: int, pred_dir: Path | None, bar: tqdm, depth: int = 1) -> None:
        super().__init__(daemon=True)
        self.inbox: queue.Queue = queue.Queue(maxsize=depth)
        self.confusion = ConfusionMatrix(n_cls)
        self.pred_dir, self.bar, self.error = pred_dir, bar, None

    def run(self) -> None:
        while (item := self.inbox.get()) is not _DONE:
            if self.error is not None:
                continue  # drain after a failure
            plan, merger = item
            try:
                labels = predict_from_windows(merger, plan.original_hw)
                gt = read_ground_truth(Path(plan.gt_path), plan.original_hw)
                try:
                    self.confusion.update(gt, labels)
                except ValueError as exc:
                    raise SegmenterError(f"{plan.gt_path}: {exc}") from None
                if self.pred_dir is not None:
                    save_prediction_pngs(self.pred_dir, plan.stem, labels, self.confusion.n_cls)
                self.bar.update(1)
            except Exception as exc:  # noqa: BLE001 - handed to the main thread
                self.error = exc

    def put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.inbox.put(item)


def stream_evaluate(samples: list[Sample], cfg: WindowConfig, engine: Engine, batch_size: int = 1,
                    workers: int = 2, pred_dir: Path | None = None, images_ahead: int = 2) -> ConfusionMatrix:
    """Confusion matrix of `engine` over `samples`; batches hold `batch_size` windows across images."""
    if engine.input_hw != (cfg.window_size, cfg.window_size):
        raise SegmenterError(f"the model's input is {engine.input_hw[0]}x{engine.input_hw[1]} but the windows are "
                             f"{cfg.window_size}x{cfg.window_size}; export at the window size or pass --window-size")
    with tqdm(total=len(samples), desc="evaluate", unit="img") as bar:
        scorer = _Scorer(engine.n_cls, pred_dir, bar)
        scorer.start()
        try:
            pending: list[tuple[ImagePlan, WindowMerger, int, np.ndarray]] = []  # windows waiting for a batch

            def run_batch(items: list) -> None:
                windows = np.stack([w for *_, w in items])
                if len(items) < batch_size:  # engines are tuned for one batch size: pad, as ais_bench does
                    windows = np.concatenate([windows, np.repeat(windows[-1:], batch_size - len(items), axis=0)])
                logits = engine(windows)
                if logits.shape[1] != engine.n_cls or not np.isfinite(logits[:len(items)]).all():
                    raise SegmenterError(f"the engine {engine.name} returned NaN/inf or a wrong shape {logits.shape}")
                for (plan, merger, k, _), out in zip(items, logits):
                    merger.add(k, out)
                    if merger.complete:
                        scorer.put((plan, merger))

            for plan, windows in _prepared(samples, cfg, workers, images_ahead):
                merger = WindowMerger(engine.n_cls, plan.canvas_hw, plan.anchors, cfg.window_size)
                for k, window in enumerate(windows):
                    pending.append((plan, merger, k, window))
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
    return scorer.confusion
