"""Frozen-VLM waypoint predictor (SPEC 1.1): a vision tower + a small MLP head -> 20 future waypoints.

The names below are imported on first access (PEP 562): `WaypointVLMConfig` does not import the modeling code.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# name -> submodule that defines it
_LAZY_ATTRS = {
    "WaypointVLMConfig": ".configuration_waypoint_vlm",
    "WaypointVLMModel": ".modeling_waypoint_vlm",
    "WaypointVLMOutput": ".modeling_waypoint_vlm",
    "WaypointVLMPreTrainedModel": ".modeling_waypoint_vlm",
}

__all__ = list(_LAZY_ATTRS)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
