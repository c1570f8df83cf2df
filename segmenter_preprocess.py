#!/usr/bin/env python3
"""Cut Cityscapes images into normalized float32 window files (.bin), write gt_file.txt and its manifest."""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.data import WindowConfig
from segmenter.errors import run_cli
from segmenter.preprocess import manifest_beside, run_preprocess
from segmenter.variant import load_variant


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cfg-path", required=True, help="The model's variant.yml (normalization, sizes, classes).")
    parser.add_argument("--data-root", required=True,
                        help="Folder that contains cityscapes/ (with leftImg8bit/ and gtFine/ inside).")
    parser.add_argument("--bin-dir", required=True, help="Folder to write one <image stem>_<k>.bin per window into.")
    parser.add_argument("--gt-path", required=True,
                        help="File to write the image / ground-truth list to; the manifest goes beside it (.json).")
    parser.add_argument("--split", default="val", help="Data set split to process. Default: val.")
    parser.add_argument("--image-size", type=int, default=None,
                        help="Images are resized to fit (2*S, S) keeping their ratio. Default: the variant's "
                             "inference_kwargs.im_size, else dataset_kwargs.image_size.")
    parser.add_argument("--window-size", type=int, default=None,
                        help="Side of the square windows. Default: the variant's crop size.")
    parser.add_argument("--window-stride", type=int, default=None,
                        help="Step between windows. Default: window size - 32, the guide's choice (736 for "
                             "768 windows); upstream evaluation uses 512.")
    parser.add_argument("--workers", type=int, default=None, help="Parallel processes. Default: one per CPU core.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    variant = load_variant(args.cfg_path)
    cfg = WindowConfig.from_variant(variant, args.image_size, args.window_size, args.window_stride)
    plans = run_preprocess(Path(args.data_root), Path(args.bin_dir), Path(args.gt_path), cfg, variant.n_cls,
                           split=args.split, workers=args.workers, variant=str(Path(args.cfg_path).resolve()))
    windows = sum(len(p.anchors) for p in plans)
    print(f"{len(plans)} images -> {windows} windows of {cfg.window_size}x{cfg.window_size} "
          f"(stride {cfg.window_stride}) in {args.bin_dir}; wrote {args.gt_path} and {manifest_beside(args.gt_path)}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
