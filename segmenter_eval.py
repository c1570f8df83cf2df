#!/usr/bin/env python3
"""Evaluate a model on its data set (Cityscapes, ADE20K, Pascal Context) in one streaming process: no files between.

Images -> windows -> engine -> merge -> metrics, with decoding, inference and scoring overlapped.
Same data, window and metric conventions as segmenter_preprocess.py + segmenter_postprocess.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.cli import (
    ArgumentParser,
    add_dataset_flags,
    add_engine_flags,
    add_model_flags,
    add_view_flags,
    add_window_flags,
    calibration_images,
    positive_int,
    views_from_args,
)
from segmenter.data.images import sample_census
from segmenter.data.settings import describe, resolve_dataset, window_config
from segmenter.engines.runtime import (
    calibration_from_images,
    check_model_file,
    open_model,
    prepared_model,
    resolve_engine,
)
from segmenter.errors import run_cli
from segmenter.evaluation.evaluate import Route, check_outputs, evaluate_dataset, open_journal
from segmenter.evaluation.journal import evaluation_fingerprint
from segmenter.evaluation.metrics import format_report, write_metrics
from segmenter.files import ensure_writable_dir, ensure_writable_file, refuse_overwrite
from segmenter.model.variant import load_variant, variant_beside
from segmenter.outputs.report import write_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python segmenter_eval.py --model models/demo/checkpoint.pth "
                            "--data-root runs/demo/data --metrics-path runs/demo/metrics.yaml")
    add_model_flags(parser)
    add_dataset_flags(parser)
    add_window_flags(parser)
    add_view_flags(parser)
    add_engine_flags(parser)
    parser.add_argument("--metrics-path", default=None, help="YAML file to write the metrics to (required but "
                        "with --dry-run).")
    parser.add_argument("--report", default=None, metavar="DIR",
                        help="Also write DIR/report.html: headline metrics, per-class IoU, confusion matrix, per-image "
                             "mIoU and the worst images, in one self-contained page.")
    parser.add_argument("--pred-dir", default=None,
                        help="Also save each prediction as labels/<prefix>.png (class indices), color/<prefix>.png "
                             "and, for Cityscapes, labelIds/<prefix>.png (for its official evaluator).")
    parser.add_argument("--resume", action="store_true",
                        help="Keep a journal beside the metrics file (<metrics>.journal.jsonl) of every image scored, "
                             "and skip the images an earlier run with the same settings already scored.")
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="Evaluate on Ray: alone, a local Ray runtime on this machine; with an address (auto, "
                             "host:6379, ray://host:10001), that cluster. Needs requirements-ray.txt.")
    parser.add_argument("--ray-actors", type=positive_int, default=1,
                        help="Engines (Ray actors) working in parallel: each takes one GPU, or the CPUs divided "
                             "among the actors (--threads to set). Default: 1.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Only print the settings and the window count per image and in all, then stop.")
    args = parser.parse_args(argv)
    if not args.metrics_path and not args.dry_run:
        parser.error("the following arguments are required: --metrics-path")
    return args


def main(args: argparse.Namespace) -> int:
    model = Path(args.model)
    cfg_path = Path(args.cfg_path) if args.cfg_path else variant_beside(model)
    refuse_overwrite({"metrics file": args.metrics_path, "prediction folder": args.pred_dir, "report": args.report},
                     {"model": model, "variant": cfg_path, "data root": args.data_root})
    check_outputs(args.metrics_path, args.pred_dir, args.report, args.resume)
    if args.metrics_path:
        ensure_writable_file(args.metrics_path, "metrics file")
    pred_dir = ensure_writable_dir(args.pred_dir, "prediction folder") if args.pred_dir else None
    if args.report:
        ensure_writable_dir(args.report, "report folder")
    views = views_from_args(args)
    variant = load_variant(cfg_path)
    spec = resolve_dataset(variant, args.dataset)
    cfg = window_config(variant, spec, args.image_size, args.window_size, args.window_stride, views)
    samples = spec.samples(args.data_root, args.split)
    print(describe(cfg, spec))
    census = sample_census(samples, cfg)
    print(census.describe())
    census.check_memory(spec.n_cls)
    if args.dry_run:
        return 0
    images = [s.image_path for s in samples]
    calibration = calibration_from_images(calibration_images(args, images), cfg, args.calibration)
    device, precision = resolve_engine(model, variant, cfg, args.device, args.precision, images, args.threads,
                                       args.batch_size, calibration)
    uses_calibration = (device, precision) == ("openvino", "int8")
    journal = open_journal(args.metrics_path, args.resume, lambda: evaluation_fingerprint(
        model, cfg_path, spec.name, spec.split_name(args.split), args.data_root, samples, cfg.to_json(), device,
        precision, calibration.identity if uses_calibration else None), spec.n_cls)
    try:
        if args.ray is not None:
            route = Route(ray_address=args.ray, ray_actors=args.ray_actors, device=device, precision=precision,
                          threads=args.threads, variant_path=cfg_path if device == "torch-cuda" else None,
                          model_path=prepared_model(model, variant, cfg, device, precision, calibration))
            check_model_file(route.model_path, cfg, spec)
        else:
            engine = open_model(model, variant, cfg, device, precision, args.threads, args.batch_size, calibration)
            print(f"{engine.name}, batch size {args.batch_size}")
            route = Route(engine=engine)
        book = evaluate_dataset(samples, census, spec, cfg, route, args.batch_size, args.workers, pred_dir,
                                report=bool(args.report), journal=journal)
    finally:
        if journal is not None:
            journal.close()
    print(format_report(book.confusion.matrix, spec, cfg.inference))
    scores = write_metrics(args.metrics_path, book.confusion.matrix, spec, cfg.inference)
    if args.report:
        write_report(args.report, book, spec, scores, f"{Path(args.model).name} on {spec.title} {args.split or ''}")
    print(f"mIoU {scores['mean_iou']:.2f}; wrote {args.metrics_path}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
