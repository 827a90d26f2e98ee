"""Pooling of a vision tower's token sequence into one vector per image."""

from __future__ import annotations

import torch
from torch import nn


class AttentionPool(nn.Module):
    """One learnable query attending over the tokens (multi-head), as in SigLIP's MAP head.

    Unlike mean pooling it keeps *where* things are in the image (tokens carry position embeddings),
    which matters for trajectories. It is part of the trainable head even when the encoder is frozen.
    """

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, hidden_size) * 0.02)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: (B, L, D) -> (B, D)
        query = self.query.expand(tokens.shape[0], -1, -1)
        pooled, _ = self.attention(query, tokens, tokens, need_weights=False)
        return self.norm(pooled[:, 0])


def pool_tokens(
    tokens: torch.Tensor, mode: str, num_prefix_tokens: int = 0, attention_pool: AttentionPool | None = None
) -> torch.Tensor:
    """Pool (B, L, D) tokens to (B, D).

    mode "mean" averages the patch tokens (prefix tokens such as CLS are excluded), "cls" takes the first
    token, "attention" applies `attention_pool` to the patch tokens.
    """
    if mode == "cls":
        if num_prefix_tokens < 1:
            raise ValueError("pooling='cls' needs a vision tower with a class token")
        return tokens[:, 0]
    patches = tokens[:, num_prefix_tokens:]
    if mode == "mean":
        return patches.mean(dim=1)
    if mode == "attention":
        if attention_pool is None:
            raise ValueError("pooling='attention' needs an AttentionPool module")
        return attention_pool(patches)
    raise ValueError(f"unknown pooling mode {mode!r}; expected 'mean', 'cls' or 'attention'")
