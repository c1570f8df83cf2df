"""The guide's postprocess, streamed: per image, merge its window outputs, predict, score.

Before anything is scored, the result folder is checked against the layout: each image has exactly
its windows' outputs (no window missing, none beyond its count), each of the right size and type,
and, where the inference summary records it, from the same window layout.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ..data.arrays import check_window_file, read_window_file
from ..data.datasets import dataset_spec
from ..errors import SegmenterError
from ..evaluation.evaluate import FilesRoute, evaluate_dataset
from ..evaluation.scoring import ScoreBook
from ..files import refuse_overwrite
from .manifest import Layout, read_layout

OUTPUT_NAME = re.compile(r"^(?P<prefix>.+)_(?P<k>\d+)_0\.(?P<fmt>bin|npy)$")  # <prefix>_<k>_<output 0>.<fmt>


def scan_outputs(result_dir: Path) -> dict[str, dict[int, Path]]:
    """The first-output files of a result folder, by window prefix and window index."""
    if not result_dir.is_dir():
        raise SegmenterError(f"{result_dir}: result folder not found")
    found: dict[str, dict[int, Path]] = {}
    with os.scandir(result_dir) as entries:
        for entry in entries:
            match = OUTPUT_NAME.match(entry.name)
            if not match:
                continue
            windows = found.setdefault(match["prefix"], {})
            k = int(match["k"])
            if k in windows:
                raise SegmenterError(f"{result_dir}: both {windows[k].name} and {entry.name} hold window {k} of "
                                     f"'{match['prefix']}'; keep one format")
            windows[k] = Path(entry.path)
    return found


def read_summary(path: Path) -> dict | None:
    """An inference summary (ais_bench's or segmenter_infer.py's), or None where there is none or it is unreadable."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def check_summary(result_dir: Path, layout: Layout) -> None:
    """Outputs made from the windows of another preprocess run are refused where the summary tells."""
    summary = result_dir.parent / f"{result_dir.name}_summary.json"
    recorded = (read_summary(summary) or {}).get("layout_fingerprint")
    if not isinstance(recorded, str):
        return
    if recorded and recorded != layout.fingerprint:
        raise SegmenterError(f"{summary}: the outputs were inferred from windows of another layout (fingerprint "
                             f"{recorded}, the manifest's is {layout.fingerprint}): another stride, window size or "
                             "image set; run inference on this run's bin folder")


def _bin_size_hint(size: int, n_cls: int, window: int) -> str:
    expected, per_class = n_cls * window * window * 4, window * window * 4
    if size == 2 * expected:
        return "twice the size of float32: float64 values?"
    if 2 * size == expected:
        return "half the size of float32: float16 values?"
    if size % per_class == 0:
        return f"{size // per_class} classes instead of {n_cls}"
    return "truncated or not float32"


def check_outputs(result_dir: Path, layout: Layout, log=print) -> list[list[Path]]:
    """Each image's output files in window order, after checking presence, extras, sizes and types."""
    found = scan_outputs(result_dir)
    n_cls, window = layout.n_cls, layout.cfg.window_size
    what = f"class count {n_cls} from the manifest"
    files_per_image = []
    for plan in layout.plans:
        windows = found.get(plan.prefix, {})
        if not windows:
            raise SegmenterError(f"{result_dir}: no outputs for image {plan.name} (expected {plan.prefix}_0_0.bin "
                                 f"... {plan.prefix}_{plan.n_windows - 1}_0.bin)")
        extra = sorted(k for k in windows if k >= plan.n_windows)
        if extra:
            raise SegmenterError(f"{windows[extra[0]]}: window {extra[0]} of {plan.name}, whose layout has "
                                 f"{plan.n_windows} windows: the outputs come from another preprocess run (other "
                                 "stride, window or image size); run inference on this run's windows")
        missing = [k for k in range(plan.n_windows) if k not in windows]
        if missing:
            raise SegmenterError(f"{result_dir / f'{plan.prefix}_{missing[0]}_0.bin'}: output missing "
                                 f"({plan.n_windows} windows expected for {plan.name})")
        files = [windows[k] for k in range(plan.n_windows)]
        for f, hw in zip(files, window_shapes(plan)):
            check_window_file(f, (n_cls, *hw), what, lambda size: _bin_size_hint(size, n_cls, window))
        files_per_image.append(files)
    known = {plan.prefix for plan in layout.plans}
    others = [prefix for prefix in found if prefix not in known]
    if others:
        log(f"note: {result_dir} also holds outputs of {len(others)} images not in the gt file "
              f"(e.g. {others[0]}); they are not scored")
    return files_per_image


def window_shapes(plan) -> list[tuple[int, int]]:
    """(h, w) of each window of an image, in window order."""
    return [view.window_hw for view in plan.views for _ in view.anchors]


def read_output(path: Path, n_cls: int, window: int | tuple[int, int]) -> np.ndarray:
    """(K, h, w) float32 logits of one window output file (h, w: the window, or its smaller shape); NaN or a wrong
    shape is an error."""
    h, w = (window, window) if isinstance(window, int) else window
    data = read_window_file(path, (n_cls, h, w), f"class count {n_cls}")[0]
    if not np.isfinite(data).all():
        raise SegmenterError(f"{path}: contains NaN or infinite values")
    return data


def run_postprocess(result_dir: Path, gt_path: Path, manifest: Path | None = None, pred_dir: Path | None = None,
                    report: bool = False, log=print, outputs: dict | None = None) -> tuple[ScoreBook, Layout]:
    """Scores of every image of the gt file, and the layout it was read with; checks everything before scoring
    anything (`outputs`, the run's output paths, against every ground truth and image the gt file lists). With
    `report`, the worst images' predictions are kept for it."""
    layout = read_layout(gt_path, manifest, log)
    refuse_overwrite(outputs or {}, {"ground truth": [p.gt_path for p in layout.plans],
                                     "images": [p.image_path for p in layout.plans if p.image_path]})
    try:
        check_summary(result_dir, layout)
        files = check_outputs(result_dir, layout, log)
    except SegmenterError as exc:
        if layout.source is None:  # the guessed layout is the likelier culprit
            raise SegmenterError(f"{exc} (no manifest beside {gt_path.name}, so the guide's fixed layout was "
                                 "assumed; pass the manifest segmenter_preprocess.py wrote)") from None
        raise
    route = FilesRoute({plan.prefix: list(zip(paths, window_shapes(plan))) for plan, paths in zip(layout.plans, files)},
                       lambda path, hw: read_output(path, layout.n_cls, hw))
    book = evaluate_dataset(layout.plans, dataset_spec(layout.dataset), layout.cfg, route, pred_dir, report, log=log)
    return book, layout
