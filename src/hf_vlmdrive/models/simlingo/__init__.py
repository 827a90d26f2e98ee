"""SimLingo-base driving transformer (SPEC 1.2): vision tower + Llama + learnable queries -> waypoints, route."""

from .configuration_simlingo import LM_PRESETS, SimLingoConfig, lm_preset
from .modeling_simlingo import (
    SimLingoForWaypointPrediction,
    SimLingoOutput,
    SimLingoPreTrainedModel,
    masked_waypoint_loss,
)

__all__ = [
    "LM_PRESETS",
    "SimLingoConfig",
    "SimLingoForWaypointPrediction",
    "SimLingoOutput",
    "SimLingoPreTrainedModel",
    "lm_preset",
    "masked_waypoint_loss",
]
