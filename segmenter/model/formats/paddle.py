"""PaddleSeg's Segmenter checkpoints: `model.pdparams` (a pickle of numpy arrays, backbone.* / head.* keys) with the
model's YAML config given beside it (`--cfg-path`).

The weights are read without paddle: an unpickler that builds numpy arrays and refuses every other
global (checkpoint.load_array_pickle). Paddle's Linear layers store their weight as [in, out], the
transpose of torch's; its mask head's patch and class projections are applied as x @ W, as this
package's are. The config is read strictly (strict.py): LinearSegmenter or MaskSegmenter over
PaddleSeg's VisionTransformer with the settings those classes take, slide windows from `test_config`,
ResizeByShort and Normalize from `val_dataset.transforms`; anything else is an error naming it.
PaddleSeg's evaluation semantics go into the description: the short side resized on float32 pixels,
windows that shrink below the crop, patch grids that drop a side's last pixels, masks resized
straight to each window, and multi-view logits averaged (core/infer.py aug_inference) rather than
probabilities.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import SegmenterError
from ...files import digest_of
from ..strict import (
    MISSING,
    boolean,
    choice,
    fail,
    ignored,
    integer,
    named,
    number,
    numbers,
    read_section,
    show,
    square,
)
from ..variant import NORMALIZATIONS, ModelConfig, Variant
from .paddle_config import read_config_files
from .record import Format, Renamed, rename

STRUCTURE_KEY = "StructuredToParameterName@@"  # paddle.save's bookkeeping entry beside the weights
HEADS = {"LinearSegmenter": "linear", "MaskSegmenter": "mask_transformer"}
# NUM_CLASSES of PaddleSeg's data set classes: the model takes it when its config leaves num_classes out
DATASET_CLASSES = {"ADE20K": 150, "Cityscapes": 19, "PascalContext": 60}
DEFAULT_EPS = 1e-5  # PaddleSeg's VisionTransformer epsilon, and its heads' nn.LayerNorm default


def _qk_scale(value: Any, where: str, source: Path) -> float | None:
    if value is MISSING or value is None:
        return None
    return number(MISSING, 0.0, 1e3, above=True)(value, where, source)


MODEL = {"type": named(*HEADS), "backbone": ignored, "num_classes": integer(None, 1, 255), "pretrained": ignored}
MASK_MODEL = {**MODEL, "h_embed_dim": integer(), "h_depth": integer(MISSING, 0, 64), "h_num_heads": integer(),
              "h_mlp_ratio": number(4, 0.0, 64, above=True), "h_drop_rate": ignored, "h_drop_path_rate": ignored,
              "h_attn_drop_rate": ignored, "h_qkv_bias": boolean(False)}
# paddleseg/models/backbones/vision_transformer.py VisionTransformer: every argument, its default, what is built
BACKBONE = {"type": named("VisionTransformer"), "img_size": square(224), "patch_size": integer(16, 1, 1024),
            "in_chans": integer(3, supported=(3,)), "embed_dim": integer(768), "depth": integer(12),
            "num_heads": integer(12), "mlp_ratio": number(4, 0.0, 64, above=True), "qkv_bias": boolean(False),
            "qk_scale": _qk_scale, "drop_rate": ignored, "attn_drop_rate": ignored, "drop_path_rate": ignored,
            "norm_layer": choice("nn.LayerNorm", "nn.LayerNorm"), "epsilon": number(DEFAULT_EPS, 0.0, 1.0, above=True),
            "final_norm": boolean(False), "pretrained": ignored}
# core/val.py evaluate()'s keyword arguments, as test_config gives them
TEST_CONFIG = {"is_slide": boolean(False, (True,)), "crop_size": square(), "stride": square(),
               "aug_eval": boolean(False), "scales": ignored, "flip_horizontal": boolean(False),
               "flip_vertical": boolean(False, (False,)), "precision": choice("fp32", "fp32"), "amp_level": ignored,
               "num_workers": ignored, "print_detail": ignored, "auc_roc": ignored}
RESIZE_BY_SHORT = {"type": ignored, "short_size": integer(MISSING, 1, 1 << 16), "max_size": ignored}
NORMALIZE = {"type": ignored, "mean": ignored, "std": ignored}


def _network(cfg: dict, source: Path) -> ModelConfig:
    model = cfg.get("model")
    if not isinstance(model, dict):
        raise fail(source, "no `model` in the config; is this a PaddleSeg config?")
    kind = model.get("type")
    decoder = HEADS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise fail(source, f"model.type={show(kind)} is not supported (supported: {', '.join(HEADS)})")
    settings = read_section(model, MASK_MODEL if decoder == "mask_transformer" else MODEL, "model", source)
    backbone = read_section(model.get("backbone"), BACKBONE, "model.backbone", source)
    n_cls = settings["num_classes"] or _dataset_classes(cfg, source)
    D = backbone["embed_dim"]
    if D % backbone["num_heads"]:
        raise fail(source, f"model.backbone.embed_dim {D} is not a multiple of num_heads {backbone['num_heads']}")
    net = dict(image_size=(backbone["img_size"],) * 2, patch_size=backbone["patch_size"], d_model=D,
               n_heads=backbone["num_heads"], n_layers=backbone["depth"], n_cls=n_cls, decoder=decoder,
               mlp_ratio=backbone["mlp_ratio"], patch_bias=True, qkv_bias=backbone["qkv_bias"],
               qk_scale=backbone["qk_scale"], norm_eps=backbone["epsilon"], final_norm=backbone["final_norm"],
               pos_embed_mode="bicubic", logits_to_window=True, pad_to_patch=False, decoder_norm_eps=DEFAULT_EPS)
    if decoder == "mask_transformer":
        E, heads = settings["h_embed_dim"], settings["h_num_heads"]
        if E % heads:
            raise fail(source, f"model.h_embed_dim {E} is not a multiple of h_num_heads {heads}")
        net.update(decoder_layers=settings["h_depth"], decoder_dim=E, decoder_heads=heads,
                   decoder_mlp_ratio=settings["h_mlp_ratio"], decoder_qkv_bias=settings["h_qkv_bias"])
    return ModelConfig(**net)


def _dataset_classes(cfg: dict, source: Path) -> int:
    """num_classes as PaddleSeg's builder takes it when the model leaves it out: the training data set class's."""
    dataset = cfg.get("train_dataset") if isinstance(cfg.get("train_dataset"), dict) else {}
    kind = dataset.get("type")
    if isinstance(dataset.get("num_classes"), int) and not isinstance(dataset.get("num_classes"), bool):
        return dataset["num_classes"]
    if kind not in DATASET_CLASSES:
        raise fail(source, f"model.num_classes is not set and the training data set {show(kind)} is not one whose "
                   f"class count is known ({', '.join(DATASET_CLASSES)}); set model.num_classes")
    return DATASET_CLASSES[kind]


def _evaluation(cfg: dict, source: Path) -> dict:
    """Window, stride, short side and normalization of val.py's evaluation; test_config's own views."""
    test = read_section(cfg.get("test_config"), TEST_CONFIG, "test_config", source)
    if test["stride"] > test["crop_size"]:
        raise fail(source, f"test_config stride {test['stride']} is larger than crop_size {test['crop_size']}: pixels "
                   "between windows would not be scored")
    val = cfg.get("val_dataset")
    if not isinstance(val, dict) or not isinstance(val.get("transforms"), list):
        raise fail(source, "no val_dataset.transforms: the evaluation's resize and normalization are unknown")
    short, normalization = None, None
    for i, step in enumerate(val["transforms"]):
        kind = step.get("type") if isinstance(step, dict) else None
        where = f"val_dataset.transforms[{i}] ({kind})"
        if kind == "ResizeByShort" and short is None:
            settings = read_section(step, RESIZE_BY_SHORT, where, source)
            if step.get("max_size") not in (None, 1e10):
                raise fail(source, f"{where} max_size={show(step['max_size'])} is not supported")
            short = settings["short_size"]
        elif kind == "Normalize" and normalization is None:
            read_section(step, NORMALIZE, where, source)
            normalization = _normalization(step, where, source)
        else:
            raise fail(source, f"{where} is a step this reader does not build (known: one ResizeByShort, one "
                       "Normalize)")
    if short is None or normalization is None:
        raise fail(source, "val_dataset.transforms needs a ResizeByShort and a Normalize step")
    views: tuple[tuple[float, bool], ...] = ()
    if test["aug_eval"]:
        scales = test["scales"] if test["scales"] is not None else 1.0
        scales = [scales] if isinstance(scales, (int, float)) and not isinstance(scales, bool) else scales
        if not isinstance(scales, list) or not scales or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in scales):
            raise fail(source, f"test_config.scales must be positive numbers, got {show(test['scales'])}")
        flips = (False, True) if test["flip_horizontal"] else (False,)
        views = tuple((float(s), f) for s in scales for f in flips)
    kind = val.get("type")
    return dict(image_size=short, window_size=test["crop_size"], window_stride=test["stride"],
                normalization=normalization, tta=views, dataset=kind if isinstance(kind, str) else None)


def _normalization(step: dict, where: str, source: Path) -> str:
    """PaddleSeg's Normalize works on pixel / 255 (defaults 0.5, 0.5): the known normalization it equals."""
    mean = numbers(step.get("mean", [0.5]), f"{where}.mean", source)
    std = numbers(step.get("std", [0.5]), f"{where}.std", source)
    for name, (known_mean, known_std) in NORMALIZATIONS.items():
        if all(abs(255 * a - b) < 1e-3 for a, b in zip(mean + std, known_mean + known_std)):
            return name
    raise fail(source, f"{where} mean {mean} / std {std} is not one of the known normalizations "
               f"({', '.join(NORMALIZATIONS)})")


def describe_config(cfg: dict, source: Path) -> Variant:
    """The Variant of a PaddleSeg Segmenter config (merged, as paddle_config reads it)."""
    network = _network(cfg, source)
    evaluation = _evaluation(cfg, source)
    return Variant(model=network, raw=cfg, path=source, digest=digest_of(cfg), format="paddle",
                   raise_to_window=False, resize_rule="short-side-float", view_merge="mean-logits",
                   **evaluation)


def read_description(path: Path, meta: dict | None = None) -> Variant:
    from dataclasses import replace

    config, files = read_config_files(path)
    return replace(describe_config(config, path), sources=files)


def _reads_description(text: str) -> bool:
    """A YAML mapping with PaddleSeg's `model` (or a `_base_` naming one)."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return False
    return isinstance(doc, dict) and ("model" in doc or "_base_" in doc) and "net_kwargs" not in doc


def _own_description(ckpt) -> Variant:
    raise SegmenterError(f"{ckpt.path}: a PaddleSeg checkpoint holds no config; give the model's PaddleSeg YAML "
                         "config with the config flag (e.g. segmenter_vit_base_mask_ade20k_512x512_160k.yml from "
                         "PaddleSeg's configs/segmenter/, with its _base_ files beside it)")


# ----------------------------------------------------------------------------- state-dict keys

BLOCK = [("norm1.", "norm1."), ("attn.qkv.", "attn.qkv."), ("attn.proj.", "attn.proj."), ("norm2.", "norm2."),
         ("mlp.fc1.", "mlp.fc1."), ("mlp.fc2.", "mlp.fc2.")]
RENAMES = ([("backbone.pos_embed$", "encoder.pos_embed$"), ("backbone.cls_token$", "encoder.cls_token$"),
            ("backbone.patch_embed.proj.", "encoder.patch_embed.proj."), ("backbone.norm.", "encoder.norm.")]
           + [(f"backbone.blocks.{{i}}.{a}", f"encoder.blocks.{{i}}.{b}") for a, b in BLOCK]
           + [(f"head.blocks.{{i}}.{a}", f"decoder.blocks.{{i}}.{b}") for a, b in BLOCK]
           + [("head.head.", "decoder.head."), ("head.proj_input.", "decoder.proj_dec."),
              ("head.cls_token$", "decoder.cls_emb$"), ("head.proj_patch.weight$", "decoder.proj_patch$"),
              ("head.proj_class.weight$", "decoder.proj_classes$"), ("head.decoder_norm.", "decoder.decoder_norm."),
              ("head.mask_norm.", "decoder.mask_norm.")])
# Linear weights paddle stores [in, out]: every 2-D .weight but the mask head's projections (x @ W, as ours)
NOT_TRANSPOSED = ("decoder.proj_patch", "decoder.proj_classes")


def to_ours(state: dict, source: Path) -> Renamed:
    """The weights under this package's names, as torch tensors in torch's layout."""
    import numpy as np
    import torch

    renamed = Renamed({}, name_of_missing=lambda key: rename(key, [(b, a) for a, b in RENAMES]) or key)
    for key, value in state.items():
        mapped = rename(key, RENAMES)
        if mapped is None:
            raise fail(source, f"unexpected key '{key}' for a PaddleSeg Segmenter model; is this a Segmenter "
                       "checkpoint?")
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        renamed.shapes[mapped] = tuple(tensor.shape)
        if mapped.endswith(".weight") and tensor.ndim == 2 and mapped not in NOT_TRANSPOSED:
            tensor = tensor.t()
        renamed.state[mapped], renamed.names[mapped] = tensor, key
    return renamed


def paddle_state(model) -> dict:
    """A model's weights as PaddleSeg names and lays them out ({name: numpy array}, Linear weights [in, out]), for
    the random-weight files of tests and benchmarks."""
    import numpy as np

    back = [(theirs, ours) for ours, theirs in RENAMES]
    out = {}
    for key, value in model.state_dict().items():
        array = value.detach().cpu().numpy()
        if key.endswith(".weight") and array.ndim == 2 and key not in NOT_TRANSPOSED:
            array = array.T
        out[rename(key, back)] = np.ascontiguousarray(array)
    return out


def _holds(obj: Any) -> bool:
    import numpy as np

    if not isinstance(obj, dict):
        return False
    weights = {k: v for k, v in obj.items() if k != STRUCTURE_KEY}
    return bool(weights) and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in weights.items()) and \
        any(k.startswith(("backbone.", "head.")) for k in weights)


FORMAT = Format(
    name="paddle", title="PaddleSeg", container="pickle", holds=_holds,
    unpack=lambda obj: ({k: v for k, v in obj.items() if k != STRUCTURE_KEY}, {}),
    reads_description=_reads_description, read_description=read_description, own_description=_own_description,
    to_ours=to_ours, extra_metrics=("paddleseg_mean_iou",))

__all__ = ["FORMAT", "describe_config", "paddle_state"]
