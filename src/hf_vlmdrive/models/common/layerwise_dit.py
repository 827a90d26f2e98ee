"""starVLA's layer-wise flow-matching action head (`LayerwiseFlowmatchingActionHead` + its cross-attention DiT).

Written from starVLA's `starVLA/model/modules/action_model/LayerwiseFM_ActionHeader.py`,
`flow_matching_head/cross_attention_dit.py` and `flow_matching_head/action_encoder.py` (GR00T N1.5's head,
as starVLA's QwenPI framework configures it). Parameter names equal starVLA's, so a starVLA
`action_model.*` state dict loads into `action_head.*` (minus the DiT's unused `norm_out` / `proj_out_*`).

```
 state (B, S)          future tokens (F, W)         noisy actions x_t (B, T, A), bucket k = int(t * 1000)
     | state_encoder MLP       |                          | action_encoder: W3(swish(W2(cat(W1 a, sin(k)))))
     | (B, 1, W)               | (B, F, W)                | + position_embedding[0..T)   (B, T, W)
     +-------------------------+-----------cat------------+
                               | sa_embs (B, 1 + F + T, W)
  k -> Timesteps(256, flip_sin_to_cos, shift 1) -> linear_1 > SiLU > linear_2 = temb (B, W)
                               |
  block i (i even, or every block without interleaving):  x += attn1(AdaLN(x, temb), context_i, mask)
  block i (i odd, interleave_self_attention):             x += attn1(AdaLN(x, temb))          (self-attn)
                               each block then:           x += FF(LN(x))     (GELU-tanh, 4x, dropout)
                               |
                   action_decoder MLP on the last T positions -> velocity (B, T, A)
```

One attention per block, AdaLN (scale, shift from the timestep embedding; no gates) before it, a plain
LayerNorm before the feed-forward, no final norm (starVLA calls the DiT with `return_pre_output=True`).
Every module keeps PyTorch's default initialisation except `future_tokens` and `position_embedding`
(normal, std 0.02), as in starVLA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ...errors import UserError


def bucket_sinusoid(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """starVLA's `SinusoidalPositionalEncoding`: (B, T) timesteps -> (B, T, dim) as cat(sin, cos),
    frequencies exp(-i * ln(10000) / (dim // 2))."""
    t = timesteps.float()
    half = dim // 2
    exponent = -torch.arange(half, dtype=torch.float, device=t.device) * (torch.log(torch.tensor(10000.0)) / half)
    freqs = t.unsqueeze(-1) * exponent.exp()  # (B, T, half)
    return torch.cat([torch.sin(freqs), torch.cos(freqs)], dim=-1)


def diffusers_timestep_features(timesteps: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """diffusers' `Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=1)`: (B,) -> (B, dim) as
    cat(cos, sin), frequencies exp(-i * ln(10000) / (dim // 2 - 1))."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / (half - 1)
    args = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class _TimestepEmbedding(nn.Module):
    """diffusers' `TimestepEmbedding`: linear_1 > SiLU > linear_2."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class TimestepEncoder(nn.Module):
    """Integer (bucketed) timesteps (B,) -> (B, dim) conditioning vector."""

    def __init__(self, dim: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.timestep_embedder = _TimestepEmbedding(frequency_size, dim)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        dtype = self.timestep_embedder.linear_1.weight.dtype
        return self.timestep_embedder(diffusers_timestep_features(timesteps, self.frequency_size).to(dtype))


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine parameters, then `* (1 + scale) + shift` from Linear(SiLU(temb)) (scale first)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps, elementwise_affine=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(self.silu(temb)).chunk(2, dim=1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """diffusers' `Attention` with `AttnProcessor2_0` (biased q/k/v, out projection + dropout): self-attention
    when `cross_attention_dim` is None, else cross-attention to a context of that width."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, cross_attention_dim: int | None = None,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        inner = num_heads * head_dim
        kv_dim = cross_attention_dim if cross_attention_dim is not None else dim
        self.heads, self.head_dim = num_heads, head_dim
        self.is_cross_attention = cross_attention_dim is not None
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(kv_dim, inner, bias=bias)
        self.to_v = nn.Linear(kv_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=True), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        kv = x if context is None else context.to(x.dtype)
        q = self.to_q(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, h, N, d)
        k = self.to_k(kv).view(b, -1, self.heads, self.head_dim).transpose(1, 2)  # (B, h, L, d)
        v = self.to_v(kv).view(b, -1, self.heads, self.head_dim).transpose(1, 2)
        mask = None
        if context is not None and context_mask is not None:
            mask = context_mask.bool()[:, None, None, :]  # (B, 1, 1, L) True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.to_out[1](self.to_out[0](y))


class _GELUProj(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """diffusers' `FeedForward(activation_fn="gelu-approximate", final_dropout=True)`:
    net = [GELU-tanh projection to 4 x dim, Dropout, Linear back, Dropout]."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([_GELUProj(dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class LayerwiseDiTBlock(GradientCheckpointingLayer):
    """starVLA's `BasicTransformerBlock` (norm_type `ada_norm`, no positional embedding, final dropout):
    `x += dropout(attn1(AdaLN(x, temb), context))`, then `x += FF(LN(x))`.

    Gradient checkpointing is switched on by the owning model's `activation_checkpointing_enable()`; pass
    `(x, temb, context, context_mask)` positionally (see `models/common/dit.py`).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, cross_attention_dim: int | None,
                 dropout: float = 0.0, eps: float = 1e-5):
        super().__init__()
        self.norm1 = AdaLayerNorm(dim, eps)
        self.attn1 = Attention(dim, num_heads, head_dim, cross_attention_dim, dropout)
        self.norm3 = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.ff = FeedForward(dim, dropout=dropout)
        self.final_dropout = nn.Dropout(dropout)

    @property
    def is_cross_attention(self) -> bool:
        """True when this block attends to a context (False: self-attention over the action tokens)."""
        return self.attn1.is_cross_attention

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x, temb)
        x = x + self.final_dropout(self.attn1(h, context if self.is_cross_attention else None, context_mask))
        return x + self.ff(self.norm3(x))


class LayerwiseDiT(nn.Module):
    """starVLA's `DiT` as the action head calls it (`return_pre_output=True`): timestep encoder + blocks.

    Block i cross-attends to its own context when `interleave_self_attention` is False or i is even, and
    is a self-attention block otherwise.
    """

    def __init__(self, dim: int, num_layers: int, num_heads: int, head_dim: int, cross_attention_dim: int,
                 dropout: float = 0.0, interleave_self_attention: bool = True):
        super().__init__()
        if num_heads * head_dim != dim:
            raise UserError(f"DiT width {dim} must equal num_heads x head_dim = {num_heads} x {head_dim}")
        self.interleave_self_attention = interleave_self_attention
        self.timestep_encoder = TimestepEncoder(dim)
        self.transformer_blocks = nn.ModuleList(
            LayerwiseDiTBlock(dim, num_heads, head_dim,
                              None if (interleave_self_attention and i % 2 == 1) else cross_attention_dim, dropout)
            for i in range(num_layers)
        )

    @property
    def cross_attention_layers(self) -> list[int]:
        """Indices of the blocks that take a context."""
        return [i for i, b in enumerate(self.transformer_blocks) if b.is_cross_attention]

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, contexts: list[torch.Tensor | None],
                context_masks: list[torch.Tensor | None]) -> torch.Tensor:
        """`contexts[i]` / `context_masks[i]` for block i (None for self-attention blocks)."""
        temb = self.timestep_encoder(timesteps)  # (B, W)
        for block, context, mask in zip(self.transformer_blocks, contexts, context_masks):
            x = block(x, temb, context, mask)
        return x


class _MLP(nn.Module):
    """starVLA's two-layer `MLP` (layer1 > ReLU > layer2)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int):
        super().__init__()
        self.layer1 = nn.Linear(input_dim, hidden_dim)
        self.layer2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x)))


class ActionEncoder(nn.Module):
    """(B, T, A) actions and (B,) bucketed timesteps -> W3(swish(W2(cat(W1 a, sinusoid(k))))) (B, T, W)."""

    def __init__(self, action_dim: int, dim: int):
        super().__init__()
        self.dim = dim
        self.layer1 = nn.Linear(action_dim, dim)
        self.layer2 = nn.Linear(2 * dim, dim)
        self.layer3 = nn.Linear(dim, dim)

    def forward(self, actions: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        b, t, _ = actions.shape
        if timesteps.shape != (b,):
            raise UserError(f"timesteps must have shape ({b},), got {tuple(timesteps.shape)}")
        a_emb = self.layer1(actions)
        tau = bucket_sinusoid(timesteps.unsqueeze(1).expand(-1, t), self.dim).to(a_emb.dtype)
        x = self.layer2(torch.cat([a_emb, tau], dim=-1))
        return self.layer3(x * torch.sigmoid(x))  # swish


class LayerwiseFlowMatchingHead(nn.Module):
    """The velocity network of starVLA's `LayerwiseFlowmatchingActionHead`.

    Args:
        dim: DiT width W.
        num_layers, num_heads, head_dim: DiT shape (W = num_heads * head_dim).
        cross_attention_dim: width of the contexts.
        action_dim, action_horizon, state_dim: A, T, S (state_dim 0 = no state token).
        num_future_tokens: learned tokens between the state and the actions (starVLA: 32).
        mlp_hidden_size: hidden width of the state encoder and action decoder MLPs (starVLA: 1024).
        max_seq_len: rows of the action position embedding (starVLA: 1024).
        dropout: attention / feed-forward dropout (starVLA's QwenPI: 0.2).
        interleave_self_attention: odd blocks attend to the action tokens only (starVLA's QwenPI: True).
    """

    def __init__(self, dim: int, num_layers: int, num_heads: int, head_dim: int, cross_attention_dim: int,
                 action_dim: int, action_horizon: int, state_dim: int, num_future_tokens: int = 32,
                 mlp_hidden_size: int = 1024, max_seq_len: int = 1024, dropout: float = 0.0,
                 interleave_self_attention: bool = True):
        super().__init__()
        if action_horizon > max_seq_len:
            raise UserError(f"action_horizon {action_horizon} exceeds the position table's {max_seq_len} rows")
        self.action_horizon = action_horizon
        self.model = LayerwiseDiT(dim, num_layers, num_heads, head_dim, cross_attention_dim, dropout,
                                  interleave_self_attention)
        self.state_encoder = _MLP(state_dim, mlp_hidden_size, dim) if state_dim else None
        self.action_encoder = ActionEncoder(action_dim, dim)
        self.action_decoder = _MLP(dim, mlp_hidden_size, action_dim)
        self.future_tokens = nn.Embedding(num_future_tokens, dim)
        self.position_embedding = nn.Embedding(max_seq_len, dim)
        nn.init.normal_(self.future_tokens.weight, mean=0.0, std=0.02)
        nn.init.normal_(self.position_embedding.weight, mean=0.0, std=0.02)

    @property
    def blocks(self) -> nn.ModuleList:
        """The DiT blocks."""
        return self.model.transformer_blocks

    def forward(self, noisy_actions: torch.Tensor, timesteps: torch.Tensor, state: torch.Tensor | None,
                contexts: list[torch.Tensor | None], context_masks: list[torch.Tensor | None]) -> torch.Tensor:
        """Velocity (B, T, A) for x_t (B, T, A), bucketed timesteps (B,) long, normalised state (B, S)."""
        b, t, _ = noisy_actions.shape
        x = self.action_encoder(noisy_actions, timesteps)  # (B, T, W)
        x = x + self.position_embedding.weight[:t].unsqueeze(0)
        parts = [self.future_tokens.weight.unsqueeze(0).expand(b, -1, -1), x]
        if self.state_encoder is not None and state is not None:
            parts.insert(0, self.state_encoder(state.unsqueeze(1)))  # (B, 1, W)
        hidden = self.model(torch.cat(parts, dim=1), timesteps, contexts, context_masks)  # (B, 1+F+T, W)
        # starVLA decodes all 1 + F + T positions and keeps the last T; the MLP acts per position, so decoding
        # only those T is the same result without the (1 + F) / T extra work (5x at F = 32, T = 8).
        return self.action_decoder(hidden[:, -t:])


def starvla_inference_buckets(num_steps: int, num_buckets: int = 1000) -> list[int]:
    """The bucket of each Euler step in starVLA's `predict_action`: int(k / num_steps * num_buckets)."""
    if num_steps < 1:
        raise UserError(f"num_steps must be >= 1, got {num_steps}")
    return [int(k / float(num_steps) * num_buckets) for k in range(num_steps)]


__all__ = [
    "ActionEncoder",
    "AdaLayerNorm",
    "Attention",
    "FeedForward",
    "LayerwiseDiT",
    "LayerwiseDiTBlock",
    "LayerwiseFlowMatchingHead",
    "TimestepEncoder",
    "bucket_sinusoid",
    "diffusers_timestep_features",
    "starvla_inference_buckets",
]
