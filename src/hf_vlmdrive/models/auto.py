"""Every Auto-class registration of hf_vlmdrive, in one place.

`register_auto_classes()` runs on `import hf_vlmdrive`. It is idempotent, so re-importing or calling it
again (e.g. from a DataLoader worker) is harmless.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

_REGISTERED = False


def register_auto_classes() -> None:
    """Register each family's config with `AutoConfig` and its models with the fitting Auto classes."""
    global _REGISTERED
    if _REGISTERED:
        return

    from .waypoint_vlm import WaypointVLMConfig, WaypointVLMModel

    AutoConfig.register(WaypointVLMConfig.model_type, WaypointVLMConfig, exist_ok=True)
    AutoModel.register(WaypointVLMConfig, WaypointVLMModel, exist_ok=True)

    from .geovla import GeoVLAConfig, GeoVLAForActionPrediction, GeoVLAGeometryConfig, GeoVLAGeometryEncoder

    AutoConfig.register(GeoVLAConfig.model_type, GeoVLAConfig, exist_ok=True)
    AutoModel.register(GeoVLAConfig, GeoVLAForActionPrediction, exist_ok=True)
    AutoConfig.register(GeoVLAGeometryConfig.model_type, GeoVLAGeometryConfig, exist_ok=True)
    AutoModel.register(GeoVLAGeometryConfig, GeoVLAGeometryEncoder, exist_ok=True)

    from .simlingo import SimLingoConfig, SimLingoForWaypointPrediction

    AutoConfig.register(SimLingoConfig.model_type, SimLingoConfig, exist_ok=True)
    AutoModel.register(SimLingoConfig, SimLingoForWaypointPrediction, exist_ok=True)

    _REGISTERED = True


__all__ = ["register_auto_classes"]
