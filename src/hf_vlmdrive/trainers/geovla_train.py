"""Deprecated location (removed in 0.2): the GeoVLA recipe is `trainers/geovla_recipe.py`."""

from .geovla_recipe import build_dataset, dataset_stats, main, train_geovla

__all__ = ["build_dataset", "dataset_stats", "main", "train_geovla"]
