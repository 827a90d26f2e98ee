"""SimLingo-base driving transformer (SPEC 1.2): vision tower + Llama + learnable queries -> waypoints, route.

The names below are imported on first access (PEP 562): `SimLingoConfig` does not import the modeling code.
"""

from __future__ import annotations

from ...lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
