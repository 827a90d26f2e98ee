"""Shared, mostly stateless building blocks used by several model families.

The names below are imported on first access (PEP 562), so importing one submodule, e.g.
`hf_vlmdrive.models.common.config_utils` from a configuration module, does not import the others.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# name -> submodule that defines it
_LAZY_ATTRS = {
    "MLPHead": ".heads",
    "AttentionPool": ".pooling",
    "pool_tokens": ".pooling",
    "VISION_PREFIX_TOKENS": ".config_utils",
    "resolve_vision_config": ".config_utils",
    "build_vision_tower": ".vision",
    "load_vision_tower_weights": ".vision",
}

__all__ = list(_LAZY_ATTRS)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
