"""Model parity with the upstream implementation's logits (tests/data/golden) and the ONNX export."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import GOLDEN, GOLDEN_CASES, run_script

from segmenter.model.loading import load_model
from segmenter.model.network import set_fused_attention


def golden_inputs(case: str) -> list[tuple[np.ndarray, np.ndarray]]:
    data = np.load(GOLDEN / case / "golden.npz")
    return [(data[f"input{i}"], data[f"logits{i}"]) for i in range(10) if f"input{i}" in data]


def test_golden_cases_present():
    assert {"vit_mask", "deit_linear_resize"} <= set(GOLDEN_CASES)
    # the resize case really needs a resized position embedding
    model, variant = load_model(GOLDEN / "deit_linear_resize" / "checkpoint.pth")
    assert variant.model.distilled and variant.model.decoder == "linear"
    assert any(x.shape[2:] != tuple(variant.model.image_size) for x, _ in golden_inputs("deit_linear_resize"))


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "plain"])
@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_pytorch_matches_golden_logits(case, fused):
    model, _ = load_model(GOLDEN / case / "checkpoint.pth")
    set_fused_attention(model, fused)
    for x, ref in golden_inputs(case):
        with torch.no_grad():
            out = model(torch.from_numpy(x)).numpy()
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= 1e-4


def test_fused_and_plain_attention_agree(tiny_checkpoint):
    model, _ = load_model(tiny_checkpoint)
    x = torch.randn(2, 3, 80, 112)  # not a multiple of the patch: exercises padding and pos-embed resizing
    with torch.no_grad():
        set_fused_attention(model, True)
        fused = model(x)
        set_fused_attention(model, False)
        plain = model(x)
    assert fused.shape == (2, 19, 80, 112)
    assert torch.abs(fused - plain).max() <= 1e-5


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_onnx_matches_golden_at_other_batch_sizes(case, tmp_path):
    inputs = golden_inputs(case)
    size = inputs[0][0].shape[2:]
    onnx_path = tmp_path / "model.onnx"
    proc = run_script("segmenter_pytorch2onnx.py", "-c", GOLDEN / case / "checkpoint.pth", "-o", onnx_path,
                      "--input-size", *size)
    assert proc.returncode == 0, proc.stderr
    assert "max |ONNX Runtime - PyTorch|" in proc.stdout
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("input", "output")
    assert inp.shape[1:] == [3, *size] and isinstance(inp.shape[0], str)  # dynamic batch axis
    xs = np.concatenate([x for x, _ in inputs])
    refs = np.concatenate([r for _, r in inputs])
    for batch in sorted({1, len(xs), 4}):  # exported with batch 1 and checked at 2
        x = np.concatenate([xs] * (batch // len(xs) + 1))[:batch]
        ref = np.concatenate([refs] * (batch // len(xs) + 1))[:batch]
        got = session.run(None, {"input": x})[0]
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-3, batch


def test_random_checkpoint_cli_roundtrip(tmp_path):
    proc = run_script("tools/make_random_checkpoint.py", "--out-dir", tmp_path, "--size", "tiny",
                      "--decoder", "linear", "--image-size", "48", "--n-cls", "7")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "variant.yml").read_text()
    assert "!!python/tuple" in text and "distilled" not in text  # released layout: absent means false
    ckpt = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert {"model", "optimizer", "n_cls", "lr_scheduler", "epoch"} <= set(ckpt)
    assert "encoder.head.weight" in ckpt["model"]
    model, variant = load_model(tmp_path / "checkpoint.pth")
    assert not variant.model.distilled and variant.n_cls == 7 and variant.model.image_size == (48, 48)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 48, 48)).shape == (1, 7, 48, 48)


@pytest.mark.slow
def test_seg_large_cityscapes_shape_builds_and_exports(tmp_path):
    """Seg-L-Mask/16: D=1024, 24 layers, 16 heads, 768x768, 19 classes, from a released-format file."""
    ckpt_dir = tmp_path / "seg_large"
    proc = run_script("tools/make_random_checkpoint.py", "--out-dir", ckpt_dir, "--size", "L",
                      "--image-size", "768", "--n-cls", "19", "--im-size", "1024")
    assert proc.returncode == 0, proc.stderr
    onnx_path = tmp_path / "seg_large.onnx"
    proc = run_script("segmenter_pytorch2onnx.py", "-c", ckpt_dir / "checkpoint.pth", "-o", onnx_path)
    assert proc.returncode == 0, proc.stderr
    assert "D=1024, 24 layers, 19 classes" in proc.stdout
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 768, 768] and isinstance(dims[0], str)
    out_dims = [d.dim_value or d.dim_param for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims[1:] == [19, 768, 768]
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert n_params > 300e6  # ViT-L encoder + mask decoder


def test_decoder_names_match_builders():
    from segmenter.model.network import DECODERS
    from segmenter.model.variant import DECODER_NAMES

    assert set(DECODERS) == set(DECODER_NAMES)
