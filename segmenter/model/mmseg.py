"""MMSegmentation's Segmenter models: a config read into a Variant, and their state-dict keys mapped onto ours.

Pure functions: `describe_config` turns a config (a dict, as mmseg_config.py reads it) into the same
Variant the released variant.yml gives, with mmseg's settings where they differ (LayerNorm eps,
bicubic position embedding, no patch bias, masks resized to the window, windows that shrink below
the crop, its own test-time views); `to_our_keys` renames a checkpoint's `state_dict`. Everything it
does not know is an error naming it. Both mmseg 1.x configs and the 0.x ones of the zoo's files are read.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import SegmenterError
from .variant import NORMALIZATIONS, ModelConfig, Variant

HEADS = {"SegmenterMaskTransformerHead": "mask_transformer", "FCNHead": "linear"}
# mmseg's VisionTransformer defaults (mmseg/models/backbones/vit.py), and what this package can build
BACKBONE_DEFAULTS = dict(img_size=224, patch_size=16, in_channels=3, embed_dims=768, num_layers=12, num_heads=12,
                         mlp_ratio=4, out_indices=-1, qkv_bias=True, with_cls_token=True, output_cls_token=False,
                         patch_norm=False, patch_bias=False, pre_norm=False, final_norm=False,
                         interpolate_mode="bicubic", num_fcs=2, patch_pad="corner", out_origin=False)
BACKBONE_SUPPORTED = dict(in_channels=(3,), qkv_bias=(True,), with_cls_token=(True,), output_cls_token=(False,),
                          patch_norm=(False,), pre_norm=(False,), num_fcs=(2,), patch_pad=("corner",),
                          out_origin=(False,), interpolate_mode=("bicubic", "bilinear"))


def _fail(source: Path, what: str) -> SegmenterError:
    return SegmenterError(f"{source}: {what}")


def _eps(norm_cfg: Any, default: float = 1e-5) -> float:
    return float(norm_cfg.get("eps", default)) if isinstance(norm_cfg, dict) else default


def _pair(value: Any, what: str, source: Path) -> int:
    """A square size: an int, or (h, w) with h == w."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1] and isinstance(value[0], int):
        return value[0]
    raise _fail(source, f"{what} {value!r}: only square sizes are supported")


def _network(model: dict, source: Path) -> ModelConfig:
    if model.get("type") != "EncoderDecoder":
        raise _fail(source, f"model type {model.get('type')!r}: only EncoderDecoder Segmenter models are read")
    backbone = {**BACKBONE_DEFAULTS, **(model.get("backbone") or {})}
    if backbone.get("type") != "VisionTransformer":
        raise _fail(source, f"backbone type {backbone.get('type')!r}: only VisionTransformer is read")
    for key, allowed in BACKBONE_SUPPORTED.items():
        if backbone[key] not in allowed:
            raise _fail(source, f"backbone {key}={backbone[key]!r} is not supported (supported: "
                        f"{', '.join(map(repr, allowed))})")
    if backbone["out_indices"] not in (-1, backbone["num_layers"] - 1, [-1], (-1,)):
        raise _fail(source, f"backbone out_indices={backbone['out_indices']!r}: the head must read the last layer")
    head = model.get("decode_head") or {}
    decoder = HEADS.get(head.get("type"))
    if decoder is None:
        raise _fail(source, f"decode head type {head.get('type')!r} is not known (known: {', '.join(HEADS)})")
    if head.get("align_corners", False) or head.get("input_transform") is not None or \
            head.get("in_index", -1) not in (-1, backbone["num_layers"] - 1):
        raise _fail(source, "decode head reads other features or resizes with align_corners: not supported")
    D = backbone["embed_dims"]
    if head.get("in_channels", D) != D:
        raise _fail(source, f"decode head in_channels {head.get('in_channels')} differs from the backbone's "
                    f"embed_dims {D}")
    cfg = dict(image_size=(_pair(backbone["img_size"], "backbone img_size", source),) * 2,
               patch_size=backbone["patch_size"], d_model=D, n_heads=backbone["num_heads"],
               n_layers=backbone["num_layers"], n_cls=head.get("num_classes"), decoder=decoder,
               mlp_ratio=backbone["mlp_ratio"], patch_bias=bool(backbone["patch_bias"]),
               norm_eps=_eps(backbone.get("norm_cfg")), final_norm=bool(backbone["final_norm"]),
               pos_embed_mode=backbone["interpolate_mode"], logits_to_window=True)
    if decoder == "mask_transformer":
        if head.get("mlp_ratio", 4) != 4 or head.get("num_fcs", 2) != 2 or not head.get("qkv_bias", True):
            raise _fail(source, "decode head mlp_ratio, num_fcs or qkv_bias differ from 4, 2, True: not supported")
        cfg.update(decoder_layers=head.get("num_layers"), decoder_dim=head.get("embed_dims"),
                   decoder_heads=head.get("num_heads"), decoder_norm_eps=_eps(head.get("norm_cfg")))
    elif head.get("num_convs", 2) != 0 or head.get("concat_input", True) or head.get("channels", D) != D:
        raise _fail(source, "FCNHead is read as Segmenter's linear head only: num_convs=0, concat_input=False, "
                    "channels equal to in_channels")
    for key in ("n_cls", "decoder_layers", "decoder_dim", "decoder_heads"):
        value = cfg.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "decoder_layers" else 1):
            raise _fail(source, f"decode head {key} must be a positive integer, got {value!r}")
    return ModelConfig(**cfg)


def _find(pipeline: Any, kind: str) -> dict | None:
    """The first transform of a type in a pipeline, looking inside MultiScaleFlipAug's transforms too."""
    for step in pipeline or ():
        if isinstance(step, dict) and step.get("type") == kind:
            return step
        if isinstance(step, dict) and step.get("type") == "MultiScaleFlipAug":
            found = _find(step.get("transforms"), kind)
            if found:
                return found
    return None


def _test_pipeline(cfg: dict) -> list:
    for path in (("test_dataloader", "dataset", "pipeline"), ("data", "test", "pipeline"), ("test_pipeline",),
                 ("val_dataloader", "dataset", "pipeline")):
        node: Any = cfg
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, list):
            return node
    return []


def _resize_box(cfg: dict, source: Path) -> tuple[int, int]:
    """(short side S, box ratio) of the test pipeline's keep-ratio resize: Resize(scale=(2048, 512)) in 1.x,
    MultiScaleFlipAug(img_scale=(2048, 512)) in 0.x."""
    pipeline = _test_pipeline(cfg)
    resize, multi = _find(pipeline, "Resize"), _find(pipeline, "MultiScaleFlipAug")
    scale = (resize or {}).get("scale") or (multi or {}).get("img_scale")
    if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and all(isinstance(v, int) for v in scale)):
        raise _fail(source, f"the test pipeline's resize scale {scale!r} is not a (long, short) pair")
    if resize is not None and not resize.get("keep_ratio", False):
        raise _fail(source, "the test pipeline resizes without keep_ratio: not supported")
    long, short = max(scale), min(scale)
    if long % short:
        raise _fail(source, f"resize scale {tuple(scale)}: the long side must be a multiple of the short one")
    return short, long // short


def _normalization(cfg: dict, source: Path) -> str:
    """The name of the mean / std the model was trained with (data_preprocessor in 1.x, Normalize in 0.x)."""
    pre = (cfg.get("model") or {}).get("data_preprocessor") or cfg.get("data_preprocessor")
    norm = pre if isinstance(pre, dict) and "mean" in pre else _find(_test_pipeline(cfg), "Normalize") or \
        cfg.get("img_norm_cfg")
    if not isinstance(norm, dict) or "mean" not in norm or "std" not in norm:
        raise _fail(source, "no mean / std (data_preprocessor, Normalize or img_norm_cfg) in the config")
    if not norm.get("bgr_to_rgb", norm.get("to_rgb", False)):
        raise _fail(source, "the model takes BGR input (bgr_to_rgb / to_rgb false): not supported")
    values = (tuple(float(v) for v in norm["mean"]), tuple(float(v) for v in norm["std"]))
    for name, known in NORMALIZATIONS.items():
        if all(abs(a - b) < 1e-6 for pair in zip(values, known) for a, b in zip(*pair)):
            return name
    raise _fail(source, f"mean {values[0]} / std {values[1]} is not one of the known normalizations "
                f"({', '.join(NORMALIZATIONS)})")


def _views(cfg: dict) -> tuple[tuple[tuple[float, bool], ...], bool]:
    """The config's own multi-scale views (ratio, flip) and whether they scale the image (1.x TestTimeAug with
    Resize(scale_factor=r)) rather than the fit box (0.x MultiScaleFlipAug img_ratios)."""
    tta = next((s for s in cfg.get("tta_pipeline") or () if isinstance(s, dict) and s.get("type") == "TestTimeAug"),
               None)
    if tta is not None:
        ratios, flips = [], [False]
        for group in tta.get("transforms") or ():
            kinds = {t.get("type") for t in group if isinstance(t, dict)}
            if kinds == {"Resize"} and all("scale_factor" in t for t in group):
                ratios = [float(t["scale_factor"]) for t in group]
            elif kinds == {"RandomFlip"}:
                flips = [float(t.get("prob", 0)) >= 1 for t in group]
        if ratios:
            return tuple((r, f) for r in ratios for f in flips), True
    multi = _find(_test_pipeline(cfg), "MultiScaleFlipAug")
    if multi and multi.get("img_ratios"):
        flips = [False, True] if multi.get("flip") else [False]
        return tuple((float(r), f) for r in multi["img_ratios"] for f in flips), False
    return (), False


def _test_windows(model: dict, source: Path) -> tuple[int, int]:
    test = model.get("test_cfg") or {}
    if test.get("mode") != "slide":
        raise _fail(source, f"test_cfg mode {test.get('mode')!r}: only sliding windows ('slide') are read")
    crop = _pair(test.get("crop_size"), "test_cfg crop_size", source)
    stride = _pair(test.get("stride"), "test_cfg stride", source)
    return crop, stride


def describe_config(cfg: dict, source: Path, meta: dict | None = None) -> Variant:
    """The Variant of an MMSegmentation Segmenter config; class names and palette from the checkpoint's meta."""
    if not isinstance(cfg.get("model"), dict):
        raise _fail(source, "no `model` in the config; is this an MMSegmentation config?")
    network = _network(cfg["model"], source)
    short, ratio = _resize_box(cfg, source)
    crop, stride = _test_windows(cfg["model"], source)
    tta, of_image = _views(cfg)
    classes, palette = _meta_classes(meta or {}, network.n_cls, source)
    digest = hashlib.sha256(json.dumps([cfg, classes, palette], sort_keys=True, default=list).encode()).hexdigest()
    dataset = cfg.get("dataset_type") or ((cfg.get("data") or {}).get("test") or {}).get("type")
    return Variant(model=network, normalization=_normalization(cfg, source), image_size=short, window_size=crop,
                   window_stride=stride, dataset=dataset if isinstance(dataset, str) else None, raw=cfg, path=source,
                   digest=digest, format="mmseg", box_ratio=ratio, raise_to_window=False, tta=tta,
                   tta_of_image=of_image, classes=classes, palette=palette)


def _meta_classes(meta: dict, n_cls: int, source: Path) -> tuple[tuple | None, tuple | None]:
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    classes = meta.get("CLASSES") or dataset_meta.get("classes")
    palette = meta.get("PALETTE") or dataset_meta.get("palette")
    if classes is not None and (len(classes) != n_cls or not all(isinstance(c, str) for c in classes)):
        raise _fail(source, f"its meta names {len(classes)} classes but the model has {n_cls}")
    if palette is not None and (len(palette) != n_cls or not all(len(c) == 3 for c in palette)):
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


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for source, target in rules:
        whole = source.endswith("$")
        pattern = "^" + re.escape(source.rstrip("$")).replace(re.escape("{i}"), r"(\d+)") + ("$" if whole else "")
        found = re.match(pattern, key)
        if found:
            renamed = target.rstrip("$").replace("{i}", found.group(1)) if found.groups() else target.rstrip("$")
            return renamed + key[found.end():]
    return None


def our_key(key: str) -> str | None:
    """The name this package gives an mmseg key, or None for a key it does not know."""
    return _rename(key, RENAMES)


def mmseg_key(key: str) -> str | None:
    """The name mmseg gives one of this package's keys, or None for one it has no counterpart of."""
    return _rename(key, [(ours, theirs) for theirs, ours in RENAMES])


def to_our_keys(state: dict[str, torch.Tensor], source: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict under this package's names (and values, where mmseg stores them otherwise), and a map back
    from ours to mmseg's names for messages; a key it does not know is an error naming it."""
    ours, names = {}, {}
    for key, value in state.items():
        mapped = our_key(key)
        if mapped is None:
            raise _fail(source, f"unexpected key '{key}' for a Segmenter model; is this a Segmenter checkpoint?")
        if mapped == "decoder.head.weight" and value.ndim == 4:
            value = value[:, :, 0, 0]  # a 1x1 convolution is our per-token Linear
        elif mapped in TRANSPOSED:
            value = value.t()
        ours[mapped], names[mapped] = value, key
    return ours, names


def is_mmseg_state(state: dict) -> bool:
    return any(k.startswith(("backbone.", "decode_head.")) for k in state)
