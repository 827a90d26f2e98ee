"""Pooling of a vision tower's token sequence into one vector per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UserError


class AttentionPool(nn.Module):
    """One learnable query attending over the tokens (multi-head), as in SigLIP's MAP head.

    Unlike mean pooling it keeps *where* things are in the image (tokens carry position embeddings),
    which matters for trajectories. It is part of the trainable head even when the encoder is frozen.

    The parameters are those of an `nn.MultiheadAttention` (checkpoints are plain MHA weights), but the
    forward pass never projects the L tokens to keys and values. With a single query q the score of
    token x_i in head h is q_h . (W_k,h x_i + b_k,h) = (W_k,h^T q_h) . x_i + const, and the constant
    cancels in the softmax; the value read is sum_i a_hi (W_v,h x_i + b_v,h) = W_v,h (sum_i a_hi x_i) + b_v,h
    because the weights sum to 1. So the tokens are only dotted with H vectors and averaged H times:
    O(H*L*D) per image instead of the O(L*D^2) of the key/value projections, the same result up to
    rounding. This is what makes head training from cached tower tokens cheap.
    """

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, hidden_size) * 0.02)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: (B, L, D) -> (B, D)
        attn = self.attention
        batch, _, dim = tokens.shape
        heads = attn.num_heads
        head_dim = dim // heads
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)  # (D, D) each
        b_q, _, b_v = attn.in_proj_bias.chunk(3)  # the key bias shifts every score of a head equally
        # W_q q as a product + sum rather than F.linear: BLAS's matrix-vector kernel rounds differently when
        # the weights are not 64-byte aligned (as after a safetensors load), and a reloaded model must
        # predict bit for bit what the trained one did.
        query = ((w_q * self.query[0, 0]).sum(-1) + b_q).view(heads, head_dim) * head_dim**-0.5  # (H, hd)
        query_in_tokens = torch.einsum("hc,hcd->hd", query, w_k.view(heads, head_dim, dim))  # (H, D)
        weights = torch.einsum("bld,hd->bhl", tokens, query_in_tokens).softmax(dim=-1)  # (B, H, L)
        weights = F.dropout(weights, attn.dropout, self.training)
        mixed = torch.einsum("bhl,bld->bhd", weights, tokens)  # (B, H, D): per-head average token
        values = torch.einsum("bhd,hcd->bhc", mixed, w_v.view(heads, head_dim, dim)) + b_v.view(heads, head_dim)
        pooled = attn.out_proj(values.reshape(batch, dim))  # (B, D)
        return self.norm(pooled)


def pool_tokens(
    tokens: torch.Tensor, mode: str, num_prefix_tokens: int = 0, attention_pool: AttentionPool | None = None
) -> torch.Tensor:
    """Pool (B, L, D) tokens to (B, D).

    mode "mean" averages the patch tokens (prefix tokens such as CLS are excluded), "cls" takes the first
    token, "attention" applies `attention_pool` to the patch tokens.
    """
    if mode == "cls":
        if num_prefix_tokens < 1:
            raise UserError("pooling='cls' needs a vision tower with a class token")
        return tokens[:, 0]
    patches = tokens[:, num_prefix_tokens:]
    if mode == "mean":
        return patches.mean(dim=1)
    if mode == "attention":
        if attention_pool is None:
            raise UserError("pooling='attention' needs an AttentionPool module")
        return attention_pool(patches)
    raise UserError(f"unknown pooling mode {mode!r}; expected 'mean', 'cls' or 'attention'")
