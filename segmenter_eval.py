#!/usr/bin/env python3
"""Evaluate a model on a Cityscapes-layout data set in one streaming process: no intermediate files.

Images -> windows -> engine -> merge -> metrics, with decoding, inference and scoring overlapped.
Same data, window and metric conventions as segmenter_preprocess.py + segmenter_postprocess.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.cli import ArgumentParser, add_window_flags, positive_int, print_notes
from segmenter.data import list_cityscapes
from segmenter.engines import DEVICES, PRECISIONS, open_engine, resolve_auto
from segmenter.errors import SegmenterError, run_cli
from segmenter.evaluate import stream_evaluate
from segmenter.files import ensure_writable_dir, ensure_writable_file, refuse_overwrite
from segmenter.metrics import format_report, write_metrics
from segmenter.variant import load_variant, window_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python segmenter_eval.py --model models/demo/checkpoint.pth "
                            "--data-root runs/demo/data --metrics-path runs/demo/metrics.yaml")
    parser.add_argument("--model", required=True,
                        help="Exported ONNX model, or a released checkpoint.pth (exported at the window size once, "
                             "then reused from the cache; see README).")
    parser.add_argument("--cfg-path", default=None,
                        help="The model's variant.yml. Default: variant.yml beside --model.")
    parser.add_argument("--data-root", required=True, help="Folder that contains cityscapes/.")
    parser.add_argument("--split", default="val", help="Data set split. Default: val.")
    add_window_flags(parser)
    parser.add_argument("--device", default="auto",
                        help=f"Engine target: auto (fastest installed) or one of {', '.join(DEVICES)}. Default: auto.")
    parser.add_argument("--precision", default="auto",
                        help=f"auto (the device's default: fp16 on GPUs, bf16 on CPUs with AMX, else fp32) or "
                             f"one of {', '.join(PRECISIONS)}. Default: auto.")
    parser.add_argument("--batch-size", type=positive_int, default=1,
                        help="Windows per engine call, across image boundaries. Default: 1.")
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="Threads decoding and preprocessing images. Default: 2.")
    parser.add_argument("--threads", type=positive_int, default=None, help="Engine threads. Default: one per CPU core.")
    parser.add_argument("--metrics-path", required=True, help="YAML file to write the metrics to.")
    parser.add_argument("--pred-dir", default=None,
                        help="Also save each prediction as labelIds/<prefix>.png and color/<prefix>.png.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    model = Path(args.model)
    cfg_path = Path(args.cfg_path) if args.cfg_path else model.with_name("variant.yml")
    refuse_overwrite({"metrics file": args.metrics_path, "prediction folder": args.pred_dir},
                     {"model": model, "variant": cfg_path, "data root": args.data_root})
    ensure_writable_file(args.metrics_path, "metrics file")
    pred_dir = ensure_writable_dir(args.pred_dir, "prediction folder") if args.pred_dir else None
    variant = load_variant(cfg_path)
    print_notes(variant.notes)
    cfg = window_config(variant, args.image_size, args.window_size, args.window_stride)
    samples = list_cityscapes(args.data_root, args.split)
    device, precision = resolve_auto(args.device, args.precision)
    if model.suffix in (".pth", ".pt"):
        from segmenter.cache import exported_model

        model = exported_model(model, variant, (cfg.window_size, cfg.window_size))
    engine = open_engine(model, device, precision, args.threads, args.batch_size)
    if engine.n_cls != variant.n_cls:
        raise SegmenterError(f"{args.model}: the model has {engine.n_cls} classes, the variant {variant.n_cls}")
    print(f"{engine.name}, batch size {args.batch_size}: {len(samples)} images, windows {cfg.window_size} "
          f"stride {cfg.window_stride}, images resized to fit {2 * cfg.image_size}x{cfg.image_size}")
    confusion = stream_evaluate(samples, cfg, engine, args.batch_size, args.workers, pred_dir)
    print(format_report(confusion.matrix))
    scores = write_metrics(args.metrics_path, confusion.matrix)
    print(f"mIoU {scores['mean_iou']:.2f}; wrote {args.metrics_path}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
