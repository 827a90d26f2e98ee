"""MapAnything (Meta, V1.1): the multi-view geometry trunk GeoVLA freezes, loadable from the released weights.

The names below are imported on first access (PEP 562): `MapAnythingConfig` does not import the modeling code.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# name -> submodule that defines it
_LAZY_ATTRS = {
    "FEATURE_MODES": ".configuration_mapanything",
    "MapAnythingConfig": ".configuration_mapanything",
    "MapAnythingModel": ".modeling_mapanything",
    "MapAnythingOutput": ".modeling_mapanything",
    "MapAnythingPreTrainedModel": ".modeling_mapanything",
    "MapAnythingImageProcessor": ".image_processing_mapanything",
    "UNUSED_PREFIXES": ".released_layout",
    "read_released": ".released_layout",
}

__all__ = list(_LAZY_ATTRS)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
