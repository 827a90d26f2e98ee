"""Frozen-VLM waypoint predictor.

```
 pixel_values (B, [N,] 3, S, S)        past_states (B, 16, 6)      intent (B,)
        |                                      |                        |
  vision tower (frozen; + LoRA)            / past_state_scale        one-hot (num_intents)
        | tokens (B*N, L, D)                   | flatten (B, 96)         |
  pool: mean | cls | attention                 |                        |
        | (B, N*D)                             |                        |
        +-------------------- concat ----------+------------------------+
                                   |
        Linear 512 > LN > GELU > Drop > Linear 512 > LN > GELU > Drop > Linear 40
                                   | * waypoint_scale
                            waypoints (B, 20, 2)   (x forward, y left, metres, 4 Hz)
```

`image_features` (the pooled tower output, (B, N*D)) or `vision_hidden_states` (the tower's tokens,
(B, N, L, D), pooled in the forward pass) can be passed instead of `pixel_values`; the frozen-feature cache
(`hf_vlmdrive.features`) uses them so that a frozen tower runs once per image, not once per epoch.

LoRA stage (`config.lora`, `enable_vision_lora`): PEFT LoRA layers on the tower's attention projections;
the tower's own weights stay frozen, the adapters train with the head, gradients flow through the tower
(so features are recomputed every step and the feature cache is off). `merge_vision_lora` folds the
adapters back into a plain frozen tower.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ...errors import UserError
from ..common.freezing import FrozenVisionMixin
from ..common.heads import MLPHead
from ..common.init import init_module
from ..common.lora import has_lora, inject_lora, merge_lora, save_lora_adapter
from ..common.lora_config import normalize_lora_config
from ..common.pooling import AttentionPool, pool_tokens
from ..common.vision import build_vision_tower, load_vision_tower_weights, vision_config_from_pretrained
from .configuration_waypoint_vlm import UNKNOWN_INTENT, WaypointVLMConfig


@dataclass
class WaypointVLMOutput(ModelOutput):
    """Output of [`WaypointVLMModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): waypoint regression loss, when `labels` are given.
        waypoints (`torch.FloatTensor` of shape `(B, num_waypoints, waypoint_dim)`): predicted waypoints, metres.
        image_features (`torch.FloatTensor` of shape `(B, num_cameras * D)`, *optional*): pooled image
            features, returned when `output_image_features=True`.
    """

    loss: torch.FloatTensor | None = None
    waypoints: torch.FloatTensor | None = None
    image_features: torch.FloatTensor | None = None


class WaypointVLMPreTrainedModel(PreTrainedModel):
    """Weight initialisation and Auto-class plumbing of the waypoint family."""

    config_class = WaypointVLMConfig
    base_model_prefix = "waypoint_vlm"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    # Trainer rescales the loss of a model whose `forward` takes `**kwargs` (it assumes a sum over
    # `num_items_in_batch`); the regression loss is a mean over this batch's waypoints: no rescaling, or DDP / gradient
    # accumulation would multiply it by the number of processes / steps.
    accepts_loss_kwargs = False
    _no_split_modules = []
    # Every transformers backbone the family builds has SDPA attention: `from_pretrained(..., attn_implementation=)`
    # may choose eager or sdpa, and the choice reaches the backbones (the family's own blocks are unaffected).
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        # The family's own modules only (head, attention pool); the vision tower is a `PreTrainedModel` and
        # initialises itself; loaded tensors are skipped (`models/common/init.py`).
        init_module(module, std=0.02)


class WaypointVLMModel(FrozenVisionMixin, WaypointVLMPreTrainedModel):
    """A transformers vision tower (frozen by default) plus an MLP head that predicts future waypoints."""

    def __init__(self, config: WaypointVLMConfig):
        super().__init__(config)
        self.vision_model = build_vision_tower(config.vision_config)
        self.attention_pool = (
            AttentionPool(config.vision_hidden_size, config.attention_pool_heads)
            if config.pooling == "attention"
            else None
        )
        self.head = MLPHead(
            config.head_input_size,
            config.head_hidden_sizes,
            config.num_waypoints * config.waypoint_dim,
            dropout=config.head_dropout,
        )
        self.post_init()
        # After post_init: LoRA's own initialisation (A random, B zero: the adapted tower starts equal to the
        # plain one) must not be overwritten by `_init_weights`.
        if config.lora is not None:
            self._inject_vision_lora(config.lora)
        if config.freeze_vision:
            self.freeze_vision_model()

    # ------------------------------------------------------------------ LoRA stage
    def _inject_vision_lora(self, lora: dict) -> list[str]:
        # PEFT's LoRA init (B = 0) is not touched by `_init_weights`: the tower is a `PreTrainedModel`, so
        # transformers dispatches the tower's own init to its modules, and loaded tensors are skipped.
        return inject_lora(self.vision_model, lora, field="WaypointVLMConfig.lora")

    @property
    def has_vision_lora(self) -> bool:
        """True when the vision tower carries LoRA adapters."""
        return has_lora(self.vision_model)

    def enable_vision_lora(self, lora: dict | int) -> list[str]:
        """Add PEFT LoRA adapters to the vision tower (the second training stage); returns the adapted modules.

        `lora` is a rank or a dict as in [`WaypointVLMConfig`] (`r`, `lora_alpha`, `lora_dropout`,
        `target_modules`, `bias`). Sets `config.lora` (normalised) and `config.freeze_vision=True`: the tower's
        own weights stay frozen, only the adapters (and the head) train, and the tower follows the model's
        train / eval mode. A target that matches no module raises a ValueError listing the tower's Linear modules.
        """
        if self.has_vision_lora:
            raise UserError(
                f"the vision tower already has LoRA adapters (config.lora={self.config.lora}); call "
                "`merge_vision_lora()` first to add new ones on top of the merged weights"
            )
        normalized = normalize_lora_config(lora, self.config.vision_config.model_type, field="WaypointVLMConfig.lora")
        if normalized is None:
            raise UserError("enable_vision_lora needs LoRA settings, e.g. {'r': 16}; got None")
        targeted = self._inject_vision_lora(normalized)
        self.config.lora = normalized
        self.freeze_vision_model()
        return targeted

    def merge_vision_lora(self) -> int:
        """Fold the LoRA adapters into the tower's weights and remove the LoRA layers; returns how many.

        Afterwards `config.lora` is None and the tower is a plain, frozen one again (eval mode, no gradients),
        with the adapted behaviour: use it for inference, to export, or to use the frozen-feature cache again.
        """
        if not self.has_vision_lora:
            raise UserError("the vision tower has no LoRA adapters to merge (config.lora is None)")
        merged = merge_lora(self.vision_model)
        self.config.lora = None
        self.freeze_vision_model()
        return merged

    def save_vision_adapter(self, save_directory: str | Path) -> Path:
        """Save the tower's LoRA adapter alone, in PEFT's format (`adapter_config.json` + `adapter_model.safetensors`).

        `peft.PeftModel.from_pretrained(<the plain tower>, save_directory)` loads it onto the tower of
        `config.backbone_name_or_path`. `save_pretrained` already stores the adapters inside the full model.
        """
        if not self.has_vision_lora:
            raise UserError("the vision tower has no LoRA adapter to save (config.lora is None)")
        return save_lora_adapter(
            self.vision_model, self.config.lora, save_directory, base_model_name_or_path=self.config.backbone_name_or_path
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_backbone(
        cls,
        name_or_path: str,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        dtype: torch.dtype | None = None,
        **config_kwargs,
    ) -> WaypointVLMModel:
        """Build the predictor around the vision tower of a pretrained VLM or vision model.

        `name_or_path` is a Hub id or a local directory of any transformers checkpoint with a vision tower:
        SmolVLM / Idefics3 (`HuggingFaceTB/SmolVLM-Base`), SigLIP, CLIP, DINOv2, ... Only the tower's
        tensors are read; the head is freshly initialised. Extra keyword arguments go to
        [`WaypointVLMConfig`]; with `lora=...` the adapters are added after the pretrained tower weights are
        loaded (the checkpoint has plain layers, no `base_layer`). `revision` / `token` go to the Hub,
        `dtype` is the dtype of the returned model's parameters (default: float32).
        """
        vision_config = vision_config_from_pretrained(name_or_path, revision=revision, token=token)
        config = WaypointVLMConfig(
            vision_config=vision_config.to_dict(), backbone_name_or_path=name_or_path, **config_kwargs
        )
        lora, config.lora = config.lora, None  # validated above; injected after loading
        model = cls(config)
        load_vision_tower_weights(model.vision_model, name_or_path, revision=revision, token=token)
        if dtype is not None:
            model.to(dtype)
        if config.freeze_vision:
            model.freeze_vision_model()
        if lora is not None:
            model.enable_vision_lora(lora)
        return model

    # ------------------------------------------------------------------ forward
    def _check_inputs(self, pixel_values, image_features, vision_hidden_states, past_states, intent) -> int:
        cfg = self.config
        given = [n for n, v in (("pixel_values", pixel_values), ("image_features", image_features),
                                ("vision_hidden_states", vision_hidden_states)) if v is not None]
        if len(given) != 1:
            raise UserError(
                "pass exactly one of `pixel_values`, `image_features` and `vision_hidden_states`, got "
                f"{given or 'none'}"
            )
        if pixel_values is not None:
            size = cfg.image_size
            if cfg.num_cameras == 1:
                expected = f"(batch, 3, {size}, {size}) or (batch, 1, 3, {size}, {size})"
                ok = (pixel_values.ndim == 4 and tuple(pixel_values.shape[1:]) == (3, size, size)) or (
                    pixel_values.ndim == 5 and tuple(pixel_values.shape[1:]) == (1, 3, size, size)
                )
            else:
                expected = f"(batch, {cfg.num_cameras}, 3, {size}, {size})"
                ok = pixel_values.ndim == 5 and tuple(pixel_values.shape[1:]) == (cfg.num_cameras, 3, size, size)
            if not ok:
                raise UserError(
                    f"`pixel_values` must have shape {expected} (num_cameras={cfg.num_cameras}, the tower's "
                    f"image_size={size}), got {tuple(pixel_values.shape)}; preprocess images with the model's "
                    "image processor"
                )
            batch = pixel_values.shape[0]
        elif image_features is not None:
            width = cfg.num_cameras * cfg.vision_hidden_size
            if image_features.ndim != 2 or image_features.shape[1] != width:
                raise UserError(
                    f"`image_features` must have shape (batch, {width}), got {tuple(image_features.shape)}"
                )
            batch = image_features.shape[0]
        else:
            shape = tuple(vision_hidden_states.shape)
            if len(shape) != 4 or shape[1] != cfg.num_cameras or shape[3] != cfg.vision_hidden_size:
                raise UserError(
                    f"`vision_hidden_states` must have shape (batch, {cfg.num_cameras}, tokens, "
                    f"{cfg.vision_hidden_size}) (the tower's last_hidden_state per camera), got {shape}"
                )
            batch = shape[0]
        expected_past = (batch, cfg.num_past_states, cfg.past_state_dim)
        if past_states is None or tuple(past_states.shape) != expected_past:
            got = None if past_states is None else tuple(past_states.shape)
            raise UserError(
                f"`past_states` must have shape (batch, {cfg.num_past_states}, {cfg.past_state_dim}) = "
                f"{expected_past} (pos x,y; vel x,y; accel x,y per past step), got {got}"
            )
        if intent is None or tuple(intent.shape) != (batch,):
            got = None if intent is None else tuple(intent.shape)
            raise UserError(f"`intent` must have shape (batch,) = ({batch},), got {got}")
        if intent.dtype.is_floating_point:
            raise UserError(f"`intent` must be an integer tensor, got dtype {intent.dtype}")
        low, high = cfg.intent_offset, cfg.intent_offset + cfg.num_intents - 1
        bad = (intent < low) | (intent > high)
        if cfg.unknown_intent != "error":
            bad &= intent != UNKNOWN_INTENT
        if intent.numel() and bool(bad.any()):
            unknown = "" if cfg.unknown_intent == "error" else f" or {UNKNOWN_INTENT} (UNKNOWN)"
            raise UserError(
                f"`intent` values must be in [{low}, {high}]{unknown} (num_intents={cfg.num_intents}, "
                f"intent_offset={cfg.intent_offset}, unknown_intent={cfg.unknown_intent!r}), got values in "
                f"[{int(intent.min())}, {int(intent.max())}]"
            )
        return batch

    def intent_onehot(self, intent: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B,) raw intents -> (B, intent_onehot_size) one-hot; UNKNOWN per `config.unknown_intent`."""
        cfg = self.config
        index = intent.long() - cfg.intent_offset
        unknown = (intent == UNKNOWN_INTENT) & ((index < 0) | (index >= cfg.num_intents))
        width = cfg.intent_onehot_size
        if cfg.unknown_intent == "own_slot":
            index = torch.where(unknown, torch.full_like(index, cfg.num_intents), index)
        onehot = F.one_hot(index.clamp(0, width - 1), width).to(dtype)
        if cfg.unknown_intent == "zeros":
            onehot = onehot * (~unknown).to(dtype)[:, None]  # an all-zero one-hot: no intent information
        return onehot

    def _tower_tokens(self, flat: torch.Tensor) -> torch.Tensor:
        """Tower output tokens of (M, 3, S, S) images -> (M, L, D), in the head's dtype."""
        frozen = self.vision_is_frozen
        tower_dtype = next(self.vision_model.parameters()).dtype
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if frozen and self.config.vision_bf16 and flat.is_cuda
            else contextlib.nullcontext()
        )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen), autocast:
            tokens = self.vision_model(pixel_values=flat.to(tower_dtype)).last_hidden_state  # (M, L, D)
        return tokens.to(self.head.net[0].weight.dtype)

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(M, L, D) tower tokens -> (M, D)."""
        return pool_tokens(tokens, self.config.pooling, self.config.num_prefix_tokens, self.attention_pool)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled tower features: (B, 3, S, S) or (B, N, 3, S, S) -> (B, N*D)."""
        batch = pixel_values.shape[0]
        flat = pixel_values.reshape(-1, *pixel_values.shape[-3:])  # (B*N, 3, S, S)
        return self._pool(self._tower_tokens(flat)).reshape(batch, -1)  # (B, N*D)

    # ------------------------------------------------------------------ feature cache
    @property
    def feature_cache_kind(self) -> str:
        """What a frozen-feature cache stores per image: `"pooled"` features (D,) when pooling has no
        parameters (mean, cls), else the tower's `"tokens"` (L, D), pooled by the trainable attention pool."""
        return "tokens" if self.config.pooling == "attention" else "pooled"

    @torch.no_grad()
    def cacheable_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Per-image values for the feature cache: (M, 3, S, S) -> (M, D) pooled or (M, L, D) tokens.

        The same computation as the forward pass up to the first trainable module, so training from the
        cache gives what training from the images gives.
        """
        flat = pixel_values.reshape(-1, *pixel_values.shape[-3:])  # (M, 3, S, S)
        tokens = self._tower_tokens(flat)
        return tokens if self.feature_cache_kind == "tokens" else self._pool(tokens)

    def feature_cache_identity(self, image_processor) -> dict:
        """Everything besides the image that determines `cacheable_image_features`: the tower's config and
        weights fingerprint, the preprocessing, what is stored and the tower's compute precision."""
        from ...features.cache import config_digest, preprocessing_digest, weights_fingerprint

        device = next(self.vision_model.parameters()).device
        tower_dtype = next(self.vision_model.parameters()).dtype
        bf16 = self.config.vision_bf16 and device.type == "cuda"
        identity = {
            "family": self.config.model_type,
            "stored": self.feature_cache_kind,
            "vision_config": config_digest(self.config.vision_config),
            "weights": weights_fingerprint(self.vision_model),
            "preprocessing": preprocessing_digest(image_processor),
            "precision": "bf16-autocast" if bf16 else str(tower_dtype),
        }
        if self.feature_cache_kind == "pooled":
            identity["pooling"] = {"mode": self.config.pooling, "num_prefix_tokens": self.config.num_prefix_tokens}
        return identity

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        past_states: torch.Tensor | None = None,
        intent: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        vision_hidden_states: torch.Tensor | None = None,
        labels_mask: torch.Tensor | None = None,
        output_image_features: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> WaypointVLMOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, S, S)` or `(B, N, 3, S, S)`):
                Images preprocessed by the model's image processor (S = the tower's image size).
            past_states (`torch.FloatTensor` of shape `(B, 16, 6)`): past ego states, oldest first.
            intent (`torch.LongTensor` of shape `(B,)`): driving intent (Waymo enum by default).
            labels (`torch.FloatTensor` of shape `(B, 20, 2)`, *optional*): future waypoints, metres.
            image_features (`torch.FloatTensor` of shape `(B, N*D)`, *optional*):
                Pooled tower features, instead of `pixel_values` (from the feature cache).
            vision_hidden_states (`torch.FloatTensor` of shape `(B, N, L, D)`, *optional*):
                The tower's output tokens per camera, instead of `pixel_values` (from the feature cache when
                the pooling is trainable); pooled here.
            labels_mask (`torch.BoolTensor` of shape `(B, 20)`, *optional*): valid future points.
            output_image_features (`bool`): also return the pooled image features.
        """
        cfg = self.config
        batch = self._check_inputs(pixel_values, image_features, vision_hidden_states, past_states, intent)
        if pixel_values is not None:
            features = self.encode_images(pixel_values)
        elif vision_hidden_states is not None:
            tokens = vision_hidden_states.to(self.head.net[0].weight.dtype)
            features = self._pool(tokens.flatten(0, 1)).reshape(batch, -1)  # (B*N, L, D) -> (B, N*D)
        else:
            features = image_features
        features = features.to(self.head.net[0].weight.dtype)
        past = (past_states.to(features.dtype) / cfg.past_state_scale).reshape(batch, -1)  # (B, 96)
        onehot = self.intent_onehot(intent, features.dtype)
        out = self.head(torch.cat([features, past, onehot], dim=-1))
        waypoints = (out * cfg.waypoint_scale).reshape(batch, cfg.num_waypoints, cfg.waypoint_dim)

        loss = None
        if labels is not None:
            expected = (batch, cfg.num_waypoints, cfg.waypoint_dim)
            if tuple(labels.shape) != expected:
                raise UserError(f"`labels` must have shape {expected}, got {tuple(labels.shape)}")
            loss = self.waypoint_loss(waypoints, labels.to(waypoints.dtype), labels_mask)
        return WaypointVLMOutput(
            loss=loss, waypoints=waypoints, image_features=features if output_image_features else None
        )

    def waypoint_loss(
        self, waypoints: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Element-wise MSE / L1 / Huber, averaged over valid points and coordinates."""
        cfg = self.config
        if cfg.loss_type == "mse":
            per = F.mse_loss(waypoints, labels, reduction="none")
        elif cfg.loss_type == "l1":
            per = F.l1_loss(waypoints, labels, reduction="none")
        else:
            per = F.huber_loss(waypoints, labels, reduction="none", delta=cfg.huber_delta)
        if mask is None:
            return per.mean()
        weight = mask.to(per.dtype).unsqueeze(-1).expand_as(per)
        return (per * weight).sum() / weight.sum().clamp(min=1.0)


__all__ = ["WaypointVLMModel", "WaypointVLMOutput", "WaypointVLMPreTrainedModel"]
