#!/usr/bin/env python3
"""Postprocess time per image and peak memory at Cityscapes scale (1024x2048, 6 windows of 768, 19 classes).

Compares the streamed postprocess with the guide's approach of loading every output before merging.
Outputs are random smooth logits in the guide's layout; each image's outputs take 269 MB on disk.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from segmenter.cli import ArgumentParser

ANCHORS = [(0, 0), (0, 736), (0, 1280), (256, 0), (256, 736), (256, 1280)]

STREAMED = """
import sys, time, json
from pathlib import Path
from segmenter.fileroute.postprocess import run_postprocess
t = time.perf_counter()
run_postprocess(Path({result!r}), Path({gt!r}), log=lambda _: None)
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({{"seconds": time.perf_counter() - t, "peak_mb": hwm}}))
"""

GUIDE_STYLE = """
import sys, time, json
from pathlib import Path
from segmenter.data.datasets.cityscapes import SPEC as CITYSCAPES
from segmenter.fileroute.manifest import read_layout
from segmenter.evaluation.metrics import ConfusionMatrix
from segmenter.fileroute.postprocess import read_output
from segmenter.evaluation.scoring import ImageMerger, score_image
t = time.perf_counter()
layout = read_layout(Path({gt!r}), log=lambda _: None)
result = Path({result!r})
outputs = [[read_output(result / f"{{p.prefix}}_{{k}}_0.bin", 19, 768) for k in range(p.n_windows)]
           for p in layout.plans]  # all in memory first
confusion = ConfusionMatrix(19)
for plan, windows in zip(layout.plans, outputs):
    merger = ImageMerger(plan, 19, 768)
    for k, w in enumerate(windows):
        merger.add(k, w)
    confusion.matrix += score_image(merger, CITYSCAPES, plan.gt_path).confusion
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({{"seconds": time.perf_counter() - t, "peak_mb": hwm}}))
"""


def make_outputs(folder: Path, n_images: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    result = folder / "result_bs1"
    result.mkdir(parents=True)
    lines = []
    for i in range(n_images):
        stem = f"frankfurt_000000_{i:06d}_leftImg8bit"
        gt_path = folder / f"frankfurt_000000_{i:06d}_gtFine_labelTrainIds.png"
        cv2.imwrite(str(gt_path), rng.integers(0, 19, (1024, 2048)).astype(np.uint8))
        lines.append(f"{stem}.png\t{gt_path}\n")
        for k in range(len(ANCHORS)):
            small = rng.normal(size=(24, 24, 19)).astype(np.float32)
            logits = cv2.resize(small, (768, 768), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
            np.ascontiguousarray(logits).tofile(result / f"{stem}_{k}_0.bin")
    (folder / "gt_file.txt").write_text("".join(lines))
    return result, folder / "gt_file.txt"


def measure(code: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a fresh interpreter running code; the peak is its VmHWM, which unlike
    ru_maxrss does not inherit the parent's peak across fork and exec."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["seconds"], result["peak_mb"]


def main() -> None:
    parser = ArgumentParser(__doc__, example="python benchmarks/bench_postprocess.py --images 4")
    parser.add_argument("--images", type=int, default=4, help="Images to generate and score. Default: 4.")
    parser.add_argument("--mode", choices=["both", "streamed", "guide"], default="both",
                        help="Which approach to measure (each in a fresh process). Default: both.")
    args = parser.parse_args()
    modes = ["streamed", "guide"] if args.mode == "both" else [args.mode]
    with tempfile.TemporaryDirectory() as tmp:
        result, gt = make_outputs(Path(tmp), args.images)
        for mode in modes:
            template = STREAMED if mode == "streamed" else GUIDE_STYLE
            seconds, peak = measure(template.format(result=str(result), gt=str(gt)))
            note = ("independent of the image count" if mode == "streamed"
                    else "grows by ~269 MB per image: 134 GB for the 500 val images")
            print(f"{mode:>8}: {args.images} images of 1024x2048, 6 windows x 19 x 768 x 768 float32 each: "
                  f"{seconds / args.images:.2f} s/image, peak RSS {peak:.0f} MB ({note})")


if __name__ == "__main__":
    main()
