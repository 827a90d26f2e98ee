"""Flamingo's Perceiver resampler and gated cross-attention, with OpenFlamingo 2.0.1's semantics and names.

The parameter names are those of `open_flamingo/src/helpers.py` (`PerceiverResampler.layers.<i>.0.to_q`,
`GatedCrossAttentionBlock.attn.to_kv`, `ff.1.weight`, `attn_gate`, ...), so a released OpenFlamingo
`checkpoint.pt` maps onto these modules key for key. Semantics (each confirmed against helpers.py):

- `FeedForward`: LayerNorm -> Linear(no bias) -> exact GELU -> Linear(no bias) (an `nn.Sequential`, indices
  0..3 as in the original).
- `PerceiverAttention`: LayerNorm on the media and on the latents (separately); queries from the latents,
  keys/values from `cat(media, latents)` along the token axis; scale `dim_head ** -0.5`; max-subtracted
  softmax; no biases.
- `PerceiverResampler`: learned latents (num_latents, dim); `depth` x (attn + residual, FF + residual);
  final LayerNorm; frames of one media are concatenated along the token axis (OpenFlamingo only allows
  one frame); no media-time or frame embeddings (OpenFlamingo builds the resampler without them).
- `MaskedCrossAttention`: LayerNorm on the text only; keys/values from all media latents flattened
  (T_img * n); each text position i has a "text time" (1-based index of the media it may see, 0 = none);
  with `only_attend_immediate_media` it sees exactly the latents of media `text_time[i]` (`torch.eq`),
  otherwise all media up to it (`torch.ge`); masked scores are filled with `-finfo.max` before the
  max-subtracted softmax, and rows with text time 0 get attention 0 afterwards (so their output is
  exactly 0) -- only in the immediate-media mode, as in the original.
- `GatedCrossAttentionBlock`: `x = tanh(attn_gate) * xattn(x) + x; x = tanh(ff_gate) * FF(x) + x`,
  gates initialised to 0: an untrained block is the identity, bit for bit.

The text attention mask is not used by the cross-attention (the original does not use it either).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

__all__ = [
    "FeedForward",
    "GatedCrossAttentionBlock",
    "MaskedCrossAttention",
    "PerceiverAttention",
    "PerceiverResampler",
    "text_time_from_media_locations",
]


def FeedForward(dim: int, mult: float = 4) -> nn.Sequential:  # noqa: N802 - OpenFlamingo's name and layout
    """LayerNorm -> Linear(dim, dim*mult, bias=False) -> GELU (exact) -> Linear(dim*mult, dim, bias=False)."""
    inner = int(dim * mult)
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, inner, bias=False),
        nn.GELU(),
        nn.Linear(inner, dim, bias=False),
    )


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    # (..., n, h*d) -> (..., h, n, d)
    *lead, n, hd = x.shape
    return x.reshape(*lead, n, heads, hd // heads).transpose(-2, -3)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    # (..., h, n, d) -> (..., n, h*d)
    x = x.transpose(-2, -3)
    return x.reshape(*x.shape[:-2], -1)


class PerceiverAttention(nn.Module):
    """Latents attend to `cat(media, latents)` (Flamingo's Perceiver attention)."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        self.scale = dim_head**-0.5
        self.heads = heads
        inner = dim_head * heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """media (b, T, n1, D), latents (b, T, n2, D) -> (b, T, n2, D) (the residual is added by the caller)."""
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat((media, latents), dim=-2)).chunk(2, dim=-1)
        q, k, v = (_split_heads(t, self.heads) for t in (q, k, v))  # (b, T, h, n, d)
        q = q * self.scale
        sim = torch.einsum("...id,...jd->...ij", q, k)
        sim = sim - sim.amax(dim=-1, keepdim=True).detach()
        attn = sim.softmax(dim=-1)
        out = torch.einsum("...ij,...jd->...id", attn, v)
        return self.to_out(_merge_heads(out))


class PerceiverResampler(nn.Module):
    """Maps each media's vision tokens (b, T, F, v, D) to `num_latents` tokens (b, T, num_latents, D)."""

    def __init__(
        self, dim: int, depth: int = 6, dim_head: int = 64, heads: int = 8, num_latents: int = 64, ff_mult: float = 4
    ):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.layers = nn.ModuleList(
            [nn.ModuleList([PerceiverAttention(dim, dim_head, heads), FeedForward(dim, ff_mult)]) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, T, F, v, D) -> (b, T, num_latents, D)."""
        b, t, f, v, d = x.shape
        x = x.reshape(b, t, f * v, d)  # (b, T, F*v, D): frames concatenated, no frame / time embeddings
        latents = self.latents.expand(b, t, *self.latents.shape)  # (b, T, n, D)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm(latents)


def text_time_from_media_locations(media_locations: torch.Tensor, num_prior_media: torch.Tensor | None = None):
    """Per text position, the 1-based index of the latest media at or before it (0: no media yet).

    `media_locations` (B, T_txt) bool marks the `<image>` tokens; `num_prior_media` (B,) counts the media
    tokens of earlier chunks (the KV cache during generation), so new tokens see the last image of their row.
    """
    text_time = media_locations.long().cumsum(dim=-1)  # inclusive: the <image> token itself sees its image
    if num_prior_media is not None:
        text_time = text_time + num_prior_media.to(text_time.device).long().view(-1, 1)
    return text_time


class MaskedCrossAttention(nn.Module):
    """Text tokens attend to the perceiver latents of the media their text time allows (see module doc)."""

    def __init__(self, dim: int, dim_visual: int, dim_head: int = 64, heads: int = 8,
                 only_attend_immediate_media: bool = True):
        super().__init__()
        self.scale = dim_head**-0.5
        self.heads = heads
        inner = dim_head * heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.only_attend_immediate_media = only_attend_immediate_media

    def forward(self, x: torch.Tensor, media: torch.Tensor, text_time: torch.Tensor | None) -> torch.Tensor:
        """x (B, T_txt, D_txt), media (B, T_img, n, D_img), text_time (B, T_txt) -> (B, T_txt, D_txt)."""
        _, t_img, n = media.shape[:3]
        x = self.norm(x)
        q = self.to_q(x)
        k, v = self.to_kv(media.flatten(1, 2)).chunk(2, dim=-1)  # (B, T_img*n, inner)
        q, k, v = (_split_heads(t, self.heads) for t in (q, k, v))  # (B, h, N, d)
        q = q * self.scale
        sim = torch.einsum("...id,...jd->...ij", q, k)  # (B, h, T_txt, T_img*n)
        if text_time is not None:
            media_time = torch.arange(1, t_img + 1, device=x.device).repeat_interleave(n)  # (T_img*n,)
            op = torch.eq if self.only_attend_immediate_media else torch.ge
            allowed = op(text_time[:, None, :, None], media_time[None, None, None, :])
            sim = sim.masked_fill(~allowed, -torch.finfo(sim.dtype).max)
        sim = sim - sim.amax(dim=-1, keepdim=True).detach()
        attn = sim.softmax(dim=-1)
        if text_time is not None and self.only_attend_immediate_media:
            attn = attn.masked_fill((text_time == 0)[:, None, :, None], 0.0)  # no image yet: exactly 0
        out = torch.einsum("...ij,...jd->...id", attn, v)
        return self.to_out(_merge_heads(out))


class GatedCrossAttentionBlock(GradientCheckpointingLayer):
    """`x += tanh(attn_gate) * xattn(x, media)`, then `x += tanh(ff_gate) * FF(x)`; gates start at 0."""

    def __init__(self, dim: int, dim_visual: int, dim_head: int = 64, heads: int = 8, ff_mult: float = 4,
                 only_attend_immediate_media: bool = True):
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_visual, dim_head, heads, only_attend_immediate_media)
        self.attn_gate = nn.Parameter(torch.tensor([0.0]))
        self.ff = FeedForward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.tensor([0.0]))

    def forward(self, x: torch.Tensor, media: torch.Tensor | None, text_time: torch.Tensor | None) -> torch.Tensor:
        """x (B, T_txt, D), media (B, T_img, n, D_img) or None, text_time (B, T_txt) -> (B, T_txt, D)."""
        if media is not None:
            x = self.attn(x, media, text_time) * self.attn_gate.tanh() + x
        # No media at all (text-only input): every token is "before the first image", whose cross-attention
        # output is exactly 0 in the original, so only the gated FF applies.
        return self.ff(x) * self.ff_gate.tanh() + x
