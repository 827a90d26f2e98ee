"""RoboVLM policy: a VLM backbone (Kosmos-2) + a learnable action token + a policy head over a history window.

```
 pixel_values (B, L, 3, S, S)        input_ids / attention_mask (B, T) (the prompt, the same for the L frames)
        | per frame (B*L rows)                 | word embeddings (B*L, T, D)
  adapter.encode_images                        |
        | image tokens (B*L, n_img, D)         |
        +---> [<s>] [image tokens] [prompt tokens ...] [ACTION x latent] [</s>]   (B*L, S, D)
                                     | backbone language model (Kosmos-2 text transformer, final norm)
                                     | last hidden state at the action token(s) = the context vector
                         context_vectors (B, L, latent, D)   <- the policy head's input (hook point)
                                     | policy head: lstm | mlp | gpt over the L frames
                 actions (B, L, chunk, A): tanh mapped to [action_low, action_high] (+ sigmoid gripper)
```

Semantics follow RoboVLMs (`robovlms/model/backbone/base_backbone.py` `forward_continuous`, history type "post",
continuous action space), see docs/robovlm.md for the list and for the deliberate deviations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...errors import UserError
from ..common.freezing import FreezingMixin
from ..common.lora import inject_lora
from .adapters import adapter_for
from .configuration_robovlm import RoboVLMConfig
from .heads import GPTPolicyHead, MLPTanhHead, MLPTrunk, build_policy_head


@dataclass
class RoboVLMOutput(ModelOutput):
    """Output of [`RoboVLMForActionPrediction`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): arm / velocity loss + gripper_loss_weight * gripper BCE.
        actions (`torch.FloatTensor` of shape `(B, L, chunk, action_dim)`): bounded values in dataset units; with a
            gripper the last value is the open probability (sigmoid of the logit).
        arm_loss (`torch.FloatTensor` of shape `()`, *optional*): Huber / MSE in the normalised [-1, 1] space.
        gripper_loss (`torch.FloatTensor` of shape `()`, *optional*): BCE with logits (gripper only).
        gripper_logits (`torch.FloatTensor` of shape `(B, L, chunk)`, *optional*).
        context_vectors (`torch.FloatTensor` of shape `(B, L, latent, D)`): last hidden state at the action token(s).
    """

    loss: torch.FloatTensor | None = None
    actions: torch.FloatTensor | None = None
    arm_loss: torch.FloatTensor | None = None
    gripper_loss: torch.FloatTensor | None = None
    gripper_logits: torch.FloatTensor | None = None
    context_vectors: torch.FloatTensor | None = None


# Set by `from_backbone` while it builds the model around an empty backbone (a list: mutable module state).
_EMPTY_BACKBONE = [False]


class RoboVLMPreTrainedModel(PreTrainedModel):
    """Weight initialisation and Auto-class plumbing of the RoboVLM family."""

    config_class = RoboVLMConfig
    base_model_prefix = "robovlm"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    # Trainer rescales the loss of a model whose `forward` takes `**kwargs` (it assumes a sum over
    # `num_items_in_batch`); the action loss is a mean over this batch's valid steps: no rescaling, or DDP / gradient
    # accumulation would multiply it by the number of processes / steps.
    accepts_loss_kwargs = False
    _no_split_modules = ["Kosmos2TextBlock", "Kosmos2VisionEncoderLayer", "GPT2Block"]
    # Every transformers backbone the family builds has SDPA attention: `from_pretrained(..., attn_implementation=)`
    # may choose eager or sdpa, and the choice reaches the backbones (the family's own blocks are unaffected).
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        # RoboVLMs' `initialize_param`: xavier-uniform Linear weights, zero biases in the LSTM / MLP heads; the LSTM
        # keeps PyTorch's own init (it has no `weight` attribute there); the GPT head and the backbone are
        # `PreTrainedModel`s and initialise themselves; the action token starts at zero (`torch.zeros(hidden)`).
        if isinstance(module, (MLPTanhHead, MLPTrunk)):
            for sub in module.modules():
                if isinstance(sub, nn.Linear):
                    init.xavier_uniform_(sub.weight)
                    init.zeros_(sub.bias)
        elif isinstance(module, GPTPolicyHead) and isinstance(module.fc, nn.Linear):
            init.xavier_uniform_(module.fc.weight)
            init.zeros_(module.fc.bias)
        elif isinstance(module, RoboVLMForActionPrediction):
            init.zeros_(module.action_token)


class RoboVLMForActionPrediction(FreezingMixin, RoboVLMPreTrainedModel):
    """VLM + action token + policy head (SPEC 1.4). See the module docstring for the data flow."""

    def __init__(self, config: RoboVLMConfig):
        super().__init__(config)
        self.adapter = adapter_for(config.backbone_config.model_type)
        if _EMPTY_BACKBONE[0]:
            # `from_backbone` replaces the backbone with the pretrained one: do not materialise a random 1.6 B copy.
            from accelerate import init_empty_weights

            with init_empty_weights(include_buffers=False):
                self.backbone = self.adapter.build(config.backbone_config)
        else:
            self.backbone = self.adapter.build(config.backbone_config)
        self.action_token = nn.Parameter(torch.zeros(config.num_action_tokens, config.hidden_size))
        self.policy_head = build_policy_head(config)
        if config.lora:
            inject_lora(self.adapter.language_model(self.backbone), config.lora, field="RoboVLMConfig.lora")
        self.post_init()
        self.apply_freezing()

    # ------------------------------------------------------------------ freezing
    def frozen_parameter_patterns(self) -> list[str]:
        """`backbone.*` with `freeze_backbone` (or LoRA); the vision tower + projection with `freeze_vision`."""
        if self.config.freeze_backbone:
            return ["backbone.*"]
        if self.config.freeze_vision:
            return [f"backbone.{p}" for p in self.adapter.vision_patterns]
        return []

    def get_input_embeddings(self) -> nn.Module:
        return self.adapter.word_embedding(self.backbone)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_backbone(
        cls,
        backbone_name_or_path: str,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        dtype: torch.dtype | None = None,
        **config_kwargs: Any,
    ) -> RoboVLMForActionPrediction:
        """Assemble a policy around a pretrained VLM (Hub id such as `"microsoft/kosmos-2-patch14-224"` or a
        directory): the backbone weights are loaded, the action token and the head are new. Extra keyword
        arguments are [`RoboVLMConfig`] fields (`head_type="lstm"`, `window_size=8`, ...)."""
        from ...hub import check_model_source

        source = check_model_source(backbone_name_or_path, "backbone_name_or_path")
        hub = {"revision": revision, "token": token}
        backbone_config = AutoConfig.from_pretrained(source, **hub)
        config = RoboVLMConfig(backbone_config=backbone_config, backbone_name_or_path=str(backbone_name_or_path),
                               **config_kwargs)
        _EMPTY_BACKBONE[0] = True
        try:
            model = cls(config)  # the action token and the head are built and initialised; the backbone is empty
        finally:
            _EMPTY_BACKBONE[0] = False
        import transformers

        backbone_cls = getattr(transformers, model.adapter.model_class_name)
        pretrained = backbone_cls.from_pretrained(source, config=config.backbone_config, dtype=dtype, **hub)
        expected = {k for k in model.backbone.state_dict() if "lora_" not in k}
        got = set(pretrained.state_dict())
        if expected != got:
            raise UserError(f"backbone {backbone_name_or_path}: weights do not fit the {model.adapter.model_class_name} "
                            f"built from its config (missing {sorted(expected - got)[:5]}, unexpected "
                            f"{sorted(got - expected)[:5]})")
        model.backbone = pretrained
        if config.lora:
            inject_lora(model.adapter.language_model(model.backbone), config.lora, field="RoboVLMConfig.lora")
        if dtype is not None:
            model.to(dtype)
        model.apply_freezing()
        return model

    # ------------------------------------------------------------------ streaming
    def reset(self) -> None:
        """Clear the policy head's history (call between episodes)."""
        self.policy_head.reset()

    # ------------------------------------------------------------------ pieces
    def _check_inputs(self, pixel_values, input_ids, attention_mask):
        cfg = self.config
        if pixel_values is None or input_ids is None:
            raise ValueError("RoboVLM needs `pixel_values` (B, L, 3, H, W) and `input_ids` (B, T) (the processor's output)")
        if pixel_values.ndim == 4:
            pixel_values = pixel_values[:, None]  # (B, 1, 3, H, W)
        size = cfg.backbone_config.vision_config.image_size
        if pixel_values.ndim != 5 or pixel_values.shape[2] != 3 or tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(
                f"`pixel_values` must have shape (batch, window, 3, {size}, {size}), got {tuple(pixel_values.shape)}"
            )
        if pixel_values.shape[1] > cfg.window_size and cfg.head_type == "gpt":
            raise ValueError(f"`pixel_values` holds {pixel_values.shape[1]} frames, more than window_size={cfg.window_size}")
        if input_ids.ndim != 2 or input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(f"`input_ids` must have shape (batch={pixel_values.shape[0]}, tokens), got "
                             f"{tuple(input_ids.shape)}")
        if input_ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"`input_ids` must be an integer tensor, got {input_ids.dtype}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"`attention_mask` must have the shape of input_ids {tuple(input_ids.shape)}, got "
                             f"{tuple(attention_mask.shape)}")
        mask = attention_mask.bool()
        if (mask[:, 1:] & ~mask[:, :-1]).any() or not mask[:, 0].all():
            raise ValueError("`attention_mask` must be right-padded (ones, then zeros): tokenize with padding_side='right'")
        return pixel_values, attention_mask

    def build_sequence(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """The backbone input of every frame: embeddings (N, S, D), attention mask (N, S) and the action-token
        mask (N, S), N = B * L. Image tokens go after `<s>`; the action token(s) before each row's last real
        token (`</s>`) with `insert_action_before_eos`, else after it."""
        b, w = pixel_values.shape[:2]
        n = b * w
        images = self.adapter.encode_images(self.backbone, pixel_values.flatten(0, 1).to(self.dtype))  # (N, n_img, D)
        words = self.adapter.word_embedding(self.backbone)(input_ids)  # (B, T, D)
        words = words[:, None].expand(b, w, *words.shape[1:]).flatten(0, 1)  # (N, T, D): one prompt per frame
        mask = attention_mask.bool()[:, None].expand(b, w, -1).flatten(0, 1)  # (N, T)
        bos = int(getattr(self.config.backbone_config.text_config, "bos_token_id", None) is not None)
        latent = self.config.num_action_tokens
        act = self.action_token.to(words.dtype)  # (latent, D)
        n_img = images.shape[1]
        rows, masks, act_masks = [], [], []
        lengths = mask.sum(dim=1).tolist()
        t = words.shape[1]
        for i in range(n):
            length = int(lengths[i])
            cut = length - 1 if self.config.insert_action_before_eos else length
            cut = max(cut, bos)
            rows.append(torch.cat([words[i, :bos], images[i], words[i, bos:cut], act, words[i, cut:]]))  # (S, D)
            m = torch.zeros(t + n_img + latent, dtype=torch.bool, device=words.device)
            m[: length + n_img + latent] = True
            masks.append(m)
            a = torch.zeros_like(m)
            start = n_img + cut
            a[start : start + latent] = True
            act_masks.append(a)
        return torch.stack(rows), torch.stack(masks), torch.stack(act_masks)

    def context_vectors(self, pixel_values, input_ids, attention_mask=None) -> torch.Tensor:
        """(B, L, latent, D): the LM's last hidden state at the action token(s) of every frame."""
        pixel_values, attention_mask = self._check_inputs(pixel_values, input_ids, attention_mask)
        b, w = pixel_values.shape[:2]
        embeds, mask, act_mask = self.build_sequence(pixel_values, input_ids, attention_mask)
        hidden = self.adapter.run_language_model(self.backbone, embeds, mask.long())  # (N, S, D)
        return hidden[act_mask].reshape(b, w, self.config.num_action_tokens, -1)  # (B, L, latent, D)

    def _bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # From the config on every call (not buffers: from_pretrained leaves non-persistent buffers uninitialised).
        low, high = self.config.bounds()
        return like.new_tensor(low), like.new_tensor(high)

    def _to_actions(self, bounded: torch.Tensor, gripper: torch.Tensor | None) -> torch.Tensor:
        low, high = self._bounds(bounded)
        values = low + (bounded + 1.0) * 0.5 * (high - low)  # tanh [-1, 1] -> [low, high]
        if gripper is not None:
            values = torch.cat([values, torch.sigmoid(gripper)[..., None]], dim=-1)
        return values  # (B, L, chunk, A)

    def _normalise_labels(self, labels: torch.Tensor) -> torch.Tensor:
        low, high = self._bounds(labels)
        clipped = torch.maximum(torch.minimum(labels, high), low)  # RoboVLMs clips actions to [norm_min, norm_max]
        return (clipped - low) / (high - low) * 2.0 - 1.0

    def _loss(self, bounded, gripper, labels, action_mask):
        cfg = self.config
        b, w, chunk = bounded.shape[:3]
        if labels.ndim == 3 and chunk == 1:
            labels = labels[:, :, None]  # (B, L, 1, A)
        if tuple(labels.shape) != (b, w, chunk, cfg.action_dim):
            raise ValueError(f"`actions` labels must have shape ({b}, {w}, {chunk}, {cfg.action_dim}) (batch, window, "
                             f"chunk, action_dim), got {tuple(labels.shape)}")
        labels = labels.to(bounded.dtype)
        if action_mask is None:
            mask = torch.ones(b, w, chunk, dtype=torch.bool, device=bounded.device)
        else:
            mask = action_mask.bool()
            if mask.ndim == 2:
                mask = mask[:, :, None].expand(b, w, chunk)
            if tuple(mask.shape) != (b, w, chunk):
                raise ValueError(f"`action_mask` must have shape ({b}, {w}) or ({b}, {w}, {chunk}), got "
                                 f"{tuple(action_mask.shape)}")
        target = self._normalise_labels(labels[..., : cfg.num_bounded])
        fn = F.huber_loss if cfg.loss_type == "huber" else F.mse_loss
        arm = fn(bounded, target, reduction="none")[mask].mean()
        gripper_loss = None
        loss = arm
        if gripper is not None:
            g = labels[..., -1]
            if ((g != 0) & (g != 1)).any():
                raise ValueError("the gripper label (last action value) must be 0 (close) or 1 (open)")
            gripper_loss = F.binary_cross_entropy_with_logits(gripper, g, reduction="none")[mask].mean()
            loss = arm + cfg.gripper_loss_weight * gripper_loss
        return loss, arm, gripper_loss

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> RoboVLMOutput:
        """Actions for every frame of a window (the head runs over the window from an empty history).

        Args:
            pixel_values: (B, L, 3, S, S) frames (or (B, 3, S, S) for L = 1), the processor's output.
            input_ids, attention_mask: (B, T) the prompt (right-padded), shared by the L frames.
            actions (or `labels`): (B, L, chunk, action_dim) targets in dataset units (gripper 0 / 1), optional.
            action_mask: (B, L) or (B, L, chunk), True where a target exists (padded windows), optional.
        """
        targets = actions if actions is not None else labels
        ctx = self.context_vectors(pixel_values, input_ids, attention_mask)  # (B, L, latent, D)
        bounded, gripper = self.policy_head(ctx)
        out = RoboVLMOutput(actions=self._to_actions(bounded, gripper), gripper_logits=gripper, context_vectors=ctx)
        if targets is not None:
            out.loss, out.arm_loss, out.gripper_loss = self._loss(bounded, gripper, targets, action_mask)
        return out

    @torch.no_grad()
    def predict_action(self, pixel_values, input_ids, attention_mask=None) -> torch.Tensor:
        """One control step: the current frame (B, 3, S, S) (or (B, 1, 3, S, S)) -> actions (B, chunk, A), using
        and extending the head's history (`reset()` between episodes)."""
        if pixel_values.ndim == 5 and pixel_values.shape[1] != 1:
            raise ValueError(f"predict_action takes one frame per call, got a window of {pixel_values.shape[1]}")
        ctx = self.context_vectors(pixel_values, input_ids, attention_mask)  # (B, 1, latent, D)
        bounded, gripper = self.policy_head.step(ctx)
        return self._to_actions(bounded, gripper)[:, 0]


__all__ = ["RoboVLMForActionPrediction", "RoboVLMOutput", "RoboVLMPreTrainedModel"]
