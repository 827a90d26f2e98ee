"""Geometry compressors: G raw geometry tokens (B, G, D_in) -> K tokens (B, K, D_out) per DiT layer.

Three variants (SPEC 1.5; reference sizes for D_in=1536, D_out=2048, K=16, 16 DiT layers):

- `pool`      Linear(D_in, D_out) + group pooling of the G tokens into K groups; the same K tokens for
              every DiT layer (~3.1 M parameters).
- `per_layer` one Linear(D_in, D_out) + group pooling per DiT layer; different tokens per layer (the seed's
              16 projections: 16 x (1536 x 2048 + 2048) + LayerNorm 4096 = 50,368,512).
- `qformer`   Linear(D_in, D_out), K learnable queries cross-attending over the G tokens (8 heads),
              the same K tokens for every layer (~20 M).

Every compressor returns a tensor (num_layers, B, K, D_out) so that the action head indexes layer i;
`forward(raw, layers=[...])` returns only those DiT layers' tokens (len(layers), B, K, D_out), so a model whose
self-attending DiT blocks take no context does not compute their projections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UserError
from .config_utils import COMPRESSOR_TYPES


def group_pool(tokens: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Average (B, G, D) tokens over `num_groups` contiguous groups -> (B, K, D) (adaptive when G % K != 0)."""
    return F.adaptive_avg_pool1d(tokens.transpose(1, 2), num_groups).transpose(1, 2)


def _count(num_layers: int, layers: list[int] | None) -> int:
    """How many layers' tokens `forward(raw, layers)` returns; `layers` must index the compressor's layers."""
    if layers is None:
        return num_layers
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise IndexError(f"geometry compressor has {num_layers} layers; asked for layer(s) {bad}")
    return len(layers)


class PoolCompressor(nn.Module):
    """Linear projection + group pooling, shared by all DiT layers."""

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int, num_layers: int):
        super().__init__()
        self.num_tokens, self.num_layers = num_tokens, num_layers
        self.proj = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, raw: torch.Tensor, layers: list[int] | None = None) -> torch.Tensor:
        tokens = self.norm(group_pool(self.proj(raw), self.num_tokens))  # (B, K, D_out)
        return tokens.unsqueeze(0).expand(_count(self.num_layers, layers), *tokens.shape)  # (L, B, K, D_out)


class PerLayerCompressor(nn.Module):
    """One Linear projection + group pooling per DiT layer."""

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int, num_layers: int):
        super().__init__()
        self.num_tokens, self.num_layers = num_tokens, num_layers
        self.projs = nn.ModuleList(nn.Linear(in_dim, out_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, raw: torch.Tensor, layers: list[int] | None = None) -> torch.Tensor:
        pooled = group_pool(raw, self.num_tokens)  # pooling commutes with the linear map: pool first, cheaper
        index = range(self.num_layers) if layers is None else layers
        _count(self.num_layers, layers)
        return torch.stack([self.norm(self.projs[i](pooled)) for i in index])  # (L, B, K, D_out)


class QFormerCompressor(nn.Module):
    """K learnable queries cross-attending over the projected geometry tokens."""

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int, num_layers: int, num_heads: int = 8):
        super().__init__()
        if out_dim % num_heads:
            raise UserError(f"qformer: out_dim {out_dim} must be divisible by num_heads {num_heads}")
        self.num_tokens, self.num_layers = num_tokens, num_layers
        self.proj = nn.Linear(in_dim, out_dim)
        self.queries = nn.Parameter(torch.randn(num_tokens, out_dim) * 0.02)
        self.attn = nn.MultiheadAttention(out_dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, raw: torch.Tensor, layers: list[int] | None = None) -> torch.Tensor:
        kv = self.proj(raw)  # (B, G, D_out)
        q = self.queries.unsqueeze(0).expand(raw.shape[0], -1, -1).to(kv.dtype)  # (B, K, D_out)
        tokens = self.norm(q + self.attn(q, kv, kv, need_weights=False)[0])
        return tokens.unsqueeze(0).expand(_count(self.num_layers, layers), *tokens.shape)


def build_geometry_compressor(
    kind: str, in_dim: int, out_dim: int, num_tokens: int, num_layers: int, num_heads: int = 8
) -> nn.Module:
    """Build the compressor named `kind` (one of `COMPRESSOR_TYPES`)."""
    if kind == "pool":
        return PoolCompressor(in_dim, out_dim, num_tokens, num_layers)
    if kind == "per_layer":
        return PerLayerCompressor(in_dim, out_dim, num_tokens, num_layers)
    if kind == "qformer":
        return QFormerCompressor(in_dim, out_dim, num_tokens, num_layers, num_heads)
    raise UserError(f"geometry compressor type must be one of {COMPRESSOR_TYPES}, got {kind!r}")


__all__ = [
    "PerLayerCompressor",
    "PoolCompressor",
    "QFormerCompressor",
    "build_geometry_compressor",
    "group_pool",
]
