#!/usr/bin/env python3
"""Windows/s per engine, precision and batch size for Seg-T/B/L shapes at 768x768, beside the machine's
measured large-matmul peaks (same run), the PyTorch fp32 baseline, and the demo model's mIoU per precision.

Random released-format checkpoints give the speed figures (weights do not change the work); the shipped
demo model gives the accuracy figures. Prints one table; --csv also writes it.
"""
from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segmenter.checkpoint import load_model, write_random_checkpoint
from segmenter.cli import ArgumentParser
from segmenter.config import resolve_dataset, window_config
from segmenter.engines import ENGINE_PRECISIONS, available_devices, cpu_has_bf16, cpu_threads, open_engine
from segmenter.evaluate import stream_evaluate
from segmenter.export import export_onnx
from segmenter.fakecity import write_split
from segmenter.metrics import compute_scores
from segmenter.model import set_fused_attention
from segmenter.variant import ModelConfig, load_variant

ROOT = Path(__file__).resolve().parents[1]


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


def matmul_peaks(n: int = 4096) -> dict[str, float]:
    """Best measured TFLOP/s of an n x n x n matmul per precision, over PyTorch and OpenVINO."""
    peaks: dict[str, float] = {}
    flops = 2.0 * n ** 3
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        peaks[name] = flops / time_calls(lambda: a @ b, 2, 5) / 1e12
    try:
        import openvino as ov
        from openvino import opset13 as ops

        x = ops.parameter([n, n], ov.Type.f32)
        w = ops.constant(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
        model = ov.Model([ops.matmul(x, w, False, False)], [x])
        for name, hint in (("fp32", "f32"), ("bf16", "bf16")):
            if name == "bf16" and not cpu_has_bf16():
                continue
            compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
            data = np.random.default_rng(1).normal(size=(n, n)).astype(np.float32)
            peaks[name] = max(peaks[name], flops / time_calls(lambda: compiled(data), 2, 5) / 1e12)
    except ImportError:
        pass
    return peaks


def demo_miou(variant_path: Path, onnx_path: Path, data_root: Path, engines: list[tuple[str, str]]) -> dict:
    variant = load_variant(variant_path)
    spec = resolve_dataset(variant)
    cfg = window_config(variant, spec, log=lambda _: None)
    samples = spec.samples(data_root)
    out = {}
    for device, precision in engines:
        engine = open_engine(onnx_path, device, precision, batch_size=4)
        matrix = stream_evaluate(samples, spec, cfg, engine, 4, log=lambda _: None).confusion.matrix
        out[(device, precision)] = compute_scores(matrix, spec)["mean_iou"]
    return out


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
                        help="Demo checkpoint for the accuracy-per-precision table ('' to skip).")
    parser.add_argument("--csv", default=None, help="Also write the speed table to this CSV file.")
    args = parser.parse_args()

    threads = cpu_threads()
    torch.set_num_threads(threads)
    if args.engines:
        engines = [tuple(e.split(":")) for e in args.engines]
    else:
        devices = [d for d in available_devices() if d in ("cpu", "openvino")]
        engines = [(d, p) for d in devices for p in ENGINE_PRECISIONS[d] if p != "bf16" or cpu_has_bf16()]
    peaks = matmul_peaks()
    listed = ", ".join(f"{k} {v:.3f} TFLOP/s" for k, v in peaks.items())
    print(f"{threads} threads; measured 4096^3 matmul peaks: {listed}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / size
            ckpt = write_random_checkpoint(folder, size, image_size=args.window, n_cls=19, im_size=1024)
            model, variant = load_model(ckpt)
            macs = window_macs(variant.model, (args.window, args.window))
            onnx_path = folder / "model.onnx"
            export_onnx(model, onnx_path, (args.window, args.window), log=lambda _: None)
            x1 = torch.randn(1, 3, args.window, args.window)
            if args.pytorch_baseline:
                set_fused_attention(model, False)
                with torch.no_grad():
                    sec = time_calls(lambda: model(x1), 1, 1)
                rows.append(dict(model=f"Seg-{size}", engine="pytorch-eager fp32 (plain attention)", batch=1,
                                 windows_per_s=1 / sec, s_per_window=sec, tflops=2 * macs / sec / 1e12, peak="fp32"))
                print(_fmt(rows[-1], peaks), flush=True)
            del model
            for device, precision in engines:
                for bs in args.batch_sizes:
                    engine = open_engine(onnx_path, device, precision, threads, bs)
                    x = np.random.default_rng(0).normal(size=(bs, 3, args.window, args.window)).astype(np.float32)
                    sec = time_calls(lambda: engine(x), 1, 2, args.min_seconds) / bs
                    peak = "bf16" if precision == "bf16" else "fp32"
                    rows.append(dict(model=f"Seg-{size}", engine=engine.name, batch=bs, windows_per_s=1 / sec,
                                     s_per_window=sec, tflops=2 * macs / sec / 1e12, peak=peak))
                    print(_fmt(rows[-1], peaks), flush=True)
        if args.csv:
            with open(args.csv, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        if args.demo:
            demo = Path(args.demo)
            model, _ = load_model(demo)
            onnx_path = Path(tmp) / "demo.onnx"
            export_onnx(model, onnx_path, model.cfg.image_size, log=lambda _: None)
            data = Path(tmp) / "demo_data"
            write_split(data, "val", 24, (256, 512), seed=2026)
            scores = demo_miou(demo.with_name("variant.yml"), onnx_path, data, engines)
            base = scores.get(("cpu", "fp32"))
            print("\ndemo model, generated val set (24 images, the demo's): mIoU per engine")
            for (device, precision), miou in scores.items():
                delta = f"  ({miou - base:+.2f} vs onnxruntime fp32)" if base is not None else ""
                print(f"  {device:>9} {precision}: {miou:.2f}{delta}")


def _fmt(row: dict, peaks: dict) -> str:
    share = row["tflops"] / peaks[row["peak"]] * 100
    return (f"{row['model']:<6} {row['engine']:<38} bs {row['batch']:<2} {row['windows_per_s']:8.3f} windows/s "
            f"{row['s_per_window']:8.3f} s/window {row['tflops']:6.3f} TFLOP/s = {share:5.1f}% "
            f"of the {row['peak']} peak")


if __name__ == "__main__":
    main()
