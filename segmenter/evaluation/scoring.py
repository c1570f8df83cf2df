"""From one image's window logits to its label map and its confusion counts: shared by every route.

The file route (window outputs read from disk), the streaming route (outputs from an engine) and
prediction all feed an ImageMerger window by window, then call score_image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.datasets import DatasetSpec
from ..data.plan import ImagePlan
from ..data.windows import WindowMerger, argmax_labels, resize_logits
from ..errors import SegmenterError
from ..files import FileDigest
from .metrics import ConfusionMatrix, iou_from_confusion, save_prediction_pngs


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 of (K, H, W) float32, in place."""
    logits -= logits.max(0, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(0, keepdims=True)
    return logits


class ImageMerger:
    """Takes an image's window logits in order k = 0, 1, ...; merges each view, then combines the views.

    A view's windows are summed on its canvas and divided by the per-pixel window count, resized
    bilinearly to the original size, turned into probabilities with a softmax and flipped back if the
    view was flipped; the image's probabilities are the mean over its views. With a single unflipped
    view the softmax is skipped: it does not change the argmax. Where the plan merges views as logits
    (plan.merge_hw, PaddleSeg's rule), each view's merged logits are resized to merge_hw and flipped back,
    their mean resized to the original size. Memory: one view's canvas and one (K, H, W) map at the
    original size.
    """

    def __init__(self, plan: ImagePlan, n_cls: int, window: int) -> None:
        self.plan, self.n_cls, self.window = plan, n_cls, window
        self.added = 0
        self._view = 0
        self._in_view = 0
        self._canvas: WindowMerger | None = None
        self._sum: np.ndarray | None = None  # (K, H, W): sum of view probabilities, or logits (see _logits)

    @property
    def complete(self) -> bool:
        return self.added == self.plan.n_windows

    @property
    def single_view(self) -> bool:
        return len(self.plan.views) == 1 and not self.plan.views[0].view.flip

    @property
    def _logits(self) -> bool:
        """Whether the sum holds logits (one unflipped view, or views merged as logits) rather than probabilities."""
        return self.single_view or self.plan.merge_hw is not None

    def add(self, k: int, logits: np.ndarray) -> None:
        """Add window k's (K, window, window) logits; windows must come in order."""
        if k != self.added:
            raise ValueError(f"window {k} of {self.plan.name} came before window {self.added}")
        layout = self.plan.views[self._view]
        if self._canvas is None:
            self._canvas = WindowMerger(self.n_cls, layout.canvas_hw, list(layout.anchors), self.window)
        self._canvas.add(self._in_view, logits)
        self.added += 1
        self._in_view += 1
        if self._canvas.complete:
            self._finish_view(layout.view.flip)

    def _finish_view(self, flip: bool) -> None:
        merge_hw = self.plan.merge_hw
        merged = resize_logits(self._canvas.mean(), merge_hw or self.plan.original_hw)
        self._canvas = None
        self._view += 1
        self._in_view = 0
        if self.single_view and merge_hw is None:
            self._sum = merged
            return
        values = np.array(merged, np.float32) if merge_hw else softmax(np.array(merged, np.float32))
        if flip:
            values = values[:, :, ::-1]
        if self._sum is None:
            self._sum = np.ascontiguousarray(values)
        else:
            self._sum += values
        if merge_hw and self._view == len(self.plan.views):  # the mean of the views' logits, at the original size
            self._sum = resize_logits(self._sum / len(self.plan.views), self.plan.original_hw)

    def probabilities(self) -> np.ndarray:
        """(K, H, W) float32 mean probabilities over the views, at the original size."""
        if not self.complete:
            raise ValueError(f"{self.plan.name}: {self.added} of {self.plan.n_windows} windows merged")
        if self._logits:
            return softmax(self._sum.copy())
        return self._sum / len(self.plan.views)

    def scores(self) -> np.ndarray:
        """(K, H, W) float32 at the original size: the merged logits of a single unflipped view (or of views merged
        as logits), the mean class probabilities of several."""
        if not self.complete:
            raise ValueError(f"{self.plan.name}: {self.added} of {self.plan.n_windows} windows merged")
        return self._sum if self._logits else self._sum / len(self.plan.views)

    def labels(self) -> np.ndarray:
        """(H, W) uint8 class indices at the original size; ties go to the lower class."""
        if not self.complete:
            raise ValueError(f"{self.plan.name}: {self.added} of {self.plan.n_windows} windows merged")
        return argmax_labels(self._sum)


@dataclass
class ImageScore:
    """One image's prediction and, where it has ground truth, its (K, K) confusion counts and the digest of the
    ground-truth file they were counted on."""

    plan: ImagePlan
    labels: np.ndarray | None
    confusion: np.ndarray | None
    gt_digest: FileDigest | None = None

    @property
    def labelled_pixels(self) -> int:
        return int(self.confusion.sum()) if self.confusion is not None else 0


def score_image(merger: ImageMerger, spec: DatasetSpec, gt_path: str | Path | None = None,
                pred_dir: Path | None = None) -> ImageScore:
    """Label map of a merged image; compared with its ground truth (read by the data set's rules) when given;
    prediction PNGs saved when asked."""
    labels = merger.labels()
    confusion = digest = None
    if gt_path:
        gt, digest = spec.load_labels(gt_path, merger.plan.original_hw)
        try:
            confusion = ConfusionMatrix.of_image(gt, labels, merger.n_cls)
        except ValueError as exc:
            raise SegmenterError(f"{gt_path}: {exc}") from None
    if pred_dir is not None:
        save_prediction_pngs(pred_dir, merger.plan.prefix, labels, spec)
    return ImageScore(merger.plan, labels, confusion, digest)


@dataclass(frozen=True)
class ImageResult:
    """What the report keeps of a scored image."""

    name: str
    prefix: str
    mean_iou: float  # over the classes in its ground truth or prediction; NaN without labelled pixels
    pixel_accuracy: float
    labelled: int


class ScoreBook:
    """The run's confusion matrix, a line per image, the predictions of its worst images, and unlabelled images.

    Predictions are kept only for the `keep_worst` worst images seen with one; images added by their counts
    alone (resumed from a journal, or from a Ray actor that sent no picture) may be among the worst at the
    end: `missing_pictures()` names them, and `add_picture` completes the gallery.
    """

    def __init__(self, n_cls: int, keep_worst: int = 6) -> None:
        self.confusion = ConfusionMatrix(n_cls)
        self.unlabelled: list[str] = []
        self.results: list[ImageResult] = []
        self.keep_worst = keep_worst
        self._by_prefix: dict[str, ImageResult] = {}
        self._pictures: dict[str, tuple[ImagePlan, np.ndarray]] = {}
        self.work = (0, 0)  # (images, windows) segmented by this run; the rest came from a journal

    @property
    def images(self) -> int:
        return len(self.results)

    def add(self, score: ImageScore) -> None:
        if score.confusion is not None:
            self.add_counts(score.plan.name, score.plan.prefix, score.confusion, score.plan, score.labels)

    def add_counts(self, name: str, prefix: str, confusion: np.ndarray, plan: ImagePlan | None = None,
                   labels: np.ndarray | None = None) -> None:
        """Add one image's (K, K) counts; its plan and labels, when given, may make it one of the worst shown."""
        self.confusion.matrix += confusion
        labelled = int(confusion.sum())
        if labelled == 0:
            self.unlabelled.append(name)
            miou = accuracy = float("nan")
        else:
            miou = float(np.nanmean(iou_from_confusion(confusion)))
            accuracy = float(np.trace(confusion) / labelled)
        result = ImageResult(name, prefix, miou, accuracy, labelled)
        self.results.append(result)
        self._by_prefix[prefix] = result
        if plan is not None and labels is not None:
            self.add_picture(plan, labels)

    @staticmethod
    def _rank(result: ImageResult) -> tuple[float, str]:
        return result.mean_iou, result.name  # worst first

    def add_picture(self, plan: ImagePlan, labels: np.ndarray) -> None:
        """Keep an image's prediction if it is among the worst so far (its counts must have been added)."""
        result = self._by_prefix.get(plan.prefix)
        if not self.keep_worst or result is None or not result.labelled:
            return
        self._pictures[plan.prefix] = (plan, labels)
        if len(self._pictures) > self.keep_worst:
            best = max(self._pictures, key=lambda p: self._rank(self._by_prefix[p]))
            del self._pictures[best]

    def _worst(self) -> list[ImageResult]:
        return sorted((r for r in self.results if r.labelled), key=self._rank)[:self.keep_worst]

    def missing_pictures(self) -> list[str]:
        """Prefixes of the worst images whose prediction is not kept."""
        return [r.prefix for r in self._worst() if r.prefix not in self._pictures]

    def worst_images(self) -> list[tuple[float, ImagePlan, np.ndarray]]:
        """(mIoU, plan, labels) of the worst images whose prediction is kept, worst first."""
        return [(r.mean_iou, *self._pictures[r.prefix]) for r in self._worst() if r.prefix in self._pictures]

    def check(self, log=print) -> ConfusionMatrix:
        """The confusion matrix, after saying which ground truths label nothing; none labelled is an error."""
        if self.unlabelled:
            names = ", ".join(self.unlabelled[:3]) + (" ..." if len(self.unlabelled) > 3 else "")
            if len(self.unlabelled) == self.images:
                raise SegmenterError(f"every pixel of every ground truth is ignored (255) in the {self.images} "
                                     f"images ({names}): the metrics are undefined; check the label files")
            log(f"warning: {len(self.unlabelled)} of {self.images} ground truths label no pixel (all 255): "
                f"{names}; they add nothing to the metrics")
        return self.confusion
