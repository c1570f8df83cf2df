"""Pictures a person can read: titled panels side by side with a legend of the classes shown (matplotlib).

Panels sit at exact pixel positions, so a picture's panel boxes are known: `render_panels` returns
them with the picture.
"""
from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import cv2
import numpy as np

from ..data.datasets import IGNORE_INDEX, DatasetSpec

MARGIN, TITLE, LEGEND_ROW, LEGEND_COLUMN = 10, 30, 22, 190  # pixels
WRONG_RGB, IGNORED_RGB = (230, 25, 75), (128, 128, 128)


@dataclass(frozen=True)
class Box:
    """A panel's place in a picture, in pixels."""

    top: int
    left: int
    height: int
    width: int


def classes_present(labels: np.ndarray, spec: DatasetSpec, min_share: float = 0.0005) -> list[int]:
    """Train ids covering at least min_share of the (not ignored) pixels, most frequent first."""
    counts = np.bincount(labels.ravel(), minlength=256)[:spec.n_cls]
    total = max(int(counts.sum()), 1)
    return [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] / total >= min_share and counts[c] > 0]


def blend(bgr: np.ndarray, labels: np.ndarray, spec: DatasetSpec, alpha: float = 0.55) -> np.ndarray:
    """The image with the prediction's colours over it: (H, W, 3) uint8 BGR."""
    return cv2.addWeighted(bgr, 1 - alpha, spec.colourize(labels), alpha, 0)


def error_map(bgr: np.ndarray, labels: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR: the image in dim grey where right, red where wrong, flat grey where ignored."""
    grey = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) // 2 + 40
    out = grey.copy()
    out[(labels != gt) & (gt != IGNORE_INDEX)] = WRONG_RGB[::-1]
    out[gt == IGNORE_INDEX] = IGNORED_RGB[::-1]
    return out


def render_panels(panels: list[tuple[str, np.ndarray]], legend: list[tuple[str, tuple[int, int, int]]],
                  max_panel_width: int = 1024) -> tuple[np.ndarray, list[Box]]:
    """Titled BGR panels of one size side by side, a legend of (name, RGB) below: (H, W, 3) uint8 BGR + boxes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    h, w = panels[0][1].shape[:2]
    scale = min(1.0, max_panel_width / w)
    ph, pw = max(1, round(h * scale)), max(1, round(w * scale))
    width = len(panels) * pw + (len(panels) + 1) * MARGIN
    columns = max(1, (width - 2 * MARGIN) // LEGEND_COLUMN)
    legend_height = (-(-len(legend) // columns) * LEGEND_ROW + MARGIN) if legend else 0
    height = TITLE + ph + MARGIN + legend_height
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="white")
    boxes = []
    for i, (title, image) in enumerate(panels):
        left = MARGIN + i * (pw + MARGIN)
        shown = image if scale == 1.0 else cv2.resize(image, (pw, ph), interpolation=cv2.INTER_AREA)
        ax = fig.add_axes((left / width, 1 - (TITLE + ph) / height, pw / width, ph / height))
        ax.imshow(shown[:, :, ::-1], interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        fig.text((left + pw / 2) / width, 1 - (TITLE / 2) / height, title, ha="center", va="center", fontsize=12,
                 fontweight="bold")
        boxes.append(Box(TITLE, left, ph, pw))
    if legend:
        handles = [Patch(facecolor=np.asarray(rgb) / 255, edgecolor="black", linewidth=0.5, label=name)
                   for name, rgb in legend]
        fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(MARGIN / width, 0, 1 - 2 * MARGIN / width,
                   legend_height / height), ncol=columns, frameon=False, fontsize=9, mode="expand",
                   handlelength=1.2, borderaxespad=0.2)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[:, :, 2::-1]), boxes


def class_legend(class_ids: list[int], spec: DatasetSpec) -> list[tuple[str, tuple[int, int, int]]]:
    return [(spec.classes[c], spec.palette[c]) for c in class_ids]


def overlay_picture(bgr: np.ndarray, labels: np.ndarray, spec: DatasetSpec, alpha: float = 0.55,
                    gt: np.ndarray | None = None) -> tuple[np.ndarray, list[Box]]:
    """input | prediction over the input [| ground truth], with a legend of the classes shown."""
    panels = [("input", bgr), ("prediction", blend(bgr, labels, spec, alpha))]
    shown = set(classes_present(labels, spec))
    if gt is not None:
        truth = np.where((gt == IGNORE_INDEX)[..., None], bgr // 3, spec.colourize(gt))  # ignored pixels dimmed
        panels.append(("ground truth (dimmed: ignored)", truth))
        shown |= set(classes_present(gt, spec))
    order = [c for c in range(spec.n_cls) if c in shown]
    return render_panels(panels, class_legend(order, spec))


def gallery_picture(bgr: np.ndarray, labels: np.ndarray, gt: np.ndarray, spec: DatasetSpec,
                    max_panel_width: int = 512) -> tuple[np.ndarray, list[Box]]:
    """input | prediction | ground truth | errors, with a legend of the classes and of the error colours."""
    truth = np.where((gt == IGNORE_INDEX)[..., None], np.uint8(IGNORED_RGB[::-1]), spec.colourize(gt))
    panels = [("input", bgr), ("prediction", spec.colourize(labels)), ("ground truth", truth),
              ("errors", error_map(bgr, labels, gt))]
    shown = set(classes_present(labels, spec)) | set(classes_present(gt, spec))
    legend = class_legend([c for c in range(spec.n_cls) if c in shown], spec)
    legend += [("wrong (errors panel)", WRONG_RGB), ("ignored (not scored)", IGNORED_RGB)]
    return render_panels(panels, legend, max_panel_width)


def frame_overlay(bgr: np.ndarray, labels: np.ndarray, spec: DatasetSpec, alpha: float = 0.55) -> np.ndarray:
    """A video frame of the same size: the prediction blended in, a small legend of its main classes at the top left."""
    out = blend(bgr, labels, spec, alpha)
    names = classes_present(labels, spec, min_share=0.01)[:8]
    size = max(0.35, min(out.shape[:2]) / 900)
    row = int(22 * size / 0.5)
    for i, c in enumerate(names):
        y = 6 + i * row
        rgb = spec.palette[c]
        cv2.rectangle(out, (6, y), (6 + row - 4, y + row - 4), rgb[::-1], -1)
        cv2.putText(out, spec.classes[c], (10 + row, y + row - 8), cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), 3,
                    cv2.LINE_AA)
        cv2.putText(out, spec.classes[c], (10 + row, y + row - 8), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def figure_png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
