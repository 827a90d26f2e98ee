"""Frozen-VLM waypoint predictor (SPEC 1.1): a vision tower + a small MLP head -> 20 future waypoints.

The names below are imported on first access (PEP 562): `WaypointVLMConfig` does not import the modeling code.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule that defines it
_LAZY_ATTRS = {
    "WaypointVLMConfig": ".configuration_waypoint_vlm",
    "WaypointVLMModel": ".modeling_waypoint_vlm",
    "WaypointVLMOutput": ".modeling_waypoint_vlm",
    "WaypointVLMPreTrainedModel": ".modeling_waypoint_vlm",
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
