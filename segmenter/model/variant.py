"""What inference needs to know of a model: its network (ModelConfig) and its evaluation (Variant).

The defaults of both records are the upstream release's; the other formats' readers (formats/) set the
fields where their models differ.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..defaults import VARIANT_NAME

DECODER_NAMES = ("linear", "mask_transformer")

# RGB mean / std on pixel values in [0, 255]
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "vit": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "deit": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape (a variant.yml's `net_kwargs`, or another format's model settings)."""

    image_size: tuple[int, int]  # training crop (H, W); sets the stored position-embedding grid
    patch_size: int
    d_model: int
    n_heads: int
    n_layers: int
    n_cls: int
    decoder: str  # "linear" or "mask_transformer"
    decoder_layers: int = 2
    distilled: bool = False
    mlp_ratio: float = 4  # MLP width int(D * mlp_ratio)
    patch_bias: bool = True  # the patch embedding's convolution has a bias (mmseg's has none)
    qkv_bias: bool = True  # the encoder's attention projects q, k, v with a bias
    qk_scale: float | None = None  # the encoder's attention scale; None: head_dim ** -0.5
    pad_to_patch: bool = True  # pad a window to a multiple of the patch (PaddleSeg's convolution drops the rest)
    norm_eps: float = 1e-5  # the encoder's LayerNorms (mmseg's Segmenter configs: 1e-6)
    final_norm: bool = True  # a LayerNorm after the last encoder block
    pos_embed_mode: str = "bilinear"  # how the position embedding is resized to another grid (mmseg: bicubic)
    logits_to_window: bool = False  # masks resized straight to the window (mmseg), not to the padded size and cut
    decoder_dim: int | None = None  # mask transformer width; None: d_model
    decoder_heads: int | None = None  # mask transformer heads; None: width // 64, as upstream fixes them
    decoder_norm_eps: float = 1e-5
    decoder_mlp_ratio: float = 4
    decoder_qkv_bias: bool = True  # PaddleSeg's mask head projects q, k, v without a bias

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
    format: str = "upstream"  # the name of its checkpoint format (formats/): "upstream", "mmseg", "paddle"
    box_ratio: int | None = None  # long / short side of the fit box; None: the data set's
    raise_to_window: bool = True  # a short side below the window is raised to it (upstream), or the window shrinks
    tta: tuple[tuple[float, bool], ...] = ()  # the model's own multi-scale views (ratio, flip); () for upstream's
    tta_of_image: bool = False  # its ratios scale the image itself (mmseg 1.x), not the fit box
    resize_rule: str = "fit-box"  # how images are resized (data/plan.py RESIZE_RULES): upstream's and mmseg's fit box,
    # or PaddleSeg's short side
    view_merge: str = "softmax"  # how views are combined (plan.VIEW_MERGES): mean of softmax probabilities at the
    # original size, or PaddleSeg's mean of logits at the resized size
    classes: tuple[str, ...] | None = None  # class names the checkpoint carries
    palette: tuple[tuple[int, int, int], ...] | None = None
    sources: tuple[Path, ...] = ()  # every file the description was read from (a config's _base_ files included)

    @property
    def n_cls(self) -> int:
        return self.model.n_cls


def variant_beside(checkpoint: str | Path) -> Path:
    """The variant.yml that the release puts beside checkpoint.pth."""
    return Path(checkpoint).with_name(VARIANT_NAME)

