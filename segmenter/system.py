"""What this machine offers a run and what it is: CPU cores and memory, the CPU's model and features, its GPUs, the
versions of the packages that compute."""
from __future__ import annotations

import os
import subprocess
import sys

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


# The CPU features that decide engine speed (vector widths, bfloat16 and int8 instructions, AMX)
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")


def cpu_model() -> tuple[str, tuple[str, ...]]:
    """The CPU's model name and which of CPU_FEATURES it has (from /proc/cpuinfo; "?" elsewhere)."""
    model, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, tuple(f for f in CPU_FEATURES if f in flags)


def gpu_names() -> list[str]:
    """The NVIDIA GPUs here: from PyTorch when the run has imported it, else from nvidia-smi (never importing
    PyTorch for the asking)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # noqa: BLE001 - no driver: no GPU
            return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def package_version(name: str) -> str | None:
    """An installed distribution's version, from its metadata (the package is not imported); None when absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
