"""The bad-input catalogue's shared parts: a finished small chain, its steps, and the registry of cases.

Each catalogue module (tests/test_bad_inputs*.py) registers its cases with `case` on a Catalogue of its
own: a case damages a private copy of the chain (or passes a bad flag), runs one step, and states what
the one `error:` line must say; the module's `test_bad_input` also checks the exit status and that no
metrics, predictions or other outputs were written. A new case is one more decorated function.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import assert_one_line_error, read_metrics, run_script

__all__ = ["STEM", "OUT", "NOTHING_WRITTEN", "Catalogue", "post", "prep", "evaluate", "infer",
           "export", "gt_png", "edit_json", "edit_variant", "scores"]

STEM = "lindau_000000_000001_leftImg8bit"  # the second generated image: 3 windows of 64 at stride 32
OUT = STEM + "_{k}_0.bin"
NOTHING_WRITTEN = ("metrics.yaml", "pred", "gt2.txt", "gt2.json", "m2.onnx", "result/bs9")


class Catalogue:
    """The cases of one module: `case` registers one, `test()` makes the module's parametrized test."""

    def __init__(self) -> None:
        self.cases: list = []

    def case(self, *says: str, unwritten: tuple[str, ...] = NOTHING_WRITTEN):
        """Register a bad input: `says` are fragments of the error line ({w} is the work folder)."""
        def register(make):
            self.cases.append(pytest.param(make, says, unwritten, id=make.__name__))
            return make
        return register

    def test(self):
        @pytest.mark.parametrize("make, says, unwritten", self.cases)
        def test_bad_input(work, make, says, unwritten):
            proc = make(work)
            assert_one_line_error(proc, *(s.format(w=work) for s in says))
            for rel in unwritten:  # a folder made while checking it is writable may stay, empty
                path = work / rel
                assert not path.exists() or (path.is_dir() and not any(path.iterdir())), rel
        return test_bad_input


def scores(path: Path) -> dict:
    """The metrics of a metrics file (its `run:` block, which differs by run, left out)."""
    return read_metrics(path)



def post(w: Path, *extra, result: str = "result/bs2", gt: str = "gt_file.txt"):
    return run_script("segmenter_postprocess.py", "--result-dir", w / result, "--gt-path", w / gt,
                      "--metrics-path", w / "metrics.yaml", "--pred-dir", w / "pred", *extra)


def prep(w: Path, *extra, gt: str = "gt2.txt", bins: str = "bins2", variant: str = "model/variant.yml"):
    return run_script("segmenter_preprocess.py", "--cfg-path", w / variant, "--data-root", w / "data",
                      "--bin-dir", w / bins, "--gt-path", w / gt, *extra)


def evaluate(w: Path, *extra, model: str = "model.onnx"):
    return run_script("segmenter_eval.py", "--model", w / model, "--cfg-path", w / "model" / "variant.yml",
                      "--data-root", w / "data", "--metrics-path", w / "metrics.yaml", "--device", "cpu",
                      "--precision", "fp32", *extra)


def infer(w: Path, *extra, inputs: str = "bins", out: str = "bs9"):
    return run_script("segmenter_infer.py", "--model", w / "model.onnx", "--input", w / inputs,
                      "--output", w / "result", "--output_dirname", out, *extra)


def export(w: Path, *extra):
    return run_script("segmenter_pytorch2onnx.py", "-c", w / "model" / "checkpoint.pth", "-o", w / "m2.onnx", *extra)


def gt_png(w: Path, stem: str = STEM) -> Path:
    return next((w / "data").rglob(stem.replace("leftImg8bit", "gtFine") + "_labelTrainIds.png"))


def edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def edit_variant(w: Path, edit) -> None:
    path = w / "model" / "variant.yml"
    doc = yaml.unsafe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.dump(doc))
