"""The guide's postprocess, streamed: per image, merge its window outputs, predict, score."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data import ImagePlan, read_ground_truth
from .errors import SegmenterError
from .metrics import ConfusionMatrix, save_prediction_pngs
from .preprocess import read_layout
from .windows import WindowMerger, predict_from_windows


def output_files(result_dir: Path, plan: ImagePlan, fmt: str) -> list[Path]:
    """ais_bench names the first output of input `<stem>_<k>.bin` as `<stem>_<k>_0.<fmt>`."""
    return [result_dir / f"{plan.stem}_{k}_0.{fmt}" for k in range(len(plan.anchors))]


def detect_format(result_dir: Path, plans: list[ImagePlan]) -> str:
    if not result_dir.is_dir():
        raise SegmenterError(f"{result_dir}: result folder not found")
    for fmt in ("bin", "npy"):
        if (result_dir / f"{plans[0].stem}_0_0.{fmt}").is_file():
            return fmt
    for plan in plans:
        if not any(result_dir.glob(f"{plan.stem}_*_0.*")):
            raise SegmenterError(f"{result_dir}: no outputs for image {plan.name} (expected {plan.stem}_0_0.bin ...)")
    raise SegmenterError(f"{result_dir / (plans[0].stem + '_0_0.bin')}: output missing")


def check_outputs(result_dir: Path, plans: list[ImagePlan], fmt: str, n_cls: int, window: int) -> None:
    """Before any metric: every image has every window output, each of the right size."""
    expected = n_cls * window * window * 4
    for plan in plans:
        files = output_files(result_dir, plan, fmt)
        present = [f.is_file() for f in files]
        if not any(present):
            raise SegmenterError(f"{result_dir}: no outputs for image {plan.name} (expected {files[0].name} ...)")
        if not all(present):
            missing = files[present.index(False)]
            raise SegmenterError(f"{missing}: output missing ({len(files)} windows expected for {plan.name})")
        if fmt == "bin":
            for f in files:
                size = f.stat().st_size
                if size != expected:
                    per_class = window * window * 4
                    hint = (f"{size // per_class} classes instead of {n_cls}" if size % per_class == 0
                            else "truncated or not float32")
                    raise SegmenterError(f"{f}: {size} bytes, expected {expected} "
                                         f"(float32 {n_cls}x{window}x{window}): {hint}")


def read_output(path: Path, n_cls: int, window: int) -> np.ndarray:
    """(K, window, window) float32 logits of one window output file; NaN or wrong shape is an error."""
    try:
        if path.suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            data = np.fromfile(path, np.float32)
    except (OSError, ValueError) as exc:
        raise SegmenterError(f"{path}: cannot be read ({exc})") from None
    if data.size != n_cls * window * window:
        shape = data.shape if path.suffix == ".npy" else (data.size,)
        raise SegmenterError(f"{path}: holds {shape} values, expected {n_cls}x{window}x{window} "
                             f"(class count {n_cls} from the manifest)")
    data = data.reshape(n_cls, window, window).astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise SegmenterError(f"{path}: contains NaN or infinite values")
    return data


def run_postprocess(result_dir: Path, gt_path: Path, manifest: Path | None = None,
                    pred_dir: Path | None = None) -> ConfusionMatrix:
    """Confusion matrix over every image of the gt file; checks everything before scoring anything."""
    meta, plans = read_layout(gt_path, manifest)
    n_cls, window = meta["n_cls"], meta["window_size"]
    fmt = detect_format(result_dir, plans)
    check_outputs(result_dir, plans, fmt, n_cls, window)
    confusion = ConfusionMatrix(n_cls)
    for plan in tqdm(plans, desc="postprocess", unit="img", delay=0.5):
        gt = read_ground_truth(Path(plan.gt_path), plan.original_hw)
        merger = WindowMerger(n_cls, plan.canvas_hw, plan.anchors, window)
        for k, path in enumerate(output_files(result_dir, plan, fmt)):
            merger.add(k, read_output(path, n_cls, window))
        labels = predict_from_windows(merger, plan.original_hw)
        try:
            confusion.update(gt, labels)
        except ValueError as exc:
            raise SegmenterError(f"{plan.gt_path}: {exc}") from None
        if pred_dir is not None:
            save_prediction_pngs(pred_dir, plan.stem, labels, n_cls)
    return confusion
