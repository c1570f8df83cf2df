#!/usr/bin/env python3
"""Seg-L-Mask/16 on one NVIDIA GPU: windows/s per batch size of the torch-cuda engine (bf16 and fp16,
eager and torch.compile), against the card's bf16 matmul peak measured in the same run; label agreement
with fp32 on the shipped demo model; ONNX Runtime's TensorRT / CUDA providers where installed.

One short script for a GPU host with PyTorch: random Seg-L weights (speed does not depend on them),
768x768 windows, 19 classes. Names the card.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segmenter.cli import ArgumentParser
from segmenter.demo.checkpoints import write_random_checkpoint
from segmenter.demo.writers import write_split
from segmenter.engines.torch_engine import TorchEngine
from segmenter.model.loading import load_model

ROOT = Path(__file__).resolve().parents[1]
SEG_L_TFLOP = 2.08  # per 768x768 window (1.04 T multiply-adds)


def cuda_seconds(fn, warmup: int = 3, runs: int = 10) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / runs


def bf16_peak(n: int = 8192) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return 2 * n ** 3 / cuda_seconds(lambda: a @ b, 3, 20) / 1e12


def demo_agreement() -> dict[str, float]:
    """Share of the demo model's predicted pixels on generated scenes equal to fp32's, per precision."""
    from segmenter.data.settings import resolve_dataset, window_config
    from segmenter.engines.runtime import image_windows
    from segmenter.model.formats.upstream import load_variant
    from segmenter.model.variant import variant_beside

    demo = ROOT / "models" / "demo" / "checkpoint.pth"
    variant = load_variant(variant_beside(demo))
    spec = resolve_dataset(variant)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_split(tmp, "val", 4, (256, 512), seed=2026, dataset=spec.name)
        windows = np.stack(image_windows(paths, window_config(variant, spec, log=lambda _: None), 64))
    ref = TorchEngine(demo, None, "cuda", "fp32")(windows).argmax(1)
    return {p: float(np.mean(TorchEngine(demo, None, "cuda", p)(windows).argmax(1) == ref)) for p in ("bf16", "fp16")}


def main() -> None:
    parser = ArgumentParser(__doc__, example="python benchmarks/bench_gpu.py --batch-sizes 1 8 32")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="Default: 1 8 32.")
    parser.add_argument("--window", type=int, default=768, help="Default: 768.")
    parser.add_argument("--no-compile", action="store_true", help="Skip the torch.compile rows.")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch")
    peak = bf16_peak()
    print(f"card: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; measured bf16 matmul peak "
          f"{peak:.0f} TFLOP/s")
    print("demo model, argmax agreement with fp32: " + ", ".join(f"{p} {100 * a:.3f} %"
                                                                for p, a in demo_agreement().items()))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_random_checkpoint(tmp, "L", image_size=args.window, im_size=1024)
        print("| engine | batch | windows/s | ms per batch | % of bf16 peak |\n|---|---|---|---|---|")
        for precision in ("bf16", "fp16"):
            for compiled in ([False] if args.no_compile else [False, True]):
                engine = TorchEngine(ckpt, None, "cuda", precision, compile=compiled)
                for bs in args.batch_sizes:
                    x = torch.randn(bs, 3, args.window, args.window, device="cuda", dtype=engine.dtype)
                    with torch.inference_mode():
                        sec = cuda_seconds(lambda: engine.forward(x))
                    tflops = bs * SEG_L_TFLOP / sec
                    print(f"| {engine.name} | {bs} | {bs / sec:.1f} | {sec * 1000:.1f} | {100 * tflops / peak:.0f} % |",
                          flush=True)
                engine = None  # noqa: F841 - freed before the next one
                torch.cuda.empty_cache()
        try:
            import onnxruntime as ort
        except ImportError:
            return
        providers = ort.get_available_providers()
        wanted = [d for d, p in (("tensorrt", "TensorrtExecutionProvider"), ("cuda", "CUDAExecutionProvider"))
                  if p in providers]
        if not wanted:
            print(f"onnxruntime {ort.__version__}: no GPU provider installed (TensorRT/CUDA rows not measured)")
            return
        from segmenter.engines.backends import open_engine
        from segmenter.model.export import export_onnx

        net, _ = load_model(ckpt)
        export_onnx(net, Path(tmp) / "m.onnx", (args.window, args.window), log=lambda _: None)
        for device in wanted:
            for bs in args.batch_sizes:
                engine = open_engine(Path(tmp) / "m.onnx", device, "fp16", batch_size=bs)
                xb = np.random.default_rng(0).normal(size=(bs, 3, args.window, args.window)).astype(np.float32)
                for _ in range(3):
                    engine(xb)
                start = time.perf_counter()
                for _ in range(10):
                    engine(xb)
                sec = (time.perf_counter() - start) / 10
                print(f"| {engine.name} | {bs} | {bs / sec:.1f} | {sec * 1000:.1f} | "
                      f"{100 * bs * SEG_L_TFLOP / sec / peak:.0f} % |")


if __name__ == "__main__":
    main()
