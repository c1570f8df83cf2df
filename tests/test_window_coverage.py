"""Properties over image sizes, window sizes and strides: every pixel is covered, and both routes agree."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import put_cityscapes_image
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from segmenter.data.datasets.cityscapes import SPEC as CITYSCAPES
from segmenter.data.images import sample_census
from segmenter.data.plan import MAX_WINDOWS_PER_IMAGE, ImagePlan, View, WindowConfig
from segmenter.demo.checkpoints import write_random_checkpoint
from segmenter.engines.backends import open_engine
from segmenter.errors import SegmenterError
from segmenter.evaluation.evaluate import EngineRoute, evaluate_dataset
from segmenter.fileroute.aisbench import list_inputs, run_benchmark
from segmenter.fileroute.postprocess import run_postprocess
from segmenter.fileroute.preprocess import run_preprocess
from segmenter.model.export import export_onnx
from segmenter.model.loading import load_model


def covered(length: int, starts: list[int], window: int) -> np.ndarray:
    """Plainly: which of `length` positions lie in at least one [start, start + window)."""
    hit = np.zeros(length, bool)
    for s in starts:
        assert 0 <= s and s + window <= length, (s, window, length)
        hit[s:s + window] = True
    return hit


@settings(max_examples=400, deadline=None)
@given(h=st.integers(1, 5000), w=st.integers(1, 5000), image_size=st.integers(1, 600),
       window=st.integers(1, 300), stride_fraction=st.floats(0.01, 1.0), box_ratio=st.sampled_from([1, 2, 4, 8]),
       scale=st.sampled_from([0.5, 0.75, 1.0, 1.75]), flip=st.booleans())
def test_every_pixel_is_covered(h, w, image_size, window, stride_fraction, box_ratio, scale, flip):
    stride = max(1, int(window * stride_fraction))
    cfg = WindowConfig(image_size, window, stride, "vit", box_ratio, (View(scale, flip),))
    try:
        plan = ImagePlan.for_image("x.png", "x", "", "", (h, w), cfg)
    except SegmenterError as exc:  # refused, not attempted: a layout of more windows than any image needs
        assert f"more than {MAX_WINDOWS_PER_IMAGE} per image" in str(exc)
        assume(False)
    (layout,) = plan.views
    ch, cw = layout.canvas_hw
    assert min(layout.resized_hw) >= 1 and min(ch, cw) >= window
    assert len(set(layout.anchors)) == len(layout.anchors) >= 1
    tops = sorted({t for t, _ in layout.anchors})
    lefts = sorted({left for _, left in layout.anchors})
    assert len(layout.anchors) == len(tops) * len(lefts)  # a full grid: per-axis coverage is pixel coverage
    assert covered(ch, tops, window).all() and covered(cw, lefts, window).all()


SIZES = [(1, 1), (1, 2), (2, 1), (2, 300), (300, 2), (3, 1000), (7, 5), (64, 64), (65, 200), (33, 17), (500, 9)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coverage")
    model, variant = load_model(write_random_checkpoint(folder / "model", "tiny", seed=3, im_size=48))
    export_onnx(model, folder / "m.onnx", (64, 64), log=lambda _: None)
    return folder, variant


@pytest.mark.parametrize("stride", [64, 21, 1])
def test_file_and_streaming_routes_agree_on_any_size(tiny_model, tmp_path, stride):
    """From 1x1 to thin strips, with seeded random sizes besides: equal label maps of the original size."""
    folder, variant = tiny_model
    rng = np.random.default_rng(stride)
    sizes = SIZES + [tuple(int(v) for v in rng.integers(1, 400, 2)) for _ in range(4)]
    if stride == 1:
        sizes = [(1, 1), (2, 3), (5, 70)]  # stride 1: a window per pixel position, so only small canvases
    data = tmp_path / "data"
    for i, (h, w) in enumerate(sizes):
        put_cityscapes_image(data, "c", f"c_{i:06d}_000000", rng.integers(0, 255, (h, w, 3), np.uint8),
                             rng.integers(0, 19, (h, w)).astype(np.uint8))
    cfg = WindowConfig(48, 64, stride, variant.normalization)
    quiet = lambda *_: None  # noqa: E731
    samples = CITYSCAPES.samples(data)
    plans = run_preprocess(samples, tmp_path / "bins", tmp_path / "gt.txt", cfg, CITYSCAPES, workers=1, log=quiet)
    engine = open_engine(folder / "m.onnx", "cpu", "fp32", batch_size=8)
    run_benchmark(engine, inputs=list_inputs(str(tmp_path / "bins")), output_dir=tmp_path / "result",
                  batch_size=8, log=quiet)
    files, _ = run_postprocess(tmp_path / "result", tmp_path / "gt.txt", pred_dir=tmp_path / "pred_files", log=quiet)
    stream = evaluate_dataset(sample_census(samples, cfg).plans, CITYSCAPES, cfg, EngineRoute(engine, batch_size=8),
                              pred_dir=tmp_path / "pred_stream", log=quiet)
    assert (files.confusion.matrix == stream.confusion.matrix).all()
    for plan, (h, w) in zip(plans, sizes):
        a = cv2.imread(str(tmp_path / "pred_files" / "labelIds" / f"{plan.prefix}.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "pred_stream" / "labelIds" / f"{plan.prefix}.png"), cv2.IMREAD_UNCHANGED)
        assert a.shape == (h, w) and (a == b).all(), plan.name
    assert files.confusion.matrix.sum() == sum(h * w for h, w in sizes)  # every pixel scored once (no 255 here)

