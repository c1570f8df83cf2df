"""Evaluate a model on its data set (Cityscapes, ADE20K, Pascal Context) in one streaming process: no files between.

Images -> windows -> engine -> merge -> metrics, with decoding, inference and scoring overlapped.
Same data, window and metric conventions as segmenter_preprocess.py + segmenter_postprocess.py.
"""
from __future__ import annotations

import argparse

from segmenter.api import check_evaluation_outputs, evaluate, headline
from segmenter.cli import (
    ArgumentParser,
    add_dataset_flags,
    add_engine_flags,
    add_model_flags,
    add_view_flags,
    add_window_flags,
    model_reads,
    open_model_from_args,
    positive_int,
)
from segmenter.data.images import sample_census
from segmenter.data.settings import describe
from segmenter.errors import run_cli
from segmenter.evaluation.provenance import summary_line


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
    check_evaluation_outputs(model_reads(args), args.data_root, args.metrics_path, args.pred_dir, args.report,
                             args.resume)
    model = open_model_from_args(args)
    print(describe(model.cfg, model.spec))
    census = sample_census(model.spec.samples(args.data_root, args.split), model.cfg)
    print(census.describe())
    census.check_memory(model.spec.n_cls)
    if args.dry_run:
        return 0
    result = evaluate(model, args.data_root, args.split, metrics_path=args.metrics_path, pred_dir=args.pred_dir,
                      report=args.report, resume=args.resume, ray=args.ray, ray_actors=args.ray_actors)
    print(result.table())
    print(f"{headline(result.metrics, result.run)}; wrote {args.metrics_path}")
    print(summary_line(result.run))
    return 0


def run() -> None:
    """The `segmenter-eval` command (and the top-level segmenter_eval.py)."""
    run_cli(lambda: main(parse_args()))


if __name__ == "__main__":
    run()
