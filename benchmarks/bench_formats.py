#!/usr/bin/env python3
"""Seconds per window of the same network in each checkpoint format, on the same engines: does reading
MMSegmentation's or PaddleSeg's files cost anything?

A random Seg-B-shaped release-format checkpoint, an MMSegmentation-format one of the same shape (the zoo's
settings: LayerNorm eps 1e-6, bicubic position embedding, no patch bias, exported with dynamic height and
width for windows below the crop) and a PaddleSeg one (mask head without q, k, v biases, patch grid that
drops a side's remainder) are exported and run on each engine at the window size; they are timed in
alternation (A B C A B C ...) so that the machine's drift falls on all alike. Prints a Markdown table and the
ratios.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from segmenter.cli import ArgumentParser
from segmenter.demo.checkpoints import (
    write_random_checkpoint,
    write_random_mmseg_checkpoint,
    write_random_paddle_checkpoint,
)
from segmenter.engines.autotune import machine_id
from segmenter.engines.backends import cpu_has_bf16, open_engine
from segmenter.model.cache import exported_model
from segmenter.model.loading import describe_model

QUIET = lambda *_: None  # noqa: E731


def alternate(engines: dict, x: np.ndarray, rounds: int) -> dict[str, float]:
    """The fastest of `rounds` calls of each engine, the engines called in turn (after two warm-up calls each)."""
    for engine in engines.values():
        engine(x)
        engine(x)
    best = {name: float("inf") for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            start = time.perf_counter()
            engine(x)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def compare_formats(size: str, window: int, rounds: int, engines: list[str], log=print) -> list[dict]:
    """Time both formats of one shape on each engine; prints and returns the rows."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        upstream = write_random_checkpoint(tmp / "upstream", size, image_size=window, n_cls=150, dataset="ade20k",
                                           im_size=512)
        mmseg = write_random_mmseg_checkpoint(tmp / "mmseg.pth", size, window)
        paddle = write_random_paddle_checkpoint(tmp / "paddle", size, window)
        files = {name: exported_model(path, describe_model(path, cfg), (window, window), QUIET)
                 for name, path, cfg in (("release", upstream, None), ("mmseg", mmseg, None), ("paddle", *paddle))}
        x = np.random.default_rng(0).normal(size=(1, 3, window, window)).astype(np.float32)
        log(f"\nSeg-{size}, one {window}x{window} window, batch 1, fastest of {rounds} calls (s/window):\n\n"
            "| engine | release format | MMSegmentation format | PaddleSeg format | MMSegmentation / release | "
            "PaddleSeg / MMSegmentation |\n|---|---|---|---|---|---|")
        for pair in engines:
            device, precision = pair.split(":")
            if precision == "bf16" and not cpu_has_bf16():
                continue
            opened = {name: open_engine(path, device, precision) for name, path in files.items()}
            seconds = alternate(opened, x, rounds)
            a, b, c = seconds["release"], seconds["mmseg"], seconds["paddle"]
            rows.append(dict(engine=pair, release=a, mmseg=b, paddle=c, ratio=b / a, paddle_ratio=c / b))
            log(f"| {device} {precision} | {a:.3f} | {b:.3f} | {c:.3f} | {b / a:.3f} | {c / b:.3f} |")
            del opened
    return rows


def main() -> None:
    parser = ArgumentParser(__doc__, example="python benchmarks/bench_formats.py --size B --window 512 --rounds 5")
    parser.add_argument("--size", default="B", choices=["tiny", "T", "S", "B", "L"], help="Model shape. Default: B.")
    parser.add_argument("--window", type=int, default=512, help="Window side (the ADE20K zoo's crop). Default: 512.")
    parser.add_argument("--rounds", type=int, default=5, help="Timed calls of each engine, in turn. Default: 5.")
    parser.add_argument("--engines", nargs="+", default=["openvino:fp32", "openvino:bf16", "cpu:fp32"],
                        help="device:precision pairs. Default: openvino:fp32 openvino:bf16 cpu:fp32.")
    args = parser.parse_args()
    print(f"machine: {machine_id()}")
    compare_formats(args.size, args.window, args.rounds, args.engines, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
