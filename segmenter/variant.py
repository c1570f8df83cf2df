"""Reading a released `variant.yml`: the network shape and the evaluation settings."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import SegmenterError

DECODER_NAMES = ("linear", "mask_transformer")

# RGB mean / std on pixel values in [0, 255]
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "vit": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "deit": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}


@dataclass(frozen=True)
class ModelConfig:
    """The `net_kwargs` of a variant.yml that define the network."""

    image_size: tuple[int, int]  # training crop (H, W); sets the stored position-embedding grid
    patch_size: int
    d_model: int
    n_heads: int
    n_layers: int
    n_cls: int
    decoder: str  # "linear" or "mask_transformer"
    decoder_layers: int = 2
    distilled: bool = False

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def n_extra_tokens(self) -> int:
        return 1 + int(self.distilled)


class _VariantLoader(yaml.SafeLoader):
    """SafeLoader plus `!!python/tuple` (as a list); every other python tag stays an error."""


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> list:
    return loader.construct_sequence(node, deep=True)


_VariantLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)


@dataclass(frozen=True)
class Variant:
    """What inference needs from a variant.yml."""

    model: ModelConfig
    normalization: str  # key of NORMALIZATIONS
    image_size: int  # short side images are resized to (inference im_size)
    window_size: int  # sliding-window side (training crop)
    window_stride: int  # upstream evaluation stride
    raw: dict[str, Any]

    @property
    def n_cls(self) -> int:
        return self.model.n_cls


def _get(section: dict, key: str, where: str, path: Path) -> Any:
    if not isinstance(section, dict) or key not in section:
        raise SegmenterError(f"{path}: missing key '{where}{key}'; is this a Segmenter variant.yml?")
    return section[key]


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
    if isinstance(image_size, int):
        image_size = [image_size, image_size]
    try:
        cfg = ModelConfig(
            image_size=(int(image_size[0]), int(image_size[1])),
            patch_size=int(_get(net, "patch_size", "net_kwargs.", path)),
            d_model=int(_get(net, "d_model", "net_kwargs.", path)),
            n_heads=int(_get(net, "n_heads", "net_kwargs.", path)),
            n_layers=int(_get(net, "n_layers", "net_kwargs.", path)),
            n_cls=int(_get(net, "n_cls", "net_kwargs.", path)),
            decoder=name,
            decoder_layers=int(dec.get("n_layers", 2)),
            distilled=bool(net.get("distilled", False)),
        )
    except (TypeError, ValueError, IndexError) as exc:
        raise SegmenterError(f"{path}: bad value in net_kwargs ({exc})") from None
    if cfg.d_model % cfg.n_heads:
        raise SegmenterError(f"{path}: d_model {cfg.d_model} is not a multiple of n_heads {cfg.n_heads}")
    data = raw.get("dataset_kwargs") or {}
    infer = raw.get("inference_kwargs") or {}
    norm = data.get("normalization", net.get("normalization", "vit"))
    if norm not in NORMALIZATIONS:
        raise SegmenterError(f"{path}: unknown normalization '{norm}' (known: {', '.join(NORMALIZATIONS)})")
    window = int(infer.get("window_size", data.get("crop_size", cfg.image_size[0])))
    return Variant(
        model=cfg,
        normalization=norm,
        image_size=int(infer.get("im_size", data.get("image_size", window))),
        window_size=window,
        window_stride=int(infer.get("window_stride", window - 32)),
        raw=raw,
    )


def load_variant(path: str | Path) -> Variant:
    """Read a released variant.yml. Accepts `!!python/tuple`; refuses other python tags unexecuted."""
    path = Path(path)
    if not path.is_file():
        raise SegmenterError(f"{path}: variant file not found; pass --variant or put variant.yml beside the checkpoint")
    try:
        raw = yaml.load(path.read_text(), Loader=_VariantLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        found = re.search(r"'([^']+)'", str(exc.problem))
        tag = found.group(1).replace("tag:yaml.org,2002:", "!!") if found else "?"
        raise SegmenterError(f"{path}: refused YAML tag {tag}; only !!python/tuple is accepted") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SegmenterError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_variant(raw, path)


def variant_beside(checkpoint: str | Path) -> Path:
    """The variant.yml that the release puts beside checkpoint.pth."""
    return Path(checkpoint).with_name("variant.yml")
