#!/usr/bin/env python3
"""Convert a Segmenter checkpoint between MMSegmentation's format and the upstream release format.

An MMSegmentation checkpoint (with its config inside, or --cfg-path) becomes checkpoint.pth + variant.yml for
tools that expect the release format; a release checkpoint (variant.yml beside it, or --cfg-path) becomes an
MMSegmentation checkpoint with its config inside. Where one format cannot hold the other's network (another
decoder width or head count, a distillation token) the conversion is refused; the settings it cannot carry
over (LayerNorm eps, position-embedding interpolation, evaluation semantics) are listed, and the largest
logit difference between the two models on a random window is measured and printed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from segmenter.cli import ArgumentParser
from segmenter.data.settings import resolve_dataset
from segmenter.errors import SegmenterError, run_cli
from segmenter.files import atomic_write, ensure_writable_dir, refuse_overwrite
from segmenter.model.checkpoint import save_checkpoint
from segmenter.model.convert import mmseg_checkpoint, release_state, release_variant
from segmenter.model.loading import load_model
from segmenter.model.variant import variant_beside


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
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace a checkpoint.pth or variant.yml already in the output folder (refused without).")
    return parser.parse_args(argv)


def max_difference(a, b, size: int) -> float:
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
    out = ensure_writable_dir(out, "output folder")
    spec = resolve_dataset(variant)
    if variant.format == "mmseg":
        doc, notes = release_variant(variant, spec.name)
        state = release_state(model)
        save_checkpoint({"model": state, "n_cls": variant.n_cls}, out / "checkpoint.pth")
        atomic_write(out / "variant.yml", lambda tmp: Path(tmp).write_text(yaml.dump(doc)))
        converted, _ = load_model(out / "checkpoint.pth")
        written = f"{out / 'checkpoint.pth'} and {out / 'variant.yml'} (the release format)"
    else:
        ckpt, notes = mmseg_checkpoint(model, variant, spec.mmseg_type, spec.box_ratio, spec.classes, spec.palette)
        save_checkpoint(ckpt, out / "checkpoint.pth")
        converted, _ = load_model(out / "checkpoint.pth")
        written = f"{out / 'checkpoint.pth'} (MMSegmentation's format, its config inside)"
    print(f"wrote {written}")
    if notes:
        print("settings that cannot be carried over:\n" + "\n".join(f"  - {n}" for n in notes))
    diff = max_difference(model, converted, variant.window_size)
    print(f"largest logit difference between the two on a random {variant.window_size}x{variant.window_size} window: "
          f"{diff:.3g}")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
