"""Every figure says what produced it: the provenance record on each route (streaming, Ray, resume, the file route,
predict, perf.sh), checked against the files and the run (the sha256 is the file's, the precision the one that
ran, the windows the census's, the time positive), and the report naming the model, data set, engine and
precision in a real browser."""
from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT, bash_script, run_script

from segmenter.data.images import sample_census
from segmenter.files import file_sha256
from segmenter.system import cpu_model

PARTS = ("model", "data", "evaluation", "engine", "run", "machine", "versions")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Data, a tiny released-format model, its export, and the census of the data's windows."""
    root = tmp_path_factory.mktemp("provenance")
    for args in (("tools/make_dataset.py", "--data-root", root / "data", "--n-images", 3, "--size", 80, 160),
                 ("tools/make_random_checkpoint.py", "--out-dir", root / "model", "--im-size", 48),
                 ("segmenter_pytorch2onnx.py", "-c", root / "model" / "checkpoint.pth", "-o", root / "m.onnx")):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
    from segmenter.api import open_model

    model = open_model(root / "m.onnx", root / "model" / "variant.yml", device="cpu", precision="fp32",
                       log=lambda *_: None)
    windows = sample_census(model.spec.samples(root / "data"), model.cfg).windows
    return root, windows


def check_common(record: dict, model_file, windows: int, precision: str = "fp32", device: str = "cpu") -> None:
    assert record["model"]["sha256"] == file_sha256(model_file) and record["model"]["file"] == model_file.name
    assert record["model"]["architecture"].startswith("Seg-") and "19 classes" in record["model"]["architecture"]
    assert (record["engine"]["device"], record["engine"]["precision"]) == (device, precision)
    assert record["machine"]["cpu"] == cpu_model()[0] and record["machine"]["cores"] >= 1
    assert record["versions"]["python"] and record["versions"]["segmenter"]
    assert record["versions"]["onnxruntime"] and record["versions"]["numpy"]
    assert record["evaluation"]["window"] == 64 and record["evaluation"]["inference"] == "single_scale"
    assert windows > 0


def test_the_streaming_route_records_what_produced_its_metrics(chain):
    root, windows = chain
    proc = run_script("segmenter_eval.py", "--model", root / "m.onnx", "--cfg-path", root / "model" / "variant.yml",
                      "--data-root", root / "data", "--metrics-path", root / "stream.yaml", "--device", "cpu",
                      "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load((root / "stream.yaml").read_text())
    assert list(doc)[:3] == ["mean_iou", "pixel_accuracy", "mean_accuracy"]  # the guide's keys first, unchanged
    record = doc["run"]
    assert list(record) == list(PARTS)
    check_common(record, root / "m.onnx", windows)
    assert record["model"]["format"] == "onnx" and record["model"]["description_format"] == "upstream"
    assert record["engine"]["chosen_by"] == "given"
    assert record["data"]["images"] == 3 and record["data"]["dataset"] == "Cityscapes"
    run = record["run"]
    assert run["windows"] == windows and run["images"] == 3 and run["wall_seconds"] > 0
    assert run["windows_per_second"] == pytest.approx(windows / run["wall_seconds"], rel=0.01)
    assert "segmenter_eval.py" in run["command"] and "--precision fp32" in run["command"]
    last = proc.stdout.strip().splitlines()[-1]
    assert f"{windows} windows in" in last and "windows/s" in last and "cpu fp32" in last
    assert "mIoU" in proc.stdout.strip().splitlines()[-2] and "at cpu fp32" in proc.stdout.strip().splitlines()[-2]


def test_auto_records_what_it_measured_and_the_headline_says_the_precision(chain, tmp_path):
    root, windows = chain
    proc = run_script("segmenter_eval.py", "--model", root / "model" / "checkpoint.pth", "--data-root", root / "data",
                      "--metrics-path", tmp_path / "auto.yaml", env={"SEGMENTER_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    record = yaml.safe_load((tmp_path / "auto.yaml").read_text())["run"]
    engine = record["engine"]
    assert engine["chosen_by"] == "auto" and f"{engine['device']} {engine['precision']}" in engine["auto"]
    assert record["model"]["format"] == "upstream"
    assert record["model"]["sha256"] == file_sha256(root / "model" / "checkpoint.pth")
    headline = proc.stdout.strip().splitlines()[-2]
    assert f"at {engine['device']} {engine['precision']}" in headline
    assert ("give --precision fp32 for fp32's figure" in headline) == (engine["precision"] != "fp32")


def test_ray_and_resume_keep_the_first_runs_record_and_every_runs_time(chain, tmp_path):
    root, windows = chain
    args = ("segmenter_eval.py", "--model", root / "m.onnx", "--cfg-path", root / "model" / "variant.yml",
            "--data-root", root / "data", "--metrics-path", tmp_path / "m.yaml", "--device", "cpu", "--precision",
            "fp32", "--resume")
    proc = run_script(*args, "--ray")
    assert proc.returncode == 0, proc.stderr
    first = yaml.safe_load((tmp_path / "m.yaml").read_text())["run"]
    check_common(first, root / "m.onnx", windows)
    assert first["run"]["route"] == "ray" and first["run"]["windows"] == windows
    (tmp_path / "m.yaml").unlink()
    proc = run_script(*args)  # every image is in the journal: resumed, nothing left to segment
    assert proc.returncode == 0, proc.stderr
    second = yaml.safe_load((tmp_path / "m.yaml").read_text())["run"]
    assert second["model"] == first["model"] and second["engine"] == first["engine"]
    sessions = second["run"]["sessions"]
    assert len(sessions) == 2 and sessions[0]["started"] == first["run"]["started"]
    assert sessions[0]["images"] == 3 and sessions[1]["images"] == 0 and second["run"]["windows"] == 0


def test_the_file_route_records_the_inference_and_the_description(chain):
    root, windows = chain
    for args in (("segmenter_preprocess.py", "--cfg-path", root / "model" / "variant.yml", "--data-root",
                  root / "data", "--bin-dir", root / "bins", "--gt-path", root / "gt.txt"),
                 ("segmenter_infer.py", "--model", root / "m.onnx", "--input", root / "bins", "--output",
                  root / "result", "--output_dirname", "bs2", "--batchsize", 2),
                 ("segmenter_postprocess.py", "--result-dir", root / "result" / "bs2", "--gt-path", root / "gt.txt",
                  "--metrics-path", root / "files.yaml", "--report", root / "report")):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
    record = yaml.safe_load((root / "files.yaml").read_text())["run"]
    check_common(record, root / "m.onnx", windows)
    assert record["engine"]["batch_size"] == 2
    assert record["model"]["description_format"] == "upstream" and record["model"]["config"].endswith("variant.yml")
    assert record["run"]["inference"]["windows"] == windows and record["run"]["postprocess"]["wall_seconds"] > 0
    manifest = yaml.safe_load((root / "gt.json").read_text())
    assert record["data"]["fingerprint"] == manifest["fingerprint"] and record["data"]["images"] == 3


def test_the_report_names_model_data_engine_and_precision_in_a_browser(chain, tmp_path):
    root, _ = chain
    page = root / "report" / "report.html"
    if not page.exists():
        pytest.skip("made by test_the_file_route_records_the_inference_and_the_description")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing: .ci/run installs it")
        pytest.skip("no chromium here (apt-get install chromium)")
    from test_report import CHROMIUM_FLAGS

    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    record = yaml.safe_load((root / "files.yaml").read_text())["run"]
    title = dom.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert record["model"]["architecture"].split(",")[0] in title and "Cityscapes" in title
    assert "How this was measured" in dom and record["model"]["sha256"] in dom
    assert "cpu fp32" in dom and record["versions"]["onnxruntime"] in dom and record["machine"]["cpu"] in dom


def test_predict_writes_run_yaml_beside_its_outputs(chain, tmp_path):
    root, _ = chain
    images = sorted((root / "data").rglob("*_leftImg8bit.png"))[:2]
    proc = run_script("segmenter_predict.py", "--model", root / "m.onnx", "--cfg-path", root / "model" / "variant.yml",
                      "--input", *images, "--output-dir", tmp_path / "out", "--device", "cpu", "--precision", "fp32",
                      "--save", "labels")
    assert proc.returncode == 0, proc.stderr
    record = yaml.safe_load((tmp_path / "out" / "run.yaml").read_text())
    from segmenter.api import open_model

    model = open_model(root / "m.onnx", root / "model" / "variant.yml", device="cpu", precision="fp32",
                       log=lambda *_: None)
    check_common(record, root / "m.onnx", 1)
    from segmenter.data.images import take_census

    assert record["run"]["windows"] == take_census(images, model.cfg).windows and record["run"]["images"] == 2
    assert record["run"]["wall_seconds"] > 0 and "windows/s" in proc.stdout.strip().splitlines()[-1]


def test_perf_csv_rows_say_what_produced_them(chain, tmp_path):
    root, _ = chain
    proc = bash_script("perf.sh", root / "m.onnx", "--batch-sizes", "1 2", "--loop", 1, "--csv", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert [r["batch_size"] for r in rows] == ["1", "2"]
    for row in rows:
        assert row["model_sha256"] == file_sha256(root / "m.onnx") and row["model"] == "m.onnx"
        assert (row["device"], row["precision"]) == ("cpu", "fp32") and row["cpu"] == cpu_model()[0]
        assert "onnxruntime" in row["versions"] and row["measured"].endswith("Z")


def test_every_console_command_is_installed_and_the_scripts_stay():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) >= {"segmenter-eval", "segmenter-predict", "segmenter-preprocess", "segmenter-postprocess",
                            "segmenter-pytorch2onnx", "segmenter-infer", "segmenter-convert"}
    for name, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(__import__(module, fromlist=[function]), function)), name
        script = ROOT / f"{name.replace('-', '_')}.py"
        if name != "segmenter-convert":
            assert script.is_file() and f"from {module} import {function}" in script.read_text(), name
