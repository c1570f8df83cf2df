"""convert_om.sh (ATC calls) and perf.sh (throughput table and CSV)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from conftest import bash_script as bash

from segmenter.demo.checkpoints import write_random_checkpoint
from segmenter.demo.writers import write_split
from segmenter.model.loading import load_model


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from segmenter.model.export import export_onnx

    folder = tmp_path_factory.mktemp("shell")
    model, _ = load_model(write_random_checkpoint(folder, "tiny"))
    export_onnx(model, folder / "m.onnx", (64, 64), log=lambda _: None)
    return folder / "m.onnx"


def test_convert_om_without_atc(onnx_model, tmp_path):
    proc = bash("convert_om.sh", onnx_model, tmp_path / "m", "310P3", env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "atc not found" in proc.stderr


def test_convert_om_calls_atc_per_batch_size(onnx_model, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "atc").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n')
    (fake / "atc").chmod(0o755)
    proc = bash("convert_om.sh", onnx_model, tmp_path / "m", "310P3", 1, 8,
                env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2
    assert f"--output={tmp_path}/m_bs8" in calls[1] and "--input_shape=input:8,3,64,64" in calls[1]
    for flag in ("--framework=5", "--soc_version=Ascend310P3", "--optypelist_for_implmode=Gelu",
                 "--op_select_implmode=high_performance", "--input_format=NCHW", "--log=error"):
        assert flag in calls[0]


def test_perf_table_and_csv(onnx_model, tmp_path):
    proc = bash("perf.sh", onnx_model, "--batch-sizes", "1 3", "--loop", 3, "--csv", tmp_path / "perf.csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "perf.csv").open()))
    assert [r["batch_size"] for r in rows] == ["1", "3"]
    for r in rows:
        assert float(r["windows_per_s"]) > 0 and "onnxruntime-cpu fp32" in r["engine"]
        expected_ms = 1000 * int(r["batch_size"]) / float(r["windows_per_s"])
        assert float(r["ms_per_batch"]) == pytest.approx(expected_ms, rel=1e-2)
    assert "batch 3" in proc.stdout


def test_perf_missing_model(tmp_path):
    proc = bash("perf.sh", tmp_path / "none.onnx")
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_perf_projects_the_data_set_time(onnx_model, tmp_path):

    write_split(tmp_path / "data", "val", 2, (100, 200))
    variant = onnx_model.parent / "variant.yml"
    single = bash("perf.sh", onnx_model, "--cfg-path", variant, "--data-root", tmp_path / "data", "--batch-sizes", "2",
                  "--loop", 2, "--csv", tmp_path / "a.csv")
    multi = bash("perf.sh", onnx_model, "--cfg-path", variant, "--data-root", tmp_path / "data", "--batch-sizes", "2",
                 "--loop", 2, "--csv", tmp_path / "b.csv", "--views", "--multiscale")
    assert single.returncode == 0 and multi.returncode == 0, single.stderr + multi.stderr
    assert "3 windows per image, 6 in all for 2 images" in single.stdout  # 100x200 -> 64x128 at stride 32
    assert "over 12 views" in multi.stdout and "for the data set (180 windows)" in multi.stdout
