"""Command-line plumbing shared by the scripts: a parser with one-line errors and checked value types."""
from __future__ import annotations

import argparse
import sys

from .defaults import BATCH_SIZE, CALIBRATION_IMAGES, STRIDE_MARGIN, WORKERS
from .errors import SegmenterError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with full-sentence help kept as written, and bad flags reported as one `error:` line."""

    def __init__(self, description: str | None = None, example: str | None = None, **kwargs) -> None:
        epilog = f"example:\n  {example}" if example else None
        super().__init__(description=description, epilog=epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _integer(text: str, lo: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < lo:
        raise argparse.ArgumentTypeError(f"must be {'positive' if lo == 1 else f'>= {lo}'}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    return _integer(text, 0)


def _number(text: str, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (value >= 0 if allow_zero else value > 0) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a {'non-negative' if allow_zero else 'positive'} number, got {text}")
    return value


def positive_float(text: str) -> float:
    return _number(text, allow_zero=False)


def non_negative_float(text: str) -> float:
    return _number(text, allow_zero=True)


def add_window_flags(parser: argparse.ArgumentParser) -> None:
    """--image-size, --window-size, --window-stride: the same flags and help in every script."""
    from .data.datasets import DATASETS

    boxes = ", ".join(f"{spec.title} {spec.box_ratio}" for spec in DATASETS.values())
    parser.add_argument("--image-size", type=positive_int, default=None,
                        help=f"Short side S: images are resized to fit (r*S, S) keeping their ratio, r the data set's "
                             f"({boxes}). Default: the variant's inference_kwargs.im_size, else "
                             "dataset_kwargs.image_size.")
    parser.add_argument("--window-size", type=positive_int, default=None,
                        help="Side of the square windows. Default: the variant's crop size.")
    parser.add_argument("--window-stride", type=positive_int, default=None,
                        help=f"Step between windows, at most the window size. Default: window size - {STRIDE_MARGIN}, "
                             "the guide's choice (736 for 768 windows); upstream evaluation uses 512.")


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """--model and --cfg-path: a checkpoint or an exported model, and its variant or config."""
    parser.add_argument("--model", required=True,
                        help="A released checkpoint.pth, an MMSegmentation Segmenter checkpoint or a PaddleSeg "
                             "model.pdparams (the format read from its content; exported at the window size once, "
                             "then reused from the cache), or an exported ONNX model.")
    parser.add_argument("--cfg-path", default=None,
                        help="The model's variant.yml, MMSegmentation config (dumped, or a model-zoo config with "
                             "_base_ files, read without running it) or PaddleSeg YAML config (needed for a "
                             ".pdparams). Default: an MMSegmentation checkpoint's own config, else variant.yml beside "
                             "--model.")
    add_dataset_flag(parser)


def add_dataset_flag(parser: argparse.ArgumentParser) -> None:
    from .data.datasets import DATASETS

    parser.add_argument("--dataset", choices=list(DATASETS), default=None,
                        help="Data set: layout, classes, palette and label conventions. Default: the variant's "
                             "dataset_kwargs.dataset, or the config's dataset_type.")


def add_device_flags(parser: argparse.ArgumentParser, threads: str = "one per CPU core") -> None:
    """--device, --precision (auto by default), calibration and --threads."""
    from .engines.table import DEVICES, PRECISIONS

    parser.add_argument("--device", default="auto",
                        help=f"Engine: auto (measured, see --precision) or one of {', '.join(DEVICES)}. Default: auto.")
    parser.add_argument("--precision", default="auto",
                        help=f"auto (the fastest that keeps fp32's predictions, measured once on this machine and "
                             f"model) or one of {', '.join(PRECISIONS)}. Default: auto.")
    add_calibration_flags(parser)
    parser.add_argument("--threads", type=positive_int, default=None, help=f"Engine threads. Default: {threads}.")


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """--device, --precision (auto by default), calibration, --batch-size, --workers and --threads."""
    add_device_flags(parser)
    parser.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE,
                        help=f"Windows per engine call, across image boundaries. Default: {BATCH_SIZE}.")
    parser.add_argument("--workers", type=positive_int, default=WORKERS,
                        help=f"Threads decoding and preprocessing images. Default: {WORKERS}.")


def add_dataset_flags(parser: argparse.ArgumentParser) -> None:
    """--data-root and --split, the same in every script that reads a data set."""
    from .data.datasets import default_splits, top_folders

    parser.add_argument("--data-root", required=True,
                        help=f"Folder that holds the data set's top folder: {top_folders()}.")
    parser.add_argument("--split", default=None,
                        help=f"Split to use. Default: the data set's validation split ({default_splits()}).")


def add_view_flags(parser: argparse.ArgumentParser) -> None:
    """--multiscale, --scales and --flip: the views each image is evaluated at."""
    parser.add_argument("--multiscale", action="store_true",
                        help="The model's multi-scale + flip evaluation: an MMSegmentation config's own test-time "
                             "views, else upstream's resize ratios 0.5 0.75 1.0 1.25 1.5 1.75, each also flipped (12 "
                             "views, about 16 times the windows of single scale: 126 instead of 8 for a Cityscapes "
                             "image at window 768, stride 512).")
    parser.add_argument("--scales", type=positive_float, nargs="+", default=None, metavar="R",
                        help="Custom resize ratios of the fit box, e.g. 0.75 1.0 1.25. Default: 1.0.")
    parser.add_argument("--flip", action="store_true", help="Also evaluate each view flipped horizontally.")


def views_from_args(args: argparse.Namespace):
    """The views the flags ask for."""
    from .data.plan import make_views
    from .data.settings import MODEL_MULTISCALE

    if args.multiscale:
        if args.scales:
            raise SegmenterError("--multiscale sets its own scales; give either it or --scales")
        return MODEL_MULTISCALE  # the model's own (an MMSegmentation config's), else upstream's
    try:
        return make_views(args.scales, flip=args.flip)
    except SegmenterError as exc:
        raise SegmenterError(f"--scales {' '.join(f'{s:g}' for s in args.scales or [])}: {exc}") from None


def add_calibration_flags(parser: argparse.ArgumentParser) -> None:
    """--calibration and --calibration-dir: the images static int8 (openvino) is calibrated on."""
    parser.add_argument("--calibration", type=positive_int, default=CALIBRATION_IMAGES, metavar="N",
                        help="Images whose windows calibrate static int8 (openvino), spread over the data: about "
                             "8 windows of 768x768 pixels in all, one per image at least. "
                             f"Default: {CALIBRATION_IMAGES}.")
    parser.add_argument("--calibration-dir", default=None,
                        help="Calibrate static int8 on the images of this folder instead of the data itself.")


def calibration_dir_images(args: argparse.Namespace) -> list | None:
    """The images of --calibration-dir, or None (static int8 then calibrates on the data itself)."""
    if not args.calibration_dir:
        return None
    from pathlib import Path

    from .data.images import IMAGE_SUFFIXES

    folder = Path(args.calibration_dir)
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not found:
        raise SegmenterError(f"--calibration-dir {folder}: no images to calibrate on (a folder of "
                             f"{', '.join(IMAGE_SUFFIXES)} files)")
    return found


def model_reads(args: argparse.Namespace) -> dict:
    """What the model flags name to read, before the model is opened: its file, its description (the variant
    beside it by default) and --calibration-dir."""
    from .model.variant import variant_beside

    return {"model": args.model, "model's description": args.cfg_path or variant_beside(args.model),
            "calibration folder": getattr(args, "calibration_dir", None)}


def open_model_from_args(args: argparse.Namespace):
    """The model the model, window, view and engine flags ask for (api.open_model)."""
    from .api import open_model

    return open_model(args.model, args.cfg_path, dataset=args.dataset, device=args.device, precision=args.precision,
                      batch_size=getattr(args, "batch_size", BATCH_SIZE), workers=getattr(args, "workers", WORKERS),
                      threads=args.threads,
                      image_size=args.image_size, window_size=args.window_size, window_stride=args.window_stride,
                      views=views_from_args(args), calibration_images=calibration_dir_images(args),
                      calibration_count=args.calibration)
