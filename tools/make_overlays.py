#!/usr/bin/env python3
"""Side-by-side pictures of a few predictions: input | prediction over the input | ground truth."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from segmenter.data import list_cityscapes
from segmenter.errors import SegmenterError, run_cli
from segmenter.manifest import manifest_beside, read_manifest
from segmenter.metrics import colourize, write_png
from segmenter.plan import assign_prefixes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--gt-path", help="gt_file.txt of a file-route run; its manifest gives the image paths.")
    source.add_argument("--data-root",
                        help="Or the data set's folder (contains cityscapes/), e.g. after segmenter_eval.py.")
    parser.add_argument("--split", default="val", help="Split, with --data-root. Default: val.")
    parser.add_argument("--pred-dir", required=True,
                        help="--pred-dir of segmenter_postprocess.py or segmenter_eval.py (uses color/).")
    parser.add_argument("--out-dir", required=True, help="Folder to write <stem>_overlay.png into.")
    parser.add_argument("--count", type=int, default=4, help="How many images. Default: 4.")
    parser.add_argument("--alpha", type=float, default=0.55, help="Opacity of the prediction colours. Default: 0.55.")
    return parser.parse_args(argv)


def images_and_truths(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(stem, image path, gt path) of every image of the run."""
    if args.data_root:
        samples = list_cityscapes(args.data_root, args.split)
        prefixes = assign_prefixes([s.name for s in samples])
        return [(p, str(s.image_path), str(s.gt_path)) for s, p in zip(samples, prefixes)]
    manifest = manifest_beside(args.gt_path)
    if not manifest.is_file():
        raise SegmenterError(f"{manifest}: manifest not found; run segmenter_preprocess.py first")
    return [(p.prefix, p.image_path, p.gt_path) for p in read_manifest(manifest).plans]


def main(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = images_and_truths(args)
    step = max(1, len(entries) // max(1, args.count))  # spread over the data set (its cities)
    for stem, image_path, gt_path in entries[::step][: args.count]:
        image = cv2.imread(image_path, cv2.IMREAD_COLOR)
        pred = cv2.imread(str(Path(args.pred_dir) / "color" / f"{stem}.png"), cv2.IMREAD_COLOR)
        gt = cv2.imread(gt_path, cv2.IMREAD_UNCHANGED)
        if image is None or pred is None or gt is None:
            raise SegmenterError(f"{stem}: image, prediction or ground truth missing")
        blend = cv2.addWeighted(image, 1 - args.alpha, pred, args.alpha, 0)
        truth = np.where((gt == 255)[..., None], image // 3, colourize(gt))  # ignored pixels dimmed
        target = out_dir / f"{stem}_overlay.png"
        write_png(target, np.concatenate([image, blend, truth], axis=1))
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
