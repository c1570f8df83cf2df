"""Convert a Segmenter checkpoint into the upstream release format or MMSegmentation's.

An MMSegmentation checkpoint (its config inside, or --cfg-path) or a PaddleSeg one (.pdparams with its YAML
config) becomes checkpoint.pth + variant.yml for tools that expect the release format; a release checkpoint
(variant.yml beside it, or --cfg-path) becomes an MMSegmentation checkpoint with its config inside (--to
chooses). Where the target cannot hold the network (another decoder width or head count, a distillation
token) the conversion is refused; the settings it cannot carry over (LayerNorm eps, position-embedding
interpolation, evaluation semantics) are listed, and the largest logit difference between the two models on
a random window is measured and printed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.cli import ArgumentParser
from segmenter.data.settings import resolve_dataset
from segmenter.errors import SegmenterError, run_cli
from segmenter.files import ensure_writable_dir, refuse_overwrite
from segmenter.model.formats import FORMATS
from segmenter.model.loading import load_model
from segmenter.model.variant import variant_beside

WRITTEN = [name for name, f in FORMATS.items() if f.write is not None]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python tools/convert_checkpoint.py --checkpoint "
                            "segmenter_vit-b_mask_8x1_512x512_160k_ade20k.pth --out-dir seg_base_mask")
    parser.add_argument("--checkpoint", required=True,
                        help="The checkpoint to convert, in either format (read from its content).")
    parser.add_argument("--cfg-path", default=None,
                        help="Its variant.yml or MMSegmentation config. Default: the checkpoint's own config, else "
                             "variant.yml beside it.")
    parser.add_argument("--out-dir", required=True,
                        help="Folder to write the other format into: checkpoint.pth (and variant.yml for the release "
                             "format). It may not hold the checkpoint or its config.")
    parser.add_argument("--to", choices=WRITTEN, default=None,
                        help="The format to write. Default: MMSegmentation's for release and PaddleSeg checkpoints, "
                             "the release format for MMSegmentation's.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace a checkpoint.pth or variant.yml already in the output folder (refused without).")
    return parser.parse_args(argv)


def max_difference(a, b, size: int) -> float:
    import torch

    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def main(args: argparse.Namespace) -> int:
    reads = {"checkpoint": args.checkpoint, "config": args.cfg_path or variant_beside(args.checkpoint)}
    refuse_overwrite({"output folder": args.out_dir}, reads)
    out = Path(args.out_dir)
    existing = [out / name for name in ("checkpoint.pth", "variant.yml") if (out / name).exists()]
    if existing and not args.overwrite:
        raise SegmenterError(f"{existing[0]}: already exists; choose an empty output folder, or give --overwrite to "
                             "replace it")
    model, variant = load_model(args.checkpoint, args.cfg_path)
    refuse_overwrite({"output folder": out}, {"config's files": variant.sources})
    target = FORMATS[args.to or next(name for name in WRITTEN if name != variant.format)]
    if target.name == variant.format:
        raise SegmenterError(f"--to {target.name}: {args.checkpoint} is already in {target.title}'s format")
    out = ensure_writable_dir(out, "output folder")
    written, notes = target.write(model, variant, resolve_dataset(variant), out)
    converted, _ = load_model(written[0])
    print(f"wrote {' and '.join(map(str, written))} ({target.title}'s format)")
    if notes:
        print("settings that cannot be carried over:\n" + "\n".join(f"  - {n}" for n in notes))
    diff = max_difference(model, converted, variant.window_size)
    print(f"largest logit difference between the two on a random {variant.window_size}x{variant.window_size} window: "
          f"{diff:.3g}")
    return 0


def run() -> None:
    """The `segmenter-convert` command (and the top-level convert_checkpoint.py)."""
    run_cli(lambda: main(parse_args()))


if __name__ == "__main__":
    run()
