"""Reading images, and the image pipeline of the guide's preprocess: resize, normalize, flip, raise, cut."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import SegmenterError
from .plan import ImagePlan, View, WindowConfig
from .variant import NORMALIZATIONS
from .windows import cut_windows


def _decode(path: str | Path, flags: int, what: str) -> np.ndarray:
    """Read the file's bytes in Python (any path, any bytes in its name) and decode them with OpenCV."""
    try:
        data = np.frombuffer(Path(path).read_bytes(), np.uint8)
    except OSError as exc:
        raise SegmenterError(f"{path}: cannot be read ({exc.strerror})") from None
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise SegmenterError(f"{path}: cannot be decoded as {what}")
    return image


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR."""
    return _decode(path, cv2.IMREAD_COLOR, "an image")


def preprocess_view(bgr: np.ndarray, layout_resized: tuple[int, int], canvas: tuple[int, int], view: View,
                    normalization: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, h, w) float32 normalized RGB on one view's canvas.

    Resize to the view's size bilinearly on uint8, BGR -> RGB, (x - mean) / std, flip when the view
    is flipped, then raise the short side to the window size bilinearly when it is below it.
    """
    h, w = layout_resized
    if (h, w) != bgr.shape[:2]:
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    mean, std = (np.asarray(v, np.float32) for v in NORMALIZATIONS[normalization])
    rgb = (bgr[:, :, ::-1].astype(np.float32) - mean) * (1.0 / std)
    if view.flip:
        rgb = rgb[:, ::-1]
    if canvas != (h, w):
        rgb = cv2.resize(rgb, (canvas[1], canvas[0]), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def view_windows(bgr: np.ndarray, plan: ImagePlan, cfg: WindowConfig) -> Iterator[np.ndarray]:
    """An image's windows, one (n_anchors, 3, window, window) float32 array per view, views in order."""
    w = cfg.window_size
    for layout in plan.views:
        image = preprocess_view(bgr, layout.resized_hw, layout.canvas_hw, layout.view, cfg.normalization)
        yield cut_windows(image, layout.anchors, w)


def header_size(path: str | Path) -> tuple[int, int]:
    """(H, W) an image will have once read (EXIF rotation applied), from its header alone where possible."""
    from io import BytesIO

    from PIL import Image

    try:
        with Image.open(BytesIO(Path(path).read_bytes())) as image:
            w, h = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees when read
                h, w = w, h
            return h, w
    except Exception:  # noqa: BLE001 - formats PIL lacks: decode instead
        return read_image(path).shape[:2]


def window_census(samples, cfg: WindowConfig) -> str:
    """How many windows the run will infer: per image and in all, from the images' headers."""
    from collections import Counter

    counts = [ImagePlan.for_image("", "", "", "", header_size(s.image_path), cfg).n_windows for s in samples]
    total = sum(counts)
    views = f" over {len(cfg.views)} views" if len(cfg.views) > 1 else ""
    if len(set(counts)) == 1:
        return f"{counts[0]} windows per image{views}, {total} in all for {len(samples)} images"
    common = Counter(counts).most_common(1)[0][0]
    return (f"{min(counts)} to {max(counts)} windows per image{views} (most often {common}), {total} in all for "
            f"{len(samples)} images")
