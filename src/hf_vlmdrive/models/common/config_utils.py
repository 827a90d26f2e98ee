"""Light helpers for the families' configuration modules: no torch module, no modeling code.

Configuration modules import from here (not from `vision.py`, which imports `AutoModel` and torch layers),
so `import hf_vlmdrive` and `from hf_vlmdrive.models.<family> import <Family>Config` stay cheap.
"""

from __future__ import annotations

from transformers import AutoConfig, PretrainedConfig

from ...errors import UserError, UserTypeError

# The geometry compressors `geometry_compressor.build_geometry_compressor` builds (GeoVLAConfig.compressor_type).
COMPRESSOR_TYPES = ("pool", "per_layer", "qformer")

# Number of non-patch tokens at the start of `last_hidden_state`, per vision model type.
VISION_PREFIX_TOKENS = {
    "clip_vision_model": 1,
    "dinov2": 1,
    "siglip_vision_model": 0,
    "siglip2_vision_model": 0,
    "idefics3_vision": 0,
    "smolvlm_vision": 0,
}


def resolve_vision_config(
    vision_config: dict | PretrainedConfig | None, default_type: str, field: str = "vision_config"
) -> PretrainedConfig:
    """Turn a dict (with a `model_type` key) or a config into a vision `PretrainedConfig`; errors name `field`,
    the config argument the value came from (`backbone_config`, ...)."""
    if vision_config is None:
        vision_config = {"model_type": default_type}
    if isinstance(vision_config, PretrainedConfig):
        return vision_config
    if not isinstance(vision_config, dict):
        raise UserTypeError(f"{field} must be a dict or a PretrainedConfig, got {type(vision_config).__name__}")
    kwargs = dict(vision_config)
    model_type = kwargs.pop("model_type", default_type)
    try:
        return AutoConfig.for_model(model_type, **kwargs)
    except ValueError as err:
        raise UserError(
            f"{field}.model_type={model_type!r} is not a model type transformers knows; use a vision "
            f"tower type such as {sorted(VISION_PREFIX_TOKENS)}"
        ) from err


__all__ = ["COMPRESSOR_TYPES", "VISION_PREFIX_TOKENS", "resolve_vision_config"]
