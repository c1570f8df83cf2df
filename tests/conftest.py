"""Shared helpers: paths of the test data and a runner for the top-level scripts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden"
GOLDEN_CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())

sys.path.insert(0, str(ROOT))


def run_script(script: str, *args, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a repository script with this interpreter; returns the completed process (text output)."""
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A non-zero exit with a single `error: ...` line on stderr that contains every fragment."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "%|" not in line]  # not progress bars
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny released-format mask-transformer checkpoint (random weights), 64x64 windows, 19 classes."""
    from segmenter.checkpoint import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("tiny"), "tiny", seed=1)
