#!/usr/bin/env python3
"""Generate procedural street scenes in the Cityscapes layout (leftImg8bit + gtFine), seeded."""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.errors import SegmenterError, run_cli
from segmenter.fakecity import write_split


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", required=True, help="Folder to create cityscapes/ in.")
    parser.add_argument("--split", default="val",
                        help="Split to write (val: frankfurt, lindau, munster). Default: val.")
    parser.add_argument("--n-images", type=int, default=6, help="Number of images. Default: 6.")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(256, 512),
                        help="Image height and width in pixels. Default: 256 512.")
    parser.add_argument("--seed", type=int, default=0, help="Seed; the same seed gives the same files. Default: 0.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    if args.n_images < 1 or min(args.size) < 16:
        raise SegmenterError("--n-images must be >= 1 and --size at least 16 16")
    paths = write_split(args.data_root, args.split, args.n_images, tuple(args.size), args.seed)
    print(f"wrote {len(paths)} {args.size[0]}x{args.size[1]} images with gtFine maps under "
          f"{Path(args.data_root) / 'cityscapes'}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
