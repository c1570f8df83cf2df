"""Confusion matrix, IoU metrics (upstream conventions), metric files and prediction PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from ..data.datasets import IGNORE_INDEX, DatasetSpec
from ..data.images import write_image
from ..errors import SegmenterError
from ..files import atomic_write


class ConfusionMatrix:
    """(K, K) pixel counts, rows = ground truth, columns = prediction; ground truth 255 is skipped."""

    def __init__(self, n_cls: int, matrix: np.ndarray | None = None) -> None:
        self.n_cls = n_cls
        self.matrix = np.zeros((n_cls, n_cls), np.int64) if matrix is None else np.asarray(matrix, np.int64)

    @staticmethod
    def of_image(gt: np.ndarray, pred: np.ndarray, n_cls: int) -> np.ndarray:
        """(K, K) counts of one image; ValueError when the ground truth holds a class >= K."""
        valid = gt != IGNORE_INDEX
        g = gt[valid].astype(np.int64)
        if g.size and g.max() >= n_cls:
            raise ValueError(f"ground truth holds class {int(g.max())} but the model has {n_cls} classes")
        return np.bincount(g * n_cls + pred[valid], minlength=n_cls ** 2).reshape(n_cls, n_cls)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        self.matrix += self.of_image(gt, pred, self.n_cls)

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if other.n_cls != self.n_cls:
            raise ValueError(f"cannot add a {other.n_cls}-class confusion matrix to a {self.n_cls}-class one")
        self.matrix += other.matrix
        return self

    def save(self, path: str | Path) -> None:
        """As .npy (int64, K x K), written atomically."""
        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, self.matrix)
        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> ConfusionMatrix:
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise SegmenterError(f"{path}: not a saved confusion matrix ({exc})") from None
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.dtype.kind not in "iu" \
                or (matrix < 0).any():
            raise SegmenterError(f"{path}: expected a square matrix of non-negative counts, got {matrix.dtype} "
                                 f"{matrix.shape}")
        return cls(matrix.shape[0], matrix)


def iou_from_confusion(matrix: np.ndarray) -> np.ndarray:
    """Per-class TP / (TP + FP + FN); NaN where the class is absent from ground truth and prediction."""
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def category_iou(matrix: np.ndarray, categories: dict[str, tuple[int, ...]]) -> dict[str, float]:
    """Category IoU (Cityscapes): the class confusion matrix summed into category blocks."""
    groups = list(categories.values())
    cat = np.array([[matrix[np.ix_(a, b)].sum() for b in groups] for a in groups])
    return dict(zip(categories, iou_from_confusion(cat)))


def _percent(value: float) -> float:
    return round(float(value) * 100, 2)


# Publishers' own definitions, recorded beside the usual ones for the formats that name them (formats/ extra_metrics):
# PaddleSeg's mIoU counts a class absent from both prediction and ground truth as IoU 0 (utils/metrics.mean_iou)
EXTRA_METRICS = {"paddleseg_mean_iou": lambda iou: float(np.nan_to_num(iou, nan=0.0).mean())}


def compute_scores(matrix: np.ndarray, spec: DatasetSpec, inference: str = "single_scale",
                   extra: tuple[str, ...] = ()) -> dict:
    """The guide's metric keys (percent, 2 decimals), per-class IoU by name, category IoU where the data set has
    categories, and the `extra` metrics named (EXTRA_METRICS); at least one labelled pixel is needed."""
    if matrix.sum() == 0:
        raise SegmenterError("no labelled pixel in any ground truth: the metrics are undefined")
    if matrix.shape[0] != spec.n_cls:
        raise SegmenterError(f"{matrix.shape[0]} classes scored, but {spec.title} has {spec.n_cls}")
    tp = np.diag(matrix).astype(np.float64)
    iou = iou_from_confusion(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(matrix.sum(1) > 0, tp / matrix.sum(1), np.nan)
    scores = {
        "mean_iou": _percent(np.nanmean(iou)),
        "pixel_accuracy": _percent(tp.sum() / matrix.sum()),
        "mean_accuracy": _percent(np.nanmean(acc)),
        "cat_iou": [_percent(v) for v in iou],
        "inference": inference,
        "dataset": spec.name,
        "per_class_iou": {name: _percent(v) for name, v in zip(spec.classes, iou)},
    }
    if spec.categories:
        cats = category_iou(matrix, spec.categories)
        scores["cat_iou_categories"] = {k: _percent(v) for k, v in cats.items()}
        scores["mean_iou_categories"] = _percent(np.nanmean(list(cats.values())))
    for name in extra:
        scores[name] = _percent(EXTRA_METRICS[name](iou))
    return scores


def format_report(matrix: np.ndarray, spec: DatasetSpec, inference: str = "single_scale") -> str:
    """Per-class IoU / accuracy table with class names, the summary, and category IoU where it applies."""
    iou = iou_from_confusion(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(matrix.sum(1) > 0, np.diag(matrix) / matrix.sum(1), np.nan)
    width = max(16, max(len(c) for c in spec.classes) + 2)
    lines = [f"{'class':<{width}}{'IoU %':>8}{'Acc %':>8}{'pixels':>12}"]
    for name, i, a, n in zip(spec.classes, iou, acc, matrix.sum(1)):
        lines.append(f"{name:<{width}}{i * 100:>8.2f}{a * 100:>8.2f}{n:>12d}")
    scores = compute_scores(matrix, spec, inference)
    lines.append(f"{spec.title}, {inference.replace('_', '-')}: mIoU {scores['mean_iou']:.2f}   pixel accuracy "
                 f"{scores['pixel_accuracy']:.2f}   mean accuracy {scores['mean_accuracy']:.2f}")
    if spec.categories:
        lines.append("category IoU: " + "  ".join(f"{k} {v:.2f}" for k, v in scores["cat_iou_categories"].items())
                     + f"   mean {scores['mean_iou_categories']:.2f}")
    return "\n".join(lines)


def write_metrics(path: str | Path, matrix: np.ndarray, spec: DatasetSpec, inference: str = "single_scale",
                  extra: tuple[str, ...] = (), run: dict | None = None) -> dict:
    """Write the metrics YAML atomically, with `run`, the record of what produced them (evaluation/provenance.py),
    as its `run:` block after the metrics; returns the scores."""
    scores = compute_scores(matrix, spec, inference, extra)
    doc = {**scores, **({"run": run} if run else {})}
    atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(doc, sort_keys=False)))
    return scores


def save_prediction_pngs(pred_dir: str | Path, prefix: str, labels: np.ndarray, spec: DatasetSpec) -> None:
    """Write `labels/<prefix>.png` (train ids), `color/<prefix>.png` (the palette) and, where the data set has
    them (Cityscapes), `labelIds/<prefix>.png`: the ids its official evaluator reads."""
    pred_dir = Path(pred_dir)
    images = {"labels": labels, "color": spec.colourize(labels)}
    if spec.label_ids:
        images["labelIds"] = spec.to_label_ids(labels)
    for sub, image in images.items():
        write_image(pred_dir / sub / f"{prefix}.png", image)
