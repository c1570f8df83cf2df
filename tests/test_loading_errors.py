"""Every bad input to loading and export: one `error:` line naming the problem, non-zero exit, nothing run."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import GOLDEN, assert_one_line_error, run_script

CASE = GOLDEN / "vit_mask"


def export(ckpt: Path, out: Path, *extra) -> "subprocess.CompletedProcess":  # noqa: F821
    return run_script("segmenter_pytorch2onnx.py", "-c", ckpt, "-o", out, *extra)


@pytest.fixture
def release(tmp_path) -> Path:
    """A writable copy of a released-format model folder; returns its checkpoint path."""
    folder = tmp_path / "release"
    shutil.copytree(CASE, folder)
    return folder / "checkpoint.pth"


def edit_state(ckpt: Path, edit) -> None:
    data = torch.load(ckpt, weights_only=True)
    edit(data["model"])
    torch.save(data, ckpt)


def test_missing_checkpoint(tmp_path):
    proc = export(tmp_path / "nowhere" / "checkpoint.pth", tmp_path / "m.onnx", "--variant", CASE / "variant.yml")
    assert_one_line_error(proc, "checkpoint not found", "nowhere")
    assert not (tmp_path / "m.onnx").exists()


def test_missing_variant(release, tmp_path):
    (release.parent / "variant.yml").unlink()
    assert_one_line_error(export(release, tmp_path / "m.onnx"), "variant.yml", "not found")


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_needing_arbitrary_unpickling_is_refused_unrun(release, tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"model": {"x": _RunsCode(marker)}, "n_cls": 19}, release)
    assert_one_line_error(export(release, tmp_path / "m.onnx"), "refused", "unpickling", str(release))
    assert not marker.exists()


def test_variant_with_python_object_apply_is_refused_unrun(release, tmp_path):
    marker = tmp_path / "code_ran"
    variant = release.parent / "variant.yml"
    variant.write_text(variant.read_text() + f'evil: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert_one_line_error(export(release, tmp_path / "m.onnx"), "refused YAML tag", "python/object/apply")
    assert not marker.exists()


def test_unknown_decoder(release, tmp_path):
    variant = release.parent / "variant.yml"
    variant.write_text(variant.read_text().replace("name: mask_transformer", "name: upernet"))
    assert_one_line_error(export(release, tmp_path / "m.onnx"), "unknown decoder 'upernet'")


def test_missing_key(release, tmp_path):
    edit_state(release, lambda sd: sd.pop("decoder.mask_norm.bias"))
    assert_one_line_error(export(release, tmp_path / "m.onnx"), "missing key 'decoder.mask_norm.bias'")


def test_unexpected_key(release, tmp_path):
    edit_state(release, lambda sd: sd.__setitem__("encoder.blocks.9.norm1.weight", torch.ones(64)))
    assert_one_line_error(export(release, tmp_path / "m.onnx"), "unexpected key 'encoder.blocks.9.norm1.weight'")


def test_misshapen_key(release, tmp_path):
    edit_state(release, lambda sd: sd.__setitem__("decoder.cls_emb", torch.zeros(1, 21, 64)))
    assert_one_line_error(export(release, tmp_path / "m.onnx"), "'decoder.cls_emb'", "(1, 21, 64)", "(1, 19, 64)")


def test_unused_classifier_heads_are_accepted(release, tmp_path):
    state = torch.load(release, weights_only=True)["model"]
    assert "encoder.head.weight" in state  # the released files carry it
    proc = export(release, tmp_path / "m.onnx")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_unwritable_output_path(release, tmp_path, where):
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    out = blocker / "m.onnx" if where == "under_a_file" else tmp_path
    assert_one_line_error(export(release, out), str(out))
    assert blocker.read_text() == "x"


def test_export_failing_tolerance_leaves_no_file(release, tmp_path):
    out = tmp_path / "m.onnx"
    proc = export(release, out, "--tolerance", "0")
    if proc.returncode == 0:  # bit-exact runtimes are possible; then force a real failure
        pytest.skip("ONNX Runtime matched PyTorch bit for bit")
    assert_one_line_error(proc, "differs from PyTorch", "file not written")
    assert not out.exists() and not list(tmp_path.glob(".m.onnx*"))
