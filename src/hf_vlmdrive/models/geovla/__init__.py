"""Geometry-injected VLA (SPEC 1.5): Qwen2.5-VL + frozen multi-view geometry encoder + DiT flow matching."""

from .configuration_geovla import GeoVLAConfig, GeoVLAGeometryConfig
from .modeling_geovla import (
    NORM_STATS_FILE,
    GeoVLAActionHead,
    GeoVLAForActionPrediction,
    GeoVLAGeometryEncoder,
    GeoVLAOutput,
    GeoVLAPreTrainedModel,
)

__all__ = [
    "NORM_STATS_FILE",
    "GeoVLAActionHead",
    "GeoVLAConfig",
    "GeoVLAForActionPrediction",
    "GeoVLAGeometryConfig",
    "GeoVLAGeometryEncoder",
    "GeoVLAOutput",
    "GeoVLAPreTrainedModel",
]
