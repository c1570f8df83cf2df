"""Converting a model between the two checkpoint formats, where both can express it.

To the release format: `checkpoint.pth` (`model`: encoder.* / decoder.* keys) and `variant.yml`. To
MMSegmentation's: `{'meta': {'config', 'CLASSES', 'PALETTE'}, 'state_dict'}`. What one format cannot
say of the other's model is refused when it changes the network's structure, and listed when it
changes only numbers or evaluation semantics (`notes`); the caller measures and states the difference.
"""
from __future__ import annotations

import json
import pprint

import torch

from ..errors import SegmenterError
from .mmseg import mmseg_key
from .network import Segmenter
from .variant import CONVERTED_FROM, NORMALIZATIONS, Variant

UPSTREAM_EPS = 1e-5  # the release format fixes every LayerNorm's eps, the decoder's heads (width // 64) and widths


def release_variant(variant: Variant, dataset: str) -> tuple[dict, list[str]]:
    """A variant.yml mapping of an MMSegmentation model's description, and what it cannot carry over."""
    cfg = variant.model
    if cfg.decoder == "mask_transformer" and (cfg.decoder_width != cfg.d_model or
                                              cfg.decoder_head_count != max(cfg.d_model // 64, 1)):
        raise SegmenterError(f"{variant.path}: the mask decoder is {cfg.decoder_width} wide with "
                             f"{cfg.decoder_head_count} heads; the release format has it {cfg.d_model} wide with "
                             f"{max(cfg.d_model // 64, 1)} heads (width // 64): it cannot hold this model")
    if cfg.mlp_ratio != 4 or not cfg.final_norm:
        raise SegmenterError(f"{variant.path}: mlp_ratio {cfg.mlp_ratio} or no final norm: the release format "
                             "cannot hold this model")
    notes = []
    if cfg.norm_eps != UPSTREAM_EPS or cfg.decoder_norm_eps != UPSTREAM_EPS:
        notes.append(f"LayerNorm eps {cfg.norm_eps:g} (encoder) / {cfg.decoder_norm_eps:g} (decoder) becomes "
                     f"{UPSTREAM_EPS:g}")
    if cfg.pos_embed_mode != "bilinear":
        notes.append(f"the position embedding is resized {cfg.pos_embed_mode}ally to other grids; the release "
                     "format resizes it bilinearly")
    if cfg.logits_to_window:
        notes.append("masks are resized straight to a window whose side is not a multiple of the patch; the release "
                     "format resizes them to the padded size and cuts")
    if not variant.raise_to_window:
        notes.append("windows below the crop: the release format raises a short side below the window to it")
    if variant.tta:
        notes.append("the config's own multi-scale views (of the image itself): the release format's are of the "
                     "fit box")
    if variant.classes:
        notes.append("the checkpoint's class names and palette: the release format takes the data set's")
    net = {"backbone": f"vit_{cfg.d_model}_{cfg.n_layers}", "d_model": cfg.d_model, "n_heads": cfg.n_heads,
           "n_layers": cfg.n_layers, "n_cls": cfg.n_cls, "image_size": tuple(cfg.image_size),
           "patch_size": cfg.patch_size, "normalization": variant.normalization, "dropout": 0.0,
           "drop_path_rate": 0.0,
           "decoder": {"name": cfg.decoder, **({"n_layers": cfg.decoder_layers, "drop_path_rate": 0.0,
                                                 "dropout": 0.0} if cfg.decoder == "mask_transformer" else {})}}
    window = variant.window_size
    return {"net_kwargs": net,
            "dataset_kwargs": {"dataset": dataset, "image_size": variant.image_size, "crop_size": window,
                               "normalization": variant.normalization},
            "inference_kwargs": {"im_size": variant.image_size, "window_size": window,
                                 "window_stride": variant.window_stride or window - 32},
            CONVERTED_FROM: "MMSegmentation"}, notes


def release_state(model: Segmenter) -> dict[str, torch.Tensor]:
    """The model's state dict as the release format stores it (a patch bias of zeros where it has none)."""
    state = dict(model.state_dict())
    if "encoder.patch_embed.proj.bias" not in state:
        state["encoder.patch_embed.proj.bias"] = torch.zeros(model.cfg.d_model)
    return state


def mmseg_checkpoint(model: Segmenter, variant: Variant, dataset_type: str, box_ratio: int, classes,
                     palette) -> tuple[dict, list]:
    """An MMSegmentation checkpoint dict of a release-format model, and what its config cannot carry over."""
    cfg = variant.model
    if cfg.distilled:
        raise SegmenterError(f"{variant.path}: a distilled (DeiT) model has a distillation token, which "
                             "MMSegmentation's VisionTransformer has no place for")
    state = {}
    for key, value in model.state_dict().items():
        theirs = mmseg_key(key)
        if theirs is None:
            raise SegmenterError(f"{variant.path}: no MMSegmentation name for '{key}'")
        if key in ("decoder.proj_patch", "decoder.proj_classes"):
            value = value.t()
        elif key == "decoder.head.weight":
            value = value[:, :, None, None]
        state[theirs] = value.contiguous()
    mean, std = NORMALIZATIONS[variant.normalization]
    window, stride = variant.window_size, variant.window_stride or variant.window_size - 32
    head = dict(type="SegmenterMaskTransformerHead", in_channels=cfg.d_model, channels=cfg.d_model,
                num_classes=cfg.n_cls, num_layers=cfg.decoder_layers, num_heads=cfg.decoder_head_count,
                embed_dims=cfg.decoder_width, dropout_ratio=0.0) if cfg.decoder == "mask_transformer" else \
        dict(type="FCNHead", in_channels=cfg.d_model, channels=cfg.d_model, num_convs=0, concat_input=False,
             dropout_ratio=0.0, num_classes=cfg.n_cls)
    config = dict(
        model=dict(type="EncoderDecoder",
                   data_preprocessor=dict(type="SegDataPreProcessor", mean=list(mean), std=list(std), bgr_to_rgb=True),
                   backbone=dict(type="VisionTransformer", img_size=tuple(cfg.image_size), patch_size=cfg.patch_size,
                                 embed_dims=cfg.d_model, num_layers=cfg.n_layers, num_heads=cfg.n_heads,
                                 mlp_ratio=cfg.mlp_ratio, final_norm=cfg.final_norm, patch_bias=cfg.patch_bias,
                                 norm_cfg=dict(type="LN", eps=cfg.norm_eps), interpolate_mode=cfg.pos_embed_mode,
                                 with_cls_token=True),
                   decode_head=head, test_cfg=dict(mode="slide", crop_size=(window, window), stride=(stride, stride))),
        dataset_type=dataset_type,
        test_pipeline=[dict(type="LoadImageFromFile"),
                       dict(type="Resize", scale=(variant.image_size * box_ratio, variant.image_size),
                            keep_ratio=True), dict(type="LoadAnnotations"), dict(type="PackSegInputs")])
    text = "\n".join(f"{k} = {pprint.pformat(v, width=100)}" for k, v in config.items()) + "\n"
    notes = ["windows below the crop: MMSegmentation cuts them smaller where the release format raises the image",
             "masks of a window whose side is not a multiple of the patch are resized straight to it"]
    meta = {"config": text, "CLASSES": tuple(classes), "PALETTE": [list(c) for c in palette],
            "converted_from": "the release format", "variant": json.dumps(variant.raw, default=list)}
    return {"meta": meta, "state_dict": state}, notes
