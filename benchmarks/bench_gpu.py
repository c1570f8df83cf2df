#!/usr/bin/env python3
"""Seg-L-Mask/16 windows/s on an NVIDIA GPU: ONNX Runtime TensorRT / CUDA providers where installed,
and this package's PyTorch model in fp16 (scaled_dot_product_attention) wherever torch sees a GPU.

Random weights (speed does not depend on them); 768x768 windows, 19 classes. Names the card.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segmenter.checkpoint import make_variant_dict
from segmenter.cli import ArgumentParser
from segmenter.model import Segmenter
from segmenter.variant import parse_variant

ROOT = Path(__file__).resolve().parents[1]


def cuda_seconds(fn, warmup: int = 3, runs: int = 10) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / runs


def main() -> None:
    parser = ArgumentParser(__doc__, example="python benchmarks/bench_gpu.py")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="Default: 1 8.")
    parser.add_argument("--window", type=int, default=768, help="Default: 768.")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch")
    print(f"card: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    variant = make_variant_dict("L", image_size=args.window, n_cls=19, im_size=1024)
    cfg = parse_variant(variant, Path("variant.yml")).model
    model = Segmenter(cfg)
    model.init_weights(torch.Generator().manual_seed(0))
    model = model.cuda().eval()
    x = torch.randn(1, 3, args.window, args.window, device="cuda")
    with torch.no_grad():
        ref = model(x).float()
        half = model.half()
        out = half(x.half()).float()
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    print(f"fp16 vs fp32 logits: max |diff| {(out - ref).abs().max().item():.3g}, argmax agreement {agree * 100:.3f}%")
    for bs in args.batch_sizes:
        xb = torch.randn(bs, 3, args.window, args.window, device="cuda", dtype=torch.float16)
        with torch.no_grad():
            sec = cuda_seconds(lambda: half(xb))
        print(f"pytorch-cuda fp16 (SDPA)   bs {bs}: {bs / sec:8.1f} windows/s  ({sec * 1000:.1f} ms per batch)")
    half = model = None
    torch.cuda.empty_cache()
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: ONNX Runtime GPU providers not measured")
        return
    providers = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__} providers: {', '.join(providers)}")
    for device, provider in (("tensorrt", "TensorrtExecutionProvider"), ("cuda", "CUDAExecutionProvider")):
        if provider not in providers:
            print(f"{provider} not available: {device} not measured")
            continue
        from segmenter.checkpoint import load_model, write_random_checkpoint
        from segmenter.engines import open_engine
        from segmenter.export import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            net, _ = load_model(write_random_checkpoint(tmp, "L", image_size=args.window, im_size=1024))
            export_onnx(net, Path(tmp) / "m.onnx", (args.window, args.window), log=lambda _: None)
            for bs in args.batch_sizes:
                engine = open_engine(Path(tmp) / "m.onnx", device, "fp16", batch_size=bs)
                xb = np.random.default_rng(0).normal(size=(bs, 3, args.window, args.window)).astype(np.float32)
                for _ in range(3):
                    engine(xb)
                start = time.perf_counter()
                for _ in range(10):
                    engine(xb)
                sec = (time.perf_counter() - start) / 10
                print(f"{engine.name:<26} bs {bs}: {bs / sec:8.1f} windows/s  ({sec * 1000:.1f} ms per batch)")


if __name__ == "__main__":
    main()
