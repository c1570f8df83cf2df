"""Images -> windows -> engine -> merged images, overlapped; shared by evaluation and prediction.

Three stages overlap: a thread pool decodes and preprocesses images (OpenCV and NumPy release the
GIL), the calling thread batches windows across image boundaries into the engine, and one thread
hands each finished image to the caller's sink (scoring, saving). Bounded queues keep a few images
in flight, so memory is bounded by a few images' windows whatever the data set's size.
"""
from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..data.images import view_windows
from ..data.plan import ImagePlan, WindowConfig
from ..engines.backends import Engine, require_window
from ..errors import SegmenterError
from ..files import FileDigest
from .scoring import ImageMerger

_DONE = object()


@dataclass
class Job:
    """One image to segment: `load()` returns its plan, (H, W, 3) uint8 BGR pixels and the digest of the file
    they were decoded from (None for a video frame); `meta` goes to the sink."""

    load: Callable[[], tuple[ImagePlan, np.ndarray, FileDigest | None]]
    meta: Any = None


@dataclass
class Finished:
    """What the sink receives: the job, its merged windows, its file's digest and, if asked for, its pixels."""

    job: Job
    merger: ImageMerger
    image: np.ndarray | None
    digest: FileDigest | None = None


def _prepared(jobs: Iterable[Job], cfg: WindowConfig, workers: int, ahead: int, keep_image: bool,
              on_error: Callable[[Job, SegmenterError], None] | None
              ) -> Iterator[tuple[Job, ImagePlan, list[np.ndarray], np.ndarray | None, FileDigest | None]]:
    """(job, plan, windows per view, image, digest) per job, in order, at most `ahead` jobs prepared in advance."""

    def prepare(job: Job):
        plan, bgr, digest = job.load()
        return job, plan, list(view_windows(bgr, plan, cfg)), bgr if keep_image else None, digest

    with ThreadPoolExecutor(workers) as pool:
        todo = iter(jobs)
        pending = deque((job, pool.submit(prepare, job)) for job in itertools.islice(todo, max(1, ahead)))
        while pending:
            job, future = pending.popleft()
            following = next(todo, None)
            if following is not None:
                pending.append((following, pool.submit(prepare, following)))
            try:
                result = future.result()
            except SegmenterError as exc:
                if on_error is None:
                    raise
                on_error(job, exc)
                continue
            yield result


class _Sink(threading.Thread):
    """Hands finished images to the caller's function, in order, on a thread of its own."""

    def __init__(self, handle: Callable[[Finished], None], depth: int = 1) -> None:
        super().__init__(daemon=True)
        self.inbox: queue.Queue = queue.Queue(maxsize=depth)
        self.handle, self.error = handle, None

    def run(self) -> None:
        while (item := self.inbox.get()) is not _DONE:
            if self.error is not None:
                continue  # drain after a failure
            try:
                self.handle(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.error = exc

    def put(self, item: Finished) -> None:
        if self.error is not None:
            raise self.error
        self.inbox.put(item)


def engine_logits(engine: Engine, windows: list[np.ndarray], batch_size: int) -> np.ndarray:
    """(k, K, h, w) logits of k <= batch_size windows of one shape (3, h, w), in one engine call; a short batch is
    padded (engines are tuned for one batch size, as ais_bench pads); NaN/inf or a wrong shape is an error."""
    batch = np.stack(windows)
    if len(windows) < batch_size:
        batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - len(windows), axis=0)])
    logits = engine(batch)[:len(windows)]
    if logits.shape[:2] != (len(windows), engine.n_cls) or not np.isfinite(logits).all():
        raise SegmenterError(f"the engine {engine.name} returned NaN/inf or a wrong shape {logits.shape}")
    return logits


def run_pipeline(jobs: Iterable[Job], cfg: WindowConfig, engine: Engine, sink: Callable[[Finished], None],
                 batch_size: int = 1, workers: int = 2, images_ahead: int = 2, keep_image: bool = False,
                 on_error: Callable[[Job, SegmenterError], None] | None = None) -> None:
    """Segment every job with `engine`, windows batched across images; `sink` gets each finished image in order.

    A job that cannot be loaded raises, or goes to `on_error` when given (the run continues).
    """
    require_window(engine.input_hw, cfg.window_size)
    worker = _Sink(sink)
    worker.start()
    try:
        pending: list[tuple[Finished, int, np.ndarray]] = []  # windows waiting for a batch

        def run_batch(items: list) -> None:  # windows of one shape (a view smaller than the window has its own)
            for (finished, k, _), out in zip(items, engine_logits(engine, [w for *_, w in items], batch_size)):
                finished.merger.add(k, out)
                if finished.merger.complete:
                    worker.put(finished)

        for job, plan, windows, image, digest in _prepared(jobs, cfg, workers, images_ahead, keep_image, on_error):
            finished = Finished(job, ImageMerger(plan, engine.n_cls, cfg.window_size), image, digest)
            for k, window in enumerate(w for view in windows for w in view):
                if pending and pending[-1][2].shape != window.shape:
                    run_batch(pending)
                    pending = []
                pending.append((finished, k, window))
                if len(pending) == batch_size:
                    run_batch(pending)
                    pending = []
        if pending:
            run_batch(pending)
    finally:
        worker.inbox.put(_DONE)
        worker.join()
    if worker.error is not None:
        raise worker.error
