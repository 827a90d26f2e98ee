"""MapAnything's feature trunk (Meta's MapAnything V1.1), written from its released code so that the released
weights load by a direct key map.

```
 pixel_values (B, V, 3, H, W)  (H, W multiples of 14; ImageNet-normalised in mapanything mode, [0, 1] in
      | views stacked view-major: (V*B, 3, H, W)                            qwenmapanythingpi mode)
 encoder = DINOv2 ViT-g/14 blocks 0..23, no final norm
      | patch conv 14 -> [CLS | P patches] + pos_embed (37x37 table, bicubic, scale factor (h+0.1)/37, fp32)
      | 24 x Block(1536, 24 heads, fused SwiGLU 4096, LayerScale)                 -> (V*B, 1 + P, 1536)
      +--> CLS (per-view register)          +--> patches (V*B, P, 1536)
      |                                     | fusion LayerNorm (fp32, autocast off)      [mapanything mode]
 info_sharing = alternating-attention transformer (AAT)
      | tokens: [view 0: P patches | CLS] [view 1: P | CLS] ... [scale token]      N = V * (P + 1) + 1
      | + reference-view marker (sinusoid of position 0) on view 0's P + 1 tokens
      | 16 x Block(1536, 24 heads, fused SwiGLU 4096, LayerScale 1e-5):
      |     even block: attention over all N tokens; odd block: within each view (scale token held out)
      | final LayerNorm
 last_hidden_state (B, V*P, 1536): every view's patch tokens, view-major, row-major
```

In `qwenmapanythingpi` mode (what starVLA's QwenMapAnythingPI took) the fusion LayerNorm, the CLS registers and
the scale token are skipped: the AAT sees only the V * P patch tokens.

Key map from the released `model.safetensors`: `encoder.model.<rest>` -> `encoder.<rest>`; `fusion_norm_layer.*`,
`scale_token`, `info_sharing.*` unchanged (see `released_layout.py`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...errors import UserError
from ..common.init import init_module
from .configuration_mapanything import MapAnythingConfig
from .released_layout import read_json, read_released, resolve_hub_file

logger = logging.getLogger(__name__)


@dataclass
class MapAnythingOutput(ModelOutput):
    """Output of [`MapAnythingModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(B, V * (H/14) * (W/14), D)`): the AAT's final (normalised)
            patch tokens of every view, view-major (view 0 first), row-major within a view.
        cls_tokens (`torch.FloatTensor` of shape `(B, V, D)`, *optional*): the per-view CLS registers after the AAT
            (mapanything mode with `use_encoder_cls_token`).
        scale_token (`torch.FloatTensor` of shape `(B, D)`, *optional*): the scale token after the AAT
            (mapanything mode).
        encoder_hidden_state (`torch.FloatTensor` of shape `(B, V * (H/14) * (W/14), C)`): the encoder's patch tokens
            as the AAT receives them (after the fusion LayerNorm in mapanything mode; the DPT head's first input).
        intermediate_hidden_states (`tuple[torch.FloatTensor]`, *optional*): with `output_intermediates=True`, the
            patch tokens after each AAT block of `config.intermediate_layer_indices`, normalised by the final norm,
            each `(B, V * (H/14) * (W/14), D)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    cls_tokens: torch.FloatTensor | None = None
    scale_token: torch.FloatTensor | None = None
    encoder_hidden_state: torch.FloatTensor | None = None
    intermediate_hidden_states: tuple[torch.FloatTensor, ...] | None = None


# ------------------------------------------------------------------------------------------- blocks
class MapAnythingLayerScale(nn.Module):
    """x * gamma (DINOv2's / UniCeption's `LayerScale`; key `gamma`)."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class MapAnythingAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (keys `qkv`, `proj`), scaled dot-product attention
    as UniCeption runs both DINOv2's and the AAT's (`F.scaled_dot_product_attention`); with
    `config._attn_implementation == "eager"` the same attention written out (softmax(q k^T * scale) v)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, config: MapAnythingConfig | None = None):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
        q, k, v = qkv.unbind(0)
        if self.config is not None and self.config._attn_implementation == "eager":
            x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v  # (B, h, N, d)
        else:
            x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (B, h, N, d)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class MapAnythingSwiGLU(nn.Module):
    """DINOv2's fused SwiGLU feed-forward: `w12` (dim -> 2 * hidden), silu(x1) * x2, `w3` (hidden -> dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class MapAnythingMLP(nn.Module):
    """ViT feed-forward: `fc1`, exact GELU, `fc2` (DINOv2 ViT-S/B/L, the V1 AAT)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MapAnythingBlock(GradientCheckpointingLayer):
    """Pre-norm transformer block, the same in the encoder and the AAT (their keys and shapes are identical):
    x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim: int, num_heads: int, hidden: int, mlp_type: str, layerscale: float | None,
                 qkv_bias: bool, eps: float, config: MapAnythingConfig | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MapAnythingAttention(dim, num_heads, qkv_bias, config)
        self.ls1 = MapAnythingLayerScale(dim, layerscale) if layerscale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MapAnythingSwiGLU(dim, hidden) if mlp_type == "swiglufused" else MapAnythingMLP(dim, hidden)
        self.ls2 = MapAnythingLayerScale(dim, layerscale) if layerscale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


# ------------------------------------------------------------------------------------------- encoder
class MapAnythingPatchEmbed(nn.Module):
    """Non-overlapping patch convolution (key `proj`): (N, 3, H, W) -> (N, H/p * W/p, C), row-major."""

    def __init__(self, patch_size: int, num_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(num_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(pixel_values).flatten(2).transpose(1, 2)


def interpolate_pos_encoding(pos_embed: torch.Tensor, height: int, width: int, patch_size: int,
                             offset: float = 0.1, antialias: bool = False,
                             dtype: torch.dtype | None = None) -> torch.Tensor:
    """DINOv2's position-embedding interpolation (`DinoVisionTransformer.interpolate_pos_encoding`, hub code).

    `pos_embed` is `(1, 1 + M*M, C)` (CLS position first); returns `(1, 1 + h*w, C)` for an image of
    `height` x `width` pixels (h = height / patch_size, w = width / patch_size). The table itself is returned for
    a square image with exactly M*M patches. Otherwise the M x M grid is interpolated bicubically in float32,
    with `scale_factor = ((h + offset) / M, (w + offset) / M)` when `offset` > 0 (DINOv2's "+0.1" kludge; the output
    size is then floor(h + 0.1) = h, but the sampling positions follow the scale factor) or to `size=(h, w)` when
    `offset` is 0, then cast to `dtype` (default: the table's). transformers' `Dinov2Embeddings` resizes to
    `size=(h, w)`, which differs at every size but 518 px.
    """
    dtype = pos_embed.dtype if dtype is None else dtype
    n = pos_embed.shape[1] - 1
    h, w = height // patch_size, width // patch_size
    if h * w == n and height == width:
        return pos_embed
    m = int(math.sqrt(n))
    if m * m != n:
        raise UserError(f"the position embedding holds {n} patch positions, not a square grid")
    pos = pos_embed.float()
    cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
    dim = pos.shape[-1]
    if offset:
        kwargs: dict[str, Any] = {"scale_factor": (float(h + offset) / m, float(w + offset) / m)}
    else:
        kwargs = {"size": (h, w)}
    patch_pos = F.interpolate(patch_pos.reshape(1, m, m, dim).permute(0, 3, 1, 2), mode="bicubic",
                              antialias=antialias, **kwargs)  # (1, C, h, w)
    if tuple(patch_pos.shape[-2:]) != (h, w):
        raise AssertionError(f"interpolated grid {tuple(patch_pos.shape[-2:])} != {(h, w)}")
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, h * w, dim)  # (1, h*w, C) row-major
    return torch.cat((cls_pos, patch_pos), dim=1).to(dtype)


class MapAnythingEncoder(nn.Module):
    """DINOv2 ViT (no registers, no mask token) cut to its first `num_hidden_layers` blocks; keys as DINOv2's
    (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.<i>.*`, `norm.*` only with `encoder_final_norm`)."""

    def __init__(self, config: MapAnythingConfig):
        super().__init__()
        c = config.hidden_size
        self.config = config
        self.patch_embed = MapAnythingPatchEmbed(config.patch_size, config.num_channels, c)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.pos_embed_grid**2, c))
        self.blocks = nn.ModuleList(
            MapAnythingBlock(c, config.num_attention_heads, config.intermediate_size, config.encoder_mlp_type,
                             config.encoder_layerscale_value, config.qkv_bias, config.layer_norm_eps, config)
            for _ in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(c, eps=config.layer_norm_eps) if config.encoder_final_norm else nn.Identity()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1 + P, C): [CLS | patch tokens] after the kept blocks."""
        height, width = pixel_values.shape[-2:]
        x = self.patch_embed(pixel_values)  # (N, P, C)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)  # (N, 1 + P, C)
        cfg = self.config
        x = x + interpolate_pos_encoding(self.pos_embed, height, width, cfg.patch_size, cfg.interpolate_offset,
                                         cfg.interpolate_antialias, dtype=x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


# ------------------------------------------------------------------------------------------- AAT
def reference_view_encoding(dim: int) -> torch.Tensor:
    """UniCeption's sinusoid table at position 0, `(1, dim)`: sin(0) = 0 on even, cos(0) = 1 on odd channels."""
    table = np.zeros((1, dim))
    table[:, 1::2] = 1.0
    return torch.tensor(table, dtype=torch.float32)


class MapAnythingInfoSharing(nn.Module):
    """UniCeption's `MultiViewAlternatingAttentionTransformerIFR` as MapAnything V1.1 configures it (no custom
    positional encoding, no view encoding for non-reference views); keys `proj_embed.*` (only when the encoder
    width differs), `self_attention_blocks.<i>.*`, `norm.*`, buffer `view_pos_table`."""

    def __init__(self, config: MapAnythingConfig):
        super().__init__()
        d = config.info_sharing_hidden_size
        self.config = config
        self.proj_embed = nn.Linear(config.hidden_size, d) if config.hidden_size != d else nn.Identity()
        self.self_attention_blocks = nn.ModuleList(
            MapAnythingBlock(d, config.info_sharing_num_heads, config.info_sharing_intermediate_size,
                             config.info_sharing_mlp_type, config.info_sharing_layerscale_value, config.qkv_bias,
                             config.layer_norm_eps, config)
            for _ in range(config.info_sharing_num_layers)
        )
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.register_buffer("view_pos_table", reference_view_encoding(d), persistent=True)

    def forward(
        self,
        features: torch.Tensor,
        per_view_tokens: torch.Tensor | None = None,
        global_tokens: torch.Tensor | None = None,
        output_intermediates: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Alternating attention over all views.

        Args:
            features: `(B, V, P, C)` patch tokens per view (row-major).
            per_view_tokens: `(B, V, T, C)` extra tokens appended to each view (the CLS registers), or None.
            global_tokens: `(B, G, C)` tokens appended after all views (the scale token); they take part in the
                global blocks only.
        Returns:
            The normalised final tokens `(B, V * (P + T) + G, D)` in the input layout, and the normalised tokens
            after each block of `intermediate_layer_indices` (when `output_intermediates`).
        """
        b, v, p, _ = features.shape
        x = features if per_view_tokens is None else torch.cat([features, per_view_tokens], dim=2)  # (B, V, P+T, C)
        per_view = x.shape[2]  # P + T tokens per view
        x = x.reshape(b, v * per_view, x.shape[-1])  # (B, V*(P+T), C) view-major
        n_global = 0
        if global_tokens is not None:
            n_global = global_tokens.shape[1]
            x = torch.cat([x, global_tokens], dim=1)  # (B, V*(P+T) + G, C)
        x = self.proj_embed(x)
        d = x.shape[-1]
        # The reference-view marker: view 0's tokens (its patches and its CLS register), nothing else.
        x = torch.cat([x[:, :per_view] + self.view_pos_table[0].to(x.dtype), x[:, per_view:]], dim=1)
        take = set(self.config.intermediate_layer_indices) if output_intermediates else set()
        intermediates = []
        n_views = v * per_view
        for index, block in enumerate(self.self_attention_blocks):
            if index % 2 == 0:  # global: every token of every view, and the global tokens
                x = block(x)
            else:  # frame: each view alone; the global tokens are held out and reattached
                frames, held = x[:, :n_views], x[:, n_views:]
                frames = block(frames.reshape(b * v, per_view, d)).reshape(b, n_views, d)  # (B*V, P+T, D) -> back
                x = torch.cat([frames, held], dim=1) if n_global else frames
            if index in take:
                intermediates.append(self.norm(x))
        return self.norm(x), intermediates


# ------------------------------------------------------------------------------------------- model
class MapAnythingPreTrainedModel(PreTrainedModel):
    """Weight initialisation and Auto-class plumbing of the MapAnything family."""

    config_class = MapAnythingConfig
    base_model_prefix = "mapanything"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MapAnythingBlock"]
    # SDPA by default, as the original; `attn_implementation="eager"` writes the attention out (same result ~1e-7).
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        # Random init (the released weights replace it): DINOv2's and UniCeption's rules where they matter.
        init_module(module, std=0.02)
        if isinstance(module, nn.Conv2d):
            init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, MapAnythingLayerScale):
            init.constant_(module.gamma, module.init_value)
        elif isinstance(module, MapAnythingEncoder):
            init.trunc_normal_(module.pos_embed, std=0.02)
            init.normal_(module.cls_token, std=1e-6)
        elif isinstance(module, MapAnythingInfoSharing):
            init.copy_(module.view_pos_table, reference_view_encoding(module.view_pos_table.shape[-1]))
        elif isinstance(module, MapAnythingModel):
            init.trunc_normal_(module.scale_token, std=0.02)


class MapAnythingModel(MapAnythingPreTrainedModel):
    """MapAnything's multi-view feature trunk: DINOv2 encoder per view, fusion LayerNorm, alternating-attention
    transformer with per-view CLS registers and a scale token. The prediction heads and the geometric-input
    encoders are not part of it (their keys are listed in `released_layout.UNUSED_PREFIXES`).

    `fusion_norm_layer` and `scale_token` exist in both feature modes (the weights are the same) and are unused in
    `qwenmapanythingpi` mode.
    """

    def __init__(self, config: MapAnythingConfig):
        super().__init__(config)
        self.encoder = MapAnythingEncoder(config)
        self.fusion_norm_layer = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.scale_token = nn.Parameter(torch.zeros(config.hidden_size))
        self.info_sharing = MapAnythingInfoSharing(config)
        self.post_init()

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        dtype: torch.dtype | None = None,
        **config_kwargs,
    ) -> MapAnythingModel:
        """Load a MapAnything trunk from a converted directory (`model_type: mapanything`) or from the released
        layout (`facebook/map-anything`, `facebook/map-anything-apache` or a local folder with their `config.json`
        + `model.safetensors`). `config_kwargs` are [`MapAnythingConfig`] fields (e.g. `feature_mode`); for the
        released layout also `encoder_width` / `encoder_num_heads` of a reduced-width encoder. Weights:
        `facebook/map-anything` is CC-BY-NC-4.0 (non-commercial), `facebook/map-anything-apache` Apache-2.0."""
        from pathlib import Path

        local = Path(str(name_or_path)).expanduser()
        config_file = local / "config.json" if local.is_dir() else resolve_hub_file(name_or_path, "config.json",
                                                                                     revision, token)
        converted = config_file.is_file() and read_json(config_file).get("model_type") == MapAnythingConfig.model_type
        if converted:
            return cls.from_pretrained(str(name_or_path), revision=revision, token=token, dtype=dtype, **config_kwargs)
        config, state, report = read_released(name_or_path, revision=revision, token=token, **config_kwargs)
        logger.info("MapAnything from %s: %d trunk tensors (%d parameters), unused %s", name_or_path,
                    report.trunk_keys, report.trunk_parameters, {k: v["keys"] for k, v in report.unused.items()})
        model = model_from_state(config, state, str(name_or_path), dtype=dtype)
        model.config._name_or_path = str(name_or_path)
        return model

    def _check_pixels(self, pixel_values: torch.Tensor) -> None:
        cfg = self.config
        p = cfg.patch_size
        if (not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 5
                or pixel_values.shape[2] != cfg.num_channels or pixel_values.shape[-1] % p
                or pixel_values.shape[-2] % p or pixel_values.shape[-1] == 0 or pixel_values.shape[-2] == 0):
            got = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise UserError(
                f"pixel_values must have shape (batch, views, {cfg.num_channels}, H, W) with H and W positive "
                f"multiples of {p}, got {got}"
            )

    def forward(self, pixel_values: torch.Tensor, output_intermediates: bool = False,
                return_dict: bool | None = None, **kwargs) -> MapAnythingOutput | tuple:
        r"""Multi-view features.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, V, 3, H, W)`): H and W multiples of 14; ImageNet-normalised
                in mapanything mode, in [0, 1] in qwenmapanythingpi mode ([`MapAnythingImageProcessor`] does either).
                View 0 is the reference view.
            output_intermediates (`bool`, *optional*): also return the AAT's intermediate layers.
        """
        self._check_pixels(pixel_values)
        cfg = self.config
        b, v, _, height, width = pixel_values.shape
        mapanything = cfg.feature_mode == "mapanything"
        # The original encodes all views in one batch, view-major: index v * B + b.
        flat = pixel_values.transpose(0, 1).reshape(v * b, *pixel_values.shape[2:])  # (V*B, 3, H, W)
        tokens = self.encoder(flat.to(self.encoder.patch_embed.proj.weight.dtype))  # (V*B, 1 + P, C)
        patches = tokens[:, 1:]  # (V*B, P, C)
        if mapanything:
            patches = self._fusion_norm(patches)
        c = patches.shape[-1]
        p = patches.shape[1]
        patches = patches.reshape(v, b, p, c).transpose(0, 1)  # (B, V, P, C)
        registers = scale = None
        if mapanything and cfg.use_encoder_cls_token:
            registers = tokens[:, :1].reshape(v, b, 1, c).transpose(0, 1)  # (B, V, 1, C): CLS skips the fusion norm
        if mapanything:
            scale = self.scale_token.reshape(1, 1, c).expand(b, 1, c).to(patches.dtype)  # (B, 1, C)
        final, intermediates = self.info_sharing(patches, registers, scale, output_intermediates)
        per_view = p + (1 if registers is not None else 0)
        d = final.shape[-1]

        def view_patches(x: torch.Tensor) -> torch.Tensor:
            return x[:, : v * per_view].reshape(b, v, per_view, d)[:, :, :p].reshape(b, v * p, d)  # (B, V*P, D)

        out = MapAnythingOutput(
            last_hidden_state=view_patches(final),
            cls_tokens=final[:, : v * per_view].reshape(b, v, per_view, d)[:, :, p] if registers is not None else None,
            scale_token=final[:, v * per_view] if scale is not None else None,
            encoder_hidden_state=patches.reshape(b, v * p, c),
            intermediate_hidden_states=tuple(view_patches(x) for x in intermediates) if output_intermediates else None,
        )
        return out if return_dict is not False else out.to_tuple()

    def _fusion_norm(self, x: torch.Tensor) -> torch.Tensor:
        """MapAnything's fusion LayerNorm, in float32 with autocast off (MA model.py: `autocast(enabled=False)`)."""
        norm = self.fusion_norm_layer
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = F.layer_norm(x.float(), norm.normalized_shape, norm.weight.float(), norm.bias.float(), norm.eps)
        return y.to(x.dtype)


def model_from_state(config: MapAnythingConfig, state: dict[str, torch.Tensor], where: str,
                     dtype: torch.dtype | None = None):
    """[`MapAnythingModel`] of `config` holding exactly `state` (built on the meta device, loaded strictly: a missing
    trunk key or a shape that differs is an error naming it)."""
    with torch.device("meta"):
        model = MapAnythingModel(config)
    expected = model.state_dict()
    state = dict(state)
    if "info_sharing.view_pos_table" not in state:  # a deterministic buffer; older writers may drop it
        state["info_sharing.view_pos_table"] = reference_view_encoding(config.info_sharing_hidden_size)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or extra or wrong:
        raise UserError(
            f"{where}: the weights do not fit the MapAnything trunk of this config; missing {missing[:10]}, "
            f"unexpected {extra[:10]}, wrong shapes {wrong[:10]}"
        )
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    if dtype is not None:
        model.config.dtype = dtype
    return model.eval()


__all__ = [
    "MapAnythingBlock",
    "MapAnythingEncoder",
    "MapAnythingInfoSharing",
    "MapAnythingModel",
    "MapAnythingOutput",
    "MapAnythingPreTrainedModel",
    "interpolate_pos_encoding",
    "model_from_state",
    "reference_view_encoding",
]
