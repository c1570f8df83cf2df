#!/usr/bin/env python3
"""Streaming evaluation at Cityscapes scale: overhead of pre/post-processing over pure inference, peak memory.

Generates 1024x2048 scenes, a random released-format checkpoint (Seg-L by default), exports it, then in
one fresh process each: (a) the engine alone on every window of the data set (pure inference), (b)
segmenter_eval's streaming pipeline over the same images. Prints both times, the overhead and peak RSS.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from segmenter.cli import ArgumentParser

OPEN = """
import sys, time, json
import numpy as np
from segmenter.api import evaluate, open_model
from segmenter.data.images import sample_census
model = open_model({onnx!r}, {variant!r}, device={device!r}, precision={precision!r}, batch_size={bs},
                   window_stride={stride}, calibration_count=2, log=lambda *_: None)
samples = model.spec.samples({data!r})
model.resolve_on([s.image_path for s in samples])
cfg, engine = model.cfg, model.engine
"""

PURE = OPEN + """
n = sample_census(samples, cfg).windows
x = np.random.default_rng(0).normal(size=({bs}, 3, cfg.window_size, cfg.window_size)).astype(np.float32)
engine(x)
t = time.perf_counter()
for _ in range(-(-n // {bs})):
    engine(x)
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({{"seconds": time.perf_counter() - t, "windows": n, "peak_mb": hwm}}))
"""

STREAM = OPEN + """
engine(np.zeros(({bs}, 3, cfg.window_size, cfg.window_size), np.float32))
t = time.perf_counter()
evaluate(model, {data!r})
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({{"seconds": time.perf_counter() - t, "peak_mb": hwm}}))
"""


def run(code: str) -> dict:
    """Run code in a fresh interpreter; it prints a JSON line with its time and its own peak RSS (VmHWM: unlike
    ru_maxrss, it does not inherit the parent's peak across fork and exec)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = ArgumentParser(__doc__, example="python benchmarks/bench_stream.py --size B --images 1")
    parser.add_argument("--size", default="L", help="Model shape (T, S, B, L). Default: L.")
    parser.add_argument("--images", type=int, default=3, help="1024x2048 images. Default: 3.")
    parser.add_argument("--engines", nargs="+", default=["openvino:fp32", "cpu:fp32"],
                        help="device:precision pairs to measure. Default: openvino:fp32 cpu:fp32.")
    parser.add_argument("--batch-size", type=int, default=1, help="Windows per engine call. Default: 1.")
    parser.add_argument("--stride", type=int, default=736, help="Window stride. Default: 736 (6 windows/image).")
    args = parser.parse_args()
    from segmenter.demo.checkpoints import write_random_checkpoint
    from segmenter.demo.writers import write_split
    from segmenter.model.export import export_onnx
    from segmenter.model.loading import load_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_split(tmp / "data", "val", args.images, (1024, 2048), seed=7)
        ckpt = write_random_checkpoint(tmp / "model", args.size, image_size=768, im_size=1024)
        model, _ = load_model(ckpt)
        export_onnx(model, tmp / "model.onnx", (768, 768), log=lambda _: None)
        del model
        if any(pair == "openvino:int8" for pair in args.engines):  # quantized before the measured runs, whose
            from segmenter.api import open_model  # peak memory is then the engine's alone

            quantized = open_model(tmp / "model.onnx", device="openvino", precision="int8", window_stride=args.stride,
                                   calibration_count=2, log=lambda *_: None)
            quantized.resolve_on([s.image_path for s in quantized.spec.samples(tmp / "data")])
            quantized.model_file()
        for pair in args.engines:
            device, precision = pair.split(":")
            fields = dict(variant=str(tmp / "model" / "variant.yml"), data=str(tmp / "data"),
                          onnx=str(tmp / "model.onnx"), device=device, precision=precision,
                          bs=args.batch_size, stride=args.stride)
            pure = run(PURE.format(**fields))
            stream = run(STREAM.format(**fields))
            overhead = stream["seconds"] / pure["seconds"] - 1
            print(f"Seg-{args.size}, {device} {precision}, batch {args.batch_size}, {args.images} images of "
                  f"1024x2048 = {pure['windows']} windows of 768 (stride {args.stride})")
            print(f"  pure inference: {pure['seconds']:.1f} s ({pure['seconds'] / pure['windows']:.2f} s/window), "
                  f"peak RSS {pure['peak_mb']:.0f} MB")
            print(f"  streaming eval: {stream['seconds']:.1f} s, peak RSS {stream['peak_mb']:.0f} MB; "
                  f"pre/post-processing adds {overhead * 100:+.1f}%", flush=True)


if __name__ == "__main__":
    main()
