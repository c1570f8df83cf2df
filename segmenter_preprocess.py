#!/usr/bin/env python3
"""Cut Cityscapes images into normalized float32 window files (.bin), write gt_file.txt and its manifest."""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.cli import ArgumentParser, add_window_flags, positive_int, print_notes
from segmenter.errors import run_cli
from segmenter.files import refuse_overwrite
from segmenter.manifest import manifest_beside
from segmenter.preprocess import run_preprocess
from segmenter.variant import load_variant, window_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python segmenter_preprocess.py --cfg-path models/demo/variant.yml "
                            "--data-root runs/demo/data --bin-dir runs/demo/bins --gt-path runs/demo/gt_file.txt")
    parser.add_argument("--cfg-path", required=True, help="The model's variant.yml (normalization, sizes, classes).")
    parser.add_argument("--data-root", required=True,
                        help="Folder that contains cityscapes/ (with leftImg8bit/ and gtFine/ inside).")
    parser.add_argument("--bin-dir", required=True, help="Folder to write one <image prefix>_<k>.bin per window into.")
    parser.add_argument("--gt-path", required=True,
                        help="File to write the image / ground-truth list to; the manifest goes beside it (.json).")
    parser.add_argument("--split", default="val", help="Data set split to process. Default: val.")
    add_window_flags(parser)
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="Parallel processes. Default: one per CPU core.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    gt_path = Path(args.gt_path)
    refuse_overwrite({"gt file": gt_path, "manifest": manifest_beside(gt_path), "bin folder": args.bin_dir},
                     {"variant": args.cfg_path, "data root": args.data_root})
    variant = load_variant(args.cfg_path)
    print_notes(variant.notes)
    cfg = window_config(variant, args.image_size, args.window_size, args.window_stride)
    plans = run_preprocess(Path(args.data_root), Path(args.bin_dir), gt_path, cfg, variant.n_cls,
                           split=args.split, workers=args.workers, variant=str(Path(args.cfg_path).resolve()))
    windows = sum(p.n_windows for p in plans)
    print(f"{len(plans)} images -> {windows} windows of {cfg.window_size}x{cfg.window_size} "
          f"(stride {cfg.window_stride}) in {args.bin_dir}; wrote {gt_path} and {manifest_beside(gt_path)}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
