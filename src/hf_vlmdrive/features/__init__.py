"""Frozen-encoder feature caches (content-hashed, bounded memory, spill to disk)."""

from .geometry_cache import GeometryFeatureCache, content_key

__all__ = ["GeometryFeatureCache", "content_key"]
