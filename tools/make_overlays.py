#!/usr/bin/env python3
"""Pictures of a few predictions: input | prediction over the input | ground truth, titled, with a legend."""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.cli import ArgumentParser
from segmenter.data.datasets import DATASETS, DatasetSpec, dataset_spec
from segmenter.data.datasets.spec import read_label_file
from segmenter.data.images import read_image, write_image
from segmenter.data.plan import assign_prefixes
from segmenter.errors import SegmenterError, run_cli
from segmenter.fileroute.manifest import manifest_beside, read_manifest
from segmenter.outputs.visualize import overlay_picture


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python tools/make_overlays.py --gt-path runs/demo/gt_file.txt "
                            "--pred-dir runs/demo/pred --out-dir runs/demo/overlays")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--gt-path", help="gt_file.txt of a file-route run; its manifest gives the image paths.")
    source.add_argument("--data-root",
                        help="Or the data set's folder (contains cityscapes/), e.g. after segmenter_eval.py.")
    parser.add_argument("--dataset", choices=list(DATASETS), default="cityscapes",
                        help="Data set, with --data-root. Default: cityscapes.")
    parser.add_argument("--split", default=None, help="Split, with --data-root. Default: the validation split.")
    parser.add_argument("--pred-dir", required=True,
                        help="--pred-dir of segmenter_postprocess.py or segmenter_eval.py (uses labels/).")
    parser.add_argument("--out-dir", required=True, help="Folder to write <stem>_overlay.png into.")
    parser.add_argument("--count", type=int, default=4, help="How many images. Default: 4.")
    parser.add_argument("--alpha", type=float, default=0.55, help="Opacity of the prediction colours. Default: 0.55.")
    return parser.parse_args(argv)


def images_and_truths(args: argparse.Namespace) -> tuple[DatasetSpec, list[tuple[str, str, str]]]:
    """The data set, and (prefix, image path, gt path) of every image of the run."""
    if args.data_root:
        spec = dataset_spec(args.dataset)
        samples = spec.samples(args.data_root, args.split)
        prefixes = assign_prefixes([s.name for s in samples])
        return spec, [(p, str(s.image_path), str(s.gt_path)) for s, p in zip(samples, prefixes)]
    manifest = manifest_beside(args.gt_path)
    if not manifest.is_file():
        raise SegmenterError(f"{manifest}: manifest not found; run segmenter_preprocess.py first")
    layout = read_manifest(manifest)
    return dataset_spec(layout.dataset), [(p.prefix, p.image_path, p.gt_path) for p in layout.plans]


def main(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec, entries = images_and_truths(args)
    step = max(1, len(entries) // max(1, args.count))  # spread over the data set (its cities)
    for stem, image_path, gt_path in entries[::step][: args.count]:
        image = read_image(image_path)
        gt = spec.read_labels(gt_path, image.shape[:2])
        labels = read_label_file(Path(args.pred_dir) / "labels" / f"{stem}.png")
        target = out_dir / f"{stem}_overlay.png"
        write_image(target, overlay_picture(image, labels, spec, args.alpha, gt)[0])
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
