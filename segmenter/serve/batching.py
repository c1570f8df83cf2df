"""Windows of concurrent requests gathered into shared engine calls (pure asyncio; nothing here imports Ray).

A batch is formed only when the engine is free, so the windows that arrive while it runs fill the next call;
a window waits at most `wait_s` after the first window of its batch for others to join. (Ray Serve's
`@serve.batch` forms its next batch as soon as the previous one starts, and that batch then waits for the
engine half-full: 2.9 windows per call of 4 were measured at 8 concurrent requests.)
"""
import asyncio
from typing import Awaitable, Callable

import numpy as np

RunBatch = Callable[[list[np.ndarray]], Awaitable[np.ndarray]]


class WindowBatcher:
    """`await batcher(window)` -> the window's logits, from an engine call of at most `max_batch` windows of one
    shape; `run` makes one call. Counts the calls and the windows they ran."""

    def __init__(self, run: RunBatch, max_batch: int, wait_s: float) -> None:
        self.run, self.max_batch, self.wait_s = run, max_batch, wait_s
        self.waiting: list[tuple[np.ndarray, asyncio.Future]] = []
        self.arrived = asyncio.Event()
        self.worker: asyncio.Task | None = None
        self.calls, self.windows = 0, 0

    async def __call__(self, window: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((window, future))
        self.arrived.set()
        if self.worker is None or self.worker.done():
            self.worker = asyncio.ensure_future(self._work())
        return await future

    def _ready(self) -> int:
        """Windows waiting with the shape of the first one."""
        shape = self.waiting[0][0].shape
        return sum(1 for window, future in self.waiting if window.shape == shape and not future.done())

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """The next batch: up to max_batch waiting windows of the first one's shape (cancelled ones dropped)."""
        self.waiting = [item for item in self.waiting if not item[1].done()]
        if not self.waiting:
            return []
        shape = self.waiting[0][0].shape
        picked = [item for item in self.waiting if item[0].shape == shape][:self.max_batch]
        chosen = {id(item) for item in picked}
        self.waiting = [item for item in self.waiting if id(item) not in chosen]
        return picked

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            deadline = loop.time() + self.wait_s
            while self._ready() < self.max_batch and (left := deadline - loop.time()) > 0:
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), left)
                except asyncio.TimeoutError:
                    break
            picked = self._take()
            if not picked:
                continue
            try:
                logits = await self.run([window for window, _ in picked])
            except Exception as exc:  # noqa: BLE001 - the requests of this batch get the error, the next batch runs
                for _, future in picked:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.calls, self.windows = self.calls + 1, self.windows + len(picked)
            for (_, future), window_logits in zip(picked, logits):
                if not future.done():
                    future.set_result(window_logits)
