"""SimLingo-base driving transformer (SPEC 1.2): vision tower + Llama + learnable queries -> waypoints, route.

The names below are imported on first access (PEP 562): `SimLingoConfig` does not import the modeling code.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule that defines it
_LAZY_ATTRS = {
    "LM_PRESETS": ".configuration_simlingo",
    "SimLingoConfig": ".configuration_simlingo",
    "lm_preset": ".configuration_simlingo",
    "SimLingoForWaypointPrediction": ".modeling_simlingo",
    "SimLingoOutput": ".modeling_simlingo",
    "SimLingoPreTrainedModel": ".modeling_simlingo",
    "masked_waypoint_loss": ".modeling_simlingo",
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
