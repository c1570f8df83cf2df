#!/usr/bin/env python3
"""Evaluate a model on a Cityscapes-layout data set in one streaming process: no intermediate files.

Images -> windows -> engine -> merge -> metrics, with decoding, inference and scoring overlapped.
Same data, window and metric conventions as segmenter_preprocess.py + segmenter_postprocess.py.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from segmenter.data import WindowConfig, list_cityscapes
from segmenter.engines import DEVICES, PRECISIONS, open_engine, resolve_auto
from segmenter.errors import SegmenterError, run_cli
from segmenter.evaluate import stream_evaluate
from segmenter.metrics import format_report, write_metrics
from segmenter.variant import load_variant


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True,
                        help="Exported ONNX model, or a released checkpoint.pth (exported on the fly at the "
                             "window size).")
    parser.add_argument("--cfg-path", default=None,
                        help="The model's variant.yml. Default: variant.yml beside --model.")
    parser.add_argument("--data-root", required=True, help="Folder that contains cityscapes/.")
    parser.add_argument("--split", default="val", help="Data set split. Default: val.")
    parser.add_argument("--image-size", type=int, default=None,
                        help="Images are resized to fit (2*S, S). Default: the variant's inference size.")
    parser.add_argument("--window-size", type=int, default=None, help="Window side. Default: the variant's crop size.")
    parser.add_argument("--window-stride", type=int, default=None,
                        help="Window step. Default: window size - 32, the guide's choice; upstream uses 512.")
    parser.add_argument("--device", default="auto",
                        help=f"Engine target: auto (fastest installed) or one of {', '.join(DEVICES)}. Default: auto.")
    parser.add_argument("--precision", default="auto",
                        help=f"auto (the device's default: fp16 on GPUs, bf16 on CPUs with AMX, else fp32) or "
                             f"one of {', '.join(PRECISIONS)}. Default: auto.")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="Windows per engine call, across image boundaries. Default: 1.")
    parser.add_argument("--workers", type=int, default=2, help="Threads decoding and preprocessing images. Default: 2.")
    parser.add_argument("--threads", type=int, default=None, help="Engine threads. Default: one per CPU core.")
    parser.add_argument("--metrics-path", required=True, help="YAML file to write the metrics to.")
    parser.add_argument("--pred-dir", default=None,
                        help="Also save each prediction as labelIds/<stem>.png and color/<stem>.png.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    model = Path(args.model)
    variant = load_variant(args.cfg_path or model.with_name("variant.yml"))
    cfg = WindowConfig.from_variant(variant, args.image_size, args.window_size, args.window_stride)
    if args.batch_size < 1:
        raise SegmenterError(f"--batch-size must be >= 1, got {args.batch_size}")
    samples = list_cityscapes(args.data_root, args.split)
    device, precision = resolve_auto(args.device, args.precision)
    with tempfile.TemporaryDirectory(prefix="segmenter-eval-") as tmp:
        if model.suffix in (".pth", ".pt"):
            from segmenter.checkpoint import load_model
            from segmenter.export import export_onnx

            net, _ = load_model(model, variant)
            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(net, onnx_path, (cfg.window_size, cfg.window_size))
            del net
            model = onnx_path
        engine = open_engine(model, device, precision, args.threads, args.batch_size)
        if engine.n_cls != variant.n_cls:
            raise SegmenterError(f"{args.model}: the model has {engine.n_cls} classes, the variant {variant.n_cls}")
        print(f"{engine.name}, batch size {args.batch_size}: {len(samples)} images, windows {cfg.window_size} "
              f"stride {cfg.window_stride}, images resized to fit {2 * cfg.image_size}x{cfg.image_size}")
        confusion = stream_evaluate(samples, cfg, engine, args.batch_size, args.workers,
                                    Path(args.pred_dir) if args.pred_dir else None)
    print(format_report(confusion.matrix))
    scores = write_metrics(args.metrics_path, confusion.matrix)
    print(f"mIoU {scores['mean_iou']:.2f}; wrote {args.metrics_path}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
