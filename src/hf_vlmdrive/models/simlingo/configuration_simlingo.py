"""Configuration of the SimLingo-base driving transformer (SPEC 1.2)."""

from __future__ import annotations

from transformers import PretrainedConfig

from ...errors import UserError, UserTypeError
from ..common.config_utils import VISION_PREFIX_TOKENS, resolve_vision_config

SPEED_WPS_MODES = ("2d", "1d")
INIT_STYLES = ("torch_default", "normal")
ROUTE_INPUTS = ("target_point", "coords", "image")

# Named sizes of the language model. "tiny" is the reference SimLingo-base LM (~50 M parameters without
# token embeddings). `vocab_size=1`: the LM is fed `inputs_embeds` only and its token embedding is
# removed after construction, so the vocabulary size never costs memory.
LM_PRESETS: dict[str, dict] = {
    "tiny": {"num_hidden_layers": 12, "num_attention_heads": 8, "num_key_value_heads": 8, "hidden_size": 512,
             "intermediate_size": 2048},
    "small": {"num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 12, "hidden_size": 768,
              "intermediate_size": 3072},
    "micro": {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "hidden_size": 64,
              "intermediate_size": 128},
}

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def lm_preset(name: str, **overrides) -> dict:
    """The `text_config` dict of a named language-model size (`"tiny"`, `"small"`, `"micro"`)."""
    if name not in LM_PRESETS:
        raise UserError(f"unknown language-model preset {name!r}; choose one of {sorted(LM_PRESETS)}")
    return {"model_type": "llama", "vocab_size": 1, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
            "max_position_embeddings": 2048, **LM_PRESETS[name], **overrides}


def _resolve_text_config(text_config: dict | PretrainedConfig | None) -> PretrainedConfig:
    if text_config is None:
        text_config = lm_preset("tiny")
    if isinstance(text_config, PretrainedConfig):
        return text_config
    if not isinstance(text_config, dict):
        raise UserTypeError(f"text_config must be a dict or a LlamaConfig, got {type(text_config).__name__}")
    kwargs = dict(text_config)
    model_type = kwargs.pop("model_type", "llama")
    if model_type != "llama":
        raise UserError(f"SimLingoConfig.text_config.model_type must be 'llama', got {model_type!r}")
    kwargs.setdefault("vocab_size", 1)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # no tokens: no special token ids
        kwargs.setdefault(key, None)
    # Imported here: `transformers.LlamaConfig` pulls in torchvision and torch._dynamo (~1.5 s), which
    # `import hf_vlmdrive` (configs only) must not pay.
    from transformers import LlamaConfig

    return LlamaConfig(**kwargs)


class SimLingoConfig(PretrainedConfig):
    r"""Configuration of [`SimLingoForWaypointPrediction`]: SimLingo "base" (no language), a vision tower
    (LLaVA-NeXT's CLIP tower in the reference) whose tiled, downsampled patch features are projected into a
    small Llama together with speed and route tokens, followed by learnable queries whose outputs are
    decoded into speed waypoints and a route.

    Args:
        vision_config (`dict` or `PretrainedConfig`, *optional*):
            Vision tower; any CLIP / SigLIP vision config (a dict must carry `model_type`). Defaults to
            LLaVA-NeXT's tower (`clip_vision_model`, 336 px, patch 14, 1024 wide, 24 layers).
        text_config (`dict` or `LlamaConfig`, *optional*):
            The Llama language model. Defaults to the "tiny" preset (12 layers, 8 heads, hidden 512,
            intermediate 2048). Its `vocab_size` is irrelevant: token embeddings are not built.
        image_grid_pinpoint (`list[int]`, *optional*):
            `[height, width]` every camera image is resized to before being cut into square tiles of the
            tower's image size (LLaVA-NeXT "anyres" with one grid pinpoint). Defaults to
            `[S, 2S]` with S the tower's image size (`[336, 672]` for the reference: two tiles side by
            side, matching the 1024x512 camera's 2:1 aspect).
        vision_adapter (`str`, *optional*, defaults to `"llava_next"`):
            How the tower's patch features become tokens. `"llava_next"` (the released simlingo_base,
            models/encoder/llavanext_model.py:87-148 and llavanext.py:30): LLaVA-NeXT's
            `multi_modal_projector` (Linear(D, P) -> GELU -> Linear(P, P), kept from the checkpoint by
            [`~SimLingoForWaypointPrediction.from_backbone`]), the tiles merged and `unpad_image`d to the
            frame's aspect ratio, average-pooled by `feature_downsample`, one `image_newline` token appended
            per row, then `Linear(P, hidden)` with bias; frames are resized keeping their aspect ratio
            (bicubic) and zero-padded to `image_grid_pinpoint` (LLaVA-NeXT's anyres, the global tile
            dropped). `"linear"` (SPEC 1.2's variant): the frame is stretched to the pinpoint and the
            pooled features go through `Linear(D, hidden, bias=False)`, no newline tokens.
        projector_hidden_size (`int`, *optional*, defaults to 4096):
            P, the width of LLaVA-NeXT's projector output (its language model's hidden size: 4096 for
            llava-v1.6-mistral-7b); `vision_adapter="llava_next"` only.
        projector_hidden_act (`str`, *optional*, defaults to `"gelu"`): the projector's activation.
        crop_bottom_sixteenths (`float`, *optional*, defaults to 4.8):
            Rows cut from the bottom of every frame before anything else: `int(H - (H * c) // 16)` rows are
            kept (the released dataset_base.py:375-378 with img_shift_augmentation; 0: keep the frame).
        camera_image_size (`list[int]`, *optional*, defaults to `[1024, 512]`):
            (width, height) of the camera frames `tokens_per_image` is reported for (1024x512 -> 200
            tokens with the reference settings); any frame size is accepted.
        vision_feature_layer (`int`, *optional*, defaults to -2):
            Hidden-state layer of the tower whose patch tokens are used (LLaVA's choice: the penultimate).
        feature_downsample (`int`, *optional*, defaults to 2):
            Average-pooling factor applied to each tile's patch-feature grid (24x24 -> 12x12 in the
            reference). Must divide the tile's grid side.
        image_mean (`list[float]`, *optional*): per-channel mean used to normalise uint8 images inside the
            model. Defaults to CLIP's.
        image_std (`list[float]`, *optional*): per-channel std. Defaults to CLIP's.
        num_cameras (`int`, *optional*, defaults to 1):
            Most cameras per sample N (size of the learnable camera embedding).
        num_frames (`int`, *optional*, defaults to 1):
            Most frames per sample T (size of the learnable temporal embedding).
        num_speed_inputs (`int`, *optional*, defaults to 1):
            Values S in the `speed` input (B, S); each becomes one token.
        max_speed (`float`, *optional*, defaults to 17.7778):
            Speeds are normalised to [0, 1] over (0, max_speed) m/s (64 km/h in the reference).
        route_as (`str`, *optional*, defaults to `"target_point"`):
            Route input: `"target_point"` (B, 2), `"coords"` (B, K, 2) ego-frame points (e.g. the target
            point and the next one), each through the same MLP, or `"image"` (a BEV route image
            (B, 3, RH, RW) uint8 through a ResNet18).
        num_target_points (`int`, *optional*, defaults to 2):
            Tokens of `route_as="target_point"`: 2 (the released simlingo_base: `target_point` and
            `target_point_next`, each through the same MLP) or 1 (SPEC 1.2's variant: `target_point` only).
        route_image_tokens (`str`, *optional*, defaults to `"pooled"`):
            `route_as="image"`: `"pooled"` (the released simlingo_base: the whole ResNet18 with
            `fc -> Linear(512, hidden)`, one token) or `"grid"` (SPEC 1.2's variant: one token per cell of
            the last feature map).
        route_image_weights (`str`, *optional*, defaults to `"imagenet"`):
            Initial ResNet18 weights of `route_as="image"`: `"imagenet"` (torchvision's IMAGENET1K_V1, as
            the reference; from torch hub's cache, downloaded unless offline; unreachable -> random init with
            a warning), a local state-dict file of torchvision's resnet18, or `None` (random init). The
            model's `route_encoder.weights_source` says which was used.
        num_route_coords (`int`, *optional*, defaults to 2):
            K, the number of route coordinates with `route_as="coords"`.
        coord_range (`float`, *optional*, defaults to 32.0):
            Target points / route coordinates are normalised to [0, 1] over (-coord_range, coord_range) m.
        encoder_hidden_size (`int`, *optional*, defaults to 256):
            Width of the speed / route MLP encoders (Linear(d, 256) -> ReLU -> Linear(256, hidden)).
        num_speed_wps (`int`, *optional*, defaults to 10):
            Speed-waypoint queries (future ego positions, one per 4 Hz frame: 2.5 s).
        num_route_points (`int`, *optional*, defaults to 20):
            Route queries (equally spaced points along the path).
        speed_wps_mode (`str`, *optional*, defaults to `"2d"`):
            `"2d"`: the speed head predicts (dx, dy) per query; `"1d"`: it predicts the distance travelled
            per step (cumulative distance along the path), and the 2-D speed waypoints are obtained by
            placing those distances on the predicted route.
        head_hidden_size (`int`, *optional*, defaults to 256):
            `mlp` of the heads: speed Linear(hidden, mlp) -> SiLU -> Linear(mlp, 2|1); route see
            `route_head_layers`.
        route_head_layers (`int`, *optional*, defaults to 2):
            2 (the released simlingo_base): Linear(hidden, mlp) -> SiLU -> Linear(mlp, 2), like the speed
            head; 3 (SPEC 1.2's variant): Linear(hidden, 2*mlp) -> SiLU -> Linear(2*mlp, mlp) -> SiLU ->
            Linear(mlp, 2).
        head_bias (`bool`, *optional*, defaults to `False`):
            Bias on the last Linear of both heads (the released code has none; SPEC's variant: `True`).
        init_style (`str`, *optional*, defaults to `"torch_default"`):
            Initialisation of the speed / route encoders, the heads and the vision projection:
            `"torch_default"` keeps PyTorch's constructor init (the released code); `"normal"` draws
            weights from normal(0, text_config.initializer_range) with zero biases (SPEC's variant).
            Learnable queries / embeddings are 0.02 * randn either way.
        speed_wps_loss_weight (`float`, *optional*, defaults to 1.0): weight of the speed-waypoint loss.
        route_loss_weight (`float`, *optional*, defaults to 1.0): weight of the route loss.
        freeze_vision (`bool`, *optional*, defaults to `False`):
            Freeze the vision tower (the reference trains it with its own, smaller learning rate).
        backbone_name_or_path (`str`, *optional*): where the tower's weights came from (informational).
    """

    model_type = "simlingo"
    sub_configs = {"vision_config": PretrainedConfig, "text_config": PretrainedConfig}  # a LlamaConfig

    def __init__(
        self,
        vision_config: dict | PretrainedConfig | None = None,
        text_config: dict | PretrainedConfig | None = None,
        image_grid_pinpoint: list[int] | None = None,
        vision_feature_layer: int = -2,
        vision_adapter: str = "llava_next",
        projector_hidden_size: int = 4096,
        projector_hidden_act: str = "gelu",
        crop_bottom_sixteenths: float = 4.8,
        camera_image_size: list[int] | None = None,
        feature_downsample: int = 2,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        num_cameras: int = 1,
        num_frames: int = 1,
        num_speed_inputs: int = 1,
        max_speed: float = 64.0 / 3.6,
        route_as: str = "target_point",
        num_target_points: int = 2,
        route_image_tokens: str = "pooled",
        route_image_weights: str | None = "imagenet",
        num_route_coords: int = 2,
        coord_range: float = 32.0,
        encoder_hidden_size: int = 256,
        num_speed_wps: int = 10,
        num_route_points: int = 20,
        speed_wps_mode: str = "2d",
        head_hidden_size: int = 256,
        route_head_layers: int = 2,
        head_bias: bool = False,
        init_style: str = "torch_default",
        speed_wps_loss_weight: float = 1.0,
        route_loss_weight: float = 1.0,
        freeze_vision: bool = False,
        backbone_name_or_path: str | None = None,
        **kwargs,
    ):
        if vision_config is None:
            vision_config = {
                "model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
                "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
                "projection_dim": 768,
            }
        self.vision_config = resolve_vision_config(vision_config, default_type="clip_vision_model")
        self.text_config = _resolve_text_config(text_config)
        size = self.tile_size
        self.image_grid_pinpoint = list(image_grid_pinpoint) if image_grid_pinpoint is not None else [size, 2 * size]
        self.vision_feature_layer = vision_feature_layer
        self.vision_adapter = vision_adapter
        self.projector_hidden_size = projector_hidden_size
        self.projector_hidden_act = projector_hidden_act
        self.crop_bottom_sixteenths = crop_bottom_sixteenths
        self.camera_image_size = list(camera_image_size) if camera_image_size is not None else [1024, 512]
        self.feature_downsample = feature_downsample
        self.image_mean = list(image_mean) if image_mean is not None else list(CLIP_MEAN)
        self.image_std = list(image_std) if image_std is not None else list(CLIP_STD)
        self.num_cameras = num_cameras
        self.num_frames = num_frames
        self.num_speed_inputs = num_speed_inputs
        self.max_speed = max_speed
        self.route_as = route_as
        self.num_target_points = num_target_points
        self.route_image_tokens = route_image_tokens
        self.route_image_weights = route_image_weights
        self.num_route_coords = num_route_coords
        self.coord_range = coord_range
        self.encoder_hidden_size = encoder_hidden_size
        self.num_speed_wps = num_speed_wps
        self.num_route_points = num_route_points
        self.speed_wps_mode = speed_wps_mode
        self.head_hidden_size = head_hidden_size
        self.route_head_layers = route_head_layers
        self.head_bias = head_bias
        self.init_style = init_style
        self.speed_wps_loss_weight = speed_wps_loss_weight
        self.route_loss_weight = route_loss_weight
        self.freeze_vision = freeze_vision
        self.backbone_name_or_path = backbone_name_or_path
        super().__init__(**kwargs)
        self._validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def hidden_size(self) -> int:
        """Width of the language model (every token is projected to it)."""
        return self.text_config.hidden_size

    @property
    def tile_size(self) -> int:
        """Side of the square tiles the vision tower takes."""
        size = self.vision_config.image_size
        return size if isinstance(size, int) else size[0]

    @property
    def tile_grid(self) -> tuple[int, int]:
        """(rows, cols) of tiles per camera image."""
        return self.image_grid_pinpoint[0] // self.tile_size, self.image_grid_pinpoint[1] // self.tile_size

    @property
    def tokens_per_image(self) -> int:
        """Vision tokens per camera frame of `camera_image_size` (200 for 1024x512 with the reference)."""
        width, height = self.camera_image_size
        return self.tokens_for_image(height, width)

    def cropped_height(self, height: int) -> int:
        """Rows kept of a frame `height` rows high (the reference's bottom cut)."""
        return int(height - (height * self.crop_bottom_sixteenths) // 16)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """LLaVA-NeXT's `get_patch_output_size`: the (cropped) frame resized into the pinpoint keeping its
        aspect ratio."""
        import math

        target_h, target_w = self.image_grid_pinpoint
        scale_w, scale_h = target_w / width, target_h / height
        if scale_w < scale_h:
            return min(math.ceil(height * scale_w), target_h), target_w
        return target_h, min(math.ceil(width * scale_h), target_w)

    def feature_grid(self, height: int, width: int) -> tuple[int, int]:
        """(rows, cols) of the pooled feature grid of a (cropped) frame, before newline tokens."""
        rows, cols = self.tile_grid
        g = self.tile_size // self.vision_config.patch_size
        cur_h, cur_w = rows * g, cols * g
        if self.vision_adapter == "llava_next":  # transformers' unpad_image
            if width / height > cur_w / cur_h:
                new_h = int(round(height * (cur_w / width), 7))
                pad = (cur_h - new_h) // 2
                cur_h = cur_h - 2 * pad
            else:
                new_w = int(round(width * (cur_h / height), 7))
                pad = (cur_w - new_w) // 2
                cur_w = cur_w - 2 * pad
        return cur_h // self.feature_downsample, cur_w // self.feature_downsample

    def tokens_for_image(self, height: int, width: int) -> int:
        """Vision tokens of one camera frame `height` x `width` (as given to the model, before the crop)."""
        if self.vision_adapter == "linear":
            rows, cols = self.tile_grid
            side = self.tile_size // self.vision_config.patch_size // self.feature_downsample
            return rows * cols * side * side
        r, c = self.feature_grid(self.cropped_height(height), width)
        return r * (c + 1)

    @property
    def num_prefix_tokens(self) -> int:
        """Non-patch tokens (CLS) at the start of the tower's output."""
        return VISION_PREFIX_TOKENS.get(self.vision_config.model_type, 0)

    def _validate(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"SimLingoConfig.{name} must be a positive integer, got {value!r}")

        for name in ("feature_downsample", "num_cameras", "num_frames", "num_speed_inputs", "num_route_coords",
                     "encoder_hidden_size", "num_speed_wps", "num_route_points", "head_hidden_size",
                     "projector_hidden_size"):
            positive(name)
        if self.speed_wps_mode not in SPEED_WPS_MODES:
            raise UserError(f"SimLingoConfig.speed_wps_mode must be one of {SPEED_WPS_MODES}, got {self.speed_wps_mode!r}")
        if self.vision_adapter not in ("llava_next", "linear"):
            raise UserError(f"SimLingoConfig.vision_adapter must be 'llava_next' or 'linear', got {self.vision_adapter!r}")
        if not 0 <= self.crop_bottom_sixteenths < 16:
            raise UserError(f"SimLingoConfig.crop_bottom_sixteenths must be in [0, 16), got {self.crop_bottom_sixteenths!r}")
        if self.route_image_tokens not in ("pooled", "grid"):
            raise UserError(f"SimLingoConfig.route_image_tokens must be 'pooled' or 'grid', got {self.route_image_tokens!r}")
        if self.num_target_points not in (1, 2):
            raise UserError(f"SimLingoConfig.num_target_points must be 1 or 2, got {self.num_target_points!r}")
        if self.route_head_layers not in (2, 3):
            raise UserError(f"SimLingoConfig.route_head_layers must be 2 or 3, got {self.route_head_layers!r}")
        if self.init_style not in INIT_STYLES:
            raise UserError(f"SimLingoConfig.init_style must be one of {INIT_STYLES}, got {self.init_style!r}")
        if self.route_as not in ROUTE_INPUTS:
            raise UserError(f"SimLingoConfig.route_as must be one of {ROUTE_INPUTS}, got {self.route_as!r}")
        pin = self.image_grid_pinpoint
        if len(pin) != 2 or any(int(p) < 1 or int(p) % self.tile_size for p in pin):
            raise UserError(
                f"SimLingoConfig.image_grid_pinpoint must be [height, width], each a multiple of the tower's "
                f"image_size {self.tile_size}, got {pin!r}"
            )
        grid = self.tile_size // self.vision_config.patch_size
        if grid % self.feature_downsample:
            raise UserError(
                f"SimLingoConfig.feature_downsample={self.feature_downsample} must divide the tile's patch grid "
                f"side {grid} (image_size {self.tile_size} / patch_size {self.vision_config.patch_size})"
            )
        layers = self.vision_config.num_hidden_layers
        if not -layers - 1 <= self.vision_feature_layer <= layers:
            raise UserError(
                f"SimLingoConfig.vision_feature_layer={self.vision_feature_layer} is outside the tower's "
                f"{layers} layers (hidden states -{layers + 1}..{layers})"
            )
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or any(s <= 0 for s in self.image_std):
            raise UserError(
                f"SimLingoConfig.image_mean / image_std must be 3 values (std > 0), got {self.image_mean!r} / "
                f"{self.image_std!r}"
            )
        for name in ("max_speed", "coord_range"):
            if not getattr(self, name) > 0:
                raise UserError(f"SimLingoConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("speed_wps_loss_weight", "route_loss_weight"):
            if getattr(self, name) < 0:
                raise UserError(f"SimLingoConfig.{name} must be >= 0, got {getattr(self, name)!r}")


__all__ = ["SimLingoConfig", "LM_PRESETS", "lm_preset"]
