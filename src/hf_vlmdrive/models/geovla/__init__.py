"""Geometry-injected VLA (SPEC 1.5): Qwen2.5-VL + frozen multi-view geometry encoder + DiT flow matching.

The names below are imported on first access (PEP 562): `GeoVLAConfig` does not import the modeling code.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# name -> submodule that defines it
_LAZY_ATTRS = {
    "GeoVLAConfig": ".configuration_geovla",
    "GeoVLAGeometryConfig": ".configuration_geovla",
    "NORM_STATS_FILE": ".modeling_geovla",
    "GeoVLAActionHead": ".modeling_geovla",
    "GeoVLAForActionPrediction": ".modeling_geovla",
    "GeoVLAGeometryEncoder": ".modeling_geovla",
    "GeoVLAOutput": ".modeling_geovla",
    "GeoVLAPreTrainedModel": ".modeling_geovla",
}

__all__ = list(_LAZY_ATTRS)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
