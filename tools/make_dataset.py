#!/usr/bin/env python3
"""Generate procedural street scenes in a data set's layout (Cityscapes, ADE20K or Pascal Context), seeded.

Each data set's own conventions: Cityscapes train-id, label-id and instance-id maps per city; ADE20K
annotations stored as class + 1 with 0 = other; Pascal Context label maps (0 = background, 255 =
ignore) and the split's image list.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.cli import ArgumentParser, positive_int
from segmenter.data.datasets import DATASETS, dataset_spec, default_splits
from segmenter.demo.writers import write_split
from segmenter.errors import SegmenterError, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python tools/make_dataset.py --data-root runs/data --dataset ade20k "
                            "--n-images 8 --size 256 320")
    parser.add_argument("--data-root", required=True, help="Folder to create the data set's top folder in.")
    parser.add_argument("--dataset", choices=list(DATASETS), default="cityscapes",
                        help="Layout and label conventions to write. Default: cityscapes.")
    parser.add_argument("--split", default=None,
                        help=f"Split to write. Default: the data set's validation split ({default_splits()}). "
                             "Cityscapes' val images are spread over frankfurt, lindau and munster.")
    parser.add_argument("--n-images", type=positive_int, default=6, help="Number of images. Default: 6.")
    parser.add_argument("--size", type=positive_int, nargs=2, metavar=("H", "W"), default=(256, 512),
                        help="Image height and width in pixels, at least 16. Default: 256 512.")
    parser.add_argument("--seed", type=int, default=0, help="Seed; the same seed gives the same files. Default: 0.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    if min(args.size) < 16:
        raise SegmenterError(f"--size must be at least 16 16, got {args.size[0]} {args.size[1]}")
    spec = dataset_spec(args.dataset)
    paths = write_split(args.data_root, args.split, args.n_images, tuple(args.size), args.seed, spec.name)
    print(f"wrote {len(paths)} {args.size[0]}x{args.size[1]} {spec.title} images with their labels under "
          f"{Path(args.data_root) / spec.folder}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
