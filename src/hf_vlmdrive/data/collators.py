"""Batch collators (dataclasses, as in TRL): lists of dataset rows -> model inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def as_pil_image(image: Any):
    """A decoded RGB `PIL.Image` from a PIL image, a `datasets.Image(decode=False)` dict or encoded bytes."""
    import io

    from PIL import Image

    if isinstance(image, dict):
        data = image.get("bytes")
        image = Image.open(io.BytesIO(data)) if data is not None else Image.open(image["path"])
    elif isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    return image.convert("RGB")


@dataclass
class WaypointCollator:
    """Collate waypoint rows for [`WaypointVLMModel`].

    Input keys per row: `image` (a PIL image, or a `datasets.Image(decode=False)` dict) or `images` (a
    list of those, one per camera, when `multi_camera`), or `image_features` (precomputed pooled
    features); `past_states` (16x6); `intent` (int); optionally `future_waypoints` (20x2).
    Output keys: `pixel_values` (B, 3, S, S) or (B, N, 3, S, S) — or, with a `feature_cache` that holds
    every image of the batch, `image_features` (B, N*D) (pooled entries) or `vision_hidden_states`
    (B, N, L, D) (token entries) — `past_states` (B, 16, 6) float32, `intent` (B,) int64, and `labels`
    (B, 20, 2) float32 when the rows carry `future_waypoints`.

    With a `feature_cache` ([`hf_vlmdrive.features.FeatureCache`]) a batch whose images are all cached is
    served from the cache without decoding a single image; if any image is missing the whole batch falls
    back to pixels (the model then runs its tower), so a deleted or corrupt entry costs time, not data.
    """

    image_processor: Any
    multi_camera: bool = False
    feature_cache: Any = None

    def __post_init__(self):
        self.cache_batches = 0
        self.pixel_batches = 0

    def _images(self, rows: list[dict]) -> tuple[list, int]:
        """All images of the batch, row-major, and the number of cameras per row."""
        if not self.multi_camera:
            return [r["image"] for r in rows], 1
        per_row = [r["images"] for r in rows]
        cams = {len(images) for images in per_row}
        if len(cams) != 1:
            raise ValueError(f"rows have different numbers of camera images: {sorted(cams)}")
        return [img for images in per_row for img in images], cams.pop()

    def _from_cache(self, images: list, batch_size: int, cams: int) -> dict[str, torch.Tensor] | None:
        from ..features.cache import image_digest

        found = []
        for image in images:
            value = self.feature_cache.get(image_digest(image))
            if value is None:
                return None
            found.append(value)
        stacked = torch.stack(found).to(torch.float32)  # (B*N, D) or (B*N, L, D)
        if stacked.ndim == 2:
            return {"image_features": stacked.reshape(batch_size, -1)}  # (B, N*D)
        return {"vision_hidden_states": stacked.reshape(batch_size, cams, *stacked.shape[1:])}  # (B, N, L, D)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        if "image_features" in rows[0]:
            batch["image_features"] = torch.as_tensor(np.stack([np.asarray(r["image_features"]) for r in rows]), dtype=torch.float32)
        else:
            images, cams = self._images(rows)
            cached = self._from_cache(images, len(rows), cams) if self.feature_cache is not None else None
            if cached is not None:
                batch.update(cached)
                self.cache_batches += 1
            else:
                pixels = self.image_processor(images=[as_pil_image(i) for i in images], return_tensors="pt")["pixel_values"]
                if self.multi_camera:
                    pixels = pixels.reshape(len(rows), cams, *pixels.shape[1:])
                batch["pixel_values"] = pixels
                self.pixel_batches += 1
        batch["past_states"] = torch.as_tensor(np.stack([np.asarray(r["past_states"]) for r in rows]), dtype=torch.float32)
        batch["intent"] = torch.as_tensor([int(r["intent"]) for r in rows], dtype=torch.long)
        if rows[0].get("future_waypoints") is not None:
            batch["labels"] = torch.as_tensor(
                np.stack([np.asarray(r["future_waypoints"]) for r in rows]), dtype=torch.float32
            )
        return batch


__all__ = ["WaypointCollator", "as_pil_image"]
