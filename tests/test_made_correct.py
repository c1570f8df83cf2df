"""What the checks made correct rather than refused, each compared with the result on clean data (the bad-input
catalogue's companion; shared parts in catalogue.py)."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from catalogue import (
    STEM,
    edit_variant,
    evaluate,
    gt_png,
    post,
    prep,
    scores,
)
from conftest import assert_one_line_error, bash_script, plain_miou, put_cityscapes_image, run_script

from segmenter.data.datasets.cityscapes import LABEL_IDS as CITYSCAPES_LABEL_IDS


def test_edited_gt_file_paths_are_used(work):
    """The gt file is the contract: its ground-truth paths are the ones scored."""
    assert post(work).returncode == 0
    clean = scores(work / "metrics.yaml")
    moved = work / "moved_gt.png"
    label = cv2.imread(str(gt_png(work)), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(moved), np.where(label == 255, 255, (label + 1) % 19).astype(np.uint8))
    text = (work / "gt_file.txt").read_text()
    (work / "gt_file.txt").write_text(text.replace(str(gt_png(work).resolve()), str(moved)))
    proc = post(work)
    assert proc.returncode == 0 and "using the gt file's" in proc.stdout
    edited = scores(work / "metrics.yaml")
    shutil.copy(moved, gt_png(work))  # the same labels at the manifest's path give the same metrics
    (work / "gt_file.txt").write_text(text)
    assert post(work).returncode == 0
    assert edited == scores(work / "metrics.yaml") != clean


def test_one_unlabelled_ground_truth_is_named(work):
    cv2.imwrite(str(gt_png(work)), np.full((80, 160), 255, np.uint8))
    proc = post(work)
    assert proc.returncode == 0
    assert f"1 of 3 ground truths label no pixel (all 255): {STEM}.png" in proc.stdout
    assert "RuntimeWarning" not in proc.stderr


def test_variant_without_resize_size_says_which_default(work):
    edit_variant(work, lambda d: [d.pop("inference_kwargs"), d["dataset_kwargs"].pop("image_size")])
    proc = prep(work, "--window-stride", 64)
    assert proc.returncode == 0, proc.stderr
    assert "images resized with S = 1024, the upstream evaluation's for Cityscapes" in proc.stdout
    assert "resized to fit 2048x1024" in proc.stdout


def test_variant_without_window_keys_says_which_default(work):
    edit_variant(work, lambda d: [d["inference_kwargs"].pop("window_size"), d["dataset_kwargs"].pop("crop_size")])
    proc = prep(work)
    assert proc.returncode == 0, proc.stderr
    assert "note: variant.yml has no inference_kwargs.window_size or dataset_kwargs.crop_size: windows of 64" \
        in proc.stdout


def test_extreme_aspect_ratio_warns_before_writing(work):
    data = work / "data"
    shutil.rmtree(data)
    rng = np.random.default_rng(0)
    put_cityscapes_image(data, "strip", "strip_000000_000000", rng.integers(0, 255, (8, 3000, 3), np.uint8),
                         np.zeros((8, 3000), np.uint8))
    proc = prep(work)
    assert proc.returncode == 0, proc.stderr
    assert "(8x3000) needs 191 windows (9.0 MiB of input files)" in proc.stdout


def test_same_stem_in_two_cities(tmp_path, done):
    """Images whose names share the part before the first dot get their own prefixes; both routes agree."""
    rng = np.random.default_rng(5)
    data = tmp_path / "data"
    for city, hw in (("aachen", (70, 150)), ("bonn", (90, 120))):
        put_cityscapes_image(data, city, "x_000000_000000", rng.integers(0, 255, (*hw, 3), np.uint8),
                             rng.integers(0, 19, hw).astype(np.uint8))
    put_cityscapes_image(data, "bonn", "x_000000_000000_leftImg8bit.v2", rng.integers(0, 255, (60, 60, 3), np.uint8),
                         rng.integers(0, 19, (60, 60)).astype(np.uint8))
    steps = [("segmenter_preprocess.py", "--cfg-path", done / "model" / "variant.yml", "--data-root", data,
              "--bin-dir", tmp_path / "bins", "--gt-path", tmp_path / "gt.txt"),
             ("segmenter_infer.py", "--model", done / "model.onnx", "--input", tmp_path / "bins", "--output",
              tmp_path / "result", "--output_dirname", "bs1"),
             ("segmenter_postprocess.py", "--result-dir", tmp_path / "result" / "bs1", "--gt-path", tmp_path / "gt.txt",
              "--metrics-path", tmp_path / "files.yaml", "--pred-dir", tmp_path / "pred_files"),
             ("segmenter_eval.py", "--model", done / "model.onnx", "--cfg-path", done / "model" / "variant.yml",
              "--data-root", data, "--metrics-path", tmp_path / "stream.yaml", "--pred-dir", tmp_path / "pred_stream",
              "--device", "cpu", "--precision", "fp32")]
    for step in steps:
        proc = run_script(*step)
        assert proc.returncode == 0, proc.stderr
    prefixes = [i["prefix"] for i in json.loads((tmp_path / "gt.json").read_text())["images"]]
    stem = "x_000000_000000_leftImg8bit"  # what ais_bench keeps of all three names
    assert sorted(prefixes) == [stem, f"{stem}-2", f"{stem}-3"]
    pngs = sorted(p.name for p in (tmp_path / "pred_files" / "labelIds").iterdir())
    assert pngs == sorted(f"{p}.png" for p in prefixes)
    for name in pngs:
        assert (tmp_path / "pred_files" / "labelIds" / name).read_bytes() == \
            (tmp_path / "pred_stream" / "labelIds" / name).read_bytes()
    assert scores(tmp_path / "files.yaml") == scores(tmp_path / "stream.yaml")
    # each image scored once: the metric equals a plain one over the three saved predictions
    lut = np.full(256, 255, np.uint8)
    lut[list(CITYSCAPES_LABEL_IDS)] = np.arange(19)
    manifest = json.loads((tmp_path / "gt.json").read_text())["images"]
    gts = [cv2.imread(i["gt_path"], cv2.IMREAD_UNCHANGED) for i in manifest]
    preds = [lut[cv2.imread(str(tmp_path / "pred_files" / "labelIds" / f"{i['prefix']}.png"), cv2.IMREAD_UNCHANGED)]
             for i in manifest]
    assert scores(tmp_path / "files.yaml")["mean_iou"] == pytest.approx(plain_miou(gts, preds, 19), abs=0.006)


def test_non_utf8_path(tmp_path, done):
    """A data root whose name holds a byte that is not UTF-8: read through Python, never a crash."""
    root = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    shutil.copytree(done / "data", root / "data")
    proc = run_script("segmenter_eval.py", "--model", done / "model.onnx", "--cfg-path", done / "model" / "variant.yml",
                      "--data-root", root / "data", "--metrics-path", root / "m.yaml", "--pred-dir", root / "pred",
                      "--device", "cpu", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert len(list((root / "pred" / "labelIds").iterdir())) == 3
    proc = run_script("segmenter_preprocess.py", "--cfg-path", done / "model" / "variant.yml", "--data-root",
                      root / "data", "--bin-dir", root / "bins", "--gt-path", root / "gt.txt")
    assert proc.returncode == 0, proc.stderr
    next((root / "data").rglob("*_leftImg8bit.png")).write_bytes(b"not a png")
    proc = run_script("segmenter_preprocess.py", "--cfg-path", done / "model" / "variant.yml", "--data-root",
                      root / "data", "--bin-dir", root / "bins2", "--gt-path", root / "gt2.txt")
    assert_one_line_error(proc, "caf\\udce9", "cannot be decoded as an image")


def test_checkpoint_export_is_cached_not_leaked(tmp_path, done):
    """A run from checkpoint.pth exports into the cache once; a killed writer's temporary file is removed."""
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    orphan = cache / "onnx" / ".model-0123.onnx.999999999.abcd.tmp"  # pid 999999999 runs nowhere
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half an export")
    runs = [run_script("segmenter_eval.py", "--model", done / "model" / "checkpoint.pth", "--data-root", done / "data",
                       "--device", "cpu", "--precision", "fp32", "--metrics-path", tmp_path / f"{tag}.yaml",
                       env={"SEGMENTER_CACHE_DIR": str(cache), "TMPDIR": str(tmp)}) for tag in "ab"]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    assert "exporting" in runs[0].stdout and "using the export" in runs[1].stdout
    assert not orphan.exists()
    assert len(list((cache / "onnx").glob("*.onnx"))) == 1
    assert not list(tmp.rglob("*.onnx"))  # no export left in the temporary folder
    assert scores(tmp_path / "a.yaml") == scores(tmp_path / "b.yaml")


def test_perf_csv_mode_and_venv(done, tmp_path):
    old = os.umask(0o022)
    try:
        proc = bash_script("perf.sh", done / "model.onnx", "--batch-sizes", "1", "--loop", 2, "--csv",
                           tmp_path / "p.csv", env={"PYTHON": ""})  # finds .venv by itself
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {tmp_path / 'p.csv'}" in proc.stdout
    assert stat.S_IMODE((tmp_path / "p.csv").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["p.csv"]




# ----------------------------------------------------------------------------- caches and journals: made correct


def resign(line: str, edit) -> str:
    """A journal line edited as a careful forger would: its checksum recomputed."""
    from segmenter.evaluation.journal import _signed

    doc = json.loads(line)
    doc.pop("check")
    edit(doc)
    return _signed(doc)


JOURNAL_DAMAGE = {
    "counts_times_ten": lambda line: resign(line, lambda d: d.update(counts=[10 * c for c in d["counts"]],
                                                                     labelled=10 * d["labelled"])),
    "negative_count": lambda line: resign(line, lambda d: d["counts"].__setitem__(0, -d["counts"][0])),
    "cell_out_of_range": lambda line: resign(line, lambda d: d["cells"].__setitem__(-1, 19 * 19)),
    "lists_of_another_length": lambda line: resign(line, lambda d: d["counts"].pop()),
    "unsigned_edit": lambda line: line.replace('"counts": [', '"counts": [1'),
}


@pytest.mark.parametrize("damage", JOURNAL_DAMAGE)
def test_damaged_journal_line_is_named_and_its_image_scored_again(work, damage):
    assert evaluate(work, "--resume").returncode == 0
    fresh = scores(work / "metrics.yaml")
    journal = work / "metrics.yaml.journal.jsonl"
    lines = journal.read_text().splitlines()
    lines[2] = JOURNAL_DAMAGE[damage](lines[2])
    journal.write_text("\n".join(lines) + "\n")
    (work / "metrics.yaml").unlink()
    proc = evaluate(work, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert f"{journal}:3:" in proc.stdout and "scored again" in proc.stdout
    assert "2 images already scored" in proc.stdout
    assert scores(work / "metrics.yaml") == fresh


def test_resume_that_adds_predictions_and_a_report_completes_them(work):
    assert evaluate(work, "--resume", "--pred-dir", work / "fresh_pred", "--report", work / "fresh_report"
                    ).returncode == 0
    journal = work / "metrics.yaml.journal.jsonl"
    journal.unlink()
    assert evaluate(work, "--resume").returncode == 0
    fresh = scores(work / "metrics.yaml")
    (work / "metrics.yaml").unlink()
    proc = evaluate(work, "--resume", "--pred-dir", work / "pred", "--report", work / "report")
    assert proc.returncode == 0, proc.stderr
    assert "3 images scored before have no predictions" in proc.stdout
    assert scores(work / "metrics.yaml") == fresh
    for png in (work / "fresh_pred" / "labels").iterdir():
        assert (work / "pred" / "labels" / png.name).read_bytes() == png.read_bytes()
    page = (work / "report" / "report.html").read_text()
    assert page.count("<h3>") == 3 and page.count("<h3>") == (work / "fresh_report" / "report.html"
                                                              ).read_text().count("<h3>")
    (work / "metrics.yaml").unlink()  # a report added to a complete run: its worst images from the saved labels
    proc = evaluate(work, "--resume", "--pred-dir", work / "pred", "--report", work / "report2")
    assert proc.returncode == 0 and "segmenting again" not in proc.stdout
    assert (work / "report2" / "report.html").read_text().count("<h3>") == 3
    (work / "metrics.yaml").unlink()  # without the predictions: the worst images segmented again
    proc = evaluate(work, "--resume", "--report", work / "report3")
    assert proc.returncode == 0 and "segmenting again 3 of the worst images" in proc.stdout
    assert (work / "report3" / "report.html").read_text().count("<h3>") == 3


def same_size_and_time(replaced: Path, new_content: Path) -> None:
    """Replace a file by another of the same size, keeping its modification time (as cp -p or rsync -a do)."""
    st = replaced.stat()
    assert new_content.stat().st_size == st.st_size
    shutil.copyfile(new_content, replaced)
    os.utime(replaced, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_converted_copies_follow_the_model_content(work, tmp_path):
    """A model replaced by another with the same size and time gets its own int8 copy and export, not the old."""
    other = tmp_path / "other"
    assert run_script("tools/make_random_checkpoint.py", "--out-dir", other, "--im-size", 48, "--seed", 7
                      ).returncode == 0
    assert run_script("segmenter_pytorch2onnx.py", "-c", other / "checkpoint.pth", "-o", other / "model.onnx"
                      ).returncode == 0
    int8 = ("--device", "cpu", "--precision", "int8")
    cache = {"SEGMENTER_CACHE_DIR": str(tmp_path / "cache")}

    def run(model: Path, tag: str, *extra) -> dict:
        proc = run_script("segmenter_eval.py", "--model", model, "--cfg-path", work / "model" / "variant.yml",
                          "--data-root", work / "data", "--metrics-path", tmp_path / f"{tag}.yaml", *extra, env=cache)
        assert proc.returncode == 0, proc.stderr
        return scores(tmp_path / f"{tag}.yaml")

    expected = run(other / "model.onnx", "other_int8", *int8), run(other / "checkpoint.pth", "other_ckpt", *int8)
    assert run(work / "model.onnx", "first_int8", *int8) != expected[0]
    assert run(work / "model" / "checkpoint.pth", "first_ckpt", *int8) != expected[1]
    same_size_and_time(work / "model.onnx", other / "model.onnx")
    same_size_and_time(work / "model" / "checkpoint.pth", other / "checkpoint.pth")
    assert run(work / "model.onnx", "second_int8", *int8) == expected[0]
    assert run(work / "model" / "checkpoint.pth", "second_ckpt", *int8) == expected[1]
    assert len(list(work.glob("model.int8-*.onnx"))) == 1  # the copy of the replaced content removed


def test_cut_short_converted_copy_is_made_again(work, tmp_path):
    args = ("--device", "openvino", "--precision", "int8", "--calibration", 2)
    proc = evaluate(work, *args)
    assert proc.returncode == 0, proc.stderr
    before = scores(work / "metrics.yaml")
    weights = next(work.glob("model.int8-*.bin"))
    weights.write_bytes(weights.read_bytes()[:100])
    proc = evaluate(work, *args)
    assert proc.returncode == 0, proc.stderr
    assert f"note: {weights.with_suffix('.xml')} has {weights.name} of 100 bytes" in proc.stdout
    assert "making it again" in proc.stdout and scores(work / "metrics.yaml") == before


def test_predict_output_inside_the_input_folder_is_not_read_back(work):
    images = work / "data" / "cityscapes" / "leftImg8bit" / "val"
    args = ("segmenter_predict.py", "--model", work / "model.onnx", "--cfg-path", work / "model" / "variant.yml",
            "--input", images, "--output-dir", images / "predicted", "--device", "cpu", "--precision", "fp32")
    for _ in range(2):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
        assert "\n3 inputs ->" in proc.stdout
    assert len(list((images / "predicted").rglob("*_labels.png"))) == 3


def test_quoted_glob_follows_a_link_loop_once(work):
    images = work / "data" / "cityscapes" / "leftImg8bit" / "val"
    (images / "loop").symlink_to(".")
    proc = run_script("segmenter_predict.py", "--model", work / "model.onnx", "--cfg-path",
                      work / "model" / "variant.yml", "--input", f"{images}/**/*.png", "--output-dir", work / "out",
                      "--device", "cpu", "--precision", "fp32", "--save", "labels")
    assert proc.returncode == 0, proc.stderr
    assert "\n3 inputs ->" in proc.stdout
    assert len(list((work / "out").rglob("*_labels.png"))) == 3
