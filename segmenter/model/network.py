"""Segmenter (Strudel et al., ICCV 2021): a ViT encoder and a linear or mask-transformer decoder.

Parameter names match the released checkpoints (`encoder.*`, `decoder.*`); the other formats' are mapped
onto them (formats/), their few differences set in ModelConfig. Inference only: dropout and drop-path
are identities at inference and are left out. Shapes: B batch, N tokens, C channels, D model width, E
decoder width, K classes, gh x gw the patch grid. With `dynamic_hw`, sizes stay tensors while the
graph is traced, so an exported model takes any window height and width.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .variant import ModelConfig


class Attention(nn.Module):
    """Multi-head self-attention; `fused` picks scaled_dot_product_attention or the plain formula."""

    def __init__(self, dim: int, n_heads: int, qkv_bias: bool = True, scale: float | None = None) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.scale = scale or (dim // n_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.fused = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, C/heads)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, heads, N, N)
            x = attn.softmax(dim=-1) @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, n_heads: int, eps: float = 1e-5, mlp_ratio: float = 4, qkv_bias: bool = True,
                 scale: float | None = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, n_heads, qkv_bias, scale)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        return self.proj(im).flatten(2).transpose(1, 2)  # (B, 3, H, W) -> (B, gh*gw, D)


def resize_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid, n_extra: int,
                     mode: str = "bilinear") -> torch.Tensor:
    """Resize the grid part of a (1, n_extra + gh*gw, D) position embedding (bilinear or bicubic, half-pixel
    centres); the extra (class / distillation) tokens are kept as they are. `new_grid` may hold traced sizes."""
    static = all(isinstance(v, int) for v in new_grid)
    if static and tuple(old_grid) == tuple(new_grid):
        return pos_embed
    extra, grid = pos_embed[:, :n_extra], pos_embed[:, n_extra:]
    D = pos_embed.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode=mode, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, D)
    return torch.cat([extra, grid], dim=1)


class VisionTransformer(nn.Module):
    """ViT encoder; returns the normed token features (B, n_extra + gh*gw, D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        D = cfg.d_model
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch_size, D, cfg.patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.distilled else None
        gh, gw = cfg.grid
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.n_extra_tokens + gh * gw, D))
        self.blocks = nn.ModuleList([Block(D, cfg.n_heads, cfg.norm_eps, cfg.mlp_ratio, cfg.qkv_bias, cfg.qk_scale)
                                     for _ in range(cfg.n_layers)])
        self.norm = nn.LayerNorm(D, eps=cfg.norm_eps) if cfg.final_norm else nn.Identity()

    def forward(self, im: torch.Tensor, grid: tuple) -> torch.Tensor:
        """(B, 3, H, W) padded to the patch grid `grid` (gh, gw) -> (B, n_extra + gh*gw, D)."""
        B = im.shape[0]
        x = self.patch_embed(im)  # (B, gh*gw, D)
        extra = [self.cls_token.expand(B, -1, -1)]
        if self.dist_token is not None:
            extra.append(self.dist_token.expand(B, -1, -1))
        x = torch.cat(extra + [x], dim=1)
        x = x + resize_pos_embed(self.pos_embed, self.cfg.grid, grid, self.cfg.n_extra_tokens, self.cfg.pos_embed_mode)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class DecoderLinear(nn.Module):
    """One linear layer per patch token: (B, gh*gw, D) -> (B, K, gh, gw)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.head = nn.Linear(cfg.d_model, cfg.n_cls)

    def forward(self, x: torch.Tensor, grid: tuple) -> torch.Tensor:
        B = x.shape[0]
        return self.head(x).transpose(1, 2).reshape(B, self.head.out_features, grid[0], grid[1])


class MaskTransformer(nn.Module):
    """Class embeddings attend jointly with patch tokens; masks = cosine(patches, classes), then LayerNorm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        D, E, K = cfg.d_model, cfg.decoder_width, cfg.n_cls
        self.n_cls = K
        self.proj_dec = nn.Linear(D, E)
        self.cls_emb = nn.Parameter(torch.zeros(1, K, E))
        self.blocks = nn.ModuleList([Block(E, cfg.decoder_head_count, cfg.decoder_norm_eps, cfg.decoder_mlp_ratio,
                                           cfg.decoder_qkv_bias) for _ in range(cfg.decoder_layers)])
        self.decoder_norm = nn.LayerNorm(E, eps=cfg.decoder_norm_eps)
        self.proj_patch = nn.Parameter(torch.zeros(E, E))
        self.proj_classes = nn.Parameter(torch.zeros(E, E))
        self.mask_norm = nn.LayerNorm(K, eps=cfg.decoder_norm_eps)

    def forward(self, x: torch.Tensor, grid: tuple) -> torch.Tensor:
        B = x.shape[0]
        x = self.proj_dec(x)  # (B, gh*gw, E)
        x = torch.cat([x, self.cls_emb.expand(B, -1, -1)], dim=1)  # (B, gh*gw + K, E)
        for block in self.blocks:
            x = block(x)
        x = self.decoder_norm(x)
        patches = x[:, : -self.n_cls] @ self.proj_patch  # (B, gh*gw, E)
        classes = x[:, -self.n_cls :] @ self.proj_classes  # (B, K, E)
        patches = patches / patches.norm(dim=-1, keepdim=True)
        classes = classes / classes.norm(dim=-1, keepdim=True)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))  # (B, gh*gw, K)
        return masks.transpose(1, 2).reshape(B, self.n_cls, grid[0], grid[1])


DECODERS = {"linear": DecoderLinear, "mask_transformer": MaskTransformer}


class Segmenter(nn.Module):
    """(B, 3, H, W) normalized RGB -> (B, K, H, W) logits, for any H, W."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VisionTransformer(cfg)
        self.decoder = DECODERS[cfg.decoder](cfg)
        self.dynamic_hw = False  # set while exporting a graph that takes any window size

    @property
    def n_cls(self) -> int:
        return self.cfg.n_cls

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        if self.dynamic_hw:
            H, W = im.shape[2], im.shape[3]  # traced sizes: the graph takes any height and width
        else:
            H, W = int(im.shape[2]), int(im.shape[3])  # constants under ONNX tracing: only the batch is dynamic
        p = self.cfg.patch_size
        if self.cfg.pad_to_patch:
            pad_h, pad_w = (p - H % p) % p, (p - W % p) % p
            if self.dynamic_hw or (pad_h, pad_w) != (0, 0):
                im = F.pad(im, (0, pad_w, 0, pad_h))  # zeros right / bottom to the patch grid
        else:
            pad_h = pad_w = 0  # the patch convolution drops a side's last H % p pixels (PaddleSeg)
        Hp, Wp = H + pad_h, W + pad_w
        grid = (Hp // p, Wp // p)
        x = self.encoder(im, grid)[:, self.cfg.n_extra_tokens :]  # (B, gh*gw, D)
        masks = self.decoder(x, grid)  # (B, K, gh, gw)
        if self.cfg.logits_to_window:
            return F.interpolate(masks, size=(H, W), mode="bilinear", align_corners=False)
        masks = F.interpolate(masks, size=(Hp, Wp), mode="bilinear", align_corners=False)
        return masks[:, :, :H, :W] if self.dynamic_hw or (pad_h, pad_w) != (0, 0) else masks

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Random initialisation of the released models' scale: normal, std 0.02, clipped at two standard
        deviations (values beyond are set to the bound, not redrawn as a truncated normal would)."""

        def clipped_normal_(t: torch.Tensor) -> None:
            t.copy_(torch.randn(t.shape, generator=generator).clamp_(-2, 2) * 0.02)

        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    clipped_normal_(module.weight)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            for name, param in self.named_parameters():
                if name.endswith(("cls_token", "dist_token", "pos_embed", "cls_emb")):
                    clipped_normal_(param)
                elif name.endswith(("proj_patch", "proj_classes")):
                    param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(param.shape[0]))


def set_fused_attention(model: nn.Module, fused: bool) -> None:
    """Switch every Attention between scaled_dot_product_attention (True) and the plain formula."""
    for module in model.modules():
        if isinstance(module, Attention):
            module.fused = fused
