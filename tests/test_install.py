"""The package as a normal (non-editable) install gets it: every sub-package there, and it segments an image."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
from conftest import ROOT

SEGMENT_ONE_IMAGE = """
import importlib, pkgutil, sys
import numpy as np
import segmenter
assert segmenter.__file__.startswith(sys.argv[1]), segmenter.__file__  # the installed copy, not the checkout
names = [m.name for m in pkgutil.walk_packages(segmenter.__path__, "segmenter.")]
for name in names:
    module = importlib.import_module(name)
    assert module.__file__.startswith(sys.argv[1]), module.__file__
from segmenter.api import open_model
model = open_model(sys.argv[2], device="cpu", precision="fp32", log=lambda *_: None)
image = np.random.default_rng(0).integers(0, 255, (70, 130, 3), np.uint8)
labels = model.segment(image)
np.save(sys.argv[3], labels)
print(len(names), "modules")
"""


def test_non_editable_install_imports_every_sub_package_and_segments(tmp_path, tiny_checkpoint):
    source = tmp_path / "source"  # a copy of the checkout without its build leftovers, as a clean clone has it
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info",
                                                                "__pycache__", ".pytest_cache"))
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                              "--disable-pip-version-check", "-q", "--target", str(target), str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    packages = sorted(p.parent.relative_to(target).as_posix() for p in (target / "segmenter").rglob("__init__.py"))
    expected = sorted(p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "segmenter").rglob("__init__.py"))
    assert packages == expected and "segmenter/data/datasets" in packages
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", SEGMENT_ONE_IMAGE, str(target), str(tiny_checkpoint),
                           str(tmp_path / "labels.npy")], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    labels = np.load(tmp_path / "labels.npy")
    assert labels.shape == (70, 130) and labels.dtype == np.uint8 and labels.max() < 19
