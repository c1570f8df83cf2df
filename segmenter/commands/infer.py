"""Run an exported ONNX model over .bin/.npy inputs with ais_bench's flags, file layout and summary.

A drop-in for `python3 -m ais_bench` on hosts without an Ascend card: outputs are named
<input name>_0.bin in <output>/<output_dirname>, with <output>/<output_dirname>_summary.json beside.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from segmenter.cli import ArgumentParser, non_negative_int, positive_int
from segmenter.engines.backends import open_engine
from segmenter.engines.runtime import calibration_from_inputs
from segmenter.engines.table import DEVICES, PRECISIONS, needs_calibration
from segmenter.errors import SegmenterError, run_cli
from segmenter.evaluation.provenance import exported_model_record
from segmenter.fileroute.aisbench import list_inputs, run_benchmark
from segmenter.files import ensure_writable_dir, refuse_overwrite
from segmenter.system import cpu_threads


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python segmenter_infer.py --model runs/demo/model.onnx --input "
                            "runs/demo/bins --output runs/demo/result --output_dirname result_bs1")
    parser.add_argument("--model", required=True, help="Exported ONNX model (segmenter_pytorch2onnx.py).")
    parser.add_argument("--input", default=None,
                        help="Folder of input files (or comma-separated files), read in natural order. "
                             "Without it: pure inference on zeros for --loop runs.")
    parser.add_argument("--output", default=None, help="Folder under which the result folder is created.")
    parser.add_argument("--output_dirname", "--output-dirname", default=None,
                        help="Name of the result folder under --output. Default: a timestamp.")
    parser.add_argument("--outfmt", choices=["BIN", "NPY"], default="BIN",
                        help="Output file format: raw float32 (BIN) or numpy (NPY). Default: BIN.")
    parser.add_argument("--batchsize", "--batch-size", type=positive_int, default=1,
                        help="Windows per inference; the last batch is padded by repeating a file. Default: 1.")
    parser.add_argument("--loop", type=positive_int, default=1,
                        help="Timed runs: of the zero batch without --input, of each batch with it. Default: 1.")
    parser.add_argument("--warmup_count", "--warmup-count", type=non_negative_int, default=1,
                        help="Untimed runs before timing starts. Default: 1.")
    parser.add_argument("--calibration-dir", default=None,
                        help="Folder of .bin/.npy windows to calibrate static int8 (openvino) on. Default: --input.")
    parser.add_argument("--device", default="cpu",
                        help=f"Execution target: {', '.join(DEVICES)}. Default: cpu.")
    parser.add_argument("--precision", default="fp32",
                        help=f"Compute precision: {', '.join(PRECISIONS)}. Default: fp32.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    if args.device.isdigit():
        raise SegmenterError(f"--device {args.device}: here --device names an engine target "
                             f"({', '.join(DEVICES)}), not an NPU id")
    inputs = list_inputs(args.input) if args.input else None
    output_dir = None
    if args.output:
        output_dir = Path(args.output) / (args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S"))
        refuse_overwrite({"output folder": output_dir,
                          "summary": output_dir.parent / f"{output_dir.name}_summary.json"},
                         {"input folder": args.input, "model": args.model, "calibration folder": args.calibration_dir})
        ensure_writable_dir(output_dir, "output folder")
    calibration = None
    if args.device in DEVICES and needs_calibration(args.device, args.precision):  # calibrated on the data's windows
        source = args.calibration_dir or args.input
        if not source:
            raise SegmenterError("--precision int8 on openvino calibrates on windows: give --input or "
                                 "--calibration-dir (a folder of .bin/.npy windows)")
        calibration = calibration_from_inputs(list_inputs(source), Path(args.model))
    engine = open_engine(args.model, args.device, args.precision, batch_size=args.batchsize, calibration=calibration)
    print(f"[INFO] {engine.name}: {args.model}, input (N, 3, {engine.input_hw[0]}, {engine.input_hw[1]}), "
          f"batch size {args.batchsize}")
    record = {"model": exported_model_record(args.model),
              "engine": {"device": args.device, "precision": args.precision, "batch_size": args.batchsize,
                         "threads": cpu_threads(), "chosen_by": "given", "name": engine.name}}
    run_benchmark(engine, inputs=inputs, output_dir=output_dir, outfmt=args.outfmt, batch_size=args.batchsize,
                  loop=args.loop, warmup=args.warmup_count, record=record)
    return 0


def run() -> None:
    """The `segmenter-infer` command (and the top-level segmenter_infer.py)."""
    run_cli(lambda: main(parse_args()))


if __name__ == "__main__":
    run()
