"""Frozen-VLM waypoint predictor (SPEC 1.1): a vision tower + a small MLP head -> 20 future waypoints."""

from .configuration_waypoint_vlm import WaypointVLMConfig
from .modeling_waypoint_vlm import WaypointVLMModel, WaypointVLMOutput, WaypointVLMPreTrainedModel

__all__ = ["WaypointVLMConfig", "WaypointVLMModel", "WaypointVLMOutput", "WaypointVLMPreTrainedModel"]
