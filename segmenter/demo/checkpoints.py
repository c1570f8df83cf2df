"""Random-weight checkpoints in MMSegmentation's format, laid out as its model zoo's Segmenter files are.

For benchmarks and tests: the zoo's settings (LayerNorm eps 1e-6, bicubic position embedding, no patch
bias, two decoder layers of width // 64 heads, the slide test of crop - 32 stride), the data set's class
names and palette, the config inside the file as mmseg 1.x dumps it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.datasets import dataset_spec
from ..defaults import default_stride
from ..model.checkpoint import SIZES, save_checkpoint
from ..model.convert import mmseg_checkpoint
from ..model.network import Segmenter
from ..model.variant import ModelConfig, Variant


def write_random_mmseg_checkpoint(out: str | Path, size: str = "tiny", image_size: int = 512, dataset: str = "ade20k",
                                  decoder: str = "mask_transformer", seed: int = 0) -> Path:
    """An MMSegmentation Segmenter checkpoint with random weights of a released shape (T/S/B/L, or tiny)."""
    spec = dataset_spec(dataset)
    shape = SIZES[size]
    cfg = ModelConfig(image_size=(image_size, image_size), patch_size=16, d_model=shape["d_model"],
                      n_heads=shape["n_heads"], n_layers=shape["n_layers"], n_cls=spec.n_cls, decoder=decoder,
                      decoder_layers=2, patch_bias=False, norm_eps=1e-6, pos_embed_mode="bicubic",
                      logits_to_window=True)
    model = Segmenter(cfg)
    model.init_weights(torch.Generator().manual_seed(seed))
    variant = Variant(model=cfg, normalization="vit", image_size=spec.image_size, window_size=image_size,
                      window_stride=default_stride(image_size), dataset=spec.mmseg_type, raw={}, path=Path(out),
                      format="mmseg", raise_to_window=False)
    ckpt, _ = mmseg_checkpoint(model, variant, spec.mmseg_type, spec.box_ratio, spec.classes, spec.palette)
    target = Path(out)
    return save_checkpoint(ckpt, target)
