"""Batch collators (dataclasses, as in TRL): lists of dataset rows -> model inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class WaypointCollator:
    """Collate waypoint rows for [`WaypointVLMModel`].

    Input keys per row: `image` (PIL image) or `images` (list of PIL images, one per camera, when
    `multi_camera`), or `image_features` (precomputed pooled features); `past_states` (16x6); `intent`
    (int); optionally `future_waypoints` (20x2).
    Output keys: `pixel_values` (B, 3, S, S) or (B, N, 3, S, S) — or `image_features` (B, F) —,
    `past_states` (B, 16, 6) float32, `intent` (B,) int64, and `labels` (B, 20, 2) float32 when the rows
    carry `future_waypoints`.
    """

    image_processor: Any
    multi_camera: bool = False

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        if "image_features" in rows[0]:
            batch["image_features"] = torch.as_tensor(np.stack([np.asarray(r["image_features"]) for r in rows]), dtype=torch.float32)
        elif self.multi_camera:
            per_row = [r["images"] for r in rows]
            cams = {len(images) for images in per_row}
            if len(cams) != 1:
                raise ValueError(f"rows have different numbers of camera images: {sorted(cams)}")
            flat = [img.convert("RGB") for images in per_row for img in images]
            pixels = self.image_processor(images=flat, return_tensors="pt")["pixel_values"]
            batch["pixel_values"] = pixels.reshape(len(rows), cams.pop(), *pixels.shape[1:])
        else:
            images = [r["image"].convert("RGB") for r in rows]
            batch["pixel_values"] = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        batch["past_states"] = torch.as_tensor(np.stack([np.asarray(r["past_states"]) for r in rows]), dtype=torch.float32)
        batch["intent"] = torch.as_tensor([int(r["intent"]) for r in rows], dtype=torch.long)
        if rows[0].get("future_waypoints") is not None:
            batch["labels"] = torch.as_tensor(
                np.stack([np.asarray(r["future_waypoints"]) for r in rows]), dtype=torch.float32
            )
        return batch


__all__ = ["WaypointCollator"]
