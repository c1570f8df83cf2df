"""Export a Segmenter checkpoint to ONNX: the released format (checkpoint.pth + variant.yml), MMSegmentation's or
PaddleSeg's (model.pdparams + its YAML config)."""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.cli import ArgumentParser, non_negative_float, positive_int
from segmenter.defaults import DEFAULT_OPSET, EXPORT_TOLERANCE
from segmenter.errors import run_cli
from segmenter.files import ensure_writable_file, refuse_overwrite
from segmenter.model.loading import load_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python segmenter_pytorch2onnx.py -c models/demo/checkpoint.pth "
                            "-o runs/demo/model.onnx")
    parser.add_argument("-c", "--checkpoint-path", required=True,
                        help="A released checkpoint.pth, an MMSegmentation Segmenter checkpoint or a PaddleSeg "
                             "model.pdparams (the format is read from the file's content; loaded without arbitrary "
                             "unpickling).")
    parser.add_argument("-o", "--onnx-path", required=True, help="Path of the ONNX file to write.")
    parser.add_argument("--cfg-path", "--variant", dest="cfg_path", default=None,
                        help="The model's variant.yml, MMSegmentation config (dumped, or a model-zoo config with "
                             "_base_ files) or PaddleSeg YAML config (needed for a .pdparams). Default: an "
                             "MMSegmentation checkpoint's own config, else variant.yml beside the checkpoint.")
    parser.add_argument("--input-size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
                        help="Fixed input height and width of the exported graph (the batch axis stays "
                             "dynamic). Default: the variant's net_kwargs.image_size, i.e. the window size.")
    parser.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET,
                        help=f"ONNX opset version. Default: {DEFAULT_OPSET}; use 11 for older ATC releases.")
    parser.add_argument("--tolerance", type=non_negative_float, default=EXPORT_TOLERANCE,
                        help="Largest accepted absolute difference between ONNX Runtime and PyTorch logits "
                             f"on a random batch; above it the export fails. Default: {EXPORT_TOLERANCE:g}.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    refuse_overwrite({"ONNX file": args.onnx_path}, {"checkpoint": args.checkpoint_path, "variant": args.cfg_path})
    ensure_writable_file(args.onnx_path, "ONNX file")
    model, variant = load_model(args.checkpoint_path, args.cfg_path)  # the torch extra, or one line naming it
    from segmenter.model.export import export_onnx

    refuse_overwrite({"ONNX file": args.onnx_path}, {"description's files": variant.sources})
    input_size = tuple(args.input_size) if args.input_size else variant.model.image_size
    cfg, dynamic = variant.model, not variant.raise_to_window
    print(f"exporting {args.checkpoint_path} ({variant.format} format, {cfg.decoder}, D={cfg.d_model}, "
          f"{cfg.n_layers} layers, {cfg.n_cls} classes) at input (N, 3, {input_size[0]}, {input_size[1]})"
          + (", height and width dynamic (windows smaller than the crop)" if dynamic else ""))
    export_onnx(model, args.onnx_path, input_size, opset=args.opset, tolerance=args.tolerance, dynamic_hw=dynamic)
    print(f"wrote {Path(args.onnx_path)}")
    return 0


def run() -> None:
    """The `segmenter-pytorch2onnx` command (and the top-level segmenter_pytorch2onnx.py)."""
    run_cli(lambda: main(parse_args()))


if __name__ == "__main__":
    run()
