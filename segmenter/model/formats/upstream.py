"""The upstream release: `checkpoint.pth` (`model`: encoder.* / decoder.* keys) with `variant.yml` beside it.

Its keys are this package's own. The variant is read strictly (`!!python/tuple` is the one Python tag
accepted); a variant written by the format converter (`converted_from`) keeps its model's stride.
Writing: checkpoint.pth + variant.yml, refusing models whose structure the format cannot hold and
listing the settings it cannot carry over.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ...errors import SegmenterError
from ...files import atomic_write, read_regular
from ..checkpoint import is_tensor_state, save_checkpoint
from ..strict import check_size
from ..variant import DECODER_NAMES, NORMALIZATIONS, ModelConfig, Variant, variant_beside
from .record import Format, Renamed

MAX_VARIANT_BYTES = 1 << 20  # a released variant.yml is about 1 KB
# Written by the format converter: the variant describes a converted model, whose inference_kwargs.window_stride is
# the model's own evaluation stride (the released files' 512 is upstream's choice; this suite's default is the guide's)
CONVERTED_FROM = "converted_from"
EPS = 1e-5  # the release format fixes every LayerNorm's eps, the decoder's heads (width // 64) and widths


class _VariantLoader(yaml.SafeLoader):
    """SafeLoader plus `!!python/tuple` (as a list); every other python tag stays an error."""


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> list:
    return loader.construct_sequence(node, deep=True)


_VariantLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)


def _get(section: dict, key: str, where: str, path: Path) -> Any:
    if not isinstance(section, dict) or key not in section:
        raise SegmenterError(f"{path}: missing key '{where}{key}'; is this a Segmenter variant.yml?")
    return section[key]


def _section(raw: dict, key: str, path: Path) -> dict:
    value = raw.get(key)
    if value is not None and not isinstance(value, dict):
        raise SegmenterError(f"{path}: {key} must be a mapping, got {type(value).__name__}")
    return value or {}


def _positive(value: Any, key: str, path: Path, lo: int = 1, hi: int = 1 << 20) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or not lo <= value <= hi:
        raise SegmenterError(f"{path}: {key} must be an integer from {lo} to {hi}, got {value!r}")
    return int(value)


def _first(candidates: list[tuple[dict, str, str]]) -> tuple[Any, str] | None:
    """The first present of several keys: (value, 'section.key'), or None."""
    for section, where, key in candidates:
        if isinstance(section, dict) and section.get(key) is not None:
            return section[key], f"{where}{key}"
    return None


def parse_variant(raw: Any, path: Path) -> Variant:
    """Build a Variant from the loaded YAML mapping; errors name the file and the key."""
    if not isinstance(raw, dict):
        raise SegmenterError(f"{path}: expected a YAML mapping at the top level")
    net = _get(raw, "net_kwargs", "", path)
    dec = _get(net, "decoder", "net_kwargs.", path)
    name = _get(dec, "name", "net_kwargs.decoder.", path)
    if name not in DECODER_NAMES:
        raise SegmenterError(f"{path}: unknown decoder '{name}' (known: {', '.join(DECODER_NAMES)})")
    image_size = _get(net, "image_size", "net_kwargs.", path)
    if isinstance(image_size, (int, float)) and not isinstance(image_size, bool):
        image_size = [image_size, image_size]
    if not isinstance(image_size, (list, tuple)) or len(image_size) != 2:
        raise SegmenterError(f"{path}: net_kwargs.image_size must be [height, width], got {image_size!r}")
    n = lambda key, lo=1, hi=1 << 20: _positive(_get(net, key, "net_kwargs.", path), f"net_kwargs.{key}", path,  # noqa: E731
                                                lo, hi)
    cfg = ModelConfig(
        image_size=(_positive(image_size[0], "net_kwargs.image_size", path),
                    _positive(image_size[1], "net_kwargs.image_size", path)),
        patch_size=n("patch_size"), d_model=n("d_model"), n_heads=n("n_heads"), n_layers=n("n_layers", 0),
        n_cls=n("n_cls", 1, 255), decoder=name,
        decoder_layers=_positive(dec.get("n_layers", 2), "net_kwargs.decoder.n_layers", path, 0),
        distilled=bool(net.get("distilled", False)),
    )
    if cfg.d_model % cfg.n_heads:
        raise SegmenterError(f"{path}: d_model {cfg.d_model} is not a multiple of n_heads {cfg.n_heads}")
    if min(cfg.grid) < 1:
        raise SegmenterError(f"{path}: net_kwargs.image_size {list(cfg.image_size)} is smaller than the patch size "
                             f"{cfg.patch_size}")
    data, infer = (_section(raw, key, path) for key in ("dataset_kwargs", "inference_kwargs"))
    notes = []
    norm = _first([(data, "dataset_kwargs.", "normalization"), (net, "net_kwargs.", "normalization")])
    if norm is None:
        raise SegmenterError(f"{path}: neither dataset_kwargs.normalization nor net_kwargs.normalization is set; "
                             f"add one ({' or '.join(NORMALIZATIONS)})")
    if norm[0] not in NORMALIZATIONS:
        raise SegmenterError(f"{path}: unknown normalization '{norm[0]}' (known: {', '.join(NORMALIZATIONS)})")
    window = _first([(infer, "inference_kwargs.", "window_size"), (data, "dataset_kwargs.", "crop_size")])
    if window is None:
        window = (cfg.image_size[0], "net_kwargs.image_size")
        notes.append(f"{path.name} has no inference_kwargs.window_size or dataset_kwargs.crop_size: windows of "
                     f"{window[0]}, the training size net_kwargs.image_size")
    window_size = _positive(window[0], window[1], path)
    size = _first([(infer, "inference_kwargs.", "im_size"), (data, "dataset_kwargs.", "image_size")])
    dataset = data.get("dataset") if isinstance(data.get("dataset"), str) else None
    stride = None  # released files hold upstream's 512; this suite follows the guide (window - 32)
    if raw.get(CONVERTED_FROM) is not None:
        stride = _positive(_get(infer, "window_stride", "inference_kwargs.", path), "inference_kwargs.window_stride",
                           path, 1, window_size)
    return Variant(
        model=cfg,
        normalization=norm[0],
        image_size=_positive(size[0], size[1], path) if size is not None else None,
        window_size=window_size,
        window_stride=stride,
        dataset=dataset,
        raw=raw,
        path=path,
        notes=tuple(notes),
    )


def load_variant(path: str | Path) -> Variant:
    """Read a released variant.yml. Accepts `!!python/tuple`; refuses other python tags unexecuted."""
    path = Path(path)
    if not path.exists():
        raise SegmenterError(f"{path}: variant file not found; give the variant.yml path or put variant.yml beside "
                             "the checkpoint")
    data = read_regular(path, MAX_VARIANT_BYTES, "variant file")
    try:
        raw = yaml.load(data.decode("utf-8"), Loader=_VariantLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        found = re.search(r"'([^']+)'", str(exc.problem))
        tag = found.group(1).replace("tag:yaml.org,2002:", "!!") if found else "?"
        raise SegmenterError(f"{path}: refused YAML tag {tag}; only !!python/tuple is accepted") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SegmenterError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise SegmenterError(f"{path}: YAML nested too deeply to be a variant") from None
    check_size(raw, path, "its YAML")
    return replace(parse_variant(raw, path), digest=hashlib.sha256(data).hexdigest(), sources=(path,))


# ----------------------------------------------------------------------------- writing the release format


def release_variant(variant: Variant, dataset: str) -> tuple[dict, list[str]]:
    """A variant.yml mapping of another format's model description, and what it cannot carry over."""
    cfg = variant.model
    if cfg.decoder == "mask_transformer" and (cfg.decoder_width != cfg.d_model or
                                              cfg.decoder_head_count != max(cfg.d_model // 64, 1)):
        raise SegmenterError(f"{variant.path}: the mask decoder is {cfg.decoder_width} wide with "
                             f"{cfg.decoder_head_count} heads; the release format has it {cfg.d_model} wide with "
                             f"{max(cfg.d_model // 64, 1)} heads (width // 64): it cannot hold this model")
    if cfg.mlp_ratio != 4 or cfg.decoder_mlp_ratio != 4 or not cfg.final_norm or cfg.qk_scale is not None:
        raise SegmenterError(f"{variant.path}: an MLP ratio other than 4, no final norm or another attention scale: "
                             "the release format cannot hold this model")
    notes = []
    if cfg.norm_eps != EPS or cfg.decoder_norm_eps != EPS:
        notes.append(f"LayerNorm eps {cfg.norm_eps:g} (encoder) / {cfg.decoder_norm_eps:g} (decoder) becomes {EPS:g}")
    if cfg.pos_embed_mode != "bilinear":
        notes.append(f"the position embedding is resized {cfg.pos_embed_mode}ally to other grids; the release "
                     "format resizes it bilinearly")
    if cfg.logits_to_window:
        notes.append("masks are resized straight to a window whose side is not a multiple of the patch; the release "
                     "format resizes them to the padded size and cuts")
    if not cfg.pad_to_patch:
        notes.append("a window side that is not a multiple of the patch drops its last pixels; the release format "
                     "pads it")
    if not variant.raise_to_window:
        notes.append("windows below the crop: the release format raises a short side below the window to it")
    if variant.resize_rule != "fit-box" or variant.view_merge != "softmax":
        notes.append(f"{variant.resize_rule} resizing and {variant.view_merge} merging of views: the release format "
                     "fits images into a box and averages views' probabilities")
    if variant.tta:
        notes.append("the config's own multi-scale views: the release format's are of the fit box")
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
            CONVERTED_FROM: variant.format}, notes


def release_state(model) -> dict:
    """The model's state dict as the release format stores it: biases of zeros where the model has none (a patch
    embedding or q, k, v projection without a bias computes what one with a zero bias does)."""
    import torch

    state = dict(model.state_dict())
    cfg = model.cfg
    if "encoder.patch_embed.proj.bias" not in state:
        state["encoder.patch_embed.proj.bias"] = torch.zeros(cfg.d_model)
    for prefix, layers, width in (("encoder", cfg.n_layers, cfg.d_model),
                                  ("decoder", cfg.decoder_layers if cfg.decoder == "mask_transformer" else 0,
                                   cfg.decoder_width)):
        for i in range(layers):
            state.setdefault(f"{prefix}.blocks.{i}.attn.qkv.bias", torch.zeros(3 * width))
    return state


def write_release(folder: Path, state: dict, variant_doc: dict, extra: dict | None = None) -> list[Path]:
    """checkpoint.pth ({'model': state, ...}) and variant.yml in `folder`, each written atomically."""
    save_checkpoint({"model": state, **(extra or {})}, folder / "checkpoint.pth")
    atomic_write(folder / "variant.yml", lambda tmp: Path(tmp).write_text(yaml.dump(variant_doc)))
    return [folder / "checkpoint.pth", folder / "variant.yml"]


def write(model, variant: Variant, dataset, folder: Path) -> tuple[list[Path], list[str]]:
    """A model of another format as checkpoint.pth + variant.yml, and what the release format cannot carry over."""
    doc, notes = release_variant(variant, dataset.name)
    return write_release(folder, release_state(model), doc, {"n_cls": variant.n_cls}), notes


# ----------------------------------------------------------------------------- the record


def _holds(obj: Any) -> bool:
    """`{'model': state dict, ...}` as the release writes it, or a bare state dict, of encoder.* / decoder.* keys."""
    state = obj.get("model") if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else obj
    return is_tensor_state(state) and any(k.startswith(("encoder.", "decoder.")) for k in state)


def _unpack(obj: dict) -> tuple[dict, dict]:
    return (obj["model"] if isinstance(obj.get("model"), dict) else obj), {}


FORMAT = Format(
    name="upstream", title="the upstream release", container="torch", holds=_holds, unpack=_unpack,
    reads_description=lambda text: True,  # last in the table: any description the others do not claim
    read_description=lambda path, meta: load_variant(path),
    own_description=lambda ckpt: load_variant(variant_beside(ckpt.path)),
    to_ours=lambda state, path: Renamed(dict(state)), write=write)
