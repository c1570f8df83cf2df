"""Confusion matrix, IoU metrics (upstream conventions), Cityscapes classes, and metric files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from .data import IGNORE_INDEX
from .errors import SegmenterError
from .files import atomic_write

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
CITYSCAPES_COLORS = (  # RGB, the official palette
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
# Cityscapes categories over train ids
CITYSCAPES_CATEGORIES = {
    "flat": (0, 1), "construction": (2, 3, 4), "object": (5, 6, 7), "nature": (8, 9), "sky": (10,),
    "human": (11, 12), "vehicle": (13, 14, 15, 16, 17, 18),
}


def class_names(n_cls: int) -> list[str]:
    return list(CITYSCAPES_CLASSES) if n_cls == len(CITYSCAPES_CLASSES) else [f"class {i}" for i in range(n_cls)]


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


def category_iou(matrix: np.ndarray) -> dict[str, float]:
    """Cityscapes category IoU: the class confusion matrix summed into 7 category blocks."""
    groups = list(CITYSCAPES_CATEGORIES.values())
    cat = np.array([[matrix[np.ix_(a, b)].sum() for b in groups] for a in groups])
    return dict(zip(CITYSCAPES_CATEGORIES, iou_from_confusion(cat)))


def compute_scores(matrix: np.ndarray) -> dict:
    """The guide's metric keys, in percent rounded to 2 decimals; at least one labelled pixel is needed."""
    if matrix.sum() == 0:
        raise SegmenterError("no labelled pixel in any ground truth: the metrics are undefined")
    tp = np.diag(matrix).astype(np.float64)
    iou = iou_from_confusion(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(matrix.sum(1) > 0, tp / matrix.sum(1), np.nan)
    labelled = matrix.sum()
    return {
        "mean_iou": round(float(np.nanmean(iou)) * 100, 2),
        "pixel_accuracy": round(float(tp.sum() / labelled) * 100, 2),
        "mean_accuracy": round(float(np.nanmean(acc)) * 100, 2),
        "cat_iou": [round(float(v) * 100, 2) for v in iou],
        "inference": "single_scale",
    }


def format_report(matrix: np.ndarray) -> str:
    """Per-class IoU / accuracy table with class names, the summary, and Cityscapes category IoU."""
    n_cls = matrix.shape[0]
    iou = iou_from_confusion(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(matrix.sum(1) > 0, np.diag(matrix) / matrix.sum(1), np.nan)
    lines = [f"{'class':<16}{'IoU %':>8}{'Acc %':>8}{'pixels':>12}"]
    for name, i, a, n in zip(class_names(n_cls), iou, acc, matrix.sum(1)):
        lines.append(f"{name:<16}{i * 100:>8.2f}{a * 100:>8.2f}{n:>12d}")
    scores = compute_scores(matrix)
    lines.append(f"mIoU {scores['mean_iou']:.2f}   pixel accuracy {scores['pixel_accuracy']:.2f}   "
                 f"mean accuracy {scores['mean_accuracy']:.2f}")
    if n_cls == len(CITYSCAPES_CLASSES):
        cats = category_iou(matrix)
        lines.append("category IoU: " + "  ".join(f"{k} {v * 100:.2f}" for k, v in cats.items())
                     + f"   mean {np.nanmean(list(cats.values())) * 100:.2f}")
    return "\n".join(lines)


def write_metrics(path: str | Path, matrix: np.ndarray) -> dict:
    """Write the guide's YAML (plus Cityscapes category IoU when it applies); returns the scores."""
    scores = compute_scores(matrix)
    out = dict(scores)
    if matrix.shape[0] == len(CITYSCAPES_CLASSES):
        cats = category_iou(matrix)
        out["cat_iou_categories"] = {k: round(float(v) * 100, 2) for k, v in cats.items()}
        out["mean_iou_categories"] = round(float(np.nanmean(list(cats.values()))) * 100, 2)
    atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(out, sort_keys=False)))
    return scores


def colourize(labels: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 BGR in the official palette (repeated beyond 19 classes)."""
    palette = np.asarray(CITYSCAPES_COLORS, np.uint8)[:, ::-1]
    return palette[np.arange(256) % len(palette)][labels]


def save_prediction_pngs(pred_dir: str | Path, stem: str, labels: np.ndarray, n_cls: int) -> None:
    """Write `labelIds/<stem>.png` and `color/<stem>.png` for an (H, W) uint8 train-id map.

    labelIds holds Cityscapes label ids (what the official evaluator reads) for a 19-class model and the
    class index otherwise; color uses the official palette.
    """
    pred_dir = Path(pred_dir)
    label_lut = np.arange(256, dtype=np.uint8)
    if n_cls == len(CITYSCAPES_CLASSES):
        label_lut[:n_cls] = CITYSCAPES_LABEL_IDS
    for sub, image in (("labelIds", label_lut[labels]), ("color", colourize(labels))):
        (pred_dir / sub).mkdir(parents=True, exist_ok=True)
        atomic_write(pred_dir / sub / f"{stem}.png", lambda tmp, im=image: write_png(tmp, im))


def write_png(path: str | Path, image: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    Path(path).write_bytes(data.tobytes())
