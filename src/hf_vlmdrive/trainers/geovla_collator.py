"""Deprecated location (removed in 0.2): `GeoVLACollator` lives in `hf_vlmdrive.data.collators`, the geometry
preprocessing in `hf_vlmdrive.models.geovla.processing_geovla` (`GeoVLAProcessor`)."""

from ..data.collators import GeoVLACollator
from ..models.geovla.processing_geovla import IMAGENET_MEAN, IMAGENET_STD, preprocess_geometry_views

__all__ = ["GeoVLACollator", "IMAGENET_MEAN", "IMAGENET_STD", "preprocess_geometry_views"]
