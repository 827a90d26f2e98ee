"""Configuration of the frozen-VLM waypoint predictor."""

from __future__ import annotations

from transformers import PretrainedConfig

from ...errors import UserError
from ..common.config_utils import VISION_PREFIX_TOKENS, resolve_vision_config
from ..common.lora_config import normalize_lora_config

POOLING_MODES = ("mean", "cls", "attention")
LOSS_TYPES = ("mse", "l1", "huber")
UNKNOWN_INTENT_MODES = ("zeros", "error", "own_slot")
UNKNOWN_INTENT = 0  # the WOD-E2E intent enum's UNKNOWN


# HuggingFaceTB/SmolVLM-Base config.json, `vision_config` (the seed's frozen tower), values typed in so that the
# default config builds the reference tower on the meta device without the Hub; other fields are the type's defaults.
SMOLVLM_BASE_VISION_CONFIG = {
    "model_type": "idefics3_vision",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 384,
    "patch_size": 14,
}


class WaypointVLMConfig(PretrainedConfig):
    r"""Configuration of [`WaypointVLMModel`]: a (frozen) transformers vision tower, pooled, concatenated with
    the ego's past states and a one-hot driving intent, and an MLP head that regresses future waypoints.

    Defaults reproduce the reference system: SmolVLM's SigLIP tower (1152-d), mean pooling, 16 past
    states x 6 values, a 3-way intent one-hot, head 512-512, 20 waypoints x 2 (x forward, y left, metres,
    4 Hz over 5 s), MSE loss.

    Args:
        vision_config (`dict` or `PretrainedConfig`, *optional*):
            Configuration of the vision tower; any vision model type transformers builds with
            `AutoModel.from_config` (`idefics3_vision`, `smolvlm_vision`, `siglip_vision_model`,
            `clip_vision_model`, `dinov2`, ...). A dict must carry `model_type`. Defaults to the seed's tower:
            HuggingFaceTB/SmolVLM-Base's vision config (`SMOLVLM_BASE_VISION_CONFIG`: SigLIP so400m, 27 layers,
            384 px, patch 14; 412,987,248 parameters), not transformers' generic `idefics3_vision` defaults.
        pooling (`str`, *optional*, defaults to `"mean"`):
            How patch tokens become one vector per image: `"mean"` (over patch tokens), `"cls"` (class
            token; CLIP and DINOv2 towers only) or `"attention"` (a learnable query, trained with the head).
        attention_pool_heads (`int`, *optional*, defaults to 8):
            Heads of the attention pooling; must divide the vision hidden size.
        num_cameras (`int`, *optional*, defaults to 1):
            Cameras per sample. With more than one, `pixel_values` is (B, N, 3, H, W) and the pooled
            features of the N cameras are concatenated in the given order.
        num_past_states (`int`, *optional*, defaults to 16):
            Past ego states per sample (4 Hz over the last 4 s in WOD-E2E).
        past_state_dim (`int`, *optional*, defaults to 6):
            Values per past state: pos x, y; vel x, y; accel x, y.
        num_intents (`int`, *optional*, defaults to 3):
            Size of the intent one-hot. The reference used 3 (GO_STRAIGHT, GO_LEFT, GO_RIGHT).
        intent_offset (`int`, *optional*, defaults to 1):
            Subtracted from the raw intent value before the one-hot. With the Waymo enum (UNKNOWN=0,
            GO_STRAIGHT=1, GO_LEFT=2, GO_RIGHT=3) the default maps GO_STRAIGHT..GO_RIGHT to 0..2; use
            `num_intents=4, intent_offset=0` to keep UNKNOWN as its own class.
        unknown_intent (`str`, *optional*, defaults to `"zeros"`):
            What the intent UNKNOWN (raw value 0, WOD-E2E's `UNKNOWN`) becomes when it is outside the
            one-hot range [intent_offset, intent_offset + num_intents - 1] (as with the defaults):
            `"zeros"` (default): an all-zero intent one-hot (no intent information; the head input width
            and the outputs for the other intents are unchanged, so every saved model takes it);
            `"error"`: reject it, as before this option existed; `"own_slot"`: one extra one-hot slot
            (index num_intents) for UNKNOWN, so the head input grows by one (a new model; needs
            intent_offset >= 1). With 0 inside the range (e.g. `intent_offset=0`) it is a regular class
            and this option has no effect. Other out-of-range values always raise.
        head_hidden_sizes (`list[int]`, *optional*, defaults to `[512, 512]`):
            Widths of the head's hidden layers (each Linear -> LayerNorm -> GELU -> Dropout).
        head_dropout (`float`, *optional*, defaults to 0.1):
            Dropout after each hidden layer of the head.
        num_waypoints (`int`, *optional*, defaults to 20):
            Future waypoints predicted (4 Hz over 5 s).
        waypoint_dim (`int`, *optional*, defaults to 2):
            Values per waypoint (x forward, y left).
        past_state_scale (`float`, *optional*, defaults to 1.0):
            Past states are divided by this before the head (a fixed input normalisation).
        waypoint_scale (`float`, *optional*, defaults to 1.0):
            The head's output is multiplied by this to give metres (a fixed output normalisation).
        loss_type (`str`, *optional*, defaults to `"mse"`):
            `"mse"`, `"l1"` or `"huber"`.
        huber_delta (`float`, *optional*, defaults to 1.0):
            Delta of the Huber loss, in metres.
        freeze_vision (`bool`, *optional*, defaults to `True`):
            Keep the vision tower frozen: no gradients and always in eval mode.
        vision_bf16 (`bool`, *optional*, defaults to `True`):
            Run a frozen tower under bf16 autocast when it is on a CUDA device (no effect on CPU).
        backbone_name_or_path (`str`, *optional*):
            Where the tower's pretrained weights came from (informational; recorded by `from_backbone`).
        lora (`dict` or `int`, *optional*):
            LoRA adapters (PEFT) on the vision tower: the reference's second training stage, instead of a fully
            frozen tower. `None` (default) means no LoRA; an int is a rank. A dict holds `r` (rank, a positive
            int; the reference used 8, 16 and 32), `lora_alpha` (defaults to `2 * r`), `lora_dropout`
            (defaults to 0.05, in [0, 1)), `target_modules` (module-name suffixes; defaults to the tower's
            attention projections: `q_proj`, `k_proj`, `v_proj` and `out_proj`, or `o_proj` for DINOv2) and
            `bias` (`"none"`). Stored normalised, every key filled in. The tower's own weights stay frozen
            (so `freeze_vision` must be True) and only the adapters train with the head; see
            `WaypointVLMModel.enable_vision_lora` / `merge_vision_lora`.
    """

    model_type = "waypoint_vlm"
    sub_configs = {"vision_config": PretrainedConfig}

    def __init__(
        self,
        vision_config: dict | PretrainedConfig | None = None,
        pooling: str = "mean",
        attention_pool_heads: int = 8,
        num_cameras: int = 1,
        num_past_states: int = 16,
        past_state_dim: int = 6,
        num_intents: int = 3,
        intent_offset: int = 1,
        unknown_intent: str = "zeros",
        head_hidden_sizes: list[int] | None = None,
        head_dropout: float = 0.1,
        num_waypoints: int = 20,
        waypoint_dim: int = 2,
        past_state_scale: float = 1.0,
        waypoint_scale: float = 1.0,
        loss_type: str = "mse",
        huber_delta: float = 1.0,
        freeze_vision: bool = True,
        vision_bf16: bool = True,
        backbone_name_or_path: str | None = None,
        lora: dict | int | None = None,
        **kwargs,
    ):
        if vision_config is None:
            vision_config = dict(SMOLVLM_BASE_VISION_CONFIG)
        self.vision_config = resolve_vision_config(vision_config, default_type="idefics3_vision")
        self.pooling = pooling
        self.attention_pool_heads = attention_pool_heads
        self.num_cameras = num_cameras
        self.num_past_states = num_past_states
        self.past_state_dim = past_state_dim
        self.num_intents = num_intents
        self.intent_offset = intent_offset
        self.unknown_intent = unknown_intent
        self.head_hidden_sizes = list(head_hidden_sizes) if head_hidden_sizes is not None else [512, 512]
        self.head_dropout = head_dropout
        self.num_waypoints = num_waypoints
        self.waypoint_dim = waypoint_dim
        self.past_state_scale = past_state_scale
        self.waypoint_scale = waypoint_scale
        self.loss_type = loss_type
        self.huber_delta = huber_delta
        self.freeze_vision = freeze_vision
        self.vision_bf16 = vision_bf16
        self.backbone_name_or_path = backbone_name_or_path
        self.lora = normalize_lora_config(
            lora, self.vision_config.model_type, field="WaypointVLMConfig.lora"
        )
        super().__init__(**kwargs)
        self._validate()

    @property
    def vision_hidden_size(self) -> int:
        """Width of one pooled image feature."""
        return self.vision_config.hidden_size

    @property
    def image_size(self) -> int:
        """Side of the square images the tower takes."""
        size = self.vision_config.image_size
        return size if isinstance(size, int) else size[0]

    @property
    def num_prefix_tokens(self) -> int:
        """Non-patch tokens (e.g. CLS) at the start of the tower's output."""
        return VISION_PREFIX_TOKENS.get(self.vision_config.model_type, 0)

    @property
    def unknown_intent_in_range(self) -> bool:
        """Whether the raw value UNKNOWN (0) is a regular one-hot class (inside the intent range)."""
        return self.intent_offset <= UNKNOWN_INTENT <= self.intent_offset + self.num_intents - 1

    @property
    def intent_onehot_size(self) -> int:
        """Width of the intent one-hot: num_intents, plus one with `unknown_intent="own_slot"`."""
        extra = self.unknown_intent == "own_slot" and not self.unknown_intent_in_range
        return self.num_intents + int(extra)

    @property
    def head_input_size(self) -> int:
        """Width of [pooled features of every camera, flattened past states, intent one-hot]."""
        return (self.num_cameras * self.vision_hidden_size + self.num_past_states * self.past_state_dim
                + self.intent_onehot_size)

    def _validate(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"WaypointVLMConfig.{name} must be a positive integer, got {value!r}")

        for name in ("num_cameras", "num_past_states", "past_state_dim", "num_intents", "num_waypoints", "waypoint_dim"):
            positive(name)
        if self.pooling not in POOLING_MODES:
            raise UserError(f"WaypointVLMConfig.pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        if self.pooling == "cls" and self.num_prefix_tokens < 1:
            with_cls = sorted(k for k, v in VISION_PREFIX_TOKENS.items() if v)
            raise UserError(
                f"WaypointVLMConfig.pooling='cls' needs a vision tower with a class token ({with_cls}); "
                f"vision_config.model_type is {self.vision_config.model_type!r}: use 'mean' or 'attention'"
            )
        if self.pooling == "attention" and self.vision_hidden_size % self.attention_pool_heads:
            raise UserError(
                f"WaypointVLMConfig.attention_pool_heads={self.attention_pool_heads} must divide the vision "
                f"hidden size {self.vision_hidden_size}"
            )
        if self.unknown_intent not in UNKNOWN_INTENT_MODES:
            raise UserError(
                f"WaypointVLMConfig.unknown_intent must be one of {UNKNOWN_INTENT_MODES}, got {self.unknown_intent!r}"
            )
        if self.unknown_intent == "own_slot" and self.unknown_intent_in_range:
            raise UserError(
                "WaypointVLMConfig.unknown_intent='own_slot' needs UNKNOWN (0) outside the intent range "
                f"(intent_offset >= 1), got intent_offset={self.intent_offset}: 0 is already a class"
            )
        if self.loss_type not in LOSS_TYPES:
            raise UserError(f"WaypointVLMConfig.loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise UserError(f"WaypointVLMConfig.head_dropout must be in [0, 1), got {self.head_dropout!r}")
        if not self.head_hidden_sizes or any(int(h) < 1 for h in self.head_hidden_sizes):
            raise UserError(
                f"WaypointVLMConfig.head_hidden_sizes must be a non-empty list of positive widths, "
                f"got {self.head_hidden_sizes!r}"
            )
        for name in ("past_state_scale", "waypoint_scale", "huber_delta"):
            if not getattr(self, name) > 0:
                raise UserError(f"WaypointVLMConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.lora is not None and not self.freeze_vision:
            raise UserError(
                "WaypointVLMConfig.lora trains adapters on a frozen vision tower, so freeze_vision must be True "
                f"(got freeze_vision=False with lora={self.lora}); use either LoRA or full fine-tuning"
            )


__all__ = ["SMOLVLM_BASE_VISION_CONFIG", "WaypointVLMConfig"]
