"""What inference needs to know of a model (ModelConfig, Variant), and reading a released `variant.yml`.

The defaults of both records are the upstream release's; MMSegmentation's configs (mmseg.py) set the
fields where its models differ.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ..defaults import VARIANT_NAME
from ..errors import SegmenterError
from ..files import read_regular
from .strict import check_size

DECODER_NAMES = ("linear", "mask_transformer")
MAX_VARIANT_BYTES = 1 << 20  # a released variant.yml is about 1 KB
# Written by the format converter: the variant describes a converted model, whose inference_kwargs.window_stride is
# the model's own evaluation stride (the released files' 512 is upstream's choice; this suite's default is the guide's)
CONVERTED_FROM = "converted_from"

# RGB mean / std on pixel values in [0, 255]
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "vit": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "deit": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape (a variant.yml's `net_kwargs`, or an MMSegmentation config's `model`)."""

    image_size: tuple[int, int]  # training crop (H, W); sets the stored position-embedding grid
    patch_size: int
    d_model: int
    n_heads: int
    n_layers: int
    n_cls: int
    decoder: str  # "linear" or "mask_transformer"
    decoder_layers: int = 2
    distilled: bool = False
    mlp_ratio: int = 4
    patch_bias: bool = True  # the patch embedding's convolution has a bias (mmseg's has none)
    norm_eps: float = 1e-5  # the encoder's LayerNorms (mmseg's Segmenter configs: 1e-6)
    final_norm: bool = True  # a LayerNorm after the last encoder block
    pos_embed_mode: str = "bilinear"  # how the position embedding is resized to another grid (mmseg: bicubic)
    logits_to_window: bool = False  # masks resized straight to the window (mmseg), not to the padded size and cut
    decoder_dim: int | None = None  # mask transformer width; None: d_model
    decoder_heads: int | None = None  # mask transformer heads; None: width // 64, as upstream fixes them
    decoder_norm_eps: float = 1e-5

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def n_extra_tokens(self) -> int:
        return 1 + int(self.distilled)

    @property
    def decoder_width(self) -> int:
        return self.decoder_dim or self.d_model

    @property
    def decoder_head_count(self) -> int:
        # upstream: heads of width 64 (at least one, for the tiny test models)
        return self.decoder_heads or max(self.decoder_width // 64, 1)


class _VariantLoader(yaml.SafeLoader):
    """SafeLoader plus `!!python/tuple` (as a list); every other python tag stays an error."""


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> list:
    return loader.construct_sequence(node, deep=True)


_VariantLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)


@dataclass(frozen=True)
class Variant:
    """What inference needs to know of a model: its network, and how its evaluation cuts and scores images."""

    model: ModelConfig
    normalization: str  # key of NORMALIZATIONS
    image_size: int | None  # short side images are resized to (inference im_size); None when the file has none
    window_size: int  # sliding-window side (training crop)
    window_stride: int | None  # the model's own evaluation stride; None: the guide's default (defaults.py)
    dataset: str | None  # the data set's name, as the file gives it (dataset_kwargs.dataset, or mmseg's type)
    raw: dict[str, Any]
    path: Path  # the file it was read from (a variant.yml, a config, or the checkpoint holding one)
    notes: tuple[str, ...] = ()  # defaults taken because the file lacks a key
    digest: str = ""  # a hash of the description itself (for caches and journals)
    format: str = "upstream"  # or "mmseg"
    box_ratio: int | None = None  # long / short side of the fit box; None: the data set's
    raise_to_window: bool = True  # a short side below the window is raised to it (upstream), or the window shrinks
    tta: tuple[tuple[float, bool], ...] = ()  # the model's own multi-scale views (ratio, flip); () for upstream's
    tta_of_image: bool = False  # its ratios scale the image itself (mmseg 1.x), not the fit box
    classes: tuple[str, ...] | None = None  # class names the checkpoint carries
    palette: tuple[tuple[int, int, int], ...] | None = None
    sources: tuple[Path, ...] = ()  # every file the description was read from (a config's _base_ files included)

    @property
    def n_cls(self) -> int:
        return self.model.n_cls


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


def variant_beside(checkpoint: str | Path) -> Path:
    """The variant.yml that the release puts beside checkpoint.pth."""
    return Path(checkpoint).with_name(VARIANT_NAME)

