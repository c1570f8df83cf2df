"""Random-weight checkpoints for tests, benchmarks and tools: in the release format (checkpoint.pth +
variant.yml, of any size), and in MMSegmentation's as its model zoo's Segmenter files are laid out (the
zoo's settings: LayerNorm eps 1e-6, bicubic position embedding, no patch bias, two decoder layers of
width // 64 heads, the slide test of crop - 32 stride; the data set's class names and palette; the config
inside the file as mmseg 1.x dumps it).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.datasets import dataset_spec
from ..defaults import default_stride
from ..errors import SegmenterError
from ..model.checkpoint import save_checkpoint
from ..model.formats import mmseg
from ..model.formats.upstream import parse_variant, write_release
from ..model.network import Segmenter
from ..model.variant import ModelConfig, Variant

# Encoder shapes of the released backbones (upstream `config.yml`), and a tiny one for tests.
SIZES: dict[str, dict] = {
    "tiny": dict(d_model=64, n_heads=2, n_layers=2, backbone="vit_tiny_test"),
    "T": dict(d_model=192, n_heads=3, n_layers=12, backbone="vit_tiny_patch16_384"),
    "S": dict(d_model=384, n_heads=6, n_layers=12, backbone="vit_small_patch16_384"),
    "B": dict(d_model=768, n_heads=12, n_layers=12, backbone="vit_base_patch16_384"),
    "L": dict(d_model=1024, n_heads=16, n_layers=24, backbone="vit_large_patch16_384"),
}


def make_variant_dict(size: str = "tiny", *, n_cls: int = 19, image_size: int = 64, patch_size: int = 16,
                      decoder: str = "mask_transformer", decoder_layers: int = 2, distilled: bool = False,
                      normalization: str = "vit", dataset: str = "cityscapes", im_size: int | None = None,
                      window_stride: int | None = None, **shape_overrides) -> dict:
    """A variant.yml mapping laid out like the released ones (tuples become !!python/tuple).

    `shape_overrides` (d_model, n_heads, n_layers, backbone) change the preset of `size`.
    """
    if size not in SIZES:
        raise SegmenterError(f"unknown model size '{size}' (known: {', '.join(SIZES)})")
    shape = {**SIZES[size], **shape_overrides}
    net = {
        "backbone": shape["backbone"], "d_model": shape["d_model"], "n_heads": shape["n_heads"],
        "n_layers": shape["n_layers"], "n_cls": n_cls, "image_size": (image_size, image_size),
        "patch_size": patch_size, "normalization": normalization, "dropout": 0.0, "drop_path_rate": 0.1,
        "decoder": {"name": decoder, "drop_path_rate": 0.0, "dropout": 0.1, "n_layers": decoder_layers},
    }
    if decoder == "linear":
        net["decoder"] = {"name": "linear"}
    if distilled:
        net["distilled"] = True  # released files leave it out when false
    im_size = im_size or image_size
    return {
        "net_kwargs": net,
        "dataset_kwargs": {"dataset": dataset, "image_size": im_size, "crop_size": image_size,
                           "normalization": normalization, "batch_size": 8, "num_workers": 10, "split": "train"},
        "inference_kwargs": {"im_size": im_size, "window_size": image_size,
                             "window_stride": window_stride or default_stride(image_size)},
        "algorithm_kwargs": {"batch_size": 8, "eval_freq": 4, "num_epochs": 216, "start_epoch": 0},
        "optimizer_kwargs": {"opt": "sgd", "lr": 0.001, "weight_decay": 0.0, "momentum": 0.9,
                             "sched": "polynomial", "poly_power": 0.9, "min_lr": 1e-05},
        "amp": False, "resume": True, "version": "normal", "log_dir": "seg", "world_batch_size": 8,
    }


def save_released_format(out_dir: str | Path, model: Segmenter, variant: dict, epoch: int = 0) -> Path:
    """Write `checkpoint.pth` + `variant.yml` as the upstream training code does; returns the checkpoint path."""
    out_dir = Path(out_dir)
    state = dict(model.state_dict())
    D = model.cfg.d_model
    g = torch.Generator().manual_seed(0)
    state["encoder.head.weight"] = torch.randn(1000, D, generator=g) * 0.02  # unused ImageNet heads
    state["encoder.head.bias"] = torch.zeros(1000)
    if model.cfg.distilled:
        state["encoder.head_dist.weight"] = torch.randn(1000, D, generator=g) * 0.02
        state["encoder.head_dist.bias"] = torch.zeros(1000)
    training = {"optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": list(range(len(state)))}]},
                "n_cls": model.cfg.n_cls, "epoch": epoch,
                "lr_scheduler": {"base_lrs": [0.001], "last_epoch": epoch, "power": 0.9, "min_lr": 1e-05}}
    return write_release(out_dir, state, variant, training)[0]


def write_random_checkpoint(out_dir: str | Path, size: str = "tiny", seed: int = 0, **variant_kwargs) -> Path:
    """A released-format checkpoint with random weights of a given size; returns the checkpoint path."""
    variant = make_variant_dict(size, **variant_kwargs)
    cfg: ModelConfig = parse_variant(variant, Path(out_dir) / "variant.yml").model
    model = Segmenter(cfg)
    model.init_weights(torch.Generator().manual_seed(seed))
    return save_released_format(out_dir, model, variant)


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
    ckpt, _ = mmseg.checkpoint_of(model, variant, spec)
    return save_checkpoint(ckpt, Path(out))


def write_random_paddle_checkpoint(folder: str | Path, size: str = "tiny", image_size: int = 512,
                                   decoder: str = "mask_transformer", seed: int = 0) -> tuple[Path, Path]:
    """A PaddleSeg Segmenter checkpoint with random weights of a released shape (model.pdparams, a pickle of numpy
    arrays as paddle.save writes it) and its config (config.yml, the zoo's ADE20K settings in one file); returns
    both paths."""
    import pickle

    import yaml

    from ..model.formats.paddle import paddle_state

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shape = SIZES[size]
    D, heads = shape["d_model"], shape["n_heads"]
    cfg = ModelConfig(image_size=(image_size, image_size), patch_size=16, d_model=D, n_heads=heads,
                      n_layers=shape["n_layers"], n_cls=150, decoder=decoder, decoder_layers=2,
                      pos_embed_mode="bicubic", logits_to_window=True, pad_to_patch=False, decoder_heads=heads,
                      decoder_qkv_bias=False)
    model = Segmenter(cfg)
    model.init_weights(torch.Generator().manual_seed(seed))
    weights = {**paddle_state(model), "StructuredToParameterName@@": {}}
    (folder / "model.pdparams").write_bytes(pickle.dumps(weights, protocol=4))
    backbone = dict(type="VisionTransformer", img_size=image_size, patch_size=16, embed_dim=D, depth=shape["n_layers"],
                    num_heads=heads, mlp_ratio=4, qkv_bias=True, final_norm=True)
    model_cfg = dict(type="LinearSegmenter", backbone=backbone) if decoder == "linear" else \
        dict(type="MaskSegmenter", backbone=backbone, h_embed_dim=D, h_depth=2, h_num_heads=heads, h_mlp_ratio=4)
    config = dict(model=model_cfg, train_dataset=dict(type="ADE20K"),
                  val_dataset=dict(type="ADE20K", transforms=[dict(type="ResizeByShort", short_size=512),
                                                              dict(type="Normalize")]),
                  test_config=dict(is_slide=True, crop_size=[image_size, image_size],
                                   stride=[image_size, image_size]))
    (folder / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder / "model.pdparams", folder / "config.yml"
