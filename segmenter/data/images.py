"""Reading images, and the image pipeline of the guide's preprocess: resize, normalize, flip, raise, cut."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import SegmenterError
from ..files import FileDigest, atomic_write, read_digested
from ..model.variant import NORMALIZATIONS
from ..system import check_memory
from .plan import ImagePlan, View, WindowConfig, assign_prefixes
from .windows import cut_windows


def decode_image(data: bytes, path: str | Path, flags: int = cv2.IMREAD_COLOR, what: str = "an image") -> np.ndarray:
    """Decode a file's bytes with OpenCV (the path only names it in errors)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if image is None:
        raise SegmenterError(f"{path}: cannot be decoded as {what}")
    return image


def load_image(path: str | Path) -> tuple[np.ndarray, FileDigest]:
    """(H, W, 3) uint8 BGR, and the digest of the bytes it was decoded from."""
    data, digest = read_digested(path)
    return decode_image(data, path), digest


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR."""
    return load_image(path)[0]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")  # what OpenCV reads as images
JPEG_QUALITY = 95


def encode_image(image: np.ndarray, ext: str = ".png") -> bytes:
    """An image (uint8 or uint16, gray or BGR) as the bytes of a PNG, or a JPEG at quality JPEG_QUALITY."""
    jpeg = ext.lower() in (".jpg", ".jpeg")
    ok, data = cv2.imencode(ext, image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if jpeg else [])
    if not ok:
        raise SegmenterError(f"an image of shape {image.shape} and type {image.dtype} cannot be encoded as {ext}")
    return data.tobytes()


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Encode an image by its path's suffix and write it atomically, creating its folder."""
    path = Path(path)
    data = encode_image(image, path.suffix or ".png")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def preprocess_view(bgr: np.ndarray, layout_resized: tuple[int, int], canvas: tuple[int, int], view: View,
                    normalization: str, base_hw: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, h, w) float32 normalized RGB on one view's canvas.

    Resize to the view's size bilinearly on uint8, BGR -> RGB, (x - mean) / std, flip when the view
    is flipped, then raise the short side to the window size bilinearly when it is below it. With
    `base_hw` (the short-side-float rule, PaddleSeg's), the pixels are resized as float32 instead, first
    to base_hw and then, for a view of another ratio, from there to the view's size.
    """
    h, w = layout_resized
    mean, std = (np.asarray(v, np.float32) for v in NORMALIZATIONS[normalization])
    if base_hw is not None:
        rgb = bgr[:, :, ::-1].astype(np.float32)
        for size in dict.fromkeys([base_hw, (h, w)]):
            if size != rgb.shape[:2]:
                rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        rgb = (rgb - mean) * (1.0 / std)
    else:
        if (h, w) != bgr.shape[:2]:
            bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
        rgb = (bgr[:, :, ::-1].astype(np.float32) - mean) * (1.0 / std)
    if view.flip:
        rgb = rgb[:, ::-1]
    if canvas != (h, w):
        rgb = cv2.resize(rgb, (canvas[1], canvas[0]), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def view_windows(bgr: np.ndarray, plan: ImagePlan, cfg: WindowConfig) -> Iterator[np.ndarray]:
    """An image's windows, one (n_anchors, 3, window, window) float32 array per view, views in order."""
    w = cfg.window_size
    base = cfg.base_size(bgr.shape[:2]) if cfg.resize_rule == "short-side-float" else None
    for layout in plan.views:
        image = preprocess_view(bgr, layout.resized_hw, layout.canvas_hw, layout.view, cfg.normalization, base)
        yield cut_windows(image, layout.anchors, w)


def same_shape_windows(bgr: np.ndarray, plan: ImagePlan, cfg: WindowConfig, limit: int | None = None) -> np.ndarray:
    """(k, 3, h, w) windows of an image to measure or calibrate engines on: those of the views whose windows have
    the full window size, else those of the first view; at most `limit` of them, spread evenly over them. Views
    are cut one at a time and only the windows kept stay in memory."""
    full, first = [], None
    for windows in view_windows(bgr, plan, cfg):
        if first is None:
            first = spread(windows, limit)
        if windows.shape[2:] == (cfg.window_size, cfg.window_size):
            full.append(spread(windows, limit))
        del windows
    return spread(np.concatenate(full) if full else first, limit)


def spread(items, n: int | None):
    """n of the items (a list, or an array along its first axis) evenly spread over them; all if fewer or n is
    None. An array's picks are a copy, so the array they came from can be freed."""
    if n is None or len(items) <= n:
        return items
    picks = np.linspace(0, len(items) - 1, n).astype(int)
    return items[picks] if isinstance(items, np.ndarray) else [items[i] for i in picks]


def header_size(path: str | Path | bytes) -> tuple[int, int]:
    """(H, W) an image will have once read (EXIF rotation applied), from its header alone where possible; `path`
    may be the file's bytes."""
    from io import BytesIO

    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # a header is no decompression bomb: the
    try:  # size it gives is checked against the memory available before any pixel is decoded
        with (BytesIO(path) if isinstance(path, bytes) else open(path, "rb")) as fh, Image.open(fh) as image:
            w, h = image.size
            if image.format == "PNG":  # its getexif() decodes the pixels: read an eXIf chunk of the header only
                exif = Image.Exif()
                if "exif" in image.info:
                    exif.load(image.info["exif"])
            else:
                exif = image.getexif()
            if exif.get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees when read
                h, w = w, h
            return h, w
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno is not None:
            raise SegmenterError(f"{path}: cannot be read ({exc.strerror})") from None
        return _decoded_size(path)  # formats PIL lacks: decode instead
    except Exception:  # noqa: BLE001 - PIL fails in many ways on formats it half knows: decode instead
        return _decoded_size(path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _decoded_size(path: str | Path | bytes) -> tuple[int, int]:
    return (decode_image(path, "the image") if isinstance(path, bytes) else read_image(path)).shape[:2]


@dataclass(frozen=True)
class Census:
    """What a run will do, from the images' headers: each image's size and plan."""

    cfg: WindowConfig
    plans: list[ImagePlan]

    @property
    def windows(self) -> int:
        return sum(p.n_windows for p in self.plans)

    def describe(self) -> str:
        """How many windows the run will infer: per image and in all."""
        counts = [p.n_windows for p in self.plans]
        views = f" over {len(self.cfg.views)} views" if len(self.cfg.views) > 1 else ""
        if len(set(counts)) == 1:
            return f"{counts[0]} windows per image{views}, {self.windows} in all for {len(counts)} images"
        common = Counter(counts).most_common(1)[0][0]
        return (f"{min(counts)} to {max(counts)} windows per image{views} (most often {common}), {self.windows} in "
                f"all for {len(counts)} images")

    def check_memory(self, n_cls: int) -> None:
        """Refuse, before any work, a run whose largest image cannot be merged in the memory available."""
        if self.plans:
            plan = max(self.plans, key=lambda p: p.merge_bytes(n_cls))
            h, w = plan.original_hw
            check_memory(plan.merge_bytes(n_cls), f"{plan.image_path} ({h}x{w}, {plan.n_windows} windows): merging "
                                                  "its windows")


def take_census(paths: list, cfg: WindowConfig, gt_paths: list | None = None,
                sizes: list[tuple[int, int]] | None = None) -> Census:
    """The census of images (with their ground truths, when given), each with the unique window prefix the file
    route gives it; sizes not given are read from the headers."""
    gt_paths = gt_paths or [""] * len(paths)
    sizes = sizes or [header_size(p) for p in paths]
    names = [Path(p).name for p in paths]
    return Census(cfg, [ImagePlan.for_image(name, prefix, p, gt, hw, cfg)
                        for name, prefix, p, gt, hw in zip(names, assign_prefixes(names), paths, gt_paths, sizes)])


def sample_census(samples, cfg: WindowConfig) -> Census:
    """The census of a data set's samples, ground truths included."""
    return take_census([s.image_path for s in samples], cfg, [s.gt_path for s in samples])


def window_census(samples, cfg: WindowConfig) -> str:
    """How many windows the run will infer: per image and in all, from the images' headers."""
    return sample_census(samples, cfg).describe()
