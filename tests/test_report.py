"""The evaluation report (both routes), the demo's overlays, opened in a real headless browser where present."""
from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest
import yaml
from conftest import run_script

from segmenter.data.datasets.cityscapes import CLASSES
from segmenter.outputs.visualize import MARGIN, TITLE

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


class PerClassTable(HTMLParser):
    """Rows of the table with id per-class, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows, self.inside, self.cell = [], False, None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("id", "per-class") in attrs:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag == "td":
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag == "td":
            self.rows[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def per_class_iou(page: str) -> dict[str, float]:
    parser = PerClassTable()
    parser.feed(page)
    return {row[0]: float("nan") if row[1] == "n/a" else float(row[1]) for row in parser.rows if row}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The streaming and the file route's reports of the same small run."""
    root = tmp_path_factory.mktemp("report")
    for args in (("tools/make_dataset.py", "--data-root", root / "data", "--n-images", 8, "--size", 96, 192),
                 ("tools/make_random_checkpoint.py", "--out-dir", root / "model", "--im-size", 64, "--seed", 3),
                 ("segmenter_pytorch2onnx.py", "-c", root / "model" / "checkpoint.pth", "-o", root / "m.onnx"),
                 ("segmenter_eval.py", "--model", root / "m.onnx", "--cfg-path", root / "model" / "variant.yml",
                  "--data-root", root / "data", "--metrics-path", root / "stream.yaml", "--report",
                  root / "stream_report", "--device", "cpu", "--precision", "fp32"),
                 ("segmenter_preprocess.py", "--cfg-path", root / "model" / "variant.yml", "--data-root", root / "data",
                  "--bin-dir", root / "bins", "--gt-path", root / "gt.txt"),
                 ("segmenter_infer.py", "--model", root / "m.onnx", "--input", root / "bins", "--output",
                  root / "result", "--output_dirname", "bs1"),
                 ("segmenter_postprocess.py", "--result-dir", root / "result" / "bs1", "--gt-path", root / "gt.txt",
                  "--metrics-path", root / "files.yaml", "--report", root / "files_report", "--pred-dir",
                  root / "pred")):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
    return root


@pytest.mark.parametrize("route", ["stream", "files"])
def test_report_contents(reports, route):
    page = (reports / f"{route}_report" / "report.html").read_text()
    metrics = yaml.safe_load((reports / f"{route}.yaml").read_text())
    table = per_class_iou(page)
    assert list(table) == list(CLASSES)
    for name, value in metrics["per_class_iou"].items():
        assert (np.isnan(value) and np.isnan(table[name])) or table[name] == pytest.approx(value, abs=0.005), name
    assert f"{metrics['mean_iou']:.2f}" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing to fetch
    images = [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert len(images) == 2 + 6  # bar chart, heat map, six worst images
    assert page.count('<tr><td>') >= 19 + 8  # per-class and per-image rows
    for png in images[2:]:  # each gallery picture: four panels, none blank
        picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        width = (picture.shape[1] - 5 * MARGIN) // 4
        assert width == 192
        for i in range(4):
            left = MARGIN + i * (width + MARGIN)
            assert picture[TITLE:TITLE + 96, left:left + width].std() > 5, i


def test_report_in_a_browser(reports, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing: .ci/run installs it")
        pytest.skip("no chromium here (apt-get install chromium)")
    page = reports / "files_report" / "report.html"
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1300,2400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[:2] == (2400, 1300)
    assert picture.std() > 20 and len(np.unique(picture.reshape(-1, 3), axis=0)) > 200  # text, charts, colours
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    metrics = yaml.safe_load((reports / "files.yaml").read_text())
    shown = per_class_iou(dom)
    for name, value in metrics["per_class_iou"].items():
        assert (np.isnan(value) and np.isnan(shown[name])) or shown[name] == pytest.approx(value, abs=0.005), name


def test_demo_overlays_have_titles_and_legend(reports, tmp_path):
    proc = run_script("tools/make_overlays.py", "--gt-path", reports / "gt.txt", "--pred-dir", reports / "pred",
                      "--out-dir", tmp_path, "--count", 2)
    assert proc.returncode == 0, proc.stderr
    pictures = sorted(tmp_path.glob("*_overlay.png"))
    assert len(pictures) == 2
    for path in pictures:
        picture = cv2.imread(str(path))
        assert picture.shape[1] == 3 * 192 + 4 * MARGIN  # input | prediction | ground truth
        for i in range(3):
            assert picture[TITLE:TITLE + 96, MARGIN + i * (192 + MARGIN):][:, :192].std() > 5
        assert picture[:TITLE].min() < 100 and picture[TITLE + 96 + MARGIN:].min() < 100  # titles, legend


def test_official_evaluator_wrapper(reports):
    proc = run_script("tools/cityscapes_eval.py", "--pred-dir", reports / "pred", "--data-root", reports / "data")
    assert proc.returncode == 0, proc.stderr
    official = float(re.search(r"class IoU ([\d.]+)", proc.stdout).group(1))
    assert official == pytest.approx(yaml.safe_load((reports / "files.yaml").read_text())["mean_iou"], abs=0.006)


def test_progress_without_a_terminal_is_a_few_lines(reports):
    proc = run_script("segmenter_eval.py", "--model", reports / "m.onnx", "--cfg-path",
                      reports / "model" / "variant.yml", "--data-root", reports / "data", "--metrics-path",
                      reports / "again.yaml", "--device", "cpu")
    assert proc.returncode == 0 and "\r" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("evaluate:")]
    assert 1 <= len(lines) <= 11 and lines[-1].startswith("evaluate: 8/8 img")


def test_every_script_explains_itself(tmp_path):
    from conftest import ROOT

    for script in sorted(ROOT.glob("segmenter_*.py")) + sorted((ROOT / "tools").glob("*.py")) + \
            sorted((ROOT / "benchmarks").glob("*.py")):
        proc = run_script(str(script.relative_to(ROOT)), "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout and "example:" in proc.stdout, script.name
    for script in ("setup.sh", "test.sh", "demo.sh", "perf.sh", "convert_om.sh"):
        shutil.copy(ROOT / script, tmp_path / script)  # a bare folder: a script that set anything up would show
        proc = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert proc.returncode == 0 and "Usage:" in proc.stdout and "Example:" in proc.stdout, script
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["setup.sh", "test.sh", "demo.sh", "perf.sh", "convert_om.sh"])  # no .venv, no runs/
