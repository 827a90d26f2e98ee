"""Geometry-injected VLA (SPEC 1.5): Qwen2.5-VL + frozen multi-view geometry encoder + DiT flow matching.

The names below are imported on first access (PEP 562): `GeoVLAConfig` does not import the modeling code.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY_ATTRS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
