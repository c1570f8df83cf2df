#!/usr/bin/env python3
"""Every GPU engine of the suite on one NVIDIA card, in one table: label parity with fp32, then Seg-B and Seg-L
windows per second at batch sizes 1 to 32.

Parity: the shipped demo model (trained) on windows of generated street scenes; each engine's labels against
ONNX Runtime's CPU fp32, the suite's reference, where at least 99 % of the pixels must agree (the budget the
CPU precisions keep). Speed: random weights of the released Seg-B and Seg-L shapes (speed does not depend on
them), windows of --window (default 768) and 19 classes, engine calls as the pipeline makes them (float32
windows in host memory in, logits in host memory out), best of a few calls after warm-up. The rows: ONNX Runtime
CUDA fp32/fp16, TensorRT fp32/fp16, and the package's own PyTorch model in fp32, bf16 and fp16, eager and
through torch.compile. A wall-clock budget (default 450 s) bounds the run: cells it leaves out say so.
Target on one H100/H200: at least 100 Seg-L 768 windows per second.

--dry-run runs the same code on the CPU with tiny shapes and small windows, the CPU engines standing in (ONNX
Runtime CPU, OpenVINO, the PyTorch model on the CPU) and every GPU engine skipped with a note: the tests run it,
so the script cannot rot before a GPU host is at hand.
"""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segmenter.cli import ArgumentParser
from segmenter.demo import DEMO_MODEL
from segmenter.demo.checkpoints import write_random_checkpoint
from segmenter.engines.autotune import engine_versions, machine_id
from segmenter.engines.backends import available_devices, open_engine
from segmenter.errors import SegmenterError

AGREEMENT = 0.99  # share of pixels whose label must equal fp32's
SEG_L_768_TFLOP = 2.08  # floating-point operations of one Seg-L 768x768 window (1.04 T multiply-adds)


@dataclass(frozen=True)
class Row:
    """One engine of the table: a device of the engine table at a precision (torch rows: compiled or not)."""

    device: str
    precision: str
    compiled: bool = False
    torch_device: str = "cuda"  # where the PyTorch rows run (cpu in a dry run)

    @property
    def label(self) -> str:
        if self.device == "torch":
            return f"PyTorch {self.torch_device} {self.precision}" + (" compiled" if self.compiled else "")
        return f"{self.device} {self.precision}"


GPU_ROWS = [Row("cuda", "fp32"), Row("cuda", "fp16"), Row("tensorrt", "fp32"), Row("tensorrt", "fp16"),
            *(Row("torch", p, c) for p in ("fp32", "bf16", "fp16") for c in (False, True))]
DRY_ROWS = [Row("cpu", "fp32"), Row("openvino", "fp32"), Row("torch", "fp32", torch_device="cpu"),
            Row("torch", "bf16", torch_device="cpu")]


def open_row(row: Row, checkpoint: Path, onnx: Path, batch_size: int):
    """The engine of a row on a checkpoint (PyTorch rows) or its export (the others)."""
    if row.device == "torch":
        from segmenter.engines.torch_engine import TorchEngine

        return TorchEngine(checkpoint, None, row.torch_device, row.precision, batch_size, compile=row.compiled)
    return open_engine(onnx, row.device, row.precision, batch_size=batch_size)


def export(checkpoint: Path, window: int) -> Path:
    from segmenter.model.export import export_onnx
    from segmenter.model.loading import load_model

    net, _ = load_model(checkpoint)
    onnx = checkpoint.with_suffix(".onnx")
    export_onnx(net, onnx, (window, window), log=lambda _: None)
    return onnx


def parity_windows(tmp: Path, count: int = 8) -> tuple[np.ndarray, int]:
    """Windows of generated street scenes as the demo model's evaluation cuts them; and its window size."""
    from segmenter.data.settings import resolve_dataset, window_config
    from segmenter.demo.writers import write_split
    from segmenter.engines.runtime import image_windows
    from segmenter.model.formats.upstream import load_variant
    from segmenter.model.variant import variant_beside

    variant = load_variant(variant_beside(DEMO_MODEL))
    spec = resolve_dataset(variant)
    cfg = window_config(variant, spec, log=lambda _: None)
    paths = write_split(tmp / "scenes", "val", 4, (256, 512), seed=2026, dataset=spec.name)
    return np.stack(image_windows(paths, cfg, count)), cfg.window_size


def seconds_per_call(engine, batch: np.ndarray, budget_s: float) -> float:
    """Best seconds of an engine call on `batch` after two warm-up calls, within about `budget_s`."""
    for _ in range(2):
        engine(batch)
    best, start = float("inf"), time.perf_counter()
    for _ in range(5):
        begin = time.perf_counter()
        engine(batch)
        best = min(best, time.perf_counter() - begin)
        if time.perf_counter() - start > budget_s:
            break
    return best


def parity(rows: list[Row], tmp: Path) -> dict[Row, str]:
    """Each row's share of demo-model pixels labelled as ONNX Runtime CPU fp32 labels them."""
    windows, window = parity_windows(tmp)
    demo = tmp / "demo" / "checkpoint.pth"
    demo.parent.mkdir()
    for name in ("checkpoint.pth", "variant.yml"):
        (demo.parent / name).write_bytes((DEMO_MODEL.parent / name).read_bytes())
    onnx = export(demo, window)
    reference = open_engine(onnx, "cpu", "fp32")(windows).argmax(1)
    found = {}
    for row in rows:
        try:
            labels = open_row(row, demo, onnx, len(windows))(windows).argmax(1)
        except (SegmenterError, RuntimeError, ImportError) as exc:
            found[row] = f"fails: {str(exc).splitlines()[0][:90]}"
            continue
        share = float(np.mean(labels == reference))
        found[row] = f"{100 * share:.2f} % {'ok' if share >= AGREEMENT else 'BELOW 99 %'}"
    return found


def speeds(rows: list[Row], sizes: list[str], batch_sizes: list[int], window: int, tmp: Path,
           deadline: float) -> dict[tuple[Row, str, int], str]:
    """Windows per second of each row, model size and batch size; cells past the deadline say so."""
    found = {}
    rng = np.random.default_rng(0)
    for size in sizes:
        checkpoint = write_random_checkpoint(tmp / f"seg-{size}", size, image_size=window, im_size=window)
        onnx = export(checkpoint, window)
        for row in rows:
            for bs in batch_sizes:
                if time.monotonic() > deadline:
                    found[row, size, bs] = "(time budget)"
                    continue
                try:
                    engine = open_row(row, checkpoint, onnx, bs)
                    batch = rng.normal(size=(bs, 3, window, window)).astype(np.float32)
                    left = deadline - time.monotonic()
                    found[row, size, bs] = f"{bs / seconds_per_call(engine, batch, min(20.0, left / 4)):.1f}"
                except (SegmenterError, RuntimeError, MemoryError) as exc:
                    found[row, size, bs] = "out of memory" if "memory" in str(exc).lower() else "fails"
                    print(f"{row.label}, Seg-{size}, batch {bs}: {str(exc).splitlines()[0][:160]}", flush=True)
                engine = None  # noqa: F841 - freed before the next one
                free_gpu_memory()
            print(f"measured {row.label} on Seg-{size}", flush=True)
    return found


def free_gpu_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def usable(rows: list[Row], dry_run: bool) -> tuple[list[Row], list[str]]:
    """The rows this host can run, and a note for each it cannot."""
    if dry_run:
        return rows, [f"{row.label}: skipped (dry run on the CPU)" for row in GPU_ROWS]
    devices = set(available_devices())
    kept, notes = [], []
    for row in rows:
        wanted = "torch-cuda" if row.device == "torch" else row.device
        if wanted in devices:
            kept.append(row)
        else:
            notes.append(f"{row.label}: skipped ({wanted} is not usable here: see requirements-gpu.txt)")
    return kept, notes


def main() -> None:
    parser = ArgumentParser(__doc__, example="python benchmarks/bench_gpu.py --out gpu.md")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32],
                        help="Windows per engine call to measure. Default: 1 2 4 8 16 32 (a dry run: 1 2).")
    parser.add_argument("--sizes", nargs="+", default=["B", "L"], choices=["tiny", "T", "S", "B", "L"],
                        help="Released model shapes to measure. Default: B L (a dry run: tiny).")
    parser.add_argument("--window", type=int, default=768, help="Window side in pixels. Default: 768 (a dry run: 64).")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="Wall-clock seconds the speed measurements may take; cells past it are left out. "
                             "Default: 450.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Run on the CPU with tiny shapes, the CPU engines standing in for the GPU ones.")
    parser.add_argument("--out", type=Path, help="Also write the report (Markdown) to this file.")
    args = parser.parse_args()
    if args.dry_run:
        args.sizes, args.window = ["tiny"], 64
        args.batch_sizes = [bs for bs in args.batch_sizes if bs <= 2]
    start = time.monotonic()
    rows, notes = usable(DRY_ROWS if args.dry_run else GPU_ROWS, args.dry_run)
    if not rows:
        sys.exit("no GPU engine is usable here: " + "; ".join(notes) + " (--dry-run runs the CPU stand-ins)")
    lines = [f"machine: {machine_id()}", f"engines: {engine_versions()}", *notes,
             "TensorRT int8 is not an engine of this suite; its rows are not measured."]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        agreement = parity(rows, Path(tmp))
        measured = speeds(rows, args.sizes, args.batch_sizes, args.window, Path(tmp), start + args.budget_s)
    head = " | ".join(f"Seg-{s} bs {bs}" for s in args.sizes for bs in args.batch_sizes)
    lines += ["", f"windows per second, {args.window}x{args.window} windows, 19 classes; labels of the demo model "
              "against ONNX Runtime CPU fp32:", "", f"| engine | labels vs fp32 | {head} |",
              "|---" * (2 + len(args.sizes) * len(args.batch_sizes)) + "|"]
    for row in rows:
        cells = " | ".join(measured[row, s, bs] for s in args.sizes for bs in args.batch_sizes)
        lines.append(f"| {row.label} | {agreement[row]} | {cells} |")
    best = [(float(v), row.label, bs) for (row, size, bs), v in measured.items()
            if size == "L" and v.replace(".", "", 1).isdigit()]
    if best and args.window == 768:
        rate, label, bs = max(best)
        lines.append(f"\nSeg-L 768: best {rate:.1f} windows/s ({label}, batch {bs}; "
                     f"{'meets' if rate >= 100 else 'misses'} the target of 100), "
                     f"{rate * SEG_L_768_TFLOP:.0f} TFLOP/s")
    lines.append(f"\ntook {time.monotonic() - start:.0f} s")
    report = "\n".join(lines)
    print("\n".join(lines[len(notes) + 3:]))
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
