"""Geometry-injected VLA: Qwen2.5-VL + frozen multi-view geometry encoder + DiT flow-matching action head.

```
 images (B,V,3,S,S) + instruction          images (B,V,3,S_g,S_g)              state (B, S)   noisy actions (B,T,A), t
        | Qwen2_5_VLProcessor                  | geometry encoder (frozen;        | normalise      |
  Qwen2.5-VL (output_hidden_states)            |  MapAnything V1.1 by default,    |                |
        | vl_embs[0..N], each (B, L, D)        |  G = V * 256 tokens at 224 px)   |                |
        |                                      | raw_geom (B, G, D_g)             |                |
        |                              geometry compressor (pool|per_layer|qformer)                |
        |                                      | geom_tokens (n_cross, B, K, D)   |                |
        +-----------------+--------------------+                                  |                |
                          | context_i = cat(vl_embs[map[i]], geom_tokens[j])      |                |
                          |   for each cross-attending block i (the j-th)        |                |
                          v                                                       v                v
   action head, `layerwise_fm` (default; starVLA's LayerwiseFlowmatchingActionHead, models/common/layerwise_dit.py):
     [state MLP (B,1,W) | 32 future tokens | action encoder(x_t, int(t*1000)) + pos] -> DiT blocks
     (even: AdaLN > cross-attn to context_i; odd: AdaLN > self-attn; each: LN > FF) -> MLP -> velocity (B,T,A)
   action head, `adaln_zero` (option): [state | actions] + pos -> blocks (self-attn, cross-attn, MLP with
     AdaLN-Zero gates on continuous t) -> final layer -> velocity (B,T,A)
```

Training: flow matching (SPEC 1.5 as starVLA implements it; `models/common/flow_matching.py`): t = (0.999 -
Beta(1.5, 1)) / 0.999, x_t = (1 - t) noise + t action, target action - noise, two draws per example, MSE over
every step; on actions normalised with the statistics the model holds (`norm_stats.json` beside the weights). Inference (`predict_action`): Euler
integration from noise, then un-normalisation with the same statistics.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...errors import UserError, UserKeyError
from ..common.dit import DiTBlock, DiTFinalLayer, TimestepEmbedder
from ..common.flow_matching import euler_integrate, flow_matching_inputs, flow_matching_loss, sample_flow_time
from ..common.freezing import FreezingMixin
from ..common.geometry_compressor import build_geometry_compressor
from ..common.init import init_module, keep_own_init, keeps_own_init
from ..common.layerwise_dit import LayerwiseFlowMatchingHead, starvla_inference_buckets
from ..common.vision import build_vision_tower
from ..mapanything.configuration_mapanything import MapAnythingConfig
from ..mapanything.modeling_mapanything import MapAnythingModel
from .configuration_geovla import GeoVLAConfig, GeoVLAGeometryConfig

logger = logging.getLogger(__name__)

NORM_STATS_FILE = "norm_stats.json"
_STATS_NEEDED = {"mean_std": ("mean", "std"), "quantile": ("q01", "q99")}


@dataclass
class GeoVLAOutput(ModelOutput):
    """Output of [`GeoVLAForActionPrediction`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): flow-matching MSE, when `actions` are given.
        velocity (`torch.FloatTensor` of shape `(B, T, A)`): predicted velocity at the sampled times.
        target_velocity (`torch.FloatTensor` of shape `(B, T, A)`): action - noise (normalised units).
        time (`torch.FloatTensor` of shape `(B,)`): the flow times used.
    """

    loss: torch.FloatTensor | None = None
    velocity: torch.FloatTensor | None = None
    target_velocity: torch.FloatTensor | None = None
    time: torch.FloatTensor | None = None


# ------------------------------------------------------------------------------------------- geometry
class GeoVLAGeometryEncoder(PreTrainedModel):
    """DINOv2 on every view, a learned view embedding, and a transformer across all views' patch tokens.

    The structure of MapAnything's encoder (per-view DINOv2 features fused by a multi-view transformer);
    the backbone loads pretrained DINOv2 weights, the multi-view transformer is this library's own.
    """

    config_class = GeoVLAGeometryConfig
    base_model_prefix = "geometry_encoder"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True  # the DINOv2 layers (standalone training of the encoder)
    _no_split_modules = ["Dinov2Layer"]
    # Every transformers backbone the family builds has SDPA attention: `from_pretrained(..., attn_implementation=)`
    # may choose eager or sdpa, and the choice reaches the backbones (the family's own blocks are unaffected).
    _supports_sdpa = True

    def __init__(self, config: GeoVLAGeometryConfig):
        super().__init__(config)
        self.backbone = build_vision_tower(config.backbone_config)
        d = config.hidden_size
        self.view_embedding = nn.Parameter(torch.zeros(config.num_views, d))
        layer = nn.TransformerEncoderLayer(d, config.num_heads, int(d * config.mlp_ratio), dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.multiview = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, config.output_size)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # The DINOv2 backbone initialises itself; loaded tensors are skipped (`models/common/init.py`).
        init_module(module, std=0.02)
        if isinstance(module, GeoVLAGeometryEncoder):
            init.trunc_normal_(module.view_embedding, std=0.02)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, S, S) -> raw geometry tokens (B, V * P, output_size)."""
        cfg = self.config
        if pixel_values.ndim != 5 or pixel_values.shape[1] != cfg.num_views or pixel_values.shape[-1] != cfg.image_size:
            raise UserError(
                f"geometry pixel_values must have shape (batch, {cfg.num_views}, 3, {cfg.image_size}, "
                f"{cfg.image_size}), got {tuple(pixel_values.shape)}"
            )
        b, v = pixel_values.shape[:2]
        flat = pixel_values.reshape(b * v, *pixel_values.shape[2:]).to(self.out_proj.weight.dtype)  # (B*V, 3, S, S)
        tokens = self.backbone(pixel_values=flat).last_hidden_state[:, 1:]  # (B*V, P, D) patch tokens, CLS dropped
        tokens = tokens.reshape(b, v, -1, tokens.shape[-1]) + self.view_embedding[None, :, None]  # (B, V, P, D)
        fused = self.multiview(tokens.reshape(b, -1, tokens.shape[-1]))  # (B, V*P, D): attention across views
        return self.out_proj(self.norm(fused))  # (B, G, D_g)


# ------------------------------------------------------------------------------------------- action head
class GeoVLAActionHead(nn.Module):
    """`action_head_type="adaln_zero"`: DiT over [state token, T action tokens], AdaLN-Zero-conditioned on
    the continuous flow time, one context per layer (self-attention + cross-attention + MLP per block)."""

    def __init__(self, config: GeoVLAConfig):
        super().__init__()
        w = config.dit_hidden_size
        self.action_in = nn.Linear(config.action_dim, w)
        self.state_in = nn.Linear(config.state_dim, w)
        self.pos_embedding = nn.Parameter(torch.zeros(1 + config.action_chunk_size, w))
        self.time_embedder = TimestepEmbedder(w)
        self.blocks = nn.ModuleList(
            DiTBlock(w, config.vlm_hidden_size, config.dit_num_heads, config.dit_mlp_ratio, config.dit_dropout)
            for _ in range(config.dit_num_layers)
        )
        self.final = DiTFinalLayer(w, config.action_dim)

    def forward(
        self,
        noisy_actions: torch.Tensor,
        time: torch.Tensor,
        state: torch.Tensor,
        contexts: list[torch.Tensor],
        context_masks: list[torch.Tensor | None],
    ) -> torch.Tensor:
        """Velocity (B, T, A) for noisy actions (B, T, A), times (B,), normalised state (B, S)."""
        x = torch.cat([self.state_in(state).unsqueeze(1), self.action_in(noisy_actions)], dim=1)  # (B, 1+T, W)
        x = x + self.pos_embedding.unsqueeze(0)
        cond = self.time_embedder(time)  # (B, W)
        for block, context, mask in zip(self.blocks, contexts, context_masks):
            x = block(x, cond, context, mask)
        return self.final(x[:, 1:], cond)  # (B, T, A)


# ------------------------------------------------------------------------------------------- model
class GeoVLAPreTrainedModel(PreTrainedModel):
    """Weight initialisation and Auto-class plumbing of the GeoVLA family."""

    config_class = GeoVLAConfig
    base_model_prefix = "geovla"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # Trainer rescales the loss of a model whose `forward` takes `**kwargs` (it assumes a sum over
    # `num_items_in_batch`); the flow-matching loss is a mean over this batch's draws: no rescaling, or DDP / gradient
    # accumulation would multiply it by the number of processes / steps.
    accepts_loss_kwargs = False
    # LayerwiseDiTBlock: the default `layerwise_fm` head; DiTBlock: the `adaln_zero` head.
    _no_split_modules = ["LayerwiseDiTBlock", "DiTBlock", "Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock",
                         "Dinov2Layer", "MapAnythingBlock"]
    # Every transformers backbone the family builds has SDPA attention: `from_pretrained(..., attn_implementation=)`
    # may choose eager or sdpa, and the choice reaches the backbones (the family's own blocks are unaffected).
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        # Only this family's own modules (compressor, action head): the VLM and the geometry encoder are
        # `PreTrainedModel`s and initialise (or load) themselves; loaded tensors are skipped.
        init_module(module, std=0.02)
        if isinstance(module, (DiTBlock, DiTFinalLayer)):
            # AdaLN-Zero (DiT): the modulation and the final projection start at zero, so every block starts as
            # the identity and the head's output as 0. Set here, after the children (transformers initialises
            # children first), over `init_module`'s normal init of these Linear layers.
            for linear in (module.adaLN_modulation[-1], getattr(module, "linear", None)):
                if linear is not None:
                    init.zeros_(linear.weight)
                    init.zeros_(linear.bias)
        elif isinstance(module, GeoVLAActionHead):
            init.trunc_normal_(module.pos_embedding, std=0.02)
        elif isinstance(module, LayerwiseFlowMatchingHead):
            # starVLA: PyTorch's default init everywhere (kept by `keep_own_init`) except these two tables.
            init.normal_(module.future_tokens.weight, std=0.02)
            init.normal_(module.position_embedding.weight, std=0.02)
        elif hasattr(module, "queries") and isinstance(module.queries, nn.Parameter):
            init.trunc_normal_(module.queries, std=0.02)


class GeoVLAForActionPrediction(FreezingMixin, GeoVLAPreTrainedModel):
    """Qwen2.5-VL hidden states + compressed geometry tokens condition a DiT that predicts action chunks."""

    def __init__(self, config: GeoVLAConfig):
        super().__init__(config)
        self.vlm = AutoModel.from_config(config.vlm_config)
        injection = getattr(config, "geometry_injection", "dit")
        # "none": the no-geometry baseline builds neither the encoder nor a compressor.
        self.geometry_encoder = build_geometry_encoder(config.geometry_config) if injection != "none" else None
        if injection == "dit":
            # One set of geometry tokens per DiT layer (the seed's per_layer: 16 projections); self-attending blocks
            # take no context, so `_contexts` asks only for the cross-attending layers' tokens.
            self.geometry_compressor = build_geometry_compressor(
                config.compressor_type, config.geometry_config.output_size, config.vlm_hidden_size,
                config.num_geometry_tokens, config.dit_num_layers, config.compressor_num_heads,
            )
        elif injection == "llm_pool":  # the seed's baseline: one globally pooled token through the LLM
            self.geometry_compressor = nn.Linear(config.geometry_config.output_size, config.vlm_hidden_size)
        else:
            self.geometry_compressor = None
        if config.action_head_type == "layerwise_fm":
            w = config.dit_hidden_size
            self.action_head = LayerwiseFlowMatchingHead(
                w, config.dit_num_layers, config.dit_num_heads, w // config.dit_num_heads, config.vlm_hidden_size,
                config.action_dim, config.action_chunk_size, config.state_dim, config.num_future_tokens,
                config.action_mlp_hidden_size, config.max_action_positions, config.dit_dropout,
                config.dit_interleave_self_attention,
            )
            keep_own_init(self.action_head)
        else:
            self.action_head = GeoVLAActionHead(config)
        self.norm_stats: dict[str, dict[str, torch.Tensor]] | None = None
        self.geometry_cache = None
        self.post_init()
        self.apply_freezing()

    # ------------------------------------------------------------------ freezing
    def frozen_parameter_patterns(self) -> list[str]:
        """`config.freeze_patterns` (default `geometry_encoder.*`): see `models/common/freezing.py`."""
        return list(self.config.freeze_patterns)

    @property
    def geometry_is_frozen(self) -> bool:
        """True when no geometry-encoder parameter requires a gradient."""
        if self.geometry_encoder is None:
            return True
        return not any(p.requires_grad for p in self.geometry_encoder.parameters())

    def attach_geometry_cache(self, cache) -> None:
        """Serve frozen geometry features from a [`GeometryFeatureCache`] (None detaches)."""
        if cache is not None and not self.geometry_is_frozen:
            raise UserError("a geometry feature cache needs a frozen geometry encoder (freeze_patterns)")
        self.geometry_cache = cache

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, then `norm_stats.json` and the freezing the config asks for."""
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)  # re-applies freezing
        path = _resolve_file(str(pretrained_model_name_or_path), NORM_STATS_FILE, kwargs)
        if path is not None:
            model.set_norm_stats(json.loads(Path(path).read_text(encoding="utf-8")), source=str(path),
                                 warn_constant=False)
        else:
            logger.warning(
                "%s has no %s: set statistics with `model.set_norm_stats(...)` before training or predicting",
                pretrained_model_name_or_path, NORM_STATS_FILE,
            )
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus the normalisation statistics as `norm_stats.json`."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.norm_stats is not None:
            stats = {k: {s: v.tolist() for s, v in d.items()} for k, d in self.norm_stats.items()}
            (Path(save_directory) / NORM_STATS_FILE).write_text(json.dumps(stats, indent=2), encoding="utf-8")

    @classmethod
    def from_backbones(
        cls,
        vlm: str,
        geometry: str,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        dtype: torch.dtype | None = None,
        geometry_kwargs: dict[str, Any] | None = None,
        **config_kwargs,
    ) -> GeoVLAForActionPrediction:
        """Build GeoVLA around a pretrained Qwen2.5-VL and a pretrained geometry encoder (Hub ids or dirs).

        `vlm` is any Qwen2.5-VL checkpoint (`Qwen/Qwen2.5-VL-3B-Instruct`); its `Qwen2_5_VLModel` part is
        loaded. `geometry` is MapAnything (the seed's encoder): the released layout (`facebook/map-anything`,
        CC-BY-NC-4.0, or `facebook/map-anything-apache`, Apache-2.0, or a local folder of theirs) or a directory
        `hf-vlmdrive convert mapanything` wrote; `geometry_kwargs` are then `MapAnythingConfig` fields
        (`feature_mode`) and, for a reduced-width released file, `encoder_width` / `encoder_num_heads`. For the
        stand-in, `geometry` is a saved [`GeoVLAGeometryEncoder`] (`model_type: geovla_geometry`) or a DINOv2
        checkpoint (`facebook/dinov2-giant`): then the backbone weights are loaded and the multi-view
        transformer (sized by `geometry_kwargs`) is freshly initialised. The compressor and the DiT are new. Extra keyword arguments go to [`GeoVLAConfig`]. `revision` / `token` go to the Hub for
        both checkpoints; `dtype` is the dtype of the returned model's parameters.
        """
        hub = {"revision": revision, "token": token}
        vlm_config = AutoConfig.from_pretrained(vlm, **hub)
        mapanything = _is_mapanything(geometry, revision, token)
        geo_config = geo_model = None
        if mapanything:
            # Loaded now (the weights are the config's source for the released layout), frozen below.
            geo_model = MapAnythingModel.from_backbone(geometry, dtype=dtype, **hub,
                                                       **_mapanything_kwargs(geometry, geometry_kwargs))
            geometry_config = geo_model.config
        else:
            geo_config = AutoConfig.from_pretrained(geometry, **hub)
            if geo_config.model_type == GeoVLAGeometryConfig.model_type:
                geometry_config = geo_config
            else:
                geometry_config = GeoVLAGeometryConfig(backbone_config=geo_config, **(geometry_kwargs or {}))
        config = GeoVLAConfig(vlm_config=vlm_config, geometry_config=geometry_config, vlm_name_or_path=vlm,
                              geometry_name_or_path=geometry, **config_kwargs)
        from accelerate import init_empty_weights

        # Build on the meta device so a 3 B VLM is not materialised randomly just to be replaced; the
        # pretrained towers are then loaded, and only the new parts are allocated and initialised.
        with init_empty_weights(include_buffers=False):
            model = cls(config)
        model.vlm = AutoModel.from_pretrained(vlm, config=config.vlm_config, dtype=dtype, **hub)
        device = next(model.vlm.parameters()).device
        geo = model.geometry_encoder
        if geo is None:  # geometry_injection="none": no geometry weights to load
            pass
        elif geo_model is not None:
            model.geometry_encoder = geo_model.to(device)
        elif geo_config.model_type == GeoVLAGeometryConfig.model_type:
            model.geometry_encoder = GeoVLAGeometryEncoder.from_pretrained(geometry, dtype=dtype, **hub)
        else:
            # Through transformers' loader (not the raw-tensor `load_vision_tower_weights`): it applies the
            # key renames of transformers 5 (DINOv2 checkpoints store `attention.query`, the module `q_proj`).
            geo.backbone = AutoModel.from_pretrained(geometry, config=geometry_config.backbone_config, dtype=dtype,
                                                     **hub)
            geo.view_embedding = nn.Parameter(torch.empty(geo.view_embedding.shape, device=device))
            _materialize([geo.multiview, geo.norm, geo.out_proj], geo._init_weights, device)
            geo._init_weights(geo)  # the view embedding
        _materialize([m for m in (model.geometry_compressor, model.action_head) if m is not None], model._init_weights,
                     device)
        if dtype is not None:
            model.to(dtype)
        model.apply_freezing()
        return model

    # ------------------------------------------------------------------ normalisation
    def set_norm_stats(self, stats: dict[str, dict[str, Any]], source: str = "norm stats",
                       warn_constant: bool = True) -> None:
        """Install normalisation statistics ({feature: {mean, std, q01, q99, ...}}); keys and widths are checked.

        Only the state and action entries are kept. A missing key, a missing statistic for the configured
        `normalization_mode`, or a width that disagrees with `state_dim` / `action_dim` is an error. A constant
        dimension (zero spread) is warned about when `warn_constant`: once, when training installs the data's
        statistics; loading a checkpoint's norm_stats.json does not repeat it.
        """
        cfg = self.config
        needed = _STATS_NEEDED[cfg.normalization_mode]
        kept: dict[str, dict[str, torch.Tensor]] = {}
        for key, width in ((cfg.state_key, cfg.state_dim), (cfg.action_key, cfg.action_dim)):
            if key not in stats:
                raise UserKeyError(
                    f"{source}: no statistics for {key!r} (has {sorted(stats)}); the model normalises "
                    f"state_key={cfg.state_key!r} and action_key={cfg.action_key!r}: fix the keys or the config"
                )
            entry = {}
            for s in needed:
                if s not in stats[key]:
                    raise UserKeyError(f"{source}: {key!r} lacks {s!r}, needed by normalization_mode={cfg.normalization_mode!r}")
                value = torch.as_tensor(np.asarray(stats[key][s], dtype=np.float32)).reshape(-1)
                if value.numel() != width:
                    raise UserError(f"{source}: {key!r}.{s} has {value.numel()} values but the model expects {width}")
                entry[s] = value
            kept[key] = entry
            spread = entry["std"] if cfg.normalization_mode == "mean_std" else entry["q99"] - entry["q01"]
            flat = [int(i) for i in torch.nonzero(spread <= 0).flatten()]
            if flat and warn_constant:  # where the statistics come from the data, not at every load
                stat = "std" if cfg.normalization_mode == "mean_std" else "q99 - q01"
                logger.warning(
                    "%s: %r has %s = 0 in dimension(s) %s (a constant feature); its scale is clamped to 1e-6, "
                    "so any deviation from the constant becomes huge after normalisation: check the statistics "
                    "or drop the dimension", source, key, stat, flat,
                )
        self.norm_stats = kept

    def _require_stats(self) -> dict[str, dict[str, torch.Tensor]]:
        if self.norm_stats is None:
            raise RuntimeError(
                f"GeoVLA has no normalisation statistics: call `model.set_norm_stats(dataset.stats)` before "
                f"training, or load a checkpoint directory with {NORM_STATS_FILE}"
            )
        return self.norm_stats

    def _affine(self, key: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(center, scale) with normalised = (x - center) / scale."""
        entry = self._require_stats()[key]
        if self.config.normalization_mode == "mean_std":
            center, scale = entry["mean"], entry["std"]
        else:
            center, scale = (entry["q99"] + entry["q01"]) / 2, (entry["q99"] - entry["q01"]) / 2
        return center.to(like.device, like.dtype), scale.clamp(min=1e-6).to(like.device, like.dtype)

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """Normalise a state or action tensor (last dim = features) with the stored statistics."""
        center, scale = self._affine(key, x)
        out = (x - center) / scale
        return out.clamp(-1.0, 1.0) if self.config.normalization_mode == "quantile" else out

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize` (for in-range values)."""
        center, scale = self._affine(key, x)
        return x * scale + center

    # ------------------------------------------------------------------ encoders
    def encode_vl(self, input_ids, attention_mask=None, pixel_values=None, image_grid_thw=None,
                  geometry_token: torch.Tensor | None = None, **kwargs):
        """Hidden states of every LM layer ((N+1) x (B, L, D)) and the attention mask (B, L).

        `geometry_token` (B, D) (`geometry_injection="llm_pool"`): one more input position after the sequence
        (after any right padding: it attends to the valid tokens, its mask is 1 and Qwen2.5-VL's rope index gives it
        the position after the last valid token), whose input embedding is this vector; L grows by one."""
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
        handle = None
        if geometry_token is not None:
            batch = input_ids.shape[0]
            input_ids = torch.cat([input_ids, input_ids.new_full((batch, 1), self._placeholder_token_id)], dim=1)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, 1))], dim=1)

            def put_geometry(module, inputs, output):
                return torch.cat([output[:, :-1], geometry_token.to(output.dtype)[:, None]], dim=1)

            handle = self.vlm.get_input_embeddings().register_forward_hook(put_geometry)
        try:
            out = self.vlm(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                           image_grid_thw=image_grid_thw, output_hidden_states=True, return_dict=True,
                           use_cache=False, **kwargs)
        finally:
            if handle is not None:
                handle.remove()
        return out.hidden_states, attention_mask.bool()

    @property
    def _placeholder_token_id(self) -> int:
        """A token id for the geometry position of `llm_pool` (its embedding is replaced): the pad / eos id, never an
        image or video token (Qwen2.5-VL's rope index and image merge look for those)."""
        special = {getattr(self.config.vlm_config, k, None) for k in
                   ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
        text = self.config.text_config
        for candidate in (getattr(text, "pad_token_id", None), getattr(text, "eos_token_id", None), 0, 1, 2):
            if isinstance(candidate, int) and candidate not in special:
                return candidate
        raise UserError("no token id free of Qwen2.5-VL's vision tokens for the llm_pool geometry position")

    def _geometry_token(self, raw_geom: torch.Tensor) -> torch.Tensor:
        """`llm_pool`: raw geometry tokens (B, G, D_g) -> their global average, projected to the LM width (B, D)."""
        weight = self.geometry_compressor.weight
        return self.geometry_compressor(raw_geom.to(weight.dtype).mean(dim=1))

    def encode_geometry(self, geometry_pixel_values: torch.Tensor, cache_keys=None) -> torch.Tensor:
        """Raw geometry tokens (B, G, D_g), from the cache when one is attached (`cache_keys`: the samples'
        precomputed `content_key`s, else the cache hashes the batch)."""
        if self.geometry_cache is not None:
            return self.geometry_cache.encode(geometry_pixel_values, self._raw_geometry,
                                              dtype=next(self.geometry_encoder.parameters()).dtype, keys=cache_keys)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.geometry_is_frozen):
            return self._raw_geometry(geometry_pixel_values)

    def _raw_geometry(self, geometry_pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, S_g, S_g) -> raw geometry tokens (B, G, D_g): MapAnything's final per-view patch tokens
        (view-major, row-major; G = V * 256 at 224 px), or the stand-in's tokens."""
        if isinstance(self.geometry_encoder, MapAnythingModel):
            return self.geometry_encoder(pixel_values=geometry_pixel_values).last_hidden_state
        return self.geometry_encoder(geometry_pixel_values)

    @property
    def _head_dtype(self) -> torch.dtype:
        return next(self.action_head.parameters()).dtype

    def _contexts(self, hidden_states, vl_mask, raw_geom):
        """Per DiT block: cat(VLM hidden state of `dit_vlm_layer_map[i]`, its geometry tokens) (B, L + K, D)
        and the mask (B, L + K); None for self-attention blocks."""
        cross = self.config.cross_attention_layers
        if raw_geom is None:  # geometry_injection "llm_pool" (already in the LLM's states) or "none"
            contexts: list[torch.Tensor | None] = [None] * self.config.dit_num_layers
            masks: list[torch.Tensor | None] = [None] * self.config.dit_num_layers
            for i in cross:
                contexts[i] = hidden_states[self.config.dit_vlm_layer_map[i]].to(self._head_dtype)
                masks[i] = vl_mask
            return contexts, masks
        geom = self.geometry_compressor(raw_geom.to(self._head_dtype), layers=cross)  # (n_cross, B, K, D)
        ones = torch.ones(geom.shape[1:3], dtype=torch.bool, device=geom.device)  # (B, K)
        contexts: list[torch.Tensor | None] = [None] * self.config.dit_num_layers
        masks: list[torch.Tensor | None] = [None] * self.config.dit_num_layers
        for j, i in enumerate(cross):
            vl = hidden_states[self.config.dit_vlm_layer_map[i]].to(geom.dtype)  # (B, L, D)
            contexts[i] = torch.cat([vl, geom[j]], dim=1)  # (B, L + K, D)
            masks[i] = torch.cat([vl_mask.to(geom.device), ones], dim=1)
        return contexts, masks

    def _velocity(self, x_t: torch.Tensor, time: torch.Tensor, state_n, contexts, masks,
                  buckets: torch.Tensor | None = None) -> torch.Tensor:
        """The head's velocity at x_t; `layerwise_fm` sees the flow time as its integer bucket."""
        if self.config.action_head_type == "layerwise_fm":
            if buckets is None:  # starVLA: (t * num_buckets).long(), in t's dtype
                buckets = (time * self.config.num_timestep_buckets).long()
            return self.action_head(x_t, buckets, state_n, contexts, masks)
        return self.action_head(x_t, time, state_n, contexts, masks)

    def _geometry_input(self, geometry_pixel_values, geometry_features, cache_keys=None):
        if self.geometry_encoder is None:  # geometry_injection="none": geometry inputs are ignored
            return None
        if (geometry_pixel_values is None) == (geometry_features is None):
            raise UserError("pass exactly one of `geometry_pixel_values` (B, V, 3, S, S) and `geometry_features` (B, G, D_g)")
        if geometry_features is not None:
            g = self.config.geometry_config
            if geometry_features.ndim != 3 or geometry_features.shape[-1] != g.output_size:
                raise UserError(f"`geometry_features` must have shape (batch, G, {g.output_size}), got {tuple(geometry_features.shape)}")
            return geometry_features
        return self.encode_geometry(geometry_pixel_values, cache_keys)

    def _encode(self, input_ids, attention_mask, pixel_values, image_grid_thw, geometry_pixel_values,
                geometry_features, cache_keys, kwargs):
        """(LM hidden states, their mask, raw geometry tokens for the DiT or None) per `geometry_injection`."""
        raw_geom = self._geometry_input(geometry_pixel_values, geometry_features, cache_keys)
        token = None
        if raw_geom is not None and self.config.geometry_injection == "llm_pool":
            token, raw_geom = self._geometry_token(raw_geom), None
        hidden, vl_mask = self.encode_vl(input_ids, attention_mask, pixel_values, image_grid_thw, geometry_token=token,
                                         **kwargs)
        return hidden, vl_mask, raw_geom

    def _check_state(self, state: torch.Tensor | None, batch: int) -> torch.Tensor:
        if state is None or tuple(state.shape) != (batch, self.config.state_dim):
            got = None if state is None else tuple(state.shape)
            raise UserError(f"`state` must have shape (batch, state_dim) = ({batch}, {self.config.state_dim}), got {got}")
        return self.normalize(self.config.state_key, state.to(self._head_dtype))

    # ------------------------------------------------------------------ forward / predict
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        geometry_pixel_values: torch.Tensor | None = None,
        geometry_features: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        action_is_pad: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        time: torch.Tensor | None = None,
        geometry_cache_keys: list[str] | None = None,
        **kwargs,
    ) -> GeoVLAOutput:
        r"""Flow-matching training step.

        Args:
            input_ids, attention_mask, pixel_values, image_grid_thw: Qwen2.5-VL inputs from its processor
                (instruction + one image per camera).
            geometry_pixel_values (`torch.FloatTensor` of shape `(B, V, 3, S_g, S_g)`): geometry-encoder input.
            geometry_features (`torch.FloatTensor` of shape `(B, G, D_g)`, *optional*): precomputed raw geometry
                tokens instead of `geometry_pixel_values`.
            state (`torch.FloatTensor` of shape `(B, state_dim)`): raw (un-normalised) robot state.
            actions (`torch.FloatTensor` of shape `(B, T, action_dim)`): raw action chunk.
            action_is_pad (`torch.BoolTensor` of shape `(B, T)`, *optional*): steps past the episode's end (left
                out of the loss only with `flow_loss_mask_padding`).
            noise (`torch.FloatTensor` of shape `(R * B, T, action_dim)`, *optional*): the flow's source samples,
                R = `num_flow_samples` draws per example (the batch tiled R times, `tensor.repeat` order).
            time (`torch.FloatTensor` of shape `(R * B,)`, *optional*): flow times (default: drawn by
                `flow_time_sampling`).
            geometry_cache_keys (`list[str]`, *optional*): the samples' geometry-cache keys (`content_key` of each
                sample's `geometry_pixel_values`), computed by `GeoVLACollator(cache_keys=True)` in the DataLoader
                workers so the training step does not hash the batch; used only when a cache is attached.

        The VLM and the geometry encoder run once; their outputs are tiled R times (starVLA's
        `repeated_diffusion_steps`), and the loss averages over all R * B draws.
        """
        cfg = self.config
        kwargs.pop("num_items_in_batch", None)
        kwargs.pop("mm_token_type_ids", None)
        if input_ids is None:
            raise UserError("`input_ids` are required (instruction + image tokens from the Qwen2.5-VL processor)")
        batch = input_ids.shape[0]
        expected = (batch, cfg.action_chunk_size, cfg.action_dim)
        if actions is None or tuple(actions.shape) != expected:
            got = None if actions is None else tuple(actions.shape)
            raise UserError(f"`actions` must have shape (batch, action_chunk_size, action_dim) = {expected}, got {got}")
        state_n = self._check_state(state, batch)
        hidden, vl_mask, raw_geom = self._encode(input_ids, attention_mask, pixel_values, image_grid_thw,
                                                 geometry_pixel_values, geometry_features, geometry_cache_keys, kwargs)
        contexts, masks = self._contexts(hidden, vl_mask, raw_geom)

        dtype = self._head_dtype
        reps = cfg.num_flow_samples
        target_actions = self.normalize(cfg.action_key, actions.to(dtype)).repeat(reps, 1, 1)  # (R*B, T, A)
        if reps > 1:
            state_n = state_n.repeat(reps, 1)
            contexts = [None if c is None else c.repeat(reps, 1, 1) for c in contexts]
            masks = [None if m is None else m.repeat(reps, 1) for m in masks]
            if action_is_pad is not None:
                action_is_pad = action_is_pad.repeat(reps, 1)
        n = reps * batch
        if noise is None:
            noise = torch.randn_like(target_actions)
        elif tuple(noise.shape) != tuple(target_actions.shape):
            raise UserError(f"`noise` must have shape (num_flow_samples * batch, T, A) = {tuple(target_actions.shape)}, "
                            f"got {tuple(noise.shape)}")
        if time is None:
            time = sample_flow_time(n, cfg.flow_beta_alpha, cfg.flow_beta_beta, cfg.flow_time_scale,
                                    device=target_actions.device, rule=cfg.flow_time_sampling)
        elif tuple(time.shape) != (n,):
            raise UserError(f"`time` must have shape (num_flow_samples * batch,) = ({n},), got {tuple(time.shape)}")
        time = time.to(target_actions.device, dtype)
        x_t, target = flow_matching_inputs(target_actions, noise.to(dtype), time)
        velocity = self._velocity(x_t, time, state_n, contexts, masks)
        loss = flow_matching_loss(velocity, target, action_is_pad if cfg.flow_loss_mask_padding else None)
        return GeoVLAOutput(loss=loss, velocity=velocity, target_velocity=target, time=time)

    @torch.no_grad()
    def predict_action(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        geometry_pixel_values: torch.Tensor | None = None,
        geometry_features: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        num_steps: int | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Action chunk (B, T, action_dim) in the dataset's units: Euler integration, then un-normalisation."""
        cfg = self.config
        kwargs.pop("mm_token_type_ids", None)
        for k in ("actions", "action_is_pad"):
            kwargs.pop(k, None)
        cache_keys = kwargs.pop("geometry_cache_keys", None)
        batch = input_ids.shape[0]
        state_n = self._check_state(state, batch)
        self._require_stats()
        hidden, vl_mask, raw_geom = self._encode(input_ids, attention_mask, pixel_values, image_grid_thw,
                                                 geometry_pixel_values, geometry_features, cache_keys, kwargs)
        contexts, masks = self._contexts(hidden, vl_mask, raw_geom)
        dtype = self._head_dtype
        if noise is None:
            noise = torch.randn((batch, cfg.action_chunk_size, cfg.action_dim), generator=generator,
                                dtype=torch.float32).to(state_n.device, dtype)
        steps = num_steps or cfg.num_inference_steps
        if cfg.action_head_type == "layerwise_fm":
            # starVLA's predict_action: x += dt * v(x, int(k / steps * buckets)), k = 0..steps-1, from noise.
            x, dt = noise, 1.0 / steps
            for bucket in starvla_inference_buckets(steps, cfg.num_timestep_buckets):
                buckets = torch.full((batch,), bucket, dtype=torch.long, device=x.device)
                x = x + dt * self._velocity(x, None, state_n, contexts, masks, buckets=buckets)
        else:
            x = euler_integrate(lambda x, t: self._velocity(x, t, state_n, contexts, masks), noise, steps)
        return self.unnormalize(cfg.action_key, x)


def build_geometry_encoder(config: MapAnythingConfig | GeoVLAGeometryConfig) -> PreTrainedModel:
    """MapAnything's trunk for a [`MapAnythingConfig`], the DINOv2 stand-in for a [`GeoVLAGeometryConfig`]."""
    if isinstance(config, MapAnythingConfig):
        return MapAnythingModel(config)
    return GeoVLAGeometryEncoder(config)


_STAND_IN_FIELDS = ("num_views", "num_layers", "num_heads", "mlp_ratio", "output_size", "backbone_config")


def _mapanything_kwargs(geometry: str, geometry_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """`geometry_kwargs` for MapAnything: its config fields and `encoder_width` / `encoder_num_heads`. Fields of the
    DINOv2 stand-in (a YAML written for it) are left out with a warning; anything else is an error naming it."""
    import inspect

    allowed = set(inspect.signature(MapAnythingConfig.__init__).parameters) - {"self", "kwargs"}
    allowed |= {"encoder_width", "encoder_num_heads"}
    kwargs = dict(geometry_kwargs or {})
    ignored = sorted(k for k in kwargs if k in _STAND_IN_FIELDS and k not in allowed)
    if set(ignored) - {"num_views"}:  # the recipe always passes num_views; MapAnything takes any number of views
        logger.warning("geometry %s is MapAnything: ignoring the stand-in's geometry_config fields %s", geometry,
                       [k for k in ignored if k != "num_views"])
    unknown = sorted(k for k in kwargs if k not in allowed and k not in _STAND_IN_FIELDS)
    if unknown:
        raise UserError(f"geometry {geometry} is MapAnything, whose config has no field(s) {unknown}; use "
                        f"MapAnythingConfig fields (e.g. feature_mode) or encoder_width / encoder_num_heads")
    return {k: v for k, v in kwargs.items() if k in allowed}


def _is_mapanything(name_or_path: str, revision: str | None, token: str | bool | None) -> bool:
    """True when `name_or_path` holds MapAnything: a converted directory (`model_type: mapanything`) or the released
    layout (a config.json with `encoder_config` and `info_sharing_config`, as facebook/map-anything ships)."""
    path = _resolve_file(str(name_or_path), "config.json", {"revision": revision, "token": token})
    if path is None:
        return False
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    return config.get("model_type") == MapAnythingConfig.model_type or (
        "model_type" not in config and "encoder_config" in config and "info_sharing_config" in config
    )


def _materialize(modules: list[nn.Module], init_fn, device: torch.device) -> None:
    """Allocate meta-device modules on `device` and initialise them as `__init__` + `post_init` would."""
    for module in modules:
        module.to_empty(device=device)
        for m in module.modules():  # torch's own init first (parents' init_fn may then override children)
            if isinstance(m, nn.MultiheadAttention):
                m._reset_parameters()  # in_proj is not an nn.Linear
            elif keeps_own_init(m) and hasattr(m, "reset_parameters"):
                m.reset_parameters()  # modules that keep PyTorch's default init (the layer-wise head)
        for m in reversed(list(module.modules())):  # children before parents, as transformers' post_init
            init_fn(m)


def _resolve_file(name_or_path: str, filename: str, kwargs: dict) -> str | None:
    """Local path of `filename` in a checkpoint directory or Hub repo, or None when it has none."""
    local = Path(name_or_path)
    if local.is_dir():
        path = local / filename
        return str(path) if path.is_file() else None
    from transformers.utils import cached_file

    return cached_file(
        name_or_path, filename, revision=kwargs.get("revision"), token=kwargs.get("token"),
        cache_dir=kwargs.get("cache_dir"), _raise_exceptions_for_missing_entries=False,
    )


__all__ = [
    "GeoVLAActionHead",
    "GeoVLAForActionPrediction",
    "GeoVLAGeometryEncoder",
    "GeoVLAOutput",
    "GeoVLAPreTrainedModel",
    "NORM_STATS_FILE",
    "build_geometry_encoder",
]
