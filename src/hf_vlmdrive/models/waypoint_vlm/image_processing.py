"""Deprecated location: `build_image_processor` lives in `processing_waypoint_vlm.py` (removed in 0.2)."""

from .processing_waypoint_vlm import build_image_processor

__all__ = ["build_image_processor"]
