"""Configuration of MapAnything's feature trunk (Meta's MapAnything V1.1: DINOv2 encoder + alternating-attention
transformer), the multi-view geometry encoder GeoVLA freezes."""

from __future__ import annotations

from transformers import PretrainedConfig

from ...errors import UserError

FEATURE_MODES = ("mapanything", "qwenmapanythingpi")
MLP_TYPES = ("swiglufused", "mlp")


def swiglu_fused_hidden_size(hidden_size: int, mlp_ratio: float) -> int:
    """Hidden width of DINOv2's / UniCeption's `SwiGLUFFNFused` (6144 * 2/3 rounded up to 8: 4096 for ViT-g)."""
    return (int(int(hidden_size * mlp_ratio) * 2 / 3) + 7) // 8 * 8


class MapAnythingConfig(PretrainedConfig):
    r"""Configuration of [`MapAnythingModel`], the feature trunk of MapAnything: DINOv2 blocks on every view, a
    fusion LayerNorm, then an alternating-attention transformer (AAT) over all views with per-view CLS registers
    and a global scale token. The defaults are MapAnything V1.1 (`facebook/map-anything`,
    `facebook/map-anything-apache`): 1,136,483,840 parameters.

    Args:
        image_size (`int`, *optional*, defaults to 518):
            Side of the square image the encoder's position embedding was trained for: the table holds
            `(image_size / patch_size)^2` positions (37 x 37) and is interpolated for other sizes.
        patch_size (`int`, *optional*, defaults to 14):
            Side of the square patches; input height and width must be multiples of it.
        num_channels (`int`, *optional*, defaults to 3):
            Image channels.
        hidden_size (`int`, *optional*, defaults to 1536):
            Width of the DINOv2 encoder (ViT-g: 1536).
        num_hidden_layers (`int`, *optional*, defaults to 24):
            DINOv2 blocks kept (MapAnything keeps the first 24 of ViT-g's 40).
        num_attention_heads (`int`, *optional*, defaults to 24):
            Attention heads of the encoder blocks.
        intermediate_size (`int`, *optional*, defaults to 4096):
            Hidden width of the encoder's feed-forward layers (ViT-g's fused SwiGLU: 4096).
        encoder_mlp_type (`str`, *optional*, defaults to `"swiglufused"`):
            `"swiglufused"` (`w12` -> silu(x1) * x2 -> `w3`, ViT-g) or `"mlp"` (`fc1` -> GELU -> `fc2`, ViT-S/B/L).
        encoder_layerscale_value (`float`, *optional*, defaults to 1.0):
            Initial LayerScale gamma of the encoder blocks (DINOv2's hub models: 1.0); `None` = no LayerScale.
        encoder_final_norm (`bool`, *optional*, defaults to `False`):
            Apply DINOv2's final LayerNorm to the encoder output (V1.1: no, `norm_returned_features: False`).
        use_encoder_cls_token (`bool`, *optional*, defaults to `True`):
            Feed each view's encoder CLS token to the AAT as a per-view register
            (`use_register_tokens_from_encoder`; mapanything mode only).
        interpolate_offset (`float`, *optional*, defaults to 0.1):
            DINOv2's position-embedding interpolation uses `scale_factor = ((h + offset) / M, (w + offset) / M)`
            for an h x w patch grid and an M x M table (the "+0.1 kludge"); 0 resizes to (h, w) instead.
        interpolate_antialias (`bool`, *optional*, defaults to `False`):
            Antialiasing of that bicubic interpolation.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Bias of the fused qkv projections (encoder and AAT).
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of every LayerNorm (encoder, fusion, AAT).
        info_sharing_hidden_size (`int`, *optional*, defaults to 1536):
            Width of the AAT (V1.1: the ViT-g width); when it differs from `hidden_size` a linear `proj_embed`
            maps the encoder tokens to it (V1).
        info_sharing_num_layers (`int`, *optional*, defaults to 16):
            AAT blocks; even indices attend globally over all views, odd ones within each view.
        info_sharing_num_heads (`int`, *optional*, defaults to 24):
            Attention heads of the AAT blocks.
        info_sharing_intermediate_size (`int`, *optional*, defaults to 4096):
            Hidden width of the AAT feed-forward layers (mlp_ratio 4 with the fused SwiGLU: 4096).
        info_sharing_mlp_type (`str`, *optional*, defaults to `"swiglufused"`):
            `"swiglufused"` or `"mlp"` (`info_sharing_mlp_layer_str`).
        info_sharing_layerscale_value (`float`, *optional*, defaults to 1e-5):
            Initial LayerScale gamma of the AAT blocks (`init_values`); `None` = no LayerScale (V1).
        intermediate_layer_indices (`list[int]`, *optional*, defaults to `[7, 11]`):
            AAT blocks whose (final-norm-normalised) outputs `output_intermediates=True` returns (the DPT head's).
        feature_mode (`str`, *optional*, defaults to `"mapanything"`):
            `"mapanything"`: MapAnything's own forward (ImageNet-normalised pixels, fp32 fusion LayerNorm, per-view
            CLS registers, scale token). `"qwenmapanythingpi"`: what starVLA's QwenMapAnythingPI took (pixels in
            [0, 1] without normalisation, no fusion LayerNorm, no CLS / scale tokens; the weights are the same).
    """

    model_type = "mapanything"

    def __init__(
        self,
        image_size: int = 518,
        patch_size: int = 14,
        num_channels: int = 3,
        hidden_size: int = 1536,
        num_hidden_layers: int = 24,
        num_attention_heads: int = 24,
        intermediate_size: int = 4096,
        encoder_mlp_type: str = "swiglufused",
        encoder_layerscale_value: float | None = 1.0,
        encoder_final_norm: bool = False,
        use_encoder_cls_token: bool = True,
        interpolate_offset: float = 0.1,
        interpolate_antialias: bool = False,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
        info_sharing_hidden_size: int = 1536,
        info_sharing_num_layers: int = 16,
        info_sharing_num_heads: int = 24,
        info_sharing_intermediate_size: int = 4096,
        info_sharing_mlp_type: str = "swiglufused",
        info_sharing_layerscale_value: float | None = 1e-5,
        intermediate_layer_indices: list[int] | None = None,
        feature_mode: str = "mapanything",
        **kwargs,
    ):
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.encoder_mlp_type = encoder_mlp_type
        self.encoder_layerscale_value = encoder_layerscale_value
        self.encoder_final_norm = bool(encoder_final_norm)
        self.use_encoder_cls_token = bool(use_encoder_cls_token)
        self.interpolate_offset = float(interpolate_offset)
        self.interpolate_antialias = bool(interpolate_antialias)
        self.qkv_bias = bool(qkv_bias)
        self.layer_norm_eps = float(layer_norm_eps)
        self.info_sharing_hidden_size = info_sharing_hidden_size
        self.info_sharing_num_layers = info_sharing_num_layers
        self.info_sharing_num_heads = info_sharing_num_heads
        self.info_sharing_intermediate_size = info_sharing_intermediate_size
        self.info_sharing_mlp_type = info_sharing_mlp_type
        self.info_sharing_layerscale_value = info_sharing_layerscale_value
        self.intermediate_layer_indices = (
            [int(i) for i in intermediate_layer_indices] if intermediate_layer_indices is not None else [7, 11]
        )
        self.feature_mode = feature_mode
        super().__init__(**kwargs)
        self._validate()

    def _validate(self) -> None:
        for name in ("image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size", "info_sharing_hidden_size",
                     "info_sharing_num_layers", "info_sharing_num_heads", "info_sharing_intermediate_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"MapAnythingConfig.{name} must be a positive integer, got {value!r}")
        if self.feature_mode not in FEATURE_MODES:
            raise UserError(f"MapAnythingConfig.feature_mode must be one of {FEATURE_MODES}, got {self.feature_mode!r}")
        for name in ("encoder_mlp_type", "info_sharing_mlp_type"):
            if getattr(self, name) not in MLP_TYPES:
                raise UserError(f"MapAnythingConfig.{name} must be one of {MLP_TYPES}, got {getattr(self, name)!r}")
        if self.hidden_size % self.num_attention_heads:
            raise UserError(
                f"MapAnythingConfig.num_attention_heads={self.num_attention_heads} must divide hidden_size="
                f"{self.hidden_size}"
            )
        if self.info_sharing_hidden_size % self.info_sharing_num_heads:
            raise UserError(
                f"MapAnythingConfig.info_sharing_num_heads={self.info_sharing_num_heads} must divide "
                f"info_sharing_hidden_size={self.info_sharing_hidden_size}"
            )
        if self.image_size % self.patch_size:
            raise UserError(
                f"MapAnythingConfig.image_size={self.image_size} must be a multiple of patch_size={self.patch_size}"
            )
        bad = [i for i in self.intermediate_layer_indices if not 0 <= i < self.info_sharing_num_layers]
        if bad:
            raise UserError(
                f"MapAnythingConfig.intermediate_layer_indices must lie in [0, {self.info_sharing_num_layers}), "
                f"got {bad}"
            )
        if self.interpolate_offset < 0:
            raise UserError(f"MapAnythingConfig.interpolate_offset must be >= 0, got {self.interpolate_offset!r}")

    @property
    def pos_embed_grid(self) -> int:
        """M, the side of the encoder's position-embedding table (37 for 518 px and patch 14)."""
        return self.image_size // self.patch_size

    def tokens_per_view(self, height: int, width: int) -> int:
        """Patch tokens of one view of `height` x `width` pixels ((H / 14) * (W / 14); 256 at 224 x 224)."""
        return (height // self.patch_size) * (width // self.patch_size)

    @property
    def output_size(self) -> int:
        """Width of the output tokens (the AAT's width: 1536 for V1.1, 768 for V1)."""
        return self.info_sharing_hidden_size


__all__ = ["FEATURE_MODES", "MLP_TYPES", "MapAnythingConfig", "swiglu_fused_hidden_size"]
