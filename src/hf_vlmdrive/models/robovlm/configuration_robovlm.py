"""Configuration of the RoboVLM policy (SPEC 1.4): a VLM backbone + learnable action token + policy head.

Light module: no torch layers, no modeling imports (it is imported by `import hf_vlmdrive`).
"""

from __future__ import annotations

import numbers

from transformers import PretrainedConfig

from ...errors import UserError
from ..common.config_utils import resolve_vision_config

HEAD_TYPES = ("lstm", "mlp", "gpt")
LOSS_TYPES = ("huber", "mse")
# Backbone model types with an adapter in `models/robovlm/adapters.py` (one small class per backbone).
SUPPORTED_BACKBONES = ("kosmos-2",)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UserError(f"RoboVLMConfig.{name} must be a positive integer, got {value!r}")
    return int(value)


class RoboVLMConfig(PretrainedConfig):
    r"""Configuration of [`RoboVLMForActionPrediction`], following RoboVLMs' `BaseRoboVLM` + policy heads.

    ```
    per frame t of the window:  [<s>] [image tokens] [prompt tokens] [ACTION] [</s>]  -> backbone LM
                                context vector c_t = last hidden state at [ACTION]        (B, L, latent, D)
    policy head over c_1..c_L (lstm | mlp | gpt)  -> tanh-bounded arm / velocity (+ gripper logit)
    ```

    Args:
        backbone_config (`dict` or `PretrainedConfig`, *optional*):
            The VLM's config; `model_type` must be one of `SUPPORTED_BACKBONES` (`"kosmos-2"`). Defaults to
            transformers' Kosmos-2 defaults (the 1.6 B `microsoft/kosmos-2-patch14-224`, hidden 2048).
        backbone_name_or_path (`str`, *optional*):
            Where the backbone weights came from (informational; set by `from_backbone`).
        num_action_tokens (`int`, *optional*, defaults to 1):
            Learnable action tokens appended per frame (RoboVLMs' `latent`).
        insert_action_before_eos (`bool`, *optional*, defaults to `True`):
            Put the action token(s) before each sequence's final `</s>` (RoboVLMs inserts "at last" minus the
            eos offset); `False` appends them after it.
        head_type (`str`, *optional*, defaults to `"lstm"`):
            `"lstm"` (RoboVLMs `LSTMDecoder`), `"mlp"` (`FCDecoder`, no history) or `"gpt"` (`GPTDecoder`).
        head_hidden_size (`int`, *optional*, defaults to 1024):
            Width of the LSTM / GPT head (RoboVLMs: 1024).
        head_num_layers (`int`, *optional*, defaults to 4):
            LSTM layers (RoboVLMs: 4).
        head_dropout (`float`, *optional*, defaults to 0.0):
            Dropout between LSTM layers (`policy_rnn_dropout_p`) and inside the GPT head.
        gpt_num_layers (`int`, *optional*, defaults to 8):
            Layers of the GPT head (RoboVLMs' `get_gpt_model`: 8).
        gpt_num_heads (`int`, *optional*, defaults to 8):
            Attention heads of the GPT head; must divide `head_hidden_size`.
        head_mlp_sizes (`list[int]`, *optional*, defaults to `[1024, 512, 256]`):
            Hidden widths of the action / gripper MLPs on top of the head (RoboVLMs' `MLPTanhHead`).
        window_size (`int`, *optional*, defaults to 8):
            History window L: frames per training sample and frames the head remembers at inference.
        action_chunk_size (`int`, *optional*, defaults to 1):
            Actions predicted per frame (RoboVLMs' `fwd_pred_next_n`).
        action_dim (`int`, *optional*, defaults to 2):
            Values per action, gripper included: 2 for a mobile robot (linear_x, angular_z), 7 for an arm
            (6-DoF + gripper, with `use_gripper=True`).
        use_gripper (`bool`, *optional*, defaults to `False`):
            The last action value is a gripper open/close logit (sigmoid, BCE loss) instead of a bounded value.
        action_low (`float` or `list[float]`, *optional*, defaults to -1.0):
            Lower bound of each bounded action value (tanh is mapped to [action_low, action_high]).
        action_high (`float` or `list[float]`, *optional*, defaults to 1.0):
            Upper bound of each bounded action value.
        loss_type (`str`, *optional*, defaults to `"huber"`):
            Loss on the bounded values, computed in the normalised [-1, 1] space: `"huber"` (RoboVLMs) or `"mse"`.
        gripper_loss_weight (`float`, *optional*, defaults to 0.01):
            Weight of the gripper BCE (RoboVLMs' `arm_gripper_loss_ratio`).
        freeze_backbone (`bool`, *optional*, defaults to `False`):
            Freeze the whole VLM (RoboVLMs' `freeze_backbone`); the action token and head still train.
        freeze_vision (`bool`, *optional*, defaults to `False`):
            Freeze the vision tower and its projection only (RoboVLMs' `train_vision: false`).
        lora (`dict` or `int`, *optional*):
            LoRA adapters on the backbone's language model (e.g. `{"r": 16}`); the backbone is then frozen except
            the adapters (see `models/common/lora.py`).
    """

    model_type = "robovlm"
    sub_configs = {"backbone_config": PretrainedConfig}

    def __init__(
        self,
        backbone_config: dict | PretrainedConfig | None = None,
        backbone_name_or_path: str | None = None,
        num_action_tokens: int = 1,
        insert_action_before_eos: bool = True,
        head_type: str = "lstm",
        head_hidden_size: int = 1024,
        head_num_layers: int = 4,
        head_dropout: float = 0.0,
        gpt_num_layers: int = 8,
        gpt_num_heads: int = 8,
        head_mlp_sizes: list[int] | None = None,
        window_size: int = 8,
        action_chunk_size: int = 1,
        action_dim: int = 2,
        use_gripper: bool = False,
        action_low: float | list[float] = -1.0,
        action_high: float | list[float] = 1.0,
        loss_type: str = "huber",
        gripper_loss_weight: float = 0.01,
        freeze_backbone: bool = False,
        freeze_vision: bool = False,
        lora: dict | int | None = None,
        **kwargs,
    ):
        self.backbone_config = resolve_vision_config(backbone_config, default_type="kosmos-2", field="backbone_config")
        self.backbone_name_or_path = backbone_name_or_path
        self.num_action_tokens = num_action_tokens
        self.insert_action_before_eos = bool(insert_action_before_eos)
        self.head_type = head_type
        self.head_hidden_size = head_hidden_size
        self.head_num_layers = head_num_layers
        self.head_dropout = head_dropout
        self.gpt_num_layers = gpt_num_layers
        self.gpt_num_heads = gpt_num_heads
        self.head_mlp_sizes = list(head_mlp_sizes) if head_mlp_sizes is not None else [1024, 512, 256]
        self.window_size = window_size
        self.action_chunk_size = action_chunk_size
        self.action_dim = action_dim
        self.use_gripper = bool(use_gripper)
        self.action_low = action_low
        self.action_high = action_high
        self.loss_type = loss_type
        self.gripper_loss_weight = gripper_loss_weight
        self.freeze_backbone = bool(freeze_backbone)
        self.freeze_vision = bool(freeze_vision)
        self.lora = lora
        super().__init__(**kwargs)
        self._validate()

    # ------------------------------------------------------------------ derived
    @property
    def hidden_size(self) -> int:
        """D, the width of the context vector (the backbone LM's hidden size; 2048 for Kosmos-2)."""
        from .adapters import adapter_for  # light: the adapters module imports no torch layers at import time

        return adapter_for(self.backbone_config.model_type).hidden_size(self.backbone_config)

    @property
    def num_bounded(self) -> int:
        """Bounded (tanh) values per action: `action_dim - 1` with a gripper, else `action_dim`."""
        return self.action_dim - 1 if self.use_gripper else self.action_dim

    def bounds(self) -> tuple[list[float], list[float]]:
        """(low, high) per bounded action value."""
        return _broadcast("action_low", self.action_low, self.num_bounded), _broadcast(
            "action_high", self.action_high, self.num_bounded
        )

    def _validate(self) -> None:
        mt = self.backbone_config.model_type
        if mt not in SUPPORTED_BACKBONES:
            raise UserError(
                f"RoboVLMConfig.backbone_config.model_type must be one of {SUPPORTED_BACKBONES} (one adapter per "
                f"backbone, see models/robovlm/adapters.py), got {mt!r}"
            )
        for name in ("num_action_tokens", "head_hidden_size", "head_num_layers", "gpt_num_layers", "gpt_num_heads",
                     "window_size", "action_chunk_size", "action_dim"):
            setattr(self, name, _positive_int(name, getattr(self, name)))
        if self.head_type not in HEAD_TYPES:
            raise UserError(f"RoboVLMConfig.head_type must be one of {HEAD_TYPES}, got {self.head_type!r}")
        if self.loss_type not in LOSS_TYPES:
            raise UserError(f"RoboVLMConfig.loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if isinstance(self.head_dropout, bool) or not isinstance(self.head_dropout, numbers.Real) or not (
            0.0 <= self.head_dropout < 1.0
        ):
            raise UserError(f"RoboVLMConfig.head_dropout must be in [0, 1), got {self.head_dropout!r}")
        if self.head_type == "gpt" and self.head_hidden_size % self.gpt_num_heads:
            raise UserError(
                f"RoboVLMConfig.gpt_num_heads={self.gpt_num_heads} must divide head_hidden_size={self.head_hidden_size}"
            )
        if not self.head_mlp_sizes or not all(
            isinstance(h, numbers.Integral) and not isinstance(h, bool) and h > 0 for h in self.head_mlp_sizes
        ):
            raise UserError(f"RoboVLMConfig.head_mlp_sizes must be a non-empty list of positive ints, got "
                            f"{self.head_mlp_sizes!r}")
        if self.use_gripper and self.action_dim < 2:
            raise UserError(f"RoboVLMConfig.action_dim must be >= 2 with use_gripper=True, got {self.action_dim!r}")
        low, high = self.bounds()
        bad = [i for i, (lo, hi) in enumerate(zip(low, high)) if not lo < hi]
        if bad:
            raise UserError(f"RoboVLMConfig.action_low must be < action_high for every value; not for index {bad}: "
                            f"action_low={self.action_low!r}, action_high={self.action_high!r}")
        if not isinstance(self.gripper_loss_weight, numbers.Real) or self.gripper_loss_weight < 0:
            raise UserError(f"RoboVLMConfig.gripper_loss_weight must be >= 0, got {self.gripper_loss_weight!r}")
        if self.lora is not None:
            from ..common.lora_config import normalize_lora_config

            # LoRA trains adapters on a frozen backbone: freezing is implied.
            self.freeze_backbone = True
            self.lora = normalize_lora_config(self.lora, mt, field="RoboVLMConfig.lora")


def _broadcast(name: str, value, n: int) -> list[float]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return [float(value)] * n
    if isinstance(value, (list, tuple)) and len(value) == n and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value
    ):
        return [float(v) for v in value]
    raise UserError(f"RoboVLMConfig.{name} must be a number or a list of {n} numbers (one per bounded action "
                    f"value), got {value!r}")


__all__ = ["HEAD_TYPES", "LOSS_TYPES", "RoboVLMConfig", "SUPPORTED_BACKBONES"]
