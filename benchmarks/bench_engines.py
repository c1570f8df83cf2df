#!/usr/bin/env python3
"""Seconds per window of each engine and precision for Seg-T/B/L shapes at 768x768, against this machine's
matmul peaks measured with the engines themselves; the auto probe's choice; and the accuracy of every
lower precision (mIoU and pixel agreement with fp32) on the shipped demo model and a larger trained one.

Random released-format checkpoints give the speed figures (weights do not change the work); the trained
models give the accuracy figures. Prints Markdown tables (the README's); --csv also writes the speeds.
"""
from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segmenter.cli import ArgumentParser
from segmenter.data.images import sample_census
from segmenter.data.settings import resolve_dataset, window_config
from segmenter.demo.checkpoints import write_random_checkpoint
from segmenter.demo.writers import write_split
from segmenter.engines.autotune import choose_engine, machine_id
from segmenter.engines.backends import available_devices, cpu_has_bf16, open_engine
from segmenter.engines.quantize import Calibration
from segmenter.engines.runtime import calibration_from_images
from segmenter.engines.table import DEVICES
from segmenter.evaluation.evaluate import image_job
from segmenter.evaluation.metrics import ConfusionMatrix, compute_scores
from segmenter.evaluation.pipeline import run_pipeline
from segmenter.model.cache import cache_dir
from segmenter.model.export import export_onnx
from segmenter.model.formats.upstream import load_variant
from segmenter.model.loading import load_model
from segmenter.model.network import set_fused_attention
from segmenter.model.variant import ModelConfig, variant_beside
from segmenter.system import cpu_threads

ROOT = Path(__file__).resolve().parents[1]
LARGER = "models/demo-s384"  # under the cache folder: the larger trained model (see --larger)
LARGER_TRAINING = ["--d-model", "384", "--n-heads", "6", "--n-layers", "4", "--steps", "2100", "--bf16"]
QUIET = lambda *_: None  # noqa: E731
LONG_RUN = 100_000  # windows: a run long enough for the probe to measure every candidate, as this table wants


def window_macs(cfg: ModelConfig, hw: tuple[int, int]) -> float:
    """Multiply-adds of one forward pass on an (H, W) window (matmuls and the patch convolution)."""
    D, K, p = cfg.d_model, cfg.n_cls, cfg.patch_size
    n_patches = (hw[0] // p) * (hw[1] // p)
    n = n_patches + cfg.n_extra_tokens
    layer = lambda tokens: 12 * tokens * D * D + 2 * tokens * tokens * D  # noqa: E731 - qkv, proj, mlp + attention
    macs = n_patches * D * 3 * p * p + cfg.n_layers * layer(n)
    if cfg.decoder == "mask_transformer":
        t = n_patches + K
        macs += n_patches * D * D + cfg.decoder_layers * layer(t) + (n_patches + K) * D * D + n_patches * K * D
    else:
        macs += n_patches * D * K
    return float(macs)


def time_calls(fn, warmup: int, runs: int, min_seconds: float = 0.0) -> float:
    """Median seconds per call after warm-up (at least `runs` calls, and at least min_seconds in all)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < runs or sum(times) < min_seconds:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_peaks(n: int = 4096) -> dict[str, dict[str, float]]:
    """TFLOP/s of an n x n x n matmul: PyTorch at fp32 and bf16, OpenVINO at f32, bf16 and int8 (int8 inputs
    and weights, as its static int8 models run)."""
    import openvino as ov
    from openvino import opset13 as ops

    flops, found = 2.0 * n ** 3, {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        found.setdefault(name, {})["pytorch"] = flops / time_calls(lambda: a @ b, 2, 5) / 1e12
    x = ops.parameter([n, n], ov.Type.f32)
    w = ops.constant(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
    lo, hi = ops.constant(np.float32(-4)), ops.constant(np.float32(4))
    graphs = {"fp32": ops.matmul(x, w, False, False), "bf16": ops.matmul(x, w, False, False),
              "int8": ops.matmul(ops.fake_quantize(x, lo, hi, lo, hi, 256), ops.fake_quantize(w, lo, hi, lo, hi, 255),
                                 False, False)}
    data = np.random.default_rng(1).normal(size=(n, n)).astype(np.float32)
    for name, out in graphs.items():
        if name == "bf16" and not cpu_has_bf16():
            continue
        compiled = ov.Core().compile_model(ov.Model([out], [x]), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "bf16" if name == "bf16" else "f32"})
        request = compiled.create_infer_request()
        found.setdefault(name, {})["openvino"] = flops / time_calls(lambda: request.infer({0: data}), 2, 5) / 1e12
    return found


def smooth_windows(n: int, side: int, seed: int = 0) -> list[np.ndarray]:
    """Image-like windows (smooth noise) for timing and for calibrating random-weight models."""
    rng = np.random.default_rng(seed)
    small = rng.normal(size=(n, 3, side // 16, side // 16)).astype(np.float32)
    return list(np.repeat(np.repeat(small, 16, 2), 16, 3))


def speed_table(args, peaks: dict, engines: list[tuple[str, str]], tmp: Path) -> list[dict]:
    rows = []
    best_peak = {k: max(v.values()) for k, v in peaks.items()}
    for size in args.sizes:
        folder = tmp / size
        ckpt = write_random_checkpoint(folder, size, image_size=args.window, n_cls=19, im_size=1024)
        model, variant = load_model(ckpt)
        macs = window_macs(variant.model, (args.window, args.window))
        onnx_path = folder / "model.onnx"
        export_onnx(model, onnx_path, (args.window, args.window), log=QUIET)
        if args.pytorch_baseline:
            set_fused_attention(model, False)
            x1 = torch.randn(1, 3, args.window, args.window)
            with torch.no_grad():
                sec = time_calls(lambda: model(x1), 1, 1)
            rows.append(dict(model=f"Seg-{size}", engine="pytorch-eager fp32 (plain attention)", batch=1,
                             s_per_window=sec, tflops=2 * macs / sec / 1e12, peak="fp32", auto=""))
            print(_fmt(rows[-1], best_peak), flush=True)
        model = None  # noqa: F841 - freed before the engines load
        windows = smooth_windows(4, args.window)
        calibration = Calibration(f"smooth noise {size}", lambda: windows)
        opener = lambda d, p, bs=1: open_engine(onnx_path, d, p, cpu_threads(), bs, calibration)  # noqa: E731
        for bs in args.batch_sizes:
            # The probe's timing choice, a fresh probe each time. Random weights give near-tied logits, so the
            # agreement with fp32 says nothing here (budget 0): the accuracy table, on trained models, shows
            # which precisions meet the budget.
            with tempfile.TemporaryDirectory() as probe_cache:
                found = choose_engine("auto", "auto", lambda d, p: opener(d, p, bs), np.stack(windows), bs,
                                      f"{size}-{bs}", Path(probe_cache), LONG_RUN, calibration_ok=True, log=QUIET,
                                      budget=0.0)
                choice, found.engine = (found.device, found.precision), None
            for device, precision in engines:
                engine = opener(device, precision, bs)
                x = np.stack([windows[i % len(windows)] for i in range(bs)])
                sec = time_calls(lambda: engine(x), 1, 2, args.min_seconds) / bs
                engine = None  # noqa: F841 - freed before the next one loads
                rows.append(dict(model=f"Seg-{size}", engine=f"{device} {precision}", batch=bs, s_per_window=sec,
                                 tflops=2 * macs / sec / 1e12, peak=precision if precision in peaks else "fp32",
                                 auto="auto" if (device, precision) == choice else ""))
                print(_fmt(rows[-1], best_peak), flush=True)
    return rows


def accuracy_table(checkpoint: Path, engines: list[tuple[str, str]], tmp: Path, images: int = 24) -> list[dict]:
    """mIoU per engine/precision on the demo's generated val set, and pixel agreement with OpenVINO fp32."""
    variant = load_variant(variant_beside(checkpoint))
    spec = resolve_dataset(variant)
    cfg = window_config(variant, spec, log=QUIET)
    data = tmp / "val"
    if not data.exists():
        write_split(data, "val", images, (256, 512), seed=2026, dataset=spec.name)
    samples = spec.samples(data)
    model, _ = load_model(checkpoint)
    onnx_path = tmp / f"{checkpoint.parent.name}.onnx"
    export_onnx(model, onnx_path, (cfg.window_size, cfg.window_size), log=QUIET)
    calibration = calibration_from_images([s.image_path for s in samples], cfg)
    labels, rows = {}, []
    for device, precision in [("openvino", "fp32")] + [e for e in engines if e != ("openvino", "fp32")]:
        engine = open_engine(onnx_path, device, precision, cpu_threads(), 4, calibration)
        confusion, these = ConfusionMatrix(spec.n_cls), {}

        def sink(done, confusion=confusion, these=these):
            these[done.merger.plan.prefix] = done.merger.labels()
            gt = spec.read_labels(done.merger.plan.gt_path, done.merger.plan.original_hw)
            confusion.update(gt, these[done.merger.plan.prefix])

        run_pipeline([image_job(p, cfg) for p in sample_census(samples, cfg).plans], cfg, engine, sink, 4)
        labels[(device, precision)] = these
        reference = labels[("openvino", "fp32")]
        agreement = np.mean([np.mean(these[k] == reference[k]) for k in reference])
        rows.append(dict(model=checkpoint.parent.name, engine=f"{device} {precision}",
                         mean_iou=compute_scores(confusion.matrix, spec)["mean_iou"], agreement=100 * agreement))
        print(f"{rows[-1]['model']}: {rows[-1]['engine']:<16} mIoU {rows[-1]['mean_iou']:.2f}  agreement with fp32 "
              f"{rows[-1]['agreement']:.3f} %", flush=True)
    return rows


def main() -> None:
    parser = ArgumentParser(__doc__, example="python benchmarks/bench_engines.py --sizes T B --batch-sizes 1")
    parser.add_argument("--sizes", nargs="+", default=["T", "B", "L"], help="Model shapes. Default: T B L.")
    parser.add_argument("--window", type=int, default=768, help="Window side. Default: 768.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2], help="Batch sizes. Default: 1 2.")
    parser.add_argument("--engines", nargs="+", default=None,
                        help="device:precision pairs. Default: every installed CPU engine and precision.")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="Least timed seconds per row. Default: 10.")
    parser.add_argument("--pytorch-baseline", action="store_true",
                        help="Also time PyTorch fp32 eager with the plain attention formula (the upstream code path).")
    parser.add_argument("--demo", default=str(ROOT / "models" / "demo" / "checkpoint.pth"),
                        help="Demo checkpoint for the accuracy table ('' to skip).")
    parser.add_argument("--larger", default=str(cache_dir() / LARGER / "checkpoint.pth"),
                        help="The larger trained model for the accuracy table; trained there first when missing "
                             f"(tools/train_demo.py {' '.join(LARGER_TRAINING)}, about an hour on 2 cores). "
                             "'' to skip.")
    parser.add_argument("--skip-speed", action="store_true", help="Only the accuracy table.")
    parser.add_argument("--csv", default=None, help="Also write the speed table to this CSV file.")
    parser.add_argument("--formats", default=None, metavar="SIZE",
                        help="Only compare the release format with MMSegmentation's for one shape (e.g. B) at the "
                             "window size, on --engines (bench_formats.py), and stop.")
    args = parser.parse_args()
    if args.formats:
        from bench_formats import compare_formats

        print(f"machine: {machine_id()}; {cpu_threads()} threads")
        compare_formats(args.formats, args.window, 5, args.engines or ["openvino:fp32", "openvino:bf16", "cpu:fp32"],
                        log=lambda line: print(line, flush=True))
        return

    torch.set_num_threads(cpu_threads())
    if args.engines:
        engines = [tuple(e.split(":")) for e in args.engines]
    else:
        devices = [d for d in available_devices() if d in ("cpu", "openvino")]
        engines = [(d, p) for d in devices for p in DEVICES[d].precisions if p not in DEVICES[d].cpu_bf16
                   or cpu_has_bf16()]
    print(f"machine: {machine_id()}; {cpu_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_speed:
            peaks = matmul_peaks()
            print("measured 4096^3 matmul TFLOP/s: " + "; ".join(
                f"{k} " + ", ".join(f"{engine} {v:.3f}" for engine, v in by.items()) for k, by in peaks.items()))
            rows = speed_table(args, peaks, engines, tmp)
            if args.csv:
                with open(args.csv, "w", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)
        for checkpoint in filter(None, (args.demo, args.larger)):
            checkpoint = Path(checkpoint)
            if not checkpoint.is_file():
                import subprocess
                import sys

                print(f"training the larger model into {checkpoint.parent} (once)", flush=True)
                subprocess.run([sys.executable, str(ROOT / "tools" / "train_demo.py"), "--out-dir",
                                str(checkpoint.parent), *LARGER_TRAINING], check=True)
            accuracy_table(checkpoint, engines, tmp)


def _fmt(row: dict, peaks: dict) -> str:
    share = row["tflops"] / peaks[row["peak"]] * 100
    return (f"| {row['model']} | {row['engine']} | {row['batch']} | {row['s_per_window']:.3f} | {row['tflops']:.3f} | "
            f"{share:.0f} % of {row['peak']} | {row['auto']} |")


if __name__ == "__main__":
    main()
