#!/usr/bin/env python3
"""Throughput of the Ray route on this machine (1 and 2 actors, beside one process), and projected wall
times of Cityscapes val for Seg-L on N CPU machines or N GPUs, from a measured Seg-L time per window.

Generated 1024x2048 scenes and a random released-format checkpoint (Seg-T shape by default: the
scaling, not the model, is measured); Seg-L's seconds per window are measured on one window with the
chosen engine (or given with --seg-l-seconds). Every figure printed says whether it was measured or
projected.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from segmenter.api import evaluate, open_model
from segmenter.cli import ArgumentParser
from segmenter.data.images import sample_census
from segmenter.data.plan import MULTISCALE_RATIOS, ImagePlan, WindowConfig, make_views
from segmenter.data.settings import resolve_dataset, window_config
from segmenter.demo.checkpoints import write_random_checkpoint
from segmenter.demo.writers import write_split
from segmenter.engines.backends import open_engine
from segmenter.evaluation.distributed import ray_evaluate, start_ray
from segmenter.model.export import export_onnx
from segmenter.model.formats.upstream import load_variant
from segmenter.model.loading import load_model

QUIET = lambda *_: None  # noqa: E731


def cityscapes_val_windows(stride: int, views) -> int:
    """Windows of the 500 Cityscapes val images (1024x2048) at S 1024, window 768."""
    cfg = WindowConfig(1024, 768, stride, "vit", 2, views)
    return 500 * ImagePlan.for_image("", "", "", "", (1024, 2048), cfg).n_windows


def seg_l_seconds_per_window(folder: Path, device: str, precision: str) -> float:
    ckpt = write_random_checkpoint(folder / "seg_l", "L", image_size=768, im_size=1024)
    model, _ = load_model(ckpt)
    export_onnx(model, folder / "seg_l.onnx", (768, 768), log=QUIET)
    del model
    engine = open_engine(folder / "seg_l.onnx", device, precision)
    x = np.random.default_rng(0).normal(size=(1, 3, 768, 768)).astype(np.float32)
    engine(x)
    start = time.perf_counter()
    runs = 2
    for _ in range(runs):
        engine(x)
    return (time.perf_counter() - start) / runs


def main() -> None:
    parser = ArgumentParser(__doc__, example="python benchmarks/bench_ray.py --images 4 --size T")
    parser.add_argument("--images", type=int, default=4, help="1024x2048 images to evaluate. Default: 4.")
    parser.add_argument("--size", default="T", help="Model shape for the throughput runs. Default: T.")
    parser.add_argument("--device", default="auto", help="Engine. Default: auto.")
    parser.add_argument("--precision", default="auto", help="Precision. Default: auto.")
    parser.add_argument("--gpu-windows-per-s", type=float, default=None,
                        help="Seg-L windows/s of one GPU, measured with benchmarks/bench_gpu.py on a GPU host; "
                             "adds the projection for N GPUs.")
    parser.add_argument("--seg-l-seconds", type=float, default=None,
                        help="Seg-L seconds per 768x768 window measured before; default: measure it now.")
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = write_random_checkpoint(tmp / "model", args.size, image_size=768, im_size=1024)
        model, _ = load_model(ckpt)
        export_onnx(model, tmp / "m.onnx", (768, 768), log=QUIET)
        del model
        variant = load_variant(tmp / "model" / "variant.yml")
        spec = resolve_dataset(variant)
        write_split(tmp / "data", "val", args.images, (1024, 2048), seed=3)
        cfg = window_config(variant, spec, log=QUIET)
        samples = spec.samples(tmp / "data")
        windows = sum(ImagePlan.for_image("", "", "", "", (1024, 2048), cfg).n_windows for _ in samples)
        model = open_model(tmp / "m.onnx", tmp / "model" / "variant.yml", device=args.device,
                           precision=args.precision, log=QUIET)
        model.resolve_on([s.image_path for s in samples])
        device, precision = model.device, model.precision
        print(f"CPU: {cpu}, {os.cpu_count()} cores; engine {device} {precision}")
        rows = []
        model.engine  # opened before the clock starts, as Ray's actors open theirs before their first image
        start = time.perf_counter()
        evaluate(model, tmp / "data")
        rows.append(("one process", time.perf_counter() - start))
        del model
        plans = sample_census(samples, cfg).plans
        ray = start_ray(None, QUIET)
        for actors in (1, 2):
            start = time.perf_counter()
            ray_evaluate(plans, spec, cfg, tmp / "m.onnx", device, precision, None, 1, actors, None, log=QUIET)
            rows.append((f"Ray, {actors} actor{'s' * (actors > 1)}", time.perf_counter() - start))
        ray.shutdown()
        print(f"\nmeasured: Seg-{args.size}, {args.images} images of 1024x2048 = {windows} windows of 768 (stride "
              f"{cfg.window_stride}), this machine")
        print("| route | wall s | windows/s | vs one process |\n|---|---|---|---|")
        for name, seconds in rows:
            print(f"| {name} | {seconds:.1f} | {windows / seconds:.2f} | {rows[0][1] / seconds:.2f}x |")
        speedup_two = rows[0][1] / rows[2][1]  # 2 actors sharing this machine's cores, against one process
        seconds = args.seg_l_seconds or seg_l_seconds_per_window(tmp, device, precision)
    source = "given" if args.seg_l_seconds else "measured now"
    print(f"\nSeg-L, one 768x768 window, {device} {precision}: {seconds:.2f} s ({source}); 2 actors on 2 cores ran at "
          f"{speedup_two:.2f}x one process")
    print("\nprojected: Cityscapes val (500 images), Seg-L, wall time = windows x s/window / machines (each machine "
          "like this one)")
    multi = make_views(list(MULTISCALE_RATIOS), flip=True)
    cases = [("single scale, stride 736", cityscapes_val_windows(736, (make_views()[0],))),
             ("single scale, stride 512", cityscapes_val_windows(512, (make_views()[0],))),
             ("multi-scale + flip, stride 512", cityscapes_val_windows(512, multi))]
    print("| case | windows | 1 machine | 4 machines | 16 machines |\n|---|---|---|---|---|")
    for name, n in cases:
        hours = [n * seconds / machines / 3600 for machines in (1, 4, 16)]
        print(f"| {name} | {n} | " + " | ".join(f"{h:.1f} h" for h in hours) + " |")
    if args.gpu_windows_per_s:
        print(f"\nprojected: the same on N GPUs at {args.gpu_windows_per_s:g} windows/s each (given)")
        print("| case | windows | 1 GPU | 4 GPUs | 8 GPUs |\n|---|---|---|---|---|")
        for name, n in cases:
            minutes = [n / args.gpu_windows_per_s / gpus / 60 for gpus in (1, 4, 8)]
            print(f"| {name} | {n} | " + " | ".join(f"{m:.1f} min" for m in minutes) + " |")
    else:
        print("\n(no GPU projection: give --gpu-windows-per-s, measured by benchmarks/bench_gpu.py on a GPU host)")


if __name__ == "__main__":
    main()
