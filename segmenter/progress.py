"""Progress of long work: a tqdm bar on a terminal, a few plain lines otherwise (logs, CI, pipes)."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class LineProgress:
    """tqdm's counting interface, printing one line per tenth of the work (or per minute) and one at the end."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", file=None, **_) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file or sys.stderr
        self.n, self.start, self.printed_at, self.printed_n = 0, time.monotonic(), time.monotonic(), 0
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        step = max(1, (self.total or 0) // 10)
        if self.n == self.total or self.n - self.printed_n >= step and self.total or now - self.printed_at >= 60:
            self._print(now)

    def _print(self, now: float) -> None:
        elapsed = now - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}, {rate:.2f} {self.unit}/s, {elapsed:.0f} s", file=self.file,
              flush=True)
        self.printed_at, self.printed_n = now, self.n

    def write(self, text: str) -> None:
        print(text, file=self.file, flush=True)

    def close(self) -> None:
        if not self.closed and self.n != self.printed_n:
            self._print(time.monotonic())
        self.closed = True

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int | None = None, desc: str = "", unit: str = "it", **kwargs):
    """A progress counter with tqdm's interface: a bar on a terminal, plain lines elsewhere."""
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, **kwargs)
    return LineProgress(total=total, desc=desc, unit=unit)


def track(iterable, total: int | None = None, desc: str = "", unit: str = "it"):
    """Iterate with progress."""
    bar = progress(total=total if total is not None else len(iterable), desc=desc, unit=unit)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
