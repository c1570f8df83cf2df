"""Choosing engines by measurement, static int8 with NNCF, and the PyTorch engine, against fp32 references."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_script

import segmenter.engines.autotune as autotune
import segmenter.engines.quantize as quantize
from segmenter.demo.checkpoints import write_random_checkpoint
from segmenter.engines.backends import cpu_has_bf16, open_engine
from segmenter.engines.quantize import Calibration, fp16_ir, static_int8
from segmenter.errors import SegmenterError
from segmenter.model.export import export_onnx
from segmenter.model.loading import load_model


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeEngines:
    """Engines that take the table's seconds per window on a fake clock (and its making seconds when opened
    first), give fp32's classes except on the table's share of pixels, and count how many are alive."""

    def __init__(self, table: dict, making: dict | None = None) -> None:
        self.table, self.making, self.clock = table, making or {}, FakeClock()
        self.opened: list[tuple[str, str]] = []
        self.alive = self.most_alive = 0

    def __call__(self, device: str, precision: str):
        self.opened.append((device, precision))
        self.clock.now += self.making.pop((device, precision), 0.0) + 0.1  # made once, then opened in 0.1 s
        return FakeEngine(self, *self.table[(device, precision)])

    def preparation(self, device: str, precision: str, reference: float) -> tuple[float, str]:
        return self.making.get((device, precision), 0.0), ""

    def choose(self, cache: Path, run_windows: int, batch_size: int = 2, log=None, **kw) -> autotune.Choice:
        said = []
        choice = autotune.choose_engine("auto", "auto", self, np.zeros((2, 3, 8, 8), np.float32), batch_size,
                                        "model-a", cache, run_windows, self.preparation, calibration_ok=True,
                                        log=log or said.append, clock=self.clock, **kw)
        choice.said = said
        return choice


class FakeEngine:
    def __init__(self, engines: FakeEngines, seconds: float, wrong: float) -> None:
        self.engines, self.seconds, self.wrong = engines, seconds, wrong
        engines.alive += 1
        engines.most_alive = max(engines.most_alive, engines.alive)

    def __del__(self) -> None:
        self.engines.alive -= 1

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        self.engines.clock.now += self.seconds * len(windows)
        second = np.zeros(len(windows) * 32 * 32, np.float32)
        second[: round(self.wrong * second.size)] = 2  # class 1 wins there
        return np.stack([np.ones((len(windows), 32, 32), np.float32), second.reshape(-1, 32, 32)], axis=1)


@pytest.fixture
def two_engines(monkeypatch):
    monkeypatch.setattr(autotune, "available_devices", lambda: ["openvino", "cpu"])
    monkeypatch.setattr(autotune, "cpu_has_bf16", lambda: True)


# seconds per window and the share of pixels unlike fp32's; static int8 takes 300 s to make, dynamic int8 2 s
TIMES = {("openvino", "fp32"): (1.0, 0), ("cpu", "fp32"): (1.2, 0), ("openvino", "bf16"): (0.5, 0.001),
         ("openvino", "int8"): (0.3, 0.002), ("cpu", "int8"): (0.7, 0.0)}
MAKING = {("openvino", "int8"): 300.0, ("cpu", "int8"): 2.0, ("openvino", "bf16"): 1.0}
LONG, SHORT = 5000, 30


def names(choice) -> tuple[str, str]:
    return choice.device, choice.precision


def test_a_long_run_measures_every_candidate_that_can_win(two_engines, tmp_path):
    engines = FakeEngines(TIMES, dict(MAKING))
    choice = engines.choose(tmp_path, LONG)
    assert names(choice) == ("openvino", "int8")
    assert engines.opened[0] == ("openvino", "fp32")  # the reference first, then the cheapest to try
    assert ("openvino", "int8") in engines.opened and ("cpu", "fp32") not in engines.opened  # cannot beat fp32
    assert engines.most_alive == 1  # one engine at a time
    assert choice.engine is not None and choice.engine.seconds == 0.3  # the last opened is handed over
    assert "3.3x openvino fp32" in choice.explanation and "99.80 % of its labels" in choice.explanation


def test_a_short_run_skips_the_expensive_candidate_and_says_why(two_engines, tmp_path):
    engines = FakeEngines(TIMES, dict(MAKING))
    start = engines.clock.now
    choice = engines.choose(tmp_path, SHORT)
    assert names(choice) == ("openvino", "bf16") and ("openvino", "int8") not in engines.opened
    line = [part for part in choice.explanation.split("; ") if part.startswith("openvino int8")][0]
    assert "not measured (30 windows here" in line and "making it takes about 5 min" in line
    assert "give device openvino and precision int8 to use it anyway" in line
    run_at_fp32 = SHORT * TIMES[("openvino", "fp32")][0]
    assert engines.clock.now - start < run_at_fp32 + 5  # the probe costs about the run itself, not 5 minutes
    assert len(choice.explanation.splitlines()) <= 2


def test_a_later_long_run_upgrades_a_short_runs_choice(two_engines, tmp_path):
    engines = FakeEngines(TIMES, dict(MAKING))
    assert names(engines.choose(tmp_path, SHORT)) == ("openvino", "bf16")
    engines.opened.clear()
    again = engines.choose(tmp_path, SHORT)  # as short: from the cache, nothing opened
    assert names(again) == ("openvino", "bf16") and not engines.opened and "measured before" in again.explanation
    longer = engines.choose(tmp_path, LONG)  # longer: what the short run skipped, against fp32's labels again
    assert names(longer) == ("openvino", "int8")
    assert engines.opened == [("openvino", "fp32"), ("openvino", "int8")]
    engines.opened.clear()
    assert names(engines.choose(tmp_path, LONG)) == ("openvino", "int8") and not engines.opened
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert {"machine", "engines", "measured", "skipped", "run_windows"} <= set(record)


def test_a_faster_candidate_off_the_budget_is_named_not_chosen(two_engines, tmp_path):
    off = {**TIMES, ("openvino", "int8"): (0.3, 0.05)}  # 95 % of fp32's labels
    choice = FakeEngines(off).choose(tmp_path, LONG)
    assert names(choice) == ("openvino", "bf16")
    assert "openvino int8 0.3 s but 95.0" in choice.explanation and "under the 99 % budget" in choice.explanation
    assert "fastest" not in choice.explanation
    assert names(FakeEngines(off).choose(tmp_path / "b", LONG, budget=0.9)) == ("openvino", "int8")  # wider budget


def test_a_candidate_that_cannot_be_made_here_is_skipped(two_engines, tmp_path):
    engines = FakeEngines(TIMES)
    engines.preparation = lambda d, p, t: (100.0, "quantizing it needs about 9.0 GiB of memory, 2.0 GiB are "
                                                  "available") if p == "int8" and d == "openvino" else (0.0, "")
    choice = engines.choose(tmp_path, LONG)
    assert names(choice) == ("openvino", "bf16") and ("openvino", "int8") not in engines.opened
    assert "openvino int8 not measured (quantizing it needs about 9.0 GiB" in choice.explanation


def test_auto_measures_again_per_batch_size(two_engines, tmp_path):
    engines = FakeEngines(TIMES)
    engines.choose(tmp_path, LONG)
    first = len(engines.opened)
    engines.choose(tmp_path, LONG, batch_size=4)  # another batch size: measured again
    assert len(engines.opened) == 2 * first


DAMAGED_CHOICES = {
    "empty": "",
    "cut short": '{"device": "openvino", "precision": "in',
    "a JSON list": '["openvino", "int8"]',
    "a missing key": '{"device": "openvino", "precision": "int8", "measured": {}, "skipped": {}}',
    "an engine not installed": '{"device": "tensorrt", "precision": "fp16", "seconds_per_window": 0.1, '
                               '"measured": {}, "skipped": {}}',
    "a measurement without agreement": '{"device": "openvino", "precision": "int8", "seconds_per_window": 0.3, '
                                       '"measured": {"openvino int8": {"seconds_per_window": 0.3}}, "skipped": {}}',
    "slower than fp32": '{"device": "cpu", "precision": "fp32", "seconds_per_window": 2.0, "measured": '
                        '{"cpu fp32": {"seconds_per_window": 1.2, "agreement": 1}, "openvino fp32": '
                        '{"seconds_per_window": 1.0, "agreement": 1}}, "skipped": {}}',
    # entries of the wrong type
    "seconds as text": '{"device": "openvino", "precision": "int8", "seconds_per_window": "0.3", "measured": {}, '
                       '"skipped": {}}',
    "seconds as a bool": '{"device": "openvino", "precision": "int8", "seconds_per_window": true, "measured": {}, '
                         '"skipped": {}}',
    "seconds NaN": '{"device": "openvino", "precision": "int8", "seconds_per_window": NaN, "measured": {}, '
                   '"skipped": {}}',
    "negative seconds": '{"device": "openvino", "precision": "int8", "seconds_per_window": -1, "measured": {}, '
                        '"skipped": {}}',
    "a device as a number": '{"device": 3, "precision": "int8", "seconds_per_window": 0.3, "measured": {}, '
                            '"skipped": {}}',
    "measured as a list": '{"device": "openvino", "precision": "int8", "seconds_per_window": 0.3, "measured": [], '
                          '"skipped": {}}',
    "agreement above one": '{"device": "openvino", "precision": "int8", "seconds_per_window": 0.3, "measured": '
                           '{"openvino int8": {"seconds_per_window": 0.3, "agreement": 7}}, "skipped": {}}',
    "open seconds as text": '{"device": "openvino", "precision": "int8", "seconds_per_window": 0.3, "measured": '
                            '{"openvino int8": {"seconds_per_window": 0.3, "agreement": 1, "open_seconds": "x"}}, '
                            '"skipped": {}}',
    "a skipped reason as a number": '{"device": "openvino", "precision": "int8", "seconds_per_window": 0.3, '
                                    '"measured": {}, "skipped": {"cpu int8": 4}}',
}


@pytest.mark.parametrize("damage", DAMAGED_CHOICES)
def test_damaged_cached_choice_is_measured_again(two_engines, tmp_path, damage):
    """What a crash or an edit leaves in the choice cache is treated as absent: measured again, and said so."""
    engines = FakeEngines(TIMES)
    assert names(engines.choose(tmp_path, LONG)) == ("openvino", "int8")
    entry = next(tmp_path.glob("*.json"))
    entry.write_text(DAMAGED_CHOICES[damage])
    probed = len(engines.opened)
    chosen = engines.choose(tmp_path, LONG)
    assert names(chosen) == ("openvino", "int8") and len(engines.opened) == 2 * probed  # probed again
    assert any("measuring again" in line and str(entry) in line for line in chosen.said), chosen.said
    engines.opened.clear()
    assert names(engines.choose(tmp_path, LONG)) == ("openvino", "int8") and not engines.opened  # whole again


def test_explicit_choices_are_not_probed(two_engines, tmp_path):
    engines = FakeEngines(TIMES)
    choice = autotune.choose_engine("cpu", "fp32", engines, np.zeros((1, 3, 8, 8)), 1, "m", tmp_path)
    assert names(choice) == ("cpu", "fp32") and not engines.opened


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

    folder, ckpt, variant, windows, reference = tiny
    fp32 = TorchEngine(ckpt, variant, "cpu", "fp32")(np.stack(windows))
    assert fp32.dtype == np.float32 and np.abs(fp32 - reference).max() < 1e-3
    bf16 = TorchEngine(ckpt, variant, "cpu", "bf16")(np.stack(windows))
    assert np.mean(bf16.argmax(1) == reference.argmax(1)) > 0.9
    with pytest.raises(SegmenterError, match="runs a checkpoint"):
        TorchEngine(folder / "m.onnx", variant, "cpu")


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
    assert "auto: measuring openvino fp32" in proc.stdout, proc.stdout
    chosen = [line for line in proc.stdout.splitlines() if line.startswith("auto: ") and "measuring" not in line][0]
    assert chosen.split()[1] in ("cpu", "openvino") and " s/window" in chosen
    again = run_script("segmenter_eval.py", "--model", ckpt, "--data-root", tmp_path / "data", "--metrics-path",
                       tmp_path / "auto2.yaml", env={"SEGMENTER_CACHE_DIR": str(tmp_path)})
    assert "measured before on this machine" in again.stdout and "auto: measuring" not in again.stdout
    assert yaml.safe_load((tmp_path / "auto.yaml").read_text())["mean_iou"] == \
        yaml.safe_load((tmp_path / "auto2.yaml").read_text())["mean_iou"]


def test_calibration_takes_a_bounded_share_of_windows_spread_over_the_images(tmp_path):
    """About 8 windows of 768x768 pixels, one per image at least: what sets the cost of quantizing."""
    import cv2

    from segmenter.data.plan import SINGLE_SCALE, WindowConfig
    from segmenter.defaults import calibration_windows
    from segmenter.engines.runtime import calibration_from_images, image_windows

    assert calibration_windows(768, 8) == 8 and calibration_windows(768, 20) == 20
    assert calibration_windows(128, 8) == 288 and calibration_windows(16, 8) == 300
    paths = []
    for i in range(4):  # 64x256 at window 64, stride 64: 4 windows each, values telling image and window apart
        image = np.zeros((64, 256, 3), np.uint8)
        for k in range(4):
            image[:, 64 * k:64 * (k + 1)] = 40 * i + 10 * k
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), image)
    cfg = WindowConfig(64, 64, 64, "vit", box_ratio=4, views=SINGLE_SCALE)
    calibration = calibration_from_images(paths, cfg, images=4)
    windows = calibration.windows()
    assert len(windows) == calibration.count == 4 * 4  # 288 allowed, 16 there
    assert len({float(w.mean()) for w in windows}) == 16  # every window once
    fewer = image_windows(paths, cfg, 6)  # fewer than there are: spread, every image in
    means = sorted(float(w.mean()) for w in fewer)
    assert len(fewer) == 6 and len(set(means)) == 6
    own = [image_windows([path], cfg, 4) for path in paths]
    images = {i for w in fewer for i, theirs in enumerate(own) if any(np.array_equal(w, t) for t in theirs)}
    assert images == {0, 1, 2, 3}
