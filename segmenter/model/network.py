"""Segmenter (Strudel et al., ICCV 2021): a ViT encoder and a linear or mask-transformer decoder.

Parameter names match the released checkpoints (`encoder.*`, `decoder.*`). Inference only: dropout
and drop-path are identities at inference and are left out. Shapes: B batch, N tokens, C channels,
D model width, K classes, gh x gw the patch grid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .variant import ModelConfig


class Attention(nn.Module):
    """Multi-head self-attention; `fused` picks scaled_dot_product_attention or the plain formula."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.scale = (dim // n_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
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

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, n_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        return self.proj(im).flatten(2).transpose(1, 2)  # (B, 3, H, W) -> (B, gh*gw, D)


def resize_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int],
                     n_extra: int) -> torch.Tensor:
    """Bilinearly resize the grid part of a (1, n_extra + gh*gw, D) position embedding.

    The extra (class / distillation) tokens are kept as they are.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    extra, grid = pos_embed[:, :n_extra], pos_embed[:, n_extra:]
    D = pos_embed.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bilinear", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], D)
    return torch.cat([extra, grid], dim=1)


class VisionTransformer(nn.Module):
    """ViT encoder; returns the normed token features (B, n_extra + gh*gw, D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        D = cfg.d_model
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch_size, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.distilled else None
        gh, gw = cfg.grid
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.n_extra_tokens + gh * gw, D))
        self.blocks = nn.ModuleList([Block(D, cfg.n_heads) for _ in range(cfg.n_layers)])
        self.norm = nn.LayerNorm(D, eps=1e-5)

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        B = im.shape[0]
        H, W = int(im.shape[2]), int(im.shape[3])  # static under ONNX tracing: only the batch is dynamic
        p = self.cfg.patch_size
        x = self.patch_embed(im)  # (B, gh*gw, D)
        extra = [self.cls_token.expand(B, -1, -1)]
        if self.dist_token is not None:
            extra.append(self.dist_token.expand(B, -1, -1))
        x = torch.cat(extra + [x], dim=1)
        x = x + resize_pos_embed(self.pos_embed, self.cfg.grid, (H // p, W // p), self.cfg.n_extra_tokens)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class DecoderLinear(nn.Module):
    """One linear layer per patch token: (B, gh*gw, D) -> (B, K, gh, gw)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.head = nn.Linear(cfg.d_model, cfg.n_cls)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B = x.shape[0]
        return self.head(x).transpose(1, 2).reshape(B, -1, grid[0], grid[1])


class MaskTransformer(nn.Module):
    """Class embeddings attend jointly with patch tokens; masks = cosine(patches, classes), then LayerNorm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        D, K = cfg.d_model, cfg.n_cls
        self.n_cls = K
        self.proj_dec = nn.Linear(D, D)
        self.cls_emb = nn.Parameter(torch.zeros(1, K, D))
        # D // 64 heads of width 64, as upstream fixes them (at least one, for the tiny test models)
        self.blocks = nn.ModuleList([Block(D, max(D // 64, 1)) for _ in range(cfg.decoder_layers)])
        self.decoder_norm = nn.LayerNorm(D, eps=1e-5)
        self.proj_patch = nn.Parameter(torch.zeros(D, D))
        self.proj_classes = nn.Parameter(torch.zeros(D, D))
        self.mask_norm = nn.LayerNorm(K, eps=1e-5)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B = x.shape[0]
        x = self.proj_dec(x)
        x = torch.cat([x, self.cls_emb.expand(B, -1, -1)], dim=1)  # (B, gh*gw + K, D)
        for block in self.blocks:
            x = block(x)
        x = self.decoder_norm(x)
        patches = x[:, : -self.n_cls] @ self.proj_patch  # (B, gh*gw, D)
        classes = x[:, -self.n_cls :] @ self.proj_classes  # (B, K, D)
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

    @property
    def n_cls(self) -> int:
        return self.cfg.n_cls

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        H, W = int(im.shape[2]), int(im.shape[3])  # static under ONNX tracing: only the batch is dynamic
        p = self.cfg.patch_size
        Hp, Wp = H + (-H) % p, W + (-W) % p
        if (Hp, Wp) != (H, W):
            im = F.pad(im, (0, Wp - W, 0, Hp - H))  # zeros right / bottom to the patch grid
        x = self.encoder(im)[:, self.cfg.n_extra_tokens :]  # (B, gh*gw, D)
        masks = self.decoder(x, (Hp // p, Wp // p))  # (B, K, gh, gw)
        masks = F.interpolate(masks, size=(Hp, Wp), mode="bilinear", align_corners=False)
        return masks if (Hp, Wp) == (H, W) else masks[:, :, :H, :W]

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Random initialisation of the released models' scale: normal, std 0.02, clipped at two standard
        deviations (values beyond are set to the bound, not redrawn as a truncated normal would)."""

        def clipped_normal_(t: torch.Tensor) -> None:
            t.copy_(torch.randn(t.shape, generator=generator).clamp_(-2, 2) * 0.02)

        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    clipped_normal_(module.weight)
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
