"""Configuration of the geometry-injected VLA (Qwen2.5-VL + multi-view geometry encoder + DiT flow matching)."""

from __future__ import annotations

import copy

from transformers import PretrainedConfig

from ...errors import UserError
from ..common.config_utils import COMPRESSOR_TYPES, resolve_vision_config
from ..mapanything.configuration_mapanything import MapAnythingConfig

NORMALIZATION_MODES = ("mean_std", "quantile")
GEOMETRY_INJECTIONS = ("dit", "llm_pool", "none")
ACTION_HEAD_TYPES = ("layerwise_fm", "adaln_zero")
FLOW_TIME_RULES = ("starvla", "beta_scaled")  # the same tuple as models/common/flow_matching.py (kept light here)


def _positive(cls_name: str, obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{cls_name}.{name} must be a positive integer, got {value!r}")


class GeoVLAGeometryConfig(PretrainedConfig):
    r"""Configuration of [`GeoVLAGeometryEncoder`], the light stand-in geometry encoder: a transformers DINOv2
    backbone applied to every view, a learned view embedding, and a freshly initialised multi-view transformer.
    GeoVLA's default geometry encoder is MapAnything itself ([`MapAnythingConfig`]); the stand-in serves the tiny
    demos and any DINOv2 checkpoint of the Hub (`facebook/dinov2-*`) when MapAnything's weights are not wanted.

    Args:
        backbone_config (`dict` or `PretrainedConfig`, *optional*):
            The per-view backbone, a `dinov2` config by default (any vision type `AutoModel.from_config` builds
            and whose output has a CLS token followed by patch tokens works).
        num_views (`int`, *optional*, defaults to 2):
            Cameras per sample (V).
        num_layers (`int`, *optional*, defaults to 4):
            Layers of the multi-view transformer.
        num_heads (`int`, *optional*, defaults to 16):
            Attention heads of the multi-view transformer; must divide the backbone hidden size.
        mlp_ratio (`float`, *optional*, defaults to 4.0):
            MLP width of the multi-view transformer relative to its hidden size.
        output_size (`int`, *optional*, defaults to 1536):
            Width of the raw geometry tokens (MapAnything: 1536).
    """

    model_type = "geovla_geometry"
    sub_configs = {"backbone_config": PretrainedConfig}

    def __init__(
        self,
        backbone_config: dict | PretrainedConfig | None = None,
        num_views: int = 2,
        num_layers: int = 4,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        output_size: int = 1536,
        **kwargs,
    ):
        if backbone_config is None:
            backbone_config = {"model_type": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24,
                               "num_attention_heads": 16, "image_size": 224, "patch_size": 14}
        self.backbone_config = resolve_vision_config(backbone_config, default_type="dinov2", field="backbone_config")
        self.num_views = num_views
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.output_size = output_size
        super().__init__(**kwargs)
        _positive("GeoVLAGeometryConfig", self, "num_views", "num_layers", "num_heads", "output_size")
        if self.hidden_size % self.num_heads:
            raise UserError(
                f"GeoVLAGeometryConfig.num_heads={self.num_heads} must divide the backbone hidden size {self.hidden_size}"
            )

    @property
    def hidden_size(self) -> int:
        """Width of the backbone (and of the multi-view transformer)."""
        return self.backbone_config.hidden_size

    @property
    def image_size(self) -> int:
        """Side of the square views the backbone takes."""
        size = self.backbone_config.image_size
        return size if isinstance(size, int) else size[0]

    @property
    def tokens_per_view(self) -> int:
        """Patch tokens per view ((image_size / patch_size)^2; 256 at 224 px with patch 14)."""
        return (self.image_size // self.backbone_config.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        """G, the raw geometry tokens per sample."""
        return self.num_views * self.tokens_per_view


# Qwen/Qwen2.5-VL-3B-Instruct config.json (the fields that size it; the rest are the type's defaults): the seed's
# VLM, typed in so that `GeoVLAConfig()` builds the reference model on the meta device without the Hub.
QWEN2_5_VL_3B_CONFIG = {
    "model_type": "qwen2_5_vl", "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
    "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                      "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]},
}


class GeoVLAConfig(PretrainedConfig):
    r"""Configuration of [`GeoVLAForActionPrediction`].

    ```
    images (B,V,3,S,S) + instruction -> Qwen2.5-VL -> hidden states of every LM layer  vl_embs[0..N]
    images (B,V,3,S,S) -> geometry encoder (frozen) -> raw_geom (B, G, D_g) -> compressor -> (L, B, K, D_vlm)
    DiT layer i: cross-attends to cat(vl_embs[dit_vlm_layer_map[i]], geom_tokens[i])
    ```

    Args:
        vlm_config (`dict` or `PretrainedConfig`, *optional*):
            The Qwen2.5-VL config (`model_type: qwen2_5_vl`). Defaults to the seed's VLM,
            Qwen/Qwen2.5-VL-3B-Instruct (`QWEN2_5_VL_3B_CONFIG`, 3,754,622,976 parameters).
        geometry_config (`dict`, [`MapAnythingConfig`] or [`GeoVLAGeometryConfig`], *optional*):
            The frozen geometry encoder. Default: MapAnything V1.1's feature trunk (`model_type: mapanything`,
            1,136.48 M parameters; `feature_mode: qwenmapanythingpi` reproduces what the seed's starVLA
            integration took). A dict is read by its `model_type` (`mapanything` when absent;
            `geovla_geometry` for the DINOv2 stand-in).
        geometry_image_size (`int`, *optional*):
            Side of the square geometry views. Default: 224 for MapAnything (the seed's `mapanything_image_size`;
            a multiple of its patch size 14, 16 x 16 = 256 tokens per view), the stand-in's `image_size` for it.
        compressor_type (`str`, *optional*, defaults to `"pool"`):
            `"pool"`, `"per_layer"` or `"qformer"` (see `models/common/geometry_compressor.py`). `per_layer` has one
            projection per DiT layer (the seed's 16 at reference, 50.36 M); with `dit_interleave_self_attention`
            the self-attending blocks take no context, so their projections are built but receive no gradient.
        geometry_injection (`str`, *optional*, defaults to `"dit"`):
            Where geometry enters. `"dit"`: the compressor's tokens join every cross-attending DiT layer's context
            (the seed's design). `"llm_pool"`: the seed's earlier "current approach", its baseline: the raw geometry
            tokens are averaged globally, projected to the LM width (one Linear, `geometry_compressor`) and fed
            through the LLM as one extra token after the prompt; the DiT sees only the LLM's hidden states.
            `"none"`: no geometry at all (no geometry encoder or compressor is built; geometry inputs are ignored).
        num_geometry_tokens (`int`, *optional*, defaults to 16):
            K, geometry tokens per DiT layer.
        compressor_num_heads (`int`, *optional*, defaults to 8):
            Heads of the qformer compressor; must divide the VLM hidden size.
        action_head_type (`str`, *optional*, defaults to `"layerwise_fm"`):
            `"layerwise_fm"`: starVLA's layer-wise flow-matching head (GR00T N1.5's cross-attention DiT as
            starVLA's QwenPI configures it: one attention per block, AdaLN before it, state + future tokens +
            action tokens, MLP decoder; `models/common/layerwise_dit.py`). `"adaln_zero"`: this library's
            earlier head (self-attention + cross-attention + MLP per block, AdaLN-Zero gates, continuous time).
        dit_num_layers (`int`, *optional*, defaults to 16):
            Depth of the DiT: the seed's 16 (its table: a 16-layer DiT of 977.75 M). starVLA's QwenPI would size
            it from the LM (one block per LM layer, 36 for Qwen2.5-VL-3B); give `vlm_num_layers` for that.
        dit_hidden_size (`int`, *optional*):
            Width of the DiT. Default: the LM's hidden size (starVLA's QwenPI runs the DiT at that width).
        dit_num_heads (`int`, *optional*):
            Attention heads of the DiT; must divide `dit_hidden_size`. Default: `dit_hidden_size // 64`
            (starVLA's `attention_head_dim` 64).
        dit_mlp_ratio (`float`, *optional*, defaults to 4.0):
            MLP width of a DiT block relative to `dit_hidden_size` (`adaln_zero` only; starVLA's is 4).
        dit_dropout (`float`, *optional*, defaults to 0.2):
            Dropout inside the DiT (starVLA's QwenPI: 0.2).
        dit_interleave_self_attention (`bool`, *optional*, defaults to `True`):
            `layerwise_fm`: odd DiT blocks self-attend over the action tokens instead of cross-attending
            (starVLA's QwenPI `interleave_self_attention`); False = every block cross-attends.
        num_future_tokens (`int`, *optional*, defaults to 32):
            `layerwise_fm`: learned tokens between the state token and the action tokens
            (starVLA's `num_target_vision_tokens`).
        action_mlp_hidden_size (`int`, *optional*, defaults to 1024):
            `layerwise_fm`: hidden width of the state encoder and action decoder MLPs (starVLA: 1024).
        max_action_positions (`int`, *optional*, defaults to 1024):
            `layerwise_fm`: rows of the action position embedding (starVLA's `max_seq_len`).
        dit_vlm_layer_map (`list[int]`, *optional*):
            The VLM hidden state each DiT layer cross-attends to: entry i is an index into the
            `output_hidden_states` tuple (0 = token embeddings, n = output of LM layer n). Must have
            `dit_num_layers` entries in [0, N]; entries of self-attention blocks are ignored. Default: the
            last `dit_num_layers` LM layers when the LM has at least that many (starVLA's
            `hidden_states[-num_layers:]`), else LM layers spread evenly (`1 + floor(i * N / dit_num_layers)`).
        action_dim (`int`, *optional*, defaults to 7):
            Values per action (6-DoF delta pose + gripper).
        action_chunk_size (`int`, *optional*, defaults to 8):
            T, actions predicted per call.
        state_dim (`int`, *optional*, defaults to 8):
            Width of the robot state (LIBERO: eef pos 3 + axis-angle 3 + gripper qpos 2).
        flow_time_sampling (`str`, *optional*, defaults to `"starvla"`):
            Training times from u ~ Beta(flow_beta_alpha, flow_beta_beta): `"starvla"` t = (s - u) / s
            (starVLA's `sample_time`: dense near the noise end), `"beta_scaled"` t = u * s (the mirror image).
        flow_beta_alpha (`float`, *optional*, defaults to 1.5):
            Alpha of the Beta distribution of training times.
        flow_beta_beta (`float`, *optional*, defaults to 1.0):
            Beta of the Beta distribution of training times.
        flow_time_scale (`float`, *optional*, defaults to 0.999):
            s of `flow_time_sampling` (starVLA's `noise_s`).
        num_timestep_buckets (`int`, *optional*, defaults to 1000):
            `layerwise_fm`: the flow time enters the network as the integer bucket `int(t * buckets)`.
        num_flow_samples (`int`, *optional*, defaults to 2):
            Noise / time draws per example in one training step (the batch is tiled this many times after
            the VLM ran once; starVLA's `repeated_diffusion_steps`, fixed at 2 in its QwenPI).
        flow_loss_mask_padding (`bool`, *optional*, defaults to `False`):
            Leave action steps past the episode's end (`action_is_pad`) out of the loss. starVLA averages
            over every step (False).
        num_inference_steps (`int`, *optional*, defaults to 4):
            Euler steps of `predict_action` (starVLA's `num_inference_timesteps`).
        normalization_mode (`str`, *optional*, defaults to `"mean_std"`):
            `"mean_std"` ((x - mean) / std) or `"quantile"` (q01..q99 mapped to [-1, 1]).
        state_key (`str`, *optional*, defaults to `"observation.state"`):
            Key of the state statistics in `norm_stats.json`.
        action_key (`str`, *optional*, defaults to `"action"`):
            Key of the action statistics in `norm_stats.json`.
        freeze_patterns (`list[str]`, *optional*, defaults to `["geometry_encoder.*"]`):
            `fnmatch` patterns of parameter names to freeze (e.g. add `"vlm.visual.*"`).
        vlm_name_or_path (`str`, *optional*): where the VLM weights came from (informational).
        geometry_name_or_path (`str`, *optional*): where the geometry weights came from (informational).
    """

    model_type = "geovla"
    sub_configs = {"vlm_config": PretrainedConfig, "geometry_config": PretrainedConfig}

    def __init__(
        self,
        vlm_config: dict | PretrainedConfig | None = None,
        geometry_config: dict | MapAnythingConfig | GeoVLAGeometryConfig | None = None,
        geometry_image_size: int | None = None,
        compressor_type: str = "pool",
        geometry_injection: str = "dit",
        num_geometry_tokens: int = 16,
        compressor_num_heads: int = 8,
        action_head_type: str = "layerwise_fm",
        dit_num_layers: int = 16,
        dit_hidden_size: int | None = None,
        dit_num_heads: int | None = None,
        dit_mlp_ratio: float = 4.0,
        dit_dropout: float = 0.2,
        dit_interleave_self_attention: bool = True,
        num_future_tokens: int = 32,
        action_mlp_hidden_size: int = 1024,
        max_action_positions: int = 1024,
        dit_vlm_layer_map: list[int] | None = None,
        action_dim: int = 7,
        action_chunk_size: int = 8,
        state_dim: int = 8,
        flow_time_sampling: str = "starvla",
        flow_beta_alpha: float = 1.5,
        flow_beta_beta: float = 1.0,
        flow_time_scale: float = 0.999,
        num_timestep_buckets: int = 1000,
        num_flow_samples: int = 2,
        flow_loss_mask_padding: bool = False,
        num_inference_steps: int = 4,
        normalization_mode: str = "mean_std",
        state_key: str = "observation.state",
        action_key: str = "action",
        freeze_patterns: list[str] | None = None,
        vlm_name_or_path: str | None = None,
        geometry_name_or_path: str | None = None,
        **kwargs,
    ):
        if vlm_config is None:  # the seed's VLM, not transformers' Qwen2.5-VL defaults (a 74.5 B model)
            vlm_config = copy.deepcopy(QWEN2_5_VL_3B_CONFIG)
        self.vlm_config = resolve_vision_config(vlm_config, default_type="qwen2_5_vl", field="vlm_config")
        self.geometry_config = _geometry_config(geometry_config)
        if isinstance(self.geometry_config, GeoVLAGeometryConfig):
            size = self.geometry_config.image_size
            if geometry_image_size is not None and int(geometry_image_size) != size:
                raise UserError(f"GeoVLAConfig.geometry_image_size={geometry_image_size!r} differs from the stand-in "
                                f"geometry encoder's image_size {size}")
            geometry_image_size = size
        self.geometry_image_size = int(geometry_image_size) if geometry_image_size is not None else 224
        self.compressor_type = compressor_type
        self.geometry_injection = geometry_injection
        self.num_geometry_tokens = num_geometry_tokens
        self.compressor_num_heads = compressor_num_heads
        self.action_head_type = action_head_type
        # The seed's depth (16); starVLA's QwenPI sizes the width from the LM (populate_layerwise_dit_cfg).
        self.dit_num_layers = dit_num_layers if dit_num_layers is not None else 16
        self.dit_hidden_size = dit_hidden_size if dit_hidden_size is not None else self.vlm_hidden_size
        self.dit_num_heads = dit_num_heads if dit_num_heads is not None else max(1, self.dit_hidden_size // 64)
        self.dit_mlp_ratio = dit_mlp_ratio
        self.dit_dropout = dit_dropout
        self.dit_interleave_self_attention = bool(dit_interleave_self_attention)
        self.num_future_tokens = num_future_tokens
        self.action_mlp_hidden_size = action_mlp_hidden_size
        self.max_action_positions = max_action_positions
        self.action_dim = action_dim
        self.action_chunk_size = action_chunk_size
        self.state_dim = state_dim
        self.flow_time_sampling = flow_time_sampling
        self.flow_beta_alpha = flow_beta_alpha
        self.flow_beta_beta = flow_beta_beta
        self.flow_time_scale = flow_time_scale
        self.num_timestep_buckets = num_timestep_buckets
        self.num_flow_samples = num_flow_samples
        self.flow_loss_mask_padding = bool(flow_loss_mask_padding)
        self.num_inference_steps = num_inference_steps
        self.normalization_mode = normalization_mode
        self.state_key = state_key
        self.action_key = action_key
        self.freeze_patterns = list(freeze_patterns) if freeze_patterns is not None else ["geometry_encoder.*"]
        self.vlm_name_or_path = vlm_name_or_path
        self.geometry_name_or_path = geometry_name_or_path
        super().__init__(**kwargs)
        _positive("GeoVLAConfig", self, "num_geometry_tokens", "dit_num_layers", "dit_hidden_size", "dit_num_heads",
                  "action_dim", "action_chunk_size", "state_dim", "num_inference_steps", "num_flow_samples")
        if self.action_head_type == "layerwise_fm":
            _positive("GeoVLAConfig", self, "num_future_tokens", "action_mlp_hidden_size", "max_action_positions",
                      "num_timestep_buckets")
        self.dit_vlm_layer_map = (
            [int(x) for x in dit_vlm_layer_map] if dit_vlm_layer_map is not None else self.default_layer_map()
        )
        self._validate()

    @property
    def geometry_is_mapanything(self) -> bool:
        """True when the geometry encoder is MapAnything's trunk (not the DINOv2 stand-in)."""
        return isinstance(self.geometry_config, MapAnythingConfig)

    @property
    def geometry_image_mean(self) -> tuple[float, ...]:
        """Normalisation of the geometry views: ImageNet's, or none (0) in MapAnything's qwenmapanythingpi mode."""
        return (0.0, 0.0, 0.0) if self._raw_geometry_pixels else (0.485, 0.456, 0.406)

    @property
    def geometry_image_std(self) -> tuple[float, ...]:
        """See `geometry_image_mean` (1 in qwenmapanythingpi mode: pixels in [0, 1])."""
        return (1.0, 1.0, 1.0) if self._raw_geometry_pixels else (0.229, 0.224, 0.225)

    @property
    def _raw_geometry_pixels(self) -> bool:
        return self.geometry_is_mapanything and self.geometry_config.feature_mode == "qwenmapanythingpi"

    @property
    def geometry_num_tokens(self) -> int | None:
        """G, raw geometry tokens per sample for the stand-in (its view count is fixed); None for MapAnything,
        whose G = V * (geometry_image_size / 14)^2 follows the views given (512 for 2 views at 224 px)."""
        return None if self.geometry_is_mapanything else self.geometry_config.num_tokens

    @property
    def text_config(self) -> PretrainedConfig:
        """The language model's config inside `vlm_config`."""
        return getattr(self.vlm_config, "text_config", self.vlm_config)

    @property
    def vlm_hidden_size(self) -> int:
        """Width of the VLM hidden states (and of the geometry tokens)."""
        return self.text_config.hidden_size

    @property
    def vlm_num_layers(self) -> int:
        """N, the language model's layers (hidden states 0..N)."""
        return self.text_config.num_hidden_layers

    def default_layer_map(self) -> list[int]:
        """The default DiT -> VLM layer map (see `dit_vlm_layer_map`)."""
        n, depth = self.vlm_num_layers, self.dit_num_layers
        if n >= depth:
            return [n - depth + 1 + i for i in range(depth)]
        return [1 + (i * n) // depth for i in range(depth)]

    @property
    def cross_attention_layers(self) -> list[int]:
        """The DiT blocks that cross-attend to a context (every block, or the even ones when interleaving)."""
        if self.action_head_type == "layerwise_fm" and self.dit_interleave_self_attention:
            return list(range(0, self.dit_num_layers, 2))
        return list(range(self.dit_num_layers))

    def _validate(self) -> None:
        if self.geometry_is_mapanything and (self.geometry_image_size < 1
                                             or self.geometry_image_size % self.geometry_config.patch_size):
            raise UserError(
                f"GeoVLAConfig.geometry_image_size={self.geometry_image_size!r} must be a positive multiple of "
                f"MapAnything's patch size {self.geometry_config.patch_size}"
            )
        if self.geometry_injection not in GEOMETRY_INJECTIONS:
            raise UserError(f"GeoVLAConfig.geometry_injection must be one of {GEOMETRY_INJECTIONS}, got "
                            f"{self.geometry_injection!r}")
        if self.action_head_type not in ACTION_HEAD_TYPES:
            raise UserError(f"GeoVLAConfig.action_head_type must be one of {ACTION_HEAD_TYPES}, got {self.action_head_type!r}")
        if self.flow_time_sampling not in FLOW_TIME_RULES:
            raise UserError(
                f"GeoVLAConfig.flow_time_sampling must be one of {FLOW_TIME_RULES}, got {self.flow_time_sampling!r}"
            )
        if self.action_head_type == "layerwise_fm" and self.action_chunk_size > self.max_action_positions:
            raise UserError(
                f"GeoVLAConfig.action_chunk_size={self.action_chunk_size} exceeds max_action_positions="
                f"{self.max_action_positions}"
            )
        if self.vlm_config.model_type != "qwen2_5_vl":
            raise UserError(f"GeoVLAConfig.vlm_config.model_type must be 'qwen2_5_vl', got {self.vlm_config.model_type!r}")
        if self.compressor_type not in COMPRESSOR_TYPES:
            raise UserError(f"GeoVLAConfig.compressor_type must be one of {COMPRESSOR_TYPES}, got {self.compressor_type!r}")
        if self.compressor_type == "qformer" and self.vlm_hidden_size % self.compressor_num_heads:
            raise UserError(
                f"GeoVLAConfig.compressor_num_heads={self.compressor_num_heads} must divide the VLM hidden size "
                f"{self.vlm_hidden_size}"
            )
        if self.dit_hidden_size % self.dit_num_heads:
            raise UserError(
                f"GeoVLAConfig.dit_num_heads={self.dit_num_heads} must divide dit_hidden_size={self.dit_hidden_size}"
            )
        layer_map = self.dit_vlm_layer_map
        if len(layer_map) != self.dit_num_layers:
            raise UserError(
                f"GeoVLAConfig.dit_vlm_layer_map has {len(layer_map)} entries but dit_num_layers={self.dit_num_layers}; "
                "give one VLM hidden-state index per DiT layer"
            )
        bad = [x for x in layer_map if not 0 <= x <= self.vlm_num_layers]
        if bad:
            raise UserError(
                f"GeoVLAConfig.dit_vlm_layer_map entries must be in [0, {self.vlm_num_layers}] (0 = embeddings, "
                f"n = LM layer n of {self.vlm_num_layers}); got {bad}"
            )
        if self.normalization_mode not in NORMALIZATION_MODES:
            raise UserError(
                f"GeoVLAConfig.normalization_mode must be one of {NORMALIZATION_MODES}, got {self.normalization_mode!r}"
            )
        if not (self.flow_beta_alpha > 0 and self.flow_beta_beta > 0 and 0 < self.flow_time_scale <= 1):
            raise UserError(
                "GeoVLAConfig: flow_beta_alpha and flow_beta_beta must be > 0 and flow_time_scale in (0, 1], got "
                f"{self.flow_beta_alpha}, {self.flow_beta_beta}, {self.flow_time_scale}"
            )
        if not 0.0 <= self.dit_dropout < 1.0:
            raise UserError(f"GeoVLAConfig.dit_dropout must be in [0, 1), got {self.dit_dropout!r}")


def _geometry_config(value: dict | PretrainedConfig | None) -> PretrainedConfig:
    """The geometry sub-config: MapAnything's by default; a dict by its `model_type` (`mapanything` when absent)."""
    if value is None:
        return MapAnythingConfig()
    if isinstance(value, (MapAnythingConfig, GeoVLAGeometryConfig)):
        return value
    if not isinstance(value, dict):
        raise UserError(f"GeoVLAConfig.geometry_config must be a dict or a geometry config, got {type(value).__name__}")
    kwargs = dict(value)
    model_type = kwargs.pop("model_type", MapAnythingConfig.model_type)
    if model_type == MapAnythingConfig.model_type:
        return MapAnythingConfig(**kwargs)
    if model_type == GeoVLAGeometryConfig.model_type:
        return GeoVLAGeometryConfig(**kwargs)
    raise UserError(
        f"GeoVLAConfig.geometry_config.model_type must be 'mapanything' or 'geovla_geometry', got {model_type!r}"
    )


__all__ = ["ACTION_HEAD_TYPES", "FLOW_TIME_RULES", "GeoVLAConfig", "GeoVLAGeometryConfig", "NORMALIZATION_MODES",
           "QWEN2_5_VL_3B_CONFIG"]
