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


FRESH_VENV_RUN = """
import sys
from segmenter.commands.eval import run
sys.argv = ["segmenter-eval", *sys.argv[1:]]
try:
    run()
finally:
    print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""


def test_pip_install_alone_evaluates_an_onnx_model_without_torch(tmp_path, tiny_checkpoint):
    """`pip install <checkout>` into a fresh venv (no extras, not editable): the commands are there, an exported
    model is evaluated on ONNX Runtime and OpenVINO from another folder, torch is never imported (it is not even
    installed), and a checkpoint, which needs the torch extra, is one line naming it."""
    from conftest import run_script

    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    install = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(source)],
                             capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stderr[-3000:]
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode != 0  # not installed
    for command in ("segmenter-eval", "segmenter-predict", "segmenter-preprocess", "segmenter-postprocess",
                    "segmenter-pytorch2onnx", "segmenter-infer", "segmenter-convert", "segmenter-serve"):
        proc = subprocess.run([str(bin_dir / command), "--help"], capture_output=True, text=True, timeout=120,
                              cwd=tmp_path)
        assert proc.returncode == 0 and f"usage: {command}" in proc.stdout, (command, proc.stderr)
    version = subprocess.run([str(python), "-c", "import segmenter; print(segmenter.__version__)"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=120).stdout.strip()
    assert version and version != "0+unknown"

    data, model = tmp_path / "data", tmp_path / "m.onnx"
    assert run_script("tools/make_dataset.py", "--data-root", data, "--n-images", 2, "--size", 80, 160).returncode == 0
    assert run_script("segmenter_pytorch2onnx.py", "-c", tiny_checkpoint, "-o", model).returncode == 0
    shutil.copy(tiny_checkpoint.with_name("variant.yml"), tmp_path / "variant.yml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for device in ("cpu", "openvino"):
        proc = subprocess.run([str(python), "-c", FRESH_VENV_RUN, "--model", str(model), "--data-root", str(data),
                               "--metrics-path", str(tmp_path / f"{device}.yaml"), "--device", device, "--precision",
                               "fp32"], capture_output=True, text=True, cwd=elsewhere, timeout=600,
                              env={**os.environ, "SEGMENTER_CACHE_DIR": str(tmp_path / "cache")})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "torch imported: False" in proc.stderr
        assert "mIoU" in proc.stdout and (tmp_path / f"{device}.yaml").is_file()
    proc = subprocess.run([str(bin_dir / "segmenter-eval"), "--model", str(tiny_checkpoint), "--data-root",
                           str(data), "--metrics-path", str(tmp_path / "ckpt.yaml")], capture_output=True, text=True,
                          cwd=elsewhere, timeout=600)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "needs torch, which is not installed here" in lines[0] and "segmenter-infer[torch]" in lines[0]
    proc = subprocess.run([str(bin_dir / "segmenter-serve"), "--model", str(model)], capture_output=True, text=True,
                          cwd=elsewhere, timeout=600)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "the server needs ray" in lines[0] and "segmenter-infer[serve]" in lines[0]
