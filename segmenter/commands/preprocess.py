"""Cut a data set's images into normalized float32 window files (.bin); write gt_file.txt and its manifest."""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.api import run_settings
from segmenter.cli import (
    ArgumentParser,
    add_dataset_flag,
    add_dataset_flags,
    add_view_flags,
    add_window_flags,
    positive_int,
    views_from_args,
)
from segmenter.data.settings import describe
from segmenter.errors import run_cli
from segmenter.evaluation.provenance import description_record
from segmenter.fileroute.manifest import manifest_beside
from segmenter.fileroute.preprocess import run_preprocess
from segmenter.files import refuse_overwrite


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python segmenter_preprocess.py --cfg-path models/demo/variant.yml "
                            "--data-root runs/demo/data --bin-dir runs/demo/bins --gt-path runs/demo/gt_file.txt")
    parser.add_argument("--cfg-path", required=True,
                        help="The model's variant.yml, or its MMSegmentation config (normalization, sizes, classes, "
                             "windows).")
    add_dataset_flag(parser)
    add_dataset_flags(parser)
    parser.add_argument("--bin-dir", required=True, help="Folder to write one <image prefix>_<k>.bin per window into.")
    parser.add_argument("--gt-path", required=True,
                        help="File to write the image / ground-truth list to; the manifest goes beside it (.json).")
    add_window_flags(parser)
    add_view_flags(parser)
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="Parallel processes. Default: one per CPU core.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    gt_path = Path(args.gt_path)
    outputs = {"gt file": gt_path, "manifest": manifest_beside(gt_path), "bin folder": args.bin_dir}
    refuse_overwrite(outputs, {"variant": args.cfg_path, "data root": args.data_root})
    variant, spec, cfg = run_settings(args.cfg_path, args.dataset, args.image_size, args.window_size,
                                      args.window_stride, views_from_args(args))
    print(describe(cfg, spec))
    samples = spec.samples(args.data_root, args.split)
    refuse_overwrite(outputs, {"variant's files": variant.sources, "images": [s.image_path for s in samples],
                               "ground truth": [s.gt_path for s in samples]})
    plans = run_preprocess(samples, Path(args.bin_dir), gt_path, cfg, spec, workers=args.workers,
                           split=spec.split_name(args.split), variant=str(Path(args.cfg_path).resolve()),
                           model_format=variant.format, description=description_record(variant))
    windows = sum(p.n_windows for p in plans)
    smaller = sum(len(v.anchors) for p in plans for v in p.views if v.window_hw != (cfg.window_size,) * 2)
    print(f"{len(plans)} images -> {windows} windows of {cfg.window_size}x{cfg.window_size}"
          + (f" ({smaller} of them smaller, below the crop: .npy files)" if smaller else "")
          + f" in {args.bin_dir}; wrote {gt_path} and {manifest_beside(gt_path)}")
    return 0


def run() -> None:
    """The `segmenter-preprocess` command (and the top-level segmenter_preprocess.py)."""
    run_cli(lambda: main(parse_args()))


if __name__ == "__main__":
    run()
