#!/usr/bin/env python3
"""Write a released-format checkpoint.pth + variant.yml with random weights (for tests and benchmarks)."""
from __future__ import annotations

import argparse

from segmenter.cli import ArgumentParser
from segmenter.data.datasets import DATASETS, dataset_spec
from segmenter.demo.checkpoints import SIZES, write_random_checkpoint
from segmenter.errors import run_cli
from segmenter.model.variant import DECODER_NAMES, NORMALIZATIONS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python tools/make_random_checkpoint.py --out-dir runs/seg_l --size L "
                            "--image-size 768 --im-size 1024")
    parser.add_argument("--out-dir", required=True, help="Folder to write checkpoint.pth and variant.yml into.")
    parser.add_argument("--size", choices=list(SIZES), default="tiny",
                        help="Encoder shape: tiny (tests) or the released T/S/B/L ViT shapes. Default: tiny.")
    parser.add_argument("--image-size", type=int, default=64,
                        help="Training crop side (window size); sets the position-embedding grid. Default: 64.")
    parser.add_argument("--n-cls", type=int, default=None, help="Number of classes. Default: the data set's.")
    parser.add_argument("--decoder", choices=list(DECODER_NAMES), default="mask_transformer",
                        help="Decoder type. Default: mask_transformer.")
    parser.add_argument("--distilled", action="store_true", help="Add a distillation token (DeiT).")
    parser.add_argument("--normalization", choices=list(NORMALIZATIONS), default="vit",
                        help="Input normalization recorded in the variant. Default: vit.")
    parser.add_argument("--im-size", type=int, default=None,
                        help="Short side images are resized to at inference. Default: the image size.")
    parser.add_argument("--dataset", choices=list(DATASETS), default="cityscapes",
                        help="Data set recorded in the variant (dataset_kwargs.dataset); --n-cls defaults to its "
                             "class count. Default: cityscapes.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed of the weights. Default: 0.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    path = write_random_checkpoint(
        args.out_dir, args.size, seed=args.seed, n_cls=args.n_cls or dataset_spec(args.dataset).n_cls,
        dataset=args.dataset, image_size=args.image_size,
        decoder=args.decoder, distilled=args.distilled, normalization=args.normalization, im_size=args.im_size)
    print(f"wrote {path} and {path.with_name('variant.yml')}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
