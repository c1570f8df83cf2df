#!/usr/bin/env python3
"""Train the small demo Segmenter on procedural street scenes (CPU, minutes) and save it in released format.

Cross-entropy ignoring 255, AdamW, warm-up then cosine decay, random scale / crop / flip. Writes
`checkpoint.pth` + `variant.yml` into --out-dir; the project ships the result in models/demo/.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from segmenter.cli import ArgumentParser
from segmenter.data.datasets.cityscapes import SPEC as CITYSCAPES
from segmenter.data.images import view_windows
from segmenter.data.plan import ImagePlan, WindowConfig
from segmenter.defaults import default_stride
from segmenter.demo.checkpoints import make_variant_dict, save_released_format
from segmenter.demo.scenes import draw_street_scene
from segmenter.errors import run_cli
from segmenter.evaluation.metrics import ConfusionMatrix, compute_scores
from segmenter.evaluation.scoring import ImageMerger
from segmenter.model.formats.upstream import parse_variant
from segmenter.model.network import Segmenter
from segmenter.model.variant import NORMALIZATIONS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(__doc__, example="python tools/train_demo.py --out-dir runs/my_demo_model")
    p.add_argument("--out-dir", required=True, help="Folder to write checkpoint.pth and variant.yml into.")
    p.add_argument("--image-size", type=int, nargs=2, default=(256, 512), metavar=("H", "W"),
                   help="Size of the generated scenes. Default: 256 512.")
    p.add_argument("--window", type=int, default=128, help="Training crop = inference window. Default: 128.")
    p.add_argument("--patch-size", type=int, default=8, help="ViT patch size. Default: 8.")
    p.add_argument("--d-model", type=int, default=128, help="Model width. Default: 128.")
    p.add_argument("--n-layers", type=int, default=4, help="Encoder layers. Default: 4.")
    p.add_argument("--n-heads", type=int, default=4, help="Encoder heads. Default: 4.")
    p.add_argument("--decoder-layers", type=int, default=2, help="Mask-transformer layers. Default: 2.")
    p.add_argument("--steps", type=int, default=3000, help="Optimizer steps. Default: 3000.")
    p.add_argument("--batch-size", type=int, default=16, help="Crops per step. Default: 16.")
    p.add_argument("--lr", type=float, default=1e-3, help="Peak AdamW learning rate. Default: 1e-3.")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay. Default: 0.05.")
    p.add_argument("--train-images", type=int, default=400, help="Generated training scenes. Default: 400.")
    p.add_argument("--val-images", type=int, default=12, help="Held-out scenes scored during training. Default: 12.")
    p.add_argument("--eval-every", type=int, default=500, help="Steps between validation runs. Default: 500.")
    p.add_argument("--seed", type=int, default=0, help="Seed of data, crops and weights. Default: 0.")
    p.add_argument("--bf16", action="store_true",
                   help="Train under bfloat16 autocast (weights stay float32): several times faster on CPUs with "
                        "AMX or AVX512-BF16.")
    return p.parse_args(argv)


def scenes(n: int, hw: tuple[int, int], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(BGR uint8 image, train-id map) pairs, generated the way the data set files are."""
    out = []
    for i in range(n):
        s = draw_street_scene(*hw, seed=seed * 100003 + i)
        out.append((np.clip(s.image, 0, 255).round().astype(np.uint8)[:, :, ::-1].copy(), s.train_ids))
    return out


def class_index(data, per_class: int, rng: np.random.Generator) -> dict[int, list[tuple[int, int, int]]]:
    """Class -> up to per_class (image, y, x) pixels of it per image: centres for class-balanced crops."""
    index: dict[int, list[tuple[int, int, int]]] = {}
    for i, (_, label) in enumerate(data):
        for c in np.unique(label):
            if c == 255:
                continue
            ys, xs = np.nonzero(label == c)
            pick = rng.choice(ys.size, min(per_class, ys.size), replace=False)
            index.setdefault(int(c), []).extend((i, int(ys[j]), int(xs[j])) for j in pick)
    return index


def sample_batch(data, index, batch: int, window: int, norm: str, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scale in [0.75, 1.5]; the crop centres on a pixel of a uniformly drawn class half the time
    (rare, thin classes get seen), else anywhere; random horizontal flip."""
    mean, std = (np.asarray(v, np.float32) for v in NORMALIZATIONS[norm])
    classes = sorted(index)
    xs, ys = [], []
    for _ in range(batch):
        centre = None
        if rng.random() < 0.5:
            entries = index[classes[rng.integers(len(classes))]]
            i, cy, cx = entries[rng.integers(len(entries))]
            centre = (cy, cx)
        else:
            i = rng.integers(len(data))
        image, label = data[i]
        scale = rng.uniform(0.75, 1.5)
        h, w = max(window, int(image.shape[0] * scale)), max(window, int(image.shape[1] * scale))
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        if centre is None:
            top, left = rng.integers(h - window + 1), rng.integers(w - window + 1)
        else:
            jitter = rng.integers(-window // 4, window // 4 + 1, 2)
            top = int(np.clip(centre[0] * h / data[i][1].shape[0] - window // 2 + jitter[0], 0, h - window))
            left = int(np.clip(centre[1] * w / data[i][1].shape[1] - window // 2 + jitter[1], 0, w - window))
        image, label = image[top:top + window, left:left + window], label[top:top + window, left:left + window]
        if rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        xs.append(((image[:, :, ::-1].astype(np.float32) - mean) / std).transpose(2, 0, 1))
        ys.append(label.astype(np.int64))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


@torch.no_grad()
def evaluate(model: Segmenter, data, cfg: WindowConfig) -> dict:
    """Sliding-window mIoU over held-out scenes, the evaluation's own code path in PyTorch."""
    model.eval()
    confusion = ConfusionMatrix(model.n_cls)
    for image, label in data:
        plan = ImagePlan.for_image("", "", "", "", image.shape[:2], cfg)
        merger = ImageMerger(plan, model.n_cls, cfg.window_size)
        windows = np.concatenate(list(view_windows(image, plan, cfg)))
        for k, window_logits in enumerate(model(torch.from_numpy(windows)).numpy()):
            merger.add(k, window_logits)
        confusion.update(label, merger.labels())
    model.train()
    return compute_scores(confusion.matrix, CITYSCAPES)


def main(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    short = min(args.image_size)
    variant = make_variant_dict("tiny", n_cls=19, image_size=args.window, patch_size=args.patch_size,
                                decoder_layers=args.decoder_layers, im_size=short,
                                window_stride=default_stride(args.window), d_model=args.d_model, n_heads=args.n_heads,
                                n_layers=args.n_layers, backbone=f"vit_demo_patch{args.patch_size}_{args.window}")
    parsed = parse_variant(variant, Path(args.out_dir) / "variant.yml")
    model = Segmenter(parsed.model)
    model.init_weights(torch.Generator().manual_seed(args.seed))
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    t0 = time.time()
    train = scenes(args.train_images, tuple(args.image_size), args.seed + 1)
    val = scenes(args.val_images, tuple(args.image_size), args.seed + 2)
    index = class_index(train, 64, rng)
    print(f"generated {len(train)} training and {len(val)} validation scenes in {time.time() - t0:.0f} s")
    cfg = WindowConfig(short, args.window, default_stride(args.window), parsed.normalization)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n and "token" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embed" not in n and "token" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=args.lr)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, args.steps - warmup))))))
    model.train()
    t0, running = time.time(), 0.0
    for step in range(1, args.steps + 1):
        x, y = sample_batch(train, index, args.batch_size, args.window, parsed.normalization, rng)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 50 == 0:
            print(f"step {step}/{args.steps}  loss {running:.3f}  lr {schedule.get_last_lr()[0]:.2e}  "
                  f"{(time.time() - t0) / step:.2f} s/step", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            scores = evaluate(model, val, cfg)
            print(f"step {step}: validation mIoU {scores['mean_iou']:.2f}  pixel accuracy "
                  f"{scores['pixel_accuracy']:.2f}  per class {scores['cat_iou']}", flush=True)
    model.eval()
    path = save_released_format(args.out_dir, model, variant, epoch=args.steps)
    print(f"wrote {path} and {path.with_name('variant.yml')} after {(time.time() - t0) / 60:.1f} min of training")
    return 0


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
