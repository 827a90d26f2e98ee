"""Diffusion-transformer (DiT) blocks with AdaLN-Zero timestep conditioning and per-layer cross-attention.

```
  tokens x (B, N, W)          cond c (B, W)  (timestep embedding)          context_i (B, L_i, C)
        |                          | SiLU > Linear -> shift/scale/gate x 3        |
  LN > modulate(shift1, scale1) > self-attn > * gate1 > + x                    |
  LN > modulate(shift2, scale2) > cross-attn(q = x, k/v = context_i) > * gate2 > + x
  LN > modulate(shift3, scale3) > MLP > * gate3 > + x
```

Each block gets its own context: the GeoVLA action head passes layer i the concatenation of the VLM
hidden state chosen for it and the geometry tokens for layer i.

`DiTBlock` is a transformers `GradientCheckpointingLayer`: `model.activation_checkpointing_enable()` (what
Trainer calls; `gradient_checkpointing_enable` is its deprecated alias) on the model that holds it
(`PreTrainedModel._set_gradient_checkpointing` walks every submodule with a `gradient_checkpointing`
attribute) makes its forward recompute in the backward pass, like the VLM's own decoder layers. The wrapper checkpoints positional arguments only (keyword arguments are bound into the
recomputed function, not passed to `torch.utils.checkpoint`), so callers pass `(x, cond, context, mask)`
positionally: with `use_reentrant=True` that is what lets gradients reach `x` and `context`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ...errors import UserError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) times in [0, 1] (scaled by `scale`, as DiT does for integer steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * scale)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedder(nn.Module):
    """Sinusoidal features -> MLP -> (B, W) conditioning vector."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_size).to(self.mlp[0].weight.dtype))


class CrossAttention(nn.Module):
    """Multi-head attention from queries (B, N, W) to a context (B, L, C) with a key padding mask."""

    def __init__(self, hidden_size: int, context_size: int, num_heads: int):
        super().__init__()
        if hidden_size % num_heads:
            raise UserError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(hidden_size, hidden_size)
        self.kv = nn.Linear(context_size, 2 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, w = x.shape
        h = self.num_heads
        q = self.q(x).view(b, n, h, w // h).transpose(1, 2)  # (B, h, N, d)
        k, v = self.kv(context.to(x.dtype)).chunk(2, dim=-1)
        k = k.view(b, -1, h, w // h).transpose(1, 2)  # (B, h, L, d)
        v = v.view(b, -1, h, w // h).transpose(1, 2)
        mask = None
        if context_mask is not None:
            mask = context_mask.bool()[:, None, None, :]  # (B, 1, 1, L) True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, w))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(GradientCheckpointingLayer):
    """Self-attention, cross-attention and MLP, each modulated and gated by the conditioning (AdaLN-Zero).

    Gradient checkpointing (off by default) is switched on by the owning model's
    `activation_checkpointing_enable()`; pass the four inputs positionally (see the module docstring).
    """

    def __init__(self, hidden_size: int, context_size: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.self_attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.cross_attn = CrossAttention(hidden_size, context_size, num_heads)
        self.norm3 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        inner = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden_size, inner), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(inner, hidden_size))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 9 * hidden_size))
        # AdaLN-Zero: every residual branch starts as the identity.
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        mods = self.adaLN_modulation(cond).chunk(9, dim=-1)
        h = _modulate(self.norm1(x), mods[0], mods[1])
        x = x + mods[2].unsqueeze(1) * self.self_attn(h, h, h, need_weights=False)[0]
        h = _modulate(self.norm2(x), mods[3], mods[4])
        x = x + mods[5].unsqueeze(1) * self.cross_attn(h, context, context_mask)
        h = _modulate(self.norm3(x), mods[6], mods[7])
        return x + mods[8].unsqueeze(1) * self.mlp(h)


class DiTFinalLayer(nn.Module):
    """AdaLN-modulated LayerNorm and a linear map to the output width (zero-initialised)."""

    def __init__(self, hidden_size: int, out_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.linear = nn.Linear(hidden_size, out_size)
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(cond).chunk(2, dim=-1)
        return self.linear(_modulate(self.norm(x), shift, scale))


__all__ = ["CrossAttention", "DiTBlock", "DiTFinalLayer", "TimestepEmbedder", "timestep_embedding"]
