"""Shared, mostly stateless building blocks used by several model families."""

from .heads import MLPHead
from .pooling import AttentionPool, pool_tokens
from .vision import VISION_PREFIX_TOKENS, build_vision_tower, load_vision_tower_weights, resolve_vision_config

__all__ = [
    "MLPHead",
    "AttentionPool",
    "pool_tokens",
    "VISION_PREFIX_TOKENS",
    "build_vision_tower",
    "load_vision_tower_weights",
    "resolve_vision_config",
]
