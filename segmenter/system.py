"""What this machine offers a run: CPU cores and memory."""
from __future__ import annotations

import os

from .errors import SegmenterError


def cpu_threads() -> int:
    """CPU cores this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable), or the physical total if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_memory(needed: int, what: str) -> None:
    """Refuse, before allocating, work that needs more memory than is available."""
    available = available_memory()
    if needed > available:
        raise SegmenterError(f"{what} needs about {needed / 2**30:.1f} GiB of memory but only "
                             f"{available / 2**30:.1f} GiB is available")


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system (glibc keeps it otherwise), so that models
    and engines opened one after another do not add up in the peak."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
