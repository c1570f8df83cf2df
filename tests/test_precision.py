"""Choosing engines by measurement, static int8 with NNCF, and the PyTorch engine, against fp32 references."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_script

import segmenter.engines.autotune as autotune
import segmenter.engines.quantize as quantize
from segmenter.engines.backends import cpu_has_bf16, open_engine
from segmenter.engines.quantize import Calibration, fp16_ir, static_int8
from segmenter.errors import SegmenterError
from segmenter.model.checkpoint import write_random_checkpoint
from segmenter.model.export import export_onnx
from segmenter.model.loading import load_model


class FakeEngine:
    def __init__(self, device: str, precision: str) -> None:
        self.device, self.precision = device, precision


def fake_probe(table: dict):
    """Stand-in for the timed probe: (seconds per window, classes) from a table, same classes as fp32 unless
    the table says what share of pixels differ."""
    def probe(engine, windows, batch_size):
        seconds, wrong = table[(engine.device, engine.precision)]
        classes = np.zeros((len(windows), 8, 8), np.int64)
        classes.reshape(-1)[: int(wrong * classes.size)] = 1
        return seconds, classes
    return probe


@pytest.fixture
def two_engines(monkeypatch):
    monkeypatch.setattr(autotune, "available_devices", lambda: ["openvino", "cpu"])
    monkeypatch.setattr(autotune, "cpu_has_bf16", lambda: True)
    opened = []

    def opener(device, precision):
        opened.append((device, precision))
        return FakeEngine(device, precision)
    return opener, opened


def choose(opener, tmp_path, table, monkeypatch, batch_size=2, **kw):
    monkeypatch.setattr(autotune, "_probe", fake_probe(table))
    return autotune.choose_engine("auto", "auto", opener, np.zeros((2, 3, 8, 8), np.float32), batch_size, "model-a",
                                  tmp_path, calibration_ok=True, log=lambda _: None, **kw)


TIMES = {("openvino", "fp32"): (1.0, 0), ("cpu", "fp32"): (1.2, 0), ("openvino", "bf16"): (0.5, 0.001),
         ("openvino", "int8"): (0.3, 0.002), ("cpu", "int8"): (0.4, 0.0)}


def test_auto_takes_the_fastest_that_keeps_the_predictions(two_engines, tmp_path, monkeypatch):
    opener, opened = two_engines
    assert choose(opener, tmp_path, TIMES, monkeypatch) == ("openvino", "int8")
    assert opened[0][1] == "fp32" and len(opened) == 5  # fp32 first: the reference
    slow_bf16 = {**TIMES, ("openvino", "bf16"): (1.5, 0.0), ("openvino", "int8"): (0.3, 0.05)}  # int8 off budget
    assert choose(opener, tmp_path / "b", slow_bf16, monkeypatch) == ("cpu", "int8")
    assert choose(opener, tmp_path / "b", slow_bf16, monkeypatch, budget=0.9) == ("openvino", "int8")  # wider budget
    no_int8 = {k: v for k, v in slow_bf16.items() if k[1] != "int8"}
    from dataclasses import replace

    table = autotune.DEVICES
    monkeypatch.setattr(autotune, "DEVICES", {"openvino": replace(table["openvino"], precisions=("fp32", "bf16")),
                                              "cpu": replace(table["cpu"], precisions=("fp32",))})
    assert choose(opener, tmp_path / "c", no_int8, monkeypatch) == ("openvino", "fp32")  # bf16 slower: not chosen


def test_auto_probes_once_per_machine_model_and_batch(two_engines, tmp_path, monkeypatch):
    opener, opened = two_engines
    first = choose(opener, tmp_path, TIMES, monkeypatch)
    probed = len(opened)
    assert choose(opener, tmp_path, {}, monkeypatch) == first and len(opened) == probed  # from the cache
    choose(opener, tmp_path, TIMES, monkeypatch, batch_size=4)  # another batch size: measured again
    assert len(opened) == 2 * probed
    record = yaml.safe_load(next(tmp_path.glob("*.json")).read_text())
    assert {"machine", "engines", "probed", "note"} <= set(record)


DAMAGED_CHOICES = {
    "empty": "",
    "cut short": '{"device": "openvino", "precision": "in',
    "a JSON list": '["openvino", "int8"]',
    "a missing key": '{"device": "openvino", "precision": "int8", "note": "x", "probed": []}',
    "an engine not installed": '{"device": "tensorrt", "precision": "fp16", "note": "x", "seconds_per_window": 0.1, '
                               '"probed": []}',
    "slower than fp32": '{"device": "cpu", "precision": "fp32", "note": "x", "seconds_per_window": 2.0, "probed": '
                        '[{"device": "cpu", "precision": "fp32", "seconds_per_window": 1.2}, {"device": "openvino", '
                        '"precision": "int8", "seconds_per_window": 3.0}, {"device": "openvino", "precision": "fp32", '
                        '"seconds_per_window": 1.0}]}',
}


@pytest.mark.parametrize("damage", DAMAGED_CHOICES)
def test_damaged_cached_choice_is_measured_again(two_engines, tmp_path, monkeypatch, damage):
    """What a crash or an edit leaves in the choice cache is treated as absent: measured again, and said so."""
    opener, opened = two_engines
    assert choose(opener, tmp_path, TIMES, monkeypatch) == ("openvino", "int8")
    entry = next(tmp_path.glob("*.json"))
    entry.write_text(DAMAGED_CHOICES[damage])
    probed, said = len(opened), []
    monkeypatch.setattr(autotune, "_probe", fake_probe(TIMES))
    chosen = autotune.choose_engine("auto", "auto", opener, np.zeros((2, 3, 8, 8), np.float32), 2, "model-a",
                                    tmp_path, calibration_ok=True, log=said.append)
    assert chosen == ("openvino", "int8") and len(opened) == 2 * probed  # probed again
    assert any("measuring again" in line and str(entry) in line for line in said), said
    assert choose(opener, tmp_path, {}, monkeypatch) == chosen  # the new entry is whole again


def test_explicit_choices_are_not_probed(two_engines, tmp_path):
    opener, opened = two_engines
    assert autotune.choose_engine("cpu", "fp32", opener, np.zeros((1, 3, 8, 8)), 1, "m", tmp_path) == ("cpu", "fp32")
    assert not opened


# ----------------------------------------------------------------------------- real engines


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("precision")
    ckpt = write_random_checkpoint(folder / "model", "tiny", seed=21)
    model, variant = load_model(ckpt)
    export_onnx(model, folder / "m.onnx", (64, 64), log=lambda _: None)
    rng = np.random.default_rng(0)
    smooth = lambda: np.repeat(np.repeat(rng.normal(size=(3, 8, 8)), 8, 1), 8, 2).astype(np.float32)  # noqa: E731
    windows = [smooth() for _ in range(12)]
    reference = open_engine(folder / "m.onnx", "cpu", "fp32")(np.stack(windows))
    return folder, ckpt, variant, windows, reference


def test_static_int8_on_openvino(tiny):
    folder, _, _, windows, reference = tiny
    calls = []
    calibration = Calibration("twelve windows", lambda: calls.append(1) or windows[:8])
    engine = open_engine(folder / "m.onnx", "openvino", "int8", batch_size=4, calibration=calibration)
    out = engine(np.stack(windows))
    assert out.shape == reference.shape and np.isfinite(out).all()
    assert np.mean(out.argmax(1) == reference.argmax(1)) > 0.95
    assert np.abs(out - reference).mean() < 0.1
    ir = static_int8(folder / "m.onnx", calibration)
    assert ir.suffix == ".xml" and ir.with_suffix(".bin").is_file() and len(calls) == 1  # made once, then cached
    import openvino as ov

    types = {op.get_type_name() for op in ov.Core().read_model(str(ir)).get_ops()}
    assert "FakeQuantize" in types  # quantized for real
    with pytest.raises(SegmenterError, match="calibration"):
        open_engine(folder / "m.onnx", "openvino", "int8")


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bfloat16 instructions")
def test_openvino_bf16_reads_fp16_weights(tiny, tmp_path, monkeypatch):
    import openvino as ov

    folder, _, _, windows, reference = tiny
    out = open_engine(folder / "m.onnx", "openvino", "bf16", batch_size=4)(np.stack(windows))
    ir = fp16_ir(folder / "m.onnx", log=lambda _: None)
    assert ir.parent == folder and ir.name.startswith("m.fp16-") and ir.suffix == ".xml"
    assert ir.with_suffix(".bin").stat().st_size < (folder / "m.onnx").stat().st_size
    weights = {op.get_output_element_type(0).get_type_name() for op in ov.Core().read_model(str(ir)).get_ops()
               if op.get_type_name() == "Constant" and op.get_output_size() and op.shape and len(op.shape) >= 2}
    assert "f16" in weights and "f32" not in weights  # matrices stored in half precision
    assert np.mean(out.argmax(1) == reference.argmax(1)) > 0.95 and np.abs(out - reference).mean() < 0.1
    (tmp_path / "m.onnx").write_bytes((folder / "m.onnx").read_bytes())

    def unwritable(model, path, compress_to_fp16=True):
        raise SegmenterError(f"{path}: cannot write the converted model here (Permission denied)")
    monkeypatch.setattr(quantize, "save_ir", unwritable)
    said = []  # a folder it cannot write to: the fp32 model as it is, with a warning
    assert fp16_ir(tmp_path / "m.onnx", log=said.append) == tmp_path / "m.onnx" and "cannot write" in said[-1]


def test_torch_engine_equals_onnxruntime(tiny):
    from segmenter.engines.torch_engine import TorchEngine

    _, ckpt, variant, windows, reference = tiny
    fp32 = TorchEngine(ckpt, variant, "cpu", "fp32")(np.stack(windows))
    assert fp32.dtype == np.float32 and np.abs(fp32 - reference).max() < 1e-3
    bf16 = TorchEngine(ckpt, variant, "cpu", "bf16")(np.stack(windows))
    assert np.mean(bf16.argmax(1) == reference.argmax(1)) > 0.9
    with pytest.raises(SegmenterError, match="runs a checkpoint"):
        TorchEngine(Path(ckpt).with_suffix(".onnx"), variant, "cpu")


def test_eval_and_infer_with_static_int8(tiny, tmp_path):
    folder, ckpt, _, _, _ = tiny
    assert run_script("tools/make_dataset.py", "--data-root", tmp_path / "data", "--n-images", 3, "--size", 80,
                      160).returncode == 0
    proc = run_script("segmenter_eval.py", "--model", ckpt, "--data-root", tmp_path / "data", "--metrics-path",
                      tmp_path / "int8.yaml", "--device", "openvino", "--precision", "int8", "--calibration", 2)
    assert proc.returncode == 0, proc.stderr
    assert "static int8 on" in proc.stdout and "openvino-cpu int8" in proc.stdout
    fp32 = run_script("segmenter_eval.py", "--model", ckpt, "--data-root", tmp_path / "data", "--metrics-path",
                      tmp_path / "fp32.yaml", "--device", "openvino", "--precision", "fp32")
    assert fp32.returncode == 0
    assert yaml.safe_load((tmp_path / "int8.yaml").read_text())["mean_iou"] == pytest.approx(
        yaml.safe_load((tmp_path / "fp32.yaml").read_text())["mean_iou"], abs=1.5)
    bins = tmp_path / "bins"
    assert run_script("segmenter_preprocess.py", "--cfg-path", folder / "model" / "variant.yml", "--data-root",
                      tmp_path / "data", "--bin-dir", bins, "--gt-path", tmp_path / "gt.txt").returncode == 0
    proc = run_script("segmenter_infer.py", "--model", folder / "m.onnx", "--input", bins, "--output",
                      tmp_path / "out", "--output_dirname", "int8", "--device", "openvino", "--precision", "int8")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out" / "int8").glob("*.bin"))) == len(list(bins.glob("*.bin")))


def test_auto_on_real_engines(tiny, tmp_path, monkeypatch):
    """The probe on the installed engines: a choice among them, printed, that keeps fp32's predictions."""
    folder, ckpt, variant, windows, _ = tiny
    monkeypatch.setenv("SEGMENTER_CACHE_DIR", str(tmp_path))
    assert run_script("tools/make_dataset.py", "--data-root", tmp_path / "data", "--n-images", 2, "--size", 80,
                      160).returncode == 0
    proc = run_script("segmenter_eval.py", "--model", ckpt, "--data-root", tmp_path / "data", "--metrics-path",
                      tmp_path / "auto.yaml", env={"SEGMENTER_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "auto: probing" in proc.stdout and "of pixels as fp32" in proc.stdout
    chosen = [line for line in proc.stdout.splitlines() if line.startswith("auto: ") and "probing" not in line][0]
    assert chosen.split()[1] in ("cpu", "openvino") and (not cpu_has_bf16() or "bf16" in proc.stdout)
    again = run_script("segmenter_eval.py", "--model", ckpt, "--data-root", tmp_path / "data", "--metrics-path",
                       tmp_path / "auto2.yaml", env={"SEGMENTER_CACHE_DIR": str(tmp_path)})
    assert "measured before on this machine" in again.stdout and "probing" not in again.stdout
