"""The frozen-feature cache for the waypoint predictor: build it for a model, fill it from a dataset.

```python
cache = waypoint_feature_cache(model, image_processor)            # namespace from tower + preprocessing
fill_waypoint_cache(model, dataset, image_processor, cache)       # encodes only what is missing
collator = WaypointCollator(image_processor, feature_cache=cache) # batches of cached features
train_ds = with_undecoded_images(dataset)                         # cache hits never decode a JPEG
```

`train_waypoint(..., use_feature_cache=True)` does all of this by itself when the tower is frozen.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import UserError
from .cache import FeatureCache, fill_feature_cache

logger = logging.getLogger(__name__)

STORAGE_DTYPES = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def waypoint_feature_cache(model, image_processor, cache_dir: str | Path | None = None, dtype: str = "auto") -> FeatureCache:
    """A [`FeatureCache`] for a frozen-tower [`WaypointVLMModel`] and its image processor.

    Raises ValueError if the tower is trainable (LoRA or unfrozen): its outputs change every step.
    `dtype`: storage dtype, "auto" (the tower's own), "float32", "float16" or "bfloat16".
    """
    if not model.vision_is_frozen:
        raise UserError(
            "the feature cache needs a frozen vision tower, but this model's tower is trainable (LoRA or "
            "freeze_vision=False); train without the cache (use_feature_cache=False)"
        )
    if dtype not in STORAGE_DTYPES:
        raise UserError(f"feature cache dtype must be one of {sorted(STORAGE_DTYPES)}, got {dtype!r}")
    from ..models.waypoint_vlm.processing_waypoint_vlm import image_processor_of

    identity = model.feature_cache_identity(image_processor_of(image_processor))  # the same keys for either form
    return FeatureCache(identity, cache_dir=cache_dir, dtype=STORAGE_DTYPES[dtype])


def image_column(dataset, multi_camera: bool) -> str:
    """The column the collator reads: `images` (one per camera) for a multi-camera model, else `image`."""
    name = "images" if multi_camera else "image"
    if name not in dataset.column_names:
        raise UserError(f"waypoint dataset has no `{name}` column (multi_camera={multi_camera}); it has {dataset.column_names}")
    return name


def with_undecoded_images(dataset):
    """The dataset with its image column(s) as `Image(decode=False)`: rows carry the encoded bytes.

    The cache keys on these bytes, so a hit needs no JPEG decoding; the collator decodes only on a miss.
    Casting changes the features only, not the stored data.
    """
    import datasets

    for name in ("image", "images"):
        if name not in dataset.column_names:
            continue
        feature = dataset.features[name]
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, (datasets.Sequence, datasets.List)) and isinstance(feature.feature, datasets.Image):
            if feature.feature.decode:
                dataset = dataset.cast_column(name, type(feature)(datasets.Image(decode=False)))
    return dataset


def _raw_image_batches(dataset, column: str, batch_size: int):
    """Batches of undecoded images (flattened over cameras) from one column."""
    raw = with_undecoded_images(dataset.select_columns([column]))
    for chunk in raw.iter(batch_size=batch_size):
        values = chunk[column]
        yield [img for per_row in values for img in per_row] if column == "images" else list(values)


def fill_waypoint_cache(
    model,
    dataset,
    image_processor,
    cache: FeatureCache,
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "caching tower features",
) -> dict[str, int]:
    """Run the frozen tower on every image of `dataset` the cache lacks and store the results.

    The model stays where it is (move it to the GPU first to encode there). Returns the counts of
    `fill_feature_cache` ({"images", "cached", "computed", "corrupt"}).
    """
    from ..data.images import as_pil_image
    from ..models.waypoint_vlm.processing_waypoint_vlm import image_processor_of

    image_processor = image_processor_of(image_processor)
    column = image_column(dataset, multi_camera=model.config.num_cameras > 1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    def encode(images: list) -> torch.Tensor:
        pixels = image_processor(images=[as_pil_image(i) for i in images], return_tensors="pt")["pixel_values"]
        return model.cacheable_image_features(pixels.to(device))

    cams = model.config.num_cameras if column == "images" else 1
    try:
        counts = fill_feature_cache(
            cache, _raw_image_batches(dataset, column, batch_size), encode, total=len(dataset) * cams,
            desc=desc, progress=progress,
        )
    finally:
        model.train(was_training)
    logger.info(
        "feature cache %s: %d images, %d already cached, %d computed, %d corrupt entries rewritten",
        cache.root, counts["images"], counts["cached"], counts["computed"], counts["corrupt"],
    )
    return counts


__all__ = ["STORAGE_DTYPES", "fill_waypoint_cache", "image_column", "waypoint_feature_cache", "with_undecoded_images"]
