#!/usr/bin/env python3
"""Run the official Cityscapes evaluator (cityscapesscripts) on saved predictions: an independent check.

Reads <pred-dir>/labelIds/*.png (written by segmenter_eval.py or segmenter_postprocess.py with --pred-dir)
against <data-root>/cityscapes/gtFine/<split>/*/*_gtFine_labelIds.png, and prints the class and category
IoU (and iIoU where *_gtFine_instanceIds.png exist). The evaluator still calls np.in1d, which NumPy 2.4
removed; this wrapper supplies it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from segmenter.cli import ArgumentParser
from segmenter.errors import SegmenterError, run_cli
from segmenter.files import atomic_write


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python tools/cityscapes_eval.py --pred-dir runs/demo/pred "
                            "--data-root runs/demo/data")
    parser.add_argument("--pred-dir", required=True, help="The --pred-dir of an evaluation (holds labelIds/).")
    parser.add_argument("--data-root", required=True, help="Folder that contains cityscapes/ (with gtFine/).")
    parser.add_argument("--split", default="val", help="Split of the ground truth. Default: val.")
    parser.add_argument("--json", default=None, help="Also write the evaluator's results to this JSON file.")
    return parser.parse_args(argv)


def official_scores(pred_dir: Path, data_root: Path, split: str = "val") -> dict:
    """The evaluator's result dict for every gtFine image of the split that has a prediction."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev

    if not hasattr(np, "in1d"):  # removed in NumPy 2.4; the evaluator still calls it
        np.in1d = lambda a, b, **kw: np.isin(np.ravel(a), b, **kw)
    labels = pred_dir / "labelIds"
    if not labels.is_dir():
        raise SegmenterError(f"{labels}: folder not found; save Cityscapes predictions with --pred-dir")
    gts = sorted((data_root / "cityscapes" / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))
    if not gts:
        raise SegmenterError(f"{data_root / 'cityscapes' / 'gtFine' / split}: no */*_gtFine_labelIds.png files")
    args = ev.args
    args.predictionPath, args.predictionWalk = str(labels), None
    args.quiet, args.JSONOutput = True, False
    args.evalInstLevelScore = all(Path(str(g).replace("_labelIds", "_instanceIds")).is_file() for g in gts)
    try:
        predictions = [ev.getPrediction(args, str(g)) for g in gts]
    except SystemExit:
        raise SegmenterError(f"{labels}: a ground-truth image has no prediction here (the official evaluator "
                             "needs one per image)") from None
    return ev.evaluateImgLists(predictions, [str(g) for g in gts], args)


def main(args: argparse.Namespace) -> int:
    result = official_scores(Path(args.pred_dir), Path(args.data_root), args.split)
    print(f"official Cityscapes evaluator: class IoU {100 * result['averageScoreClasses']:.2f}, "
          f"category IoU {100 * result['averageScoreCategories']:.2f}")
    if "averageScoreInstClasses" in result and not np.isnan(result["averageScoreInstClasses"]):
        print(f"class iIoU {100 * result['averageScoreInstClasses']:.2f}")
    for name, value in result["classScores"].items():
        if not np.isnan(value):  # the classes the benchmark scores
            print(f"  {name:<16}{100 * value:8.2f}")
    if args.json:
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1, default=float)))
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
