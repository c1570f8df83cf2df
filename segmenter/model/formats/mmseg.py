"""MMSegmentation's Segmenter checkpoints: `{'meta', 'state_dict'}` with backbone.* / decode_head.* keys and, in
the zoo's files, the config inside.

`describe_config` turns a config (a dict, as mmseg_config.py reads it) into the same Variant the released
variant.yml gives, with mmseg's settings where they differ (LayerNorm eps, bicubic position embedding, no
patch bias, masks resized to the window, windows that shrink below the crop, its own test-time views);
`to_ours` renames a checkpoint's `state_dict`; `checkpoint_of` writes one. Everything it does not know is
an error naming it. Both mmseg 1.x configs and the 0.x ones of the zoo's files are read.
"""
from __future__ import annotations

import ast
import json
import pprint
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...errors import SegmenterError
from ...files import digest_of
from ..checkpoint import Inert, inert, is_tensor_state, save_checkpoint
from ..strict import (
    MISSING,
    absent,
    boolean,
    choice,
    fail,
    gelu,
    ignored,
    integer,
    layer_norm,
    named,
    read_section,
    show,
    square,
)
from ..variant import NORMALIZATIONS, ModelConfig, Variant
from .mmseg_config import evaluate_config_text, read_config_files
from .mmseg_pipeline import TestPipeline, tta_views
from .mmseg_pipeline import normalization as mmseg_normalization
from .record import Format, Renamed, rename

HEADS = {"SegmenterMaskTransformerHead": "mask_transformer", "FCNHead": "linear"}
MODEL = {"type": named("EncoderDecoder"), "backbone": ignored, "decode_head": ignored,
         "data_preprocessor": ignored, "test_cfg": ignored, "neck": absent("a neck"),
         "auxiliary_head": absent("an auxiliary head"), "train_cfg": ignored, "pretrained": ignored,
         "init_cfg": ignored}
# mmseg 1.x's VisionTransformer (mmseg/models/backbones/vit.py; 0.x's takes a subset): every argument, its default,
# and the values this package builds; drop rates, checkpointing, freezing and initialisation only act in training
BACKBONE = {
    "type": named("VisionTransformer"), "img_size": square(224), "patch_size": integer(16, 1, 1024),
    "patch_pad": choice("corner", "corner"), "in_channels": integer(3, supported=(3,)), "embed_dims": integer(768),
    "num_layers": integer(12), "num_heads": integer(12), "mlp_ratio": integer(4, 1, 64),
    "out_origin": boolean(False, (False,)), "out_indices": ignored, "qkv_bias": boolean(True),
    "drop_rate": ignored, "attn_drop_rate": ignored, "drop_path_rate": ignored,
    "with_cls_token": boolean(True, (True,)), "output_cls_token": boolean(False, (False,)),
    "norm_cfg": layer_norm(1e-5), "act_cfg": gelu, "patch_norm": boolean(False, (False,)),
    "patch_bias": boolean(False), "pre_norm": boolean(False, (False,)), "final_norm": boolean(False),
    "interpolate_mode": choice("bicubic", "bicubic", "bilinear"), "num_fcs": integer(2, supported=(2,)),
    "norm_eval": boolean(False), "with_cp": boolean(False), "frozen_exclude": ignored, "pretrained": ignored,
    "init_cfg": ignored}
# BaseDecodeHead's arguments (mmseg/models/decode_heads/decode_head.py)
HEAD_BASE = {
    "type": ignored, "in_channels": integer(), "channels": integer(), "num_classes": integer(MISSING, 1, 255),
    "out_channels": ignored, "threshold": ignored, "dropout_ratio": ignored, "conv_cfg": ignored,
    "norm_cfg": ignored, "act_cfg": ignored, "in_index": ignored, "input_transform": absent("an input transform"),
    "loss_decode": ignored, "ignore_index": ignored, "sampler": ignored, "align_corners": boolean(False, (False,)),
    "init_cfg": ignored}
MASK_HEAD = {**HEAD_BASE, "num_layers": integer(MISSING, 0, 64), "num_heads": integer(), "embed_dims": integer(),
             "mlp_ratio": integer(4, supported=(4,)), "drop_path_rate": ignored, "drop_rate": ignored,
             "attn_drop_rate": ignored, "num_fcs": integer(2, supported=(2,)), "qkv_bias": boolean(True),
             "act_cfg": gelu, "norm_cfg": layer_norm(1e-5), "init_std": ignored}
# FCNHead with num_convs=0 is Segmenter's linear head: conv_seg alone (its conv, norm and activation settings build
# the convolutions it does not have)
FCN_HEAD = {**HEAD_BASE, "num_convs": integer(2, 0, 8, supported=(0,)), "kernel_size": ignored,
            "concat_input": boolean(True, (False,)), "dilation": ignored}
TEST_CFG = {"mode": choice(MISSING, "slide"), "crop_size": square(), "stride": square()}


def _last_layer(value, num_layers: int, where: str, source: Path) -> None:
    """out_indices / in_index must name the last layer: -1 or num_layers - 1, alone or as a one-item list."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(items) != 1 or items[0] not in (-1, num_layers - 1) or isinstance(items[0], bool):
        raise fail(source, f"{where}={show(value)}: the head must read the last layer's output (-1)")


def _network(model: dict, source: Path) -> ModelConfig:
    read_section(model, MODEL, "model", source)
    backbone = read_section(model.get("backbone"), BACKBONE, "model.backbone", source)
    _last_layer(model["backbone"].get("out_indices", -1), backbone["num_layers"], "model.backbone.out_indices",
                source)
    D = backbone["embed_dims"]
    if D % backbone["num_heads"]:
        raise fail(source, f"model.backbone.embed_dims {D} is not a multiple of num_heads {backbone['num_heads']}")
    head_cfg = model.get("decode_head")
    kind = head_cfg.get("type") if isinstance(head_cfg, dict) else None
    decoder = HEADS.get(kind.removeprefix("mmseg.") if isinstance(kind, str) else kind)
    if decoder is None:
        raise fail(source, f"decode head type {kind!r} is not known (known: {', '.join(HEADS)})")
    head = read_section(head_cfg, MASK_HEAD if decoder == "mask_transformer" else FCN_HEAD, "model.decode_head",
                        source)
    _last_layer(head_cfg.get("in_index", -1), backbone["num_layers"], "model.decode_head.in_index", source)
    K = head["num_classes"]
    if head_cfg.get("out_channels") not in (None, K):
        raise fail(source, f"model.decode_head.out_channels={show(head_cfg['out_channels'])}: only one output channel "
                   f"per class ({K}) is supported")
    if head["in_channels"] != D:
        raise fail(source, f"model.decode_head.in_channels is {head['in_channels']} but the backbone gives "
                   f"embed_dims={D} channels")
    cfg = dict(image_size=(backbone["img_size"],) * 2, patch_size=backbone["patch_size"], d_model=D,
               n_heads=backbone["num_heads"], n_layers=backbone["num_layers"], n_cls=K, decoder=decoder,
               mlp_ratio=backbone["mlp_ratio"], patch_bias=backbone["patch_bias"], qkv_bias=backbone["qkv_bias"],
               norm_eps=backbone["norm_cfg"],
               final_norm=backbone["final_norm"], pos_embed_mode=backbone["interpolate_mode"], logits_to_window=True)
    if decoder == "mask_transformer":
        if head["embed_dims"] % head["num_heads"]:
            raise fail(source, f"model.decode_head.embed_dims {head['embed_dims']} is not a multiple of num_heads "
                       f"{head['num_heads']}")
        cfg.update(decoder_layers=head["num_layers"], decoder_dim=head["embed_dims"],
                   decoder_heads=head["num_heads"], decoder_norm_eps=head["norm_cfg"],
                   decoder_qkv_bias=head["qkv_bias"])
    elif head["channels"] != D:
        raise fail(source, f"model.decode_head.channels is {head['channels']}: FCNHead with num_convs=0 is Segmenter's "
                   f"linear head only with channels equal to in_channels ({D})")
    return ModelConfig(**cfg)


def describe_config(cfg: dict, source: Path, meta: dict | None = None) -> Variant:
    """The Variant of an MMSegmentation Segmenter config; class names and palette from the checkpoint's meta."""
    if not isinstance(cfg.get("model"), dict):
        raise fail(source, "no `model` in the config; is this an MMSegmentation config?")
    model = cfg["model"]
    network = _network(model, source)
    test = read_section(model.get("test_cfg"), TEST_CFG, "model.test_cfg", source)
    crop, stride = test["crop_size"], test["stride"]
    if stride > crop:
        raise fail(source, f"model.test_cfg stride {stride} is larger than crop_size {crop}: pixels between windows "
                   "would not be scored")
    pipeline = TestPipeline(cfg, source)
    short, ratio = pipeline.box
    normalization = mmseg_normalization(model, pipeline, source)
    tta = tta_views(cfg, pipeline.box, source)
    views, of_image = tta if tta is not None else (pipeline.views, False)
    classes, palette = _meta_classes(meta or {}, network.n_cls, source)
    dataset = cfg.get("dataset_type") or ((cfg.get("data") or {}).get("test") or {}).get("type")
    return Variant(model=network, normalization=normalization, image_size=short, window_size=crop,
                   window_stride=stride, dataset=dataset if isinstance(dataset, str) else None, raw=cfg, path=source,
                   digest=digest_of([cfg, classes, palette]), format="mmseg", box_ratio=ratio, raise_to_window=False,
                   tta=views, tta_of_image=of_image, classes=classes, palette=palette)


def _meta_classes(meta: dict, n_cls: int, source: Path) -> tuple[tuple | None, tuple | None]:
    """Class names and palette of the checkpoint's meta (0.x CLASSES / PALETTE, 1.x dataset_meta), checked."""
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    classes = meta.get("CLASSES") if meta.get("CLASSES") is not None else dataset_meta.get("classes")
    palette = meta.get("PALETTE") if meta.get("PALETTE") is not None else dataset_meta.get("palette")
    if classes is not None:
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
            raise fail(source, f"its meta's class names must be a list of names, got {show(classes)}")
        if len(classes) != n_cls:
            raise fail(source, f"its meta names {len(classes)} classes but the model has {n_cls}")
    if palette is not None:
        ok = isinstance(palette, (list, tuple)) and all(
            isinstance(c, (list, tuple)) and len(c) == 3 and all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c) for c in palette)
        if not ok:
            raise fail(source, f"its meta's palette must be a list of [r, g, b] values from 0 to 255, got "
                       f"{show(palette)}")
        if len(palette) != n_cls:
            palette = None  # a palette of another length is of no use for pictures; the data set's is taken
    return (tuple(classes) if classes else None,
            tuple(tuple(int(v) for v in c) for c in palette) if palette else None)


# ----------------------------------------------------------------------------- state-dict keys

BLOCK = [("ln1.", "norm1."), ("attn.attn.in_proj_", "attn.qkv."), ("attn.attn.out_proj.", "attn.proj."),
         ("ln2.", "norm2."), ("ffn.layers.0.0.", "mlp.fc1."), ("ffn.layers.1.", "mlp.fc2.")]
# (mmseg's name, ours): a prefix of a key, or a whole key (ending in $); {i} a block index
RENAMES = ([("backbone.patch_embed.projection.", "encoder.patch_embed.proj."), ("backbone.cls_token$",
            "encoder.cls_token"), ("backbone.pos_embed$", "encoder.pos_embed"), ("backbone.ln1.", "encoder.norm.")]
           + [(f"backbone.layers.{{i}}.{a}", f"encoder.blocks.{{i}}.{b}") for a, b in BLOCK]
           + [(f"decode_head.layers.{{i}}.{a}", f"decoder.blocks.{{i}}.{b}") for a, b in BLOCK]
           + [("decode_head.dec_proj.", "decoder.proj_dec."), ("decode_head.cls_emb$", "decoder.cls_emb"),
              ("decode_head.decoder_norm.", "decoder.decoder_norm."), ("decode_head.mask_norm.", "decoder.mask_norm."),
              ("decode_head.patch_proj.weight$", "decoder.proj_patch$"),
              ("decode_head.classes_proj.weight$", "decoder.proj_classes$"),
              ("decode_head.conv_seg.", "decoder.head.")])
TRANSPOSED = ("decoder.proj_patch", "decoder.proj_classes")  # Linear weights (out, in), ours applied as x @ P


def our_key(key: str) -> str | None:
    """The name this package gives an mmseg key, or None for a key it does not know."""
    return rename(key, RENAMES)


def mmseg_key(key: str) -> str | None:
    """The name mmseg gives one of this package's keys, or None for one it has no counterpart of."""
    return rename(key, [(ours, theirs) for theirs, ours in RENAMES])


def to_ours(state: dict, source: Path) -> Renamed:
    """The state dict under this package's names (and values, where mmseg stores them otherwise); a key it does
    not know is an error naming it."""
    renamed = Renamed({}, name_of_missing=lambda key: mmseg_key(key) or key)
    for key, value in state.items():
        mapped = our_key(key)
        if mapped is None:
            raise fail(source, f"unexpected key '{key}' for a Segmenter model; is this a Segmenter checkpoint?")
        renamed.shapes[mapped] = tuple(value.shape)
        if mapped == "decoder.head.weight" and value.ndim == 4:
            if tuple(value.shape[2:]) != (1, 1):
                raise fail(source, f"key '{key}' has shape {tuple(value.shape)}: conv_seg of Segmenter's linear "
                           "head is a 1x1 convolution")
            value = value[:, :, 0, 0]  # a 1x1 convolution is our per-token Linear
        elif mapped in TRANSPOSED:
            value = value.t()
        renamed.state[mapped], renamed.names[mapped] = value, key
    return renamed


# ----------------------------------------------------------------------------- files


def embedded_config(ckpt) -> dict:
    """The config an MMSegmentation checkpoint carries (meta['config'] from mmseg 0.x, meta['cfg'] from mmengine)."""
    text = ckpt.meta.get("config") or ckpt.meta.get("cfg")
    if not isinstance(text, str) or not text.strip():
        raise SegmenterError(f"{ckpt.path}: an MMSegmentation checkpoint without a config inside (meta['config'] "
                             "or meta['cfg']); give the model's config file with the config flag")
    return evaluate_config_text(text, f"{ckpt.path} (its meta config)")


def read_description(path: Path, meta: dict | None = None) -> Variant:
    """A config file (dumped, or a model-zoo one with _base_ files), read without running it."""
    config, files = read_config_files(path)
    return replace(describe_config(config, path, meta), sources=files)


def _is_python_config(text: str) -> bool:
    """Python with top-level assignments: an mmseg config (a variant.yml or YAML config never is)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(s, ast.Assign) for s in tree.body)  # what else it holds, the reader refuses by line


def _holds(obj: Any) -> bool:
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    return is_tensor_state(state) and any(k.startswith(("backbone.", "decode_head.")) for k in state)


def _unpack(obj: dict) -> tuple[dict, dict]:
    return obj["state_dict"], obj.get("meta") if isinstance(obj.get("meta"), dict) else {}


def checkpoint_of(model, variant: Variant, dataset) -> tuple[dict, list[str]]:
    """An MMSegmentation checkpoint dict (its config inside) of another format's model, for the data set's spec
    `dataset`, and what its config cannot carry over."""
    cfg = variant.model
    if cfg.distilled:
        raise SegmenterError(f"{variant.path}: a distilled (DeiT) model has a distillation token, which "
                             "MMSegmentation's VisionTransformer has no place for")
    if cfg.mlp_ratio != int(cfg.mlp_ratio) or cfg.decoder_mlp_ratio != 4 or cfg.qk_scale is not None:
        raise SegmenterError(f"{variant.path}: a fractional MLP ratio, a mask-head MLP ratio other than 4 or another "
                             "attention scale: MMSegmentation's Segmenter cannot hold this model")
    state = {}
    for key, value in model.state_dict().items():
        theirs = mmseg_key(key)
        if theirs is None:
            raise SegmenterError(f"{variant.path}: no MMSegmentation name for '{key}'")
        if key in TRANSPOSED:
            value = value.t()
        elif key == "decoder.head.weight":
            value = value[:, :, None, None]
        state[theirs] = value.contiguous()
    mean, std = NORMALIZATIONS[variant.normalization]
    window, stride = variant.window_size, variant.window_stride or variant.window_size - 32
    head = dict(type="SegmenterMaskTransformerHead", in_channels=cfg.d_model, channels=cfg.d_model,
                num_classes=cfg.n_cls, num_layers=cfg.decoder_layers, num_heads=cfg.decoder_head_count,
                embed_dims=cfg.decoder_width, dropout_ratio=0.0, qkv_bias=cfg.decoder_qkv_bias,
                norm_cfg=dict(type="LN", eps=cfg.decoder_norm_eps)) if cfg.decoder == "mask_transformer" else \
        dict(type="FCNHead", in_channels=cfg.d_model, channels=cfg.d_model, num_convs=0, concat_input=False,
             dropout_ratio=0.0, num_classes=cfg.n_cls)
    image_size = variant.image_size or dataset.image_size
    config = dict(
        model=dict(type="EncoderDecoder",
                   data_preprocessor=dict(type="SegDataPreProcessor", mean=list(mean), std=list(std), bgr_to_rgb=True),
                   backbone=dict(type="VisionTransformer", img_size=tuple(cfg.image_size), patch_size=cfg.patch_size,
                                 embed_dims=cfg.d_model, num_layers=cfg.n_layers, num_heads=cfg.n_heads,
                                 mlp_ratio=int(cfg.mlp_ratio), final_norm=cfg.final_norm, patch_bias=cfg.patch_bias,
                                 qkv_bias=cfg.qkv_bias, norm_cfg=dict(type="LN", eps=cfg.norm_eps),
                                 interpolate_mode=cfg.pos_embed_mode, with_cls_token=True),
                   decode_head=head, test_cfg=dict(mode="slide", crop_size=(window, window), stride=(stride, stride))),
        dataset_type=dataset.mmseg_type,
        test_pipeline=[dict(type="LoadImageFromFile"),
                       dict(type="Resize", scale=(image_size * dataset.box_ratio, image_size), keep_ratio=True),
                       dict(type="LoadAnnotations"), dict(type="PackSegInputs")])
    text = "\n".join(f"{k} = {pprint.pformat(v, width=100)}" for k, v in config.items()) + "\n"
    notes = []
    if variant.raise_to_window:
        notes.append("windows below the crop: MMSegmentation cuts them smaller where the release format raises the "
                     "image")
    if not cfg.logits_to_window:
        notes.append("masks of a window whose side is not a multiple of the patch are resized straight to it")
    if not cfg.pad_to_patch:
        notes.append("a window side that is not a multiple of the patch drops its last pixels; MMSegmentation pads "
                     "it")
    if variant.resize_rule != "fit-box" or variant.view_merge != "softmax":
        notes.append(f"{variant.resize_rule} resizing and {variant.view_merge} merging of views: MMSegmentation fits "
                     "images into a box and averages views' probabilities")
    meta = {"config": text, "CLASSES": tuple(variant.classes or dataset.classes),
            "PALETTE": [list(c) for c in variant.palette or dataset.palette],
            "converted_from": variant.format, "variant": json.dumps(variant.raw, default=list)}
    return {"meta": meta, "state_dict": state}, notes


def write(model, variant: Variant, dataset, folder: Path) -> tuple[list[Path], list[str]]:
    """A model of another format as an MMSegmentation checkpoint.pth with its config inside."""
    ckpt, notes = checkpoint_of(model, variant, dataset)
    return [save_checkpoint(ckpt, folder / "checkpoint.pth")], notes


# mmengine's Runner saves its message hub beside the weights (HistoryBuffer objects holding numpy arrays): read as
# inert stand-ins, nothing of them runs
TRAINING_RECORDS = [(Inert, "mmengine.logging.history_buffer.HistoryBuffer"), (Inert, "numpy.ndarray"),
                    (Inert, "numpy.dtype"), (inert, "builtins.getattr")] + [
    (inert, f"{module}.{name}") for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")]

FORMAT = Format(
    name="mmseg", title="MMSegmentation", container="torch", holds=_holds, unpack=_unpack,
    reads_description=_is_python_config, read_description=read_description,
    own_description=lambda ckpt: replace(describe_config(embedded_config(ckpt), ckpt.path, ckpt.meta),
                                         sources=(ckpt.path,)),
    to_ours=to_ours, write=write, admitted_globals=tuple(TRAINING_RECORDS))
