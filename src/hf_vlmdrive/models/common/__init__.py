"""Shared, mostly stateless building blocks used by several model families.

The names below are imported on first access (PEP 562), so importing one submodule, e.g.
`hf_vlmdrive.models.common.config_utils` from a configuration module, does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY_ATTRS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
