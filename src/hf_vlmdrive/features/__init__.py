"""Frozen-encoder feature caches.

- `FeatureCache` (`cache.py`): on-disk, content-addressed (image bytes + preprocessing + encoder config and
  weights), atomic writes, safe for concurrent readers; `waypoint_cache.py` connects it to the waypoint
  predictor (used by `train_waypoint` and `hf-vlmdrive cache-features`).
- `GeometryFeatureCache` (`geometry_cache.py`): in-process LRU with a memory budget and disk spill, for
  GeoVLA's frozen geometry encoder.
"""

from .cache import FeatureCache, default_cache_dir, fill_feature_cache, image_digest, weights_fingerprint
from .geometry_cache import GeometryFeatureCache, content_key

__all__ = [
    "FeatureCache",
    "GeometryFeatureCache",
    "content_key",
    "default_cache_dir",
    "fill_feature_cache",
    "image_digest",
    "weights_fingerprint",
]
