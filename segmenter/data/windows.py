"""Sliding windows: anchors, cutting, merging window logits and turning them into a label map."""
from __future__ import annotations

import cv2
import numpy as np


def axis_anchors(length: int, window: int, stride: int) -> list[int]:
    """Every multiple of stride below length - window, then length - window (the last touches the border); a
    side shorter than the window is one window of that side (as mmseg's slide inference cuts it)."""
    last = max(length - window, 0)
    return [a for a in range(0, length, stride) if a < last] + [last]


def axis_window_count(length: int, window: int, stride: int) -> int:
    """len(axis_anchors(length, window, stride)), without listing them."""
    last = max(length - window, 0)
    return -(-last // stride) + 1 if last else 1


def window_anchors(hw: tuple[int, int], window: int, stride: int) -> list[tuple[int, int]]:
    """(top, left) of every window over an (H, W) canvas, row-major."""
    return [(ha, wa) for ha in axis_anchors(hw[0], window, stride) for wa in axis_anchors(hw[1], window, stride)]


def window_shape(hw: tuple[int, int], window: int) -> tuple[int, int]:
    """(h, w) of the windows over an (H, W) canvas: the window, or a side of the canvas shorter than it."""
    return min(window, hw[0]), min(window, hw[1])


def cut_windows(image: np.ndarray, anchors: list[tuple[int, int]], window: int) -> np.ndarray:
    """(3, H, W) -> (k, 3, h, w) float32, contiguous; (h, w) = window_shape."""
    h, w = window_shape(image.shape[1:], window)
    return np.stack([image[:, ha:ha + h, wa:wa + w] for ha, wa in anchors]).astype(np.float32, copy=False)


def window_counts(hw: tuple[int, int], anchors: list[tuple[int, int]], window: int) -> np.ndarray:
    """(H, W) float32: how many windows cover each pixel."""
    h, w = window_shape(hw, window)
    count = np.zeros(hw, np.float32)
    for ha, wa in anchors:
        count[ha:ha + h, wa:wa + w] += 1
    return count


class WindowMerger:
    """Sums window logits into a (K, H, W) canvas; `mean()` divides by the per-pixel window count."""

    def __init__(self, n_cls: int, hw: tuple[int, int], anchors: list[tuple[int, int]], window: int) -> None:
        self.anchors, self.window, self.hw = list(anchors), window, hw
        self.shape = window_shape(hw, window)
        self.canvas = np.zeros((n_cls, *hw), np.float32)
        self.added = 0

    def add(self, index: int, logits: np.ndarray) -> None:
        """Add window `index`'s (K, h, w) logits at its anchor."""
        (ha, wa), (h, w) = self.anchors[index], self.shape
        self.canvas[:, ha:ha + h, wa:wa + w] += logits
        self.added += 1

    @property
    def complete(self) -> bool:
        return self.added == len(self.anchors)

    def mean(self) -> np.ndarray:
        self.canvas /= window_counts(self.hw, self.anchors, self.window)
        return self.canvas


def resize_logits(logits: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(K, h, w) -> (K, H, W), bilinear with half-pixel centres (as torch's align_corners=False)."""
    if logits.shape[1:] == tuple(hw):
        return logits
    return np.stack([cv2.resize(channel, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR) for channel in logits])


def argmax_labels(logits: np.ndarray) -> np.ndarray:
    """(K, H, W) -> (H, W) uint8 class index; ties go to the lower class, as np.argmax."""
    best = logits[0].copy()
    labels = np.zeros(best.shape, np.uint8)
    for k in range(1, logits.shape[0]):
        better = logits[k] > best
        labels[better] = k
        np.maximum(best, logits[k], out=best)
    return labels
