"""All inference preprocessing of SimLingo-base: `SimLingoProcessor`.

```
 images: T frames x N cameras (PIL | uint8 (H, W, 3)) --> RGB, bilinear resize to image_size (W, H)
                                                          --> pixel_values uint8 (B, T, N, 3, H, W)
 speed (m/s) --------------------------------------------> speed float32 (B, 1)
 target_point, target_point_next (ego frame, metres) ----> target_point, target_point_next (B, 2),
                                                            route_coords (B, 2, 2)
 route points (ego frame, metres) -----------------------> route_image uint8 (B, 3, RH, RW)   (route_as="image")
```

The bottom cut, normalisation (/255, the tower's mean / std), the pinpoint resize and the tiling happen inside the model
(they depend on its config); this processor does what the CARLA reader does to a stored frame, so a
simulator client or the policy server gives the model exactly what training gave it. `CarlaRouteDataset`
uses the same functions (`frame_to_uint8_chw`, `render_route_image`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from ...errors import UserError


def frame_to_uint8_chw(image: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """One camera frame (PIL image or uint8 (H, W, 3)) -> RGB uint8 (3, H, W), bilinear-resized to `size` (W, H)."""
    from PIL import Image

    img = Image.fromarray(np.asarray(image, dtype=np.uint8)) if isinstance(image, np.ndarray) else image
    img = img.convert("RGB")
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def render_route_image(route: np.ndarray, size: tuple[int, int] = (64, 64), meters_ahead: float = 40.0,
                       width_px: int = 2) -> np.ndarray:
    """BEV route image (3, RH, RW) uint8: the ego at the bottom centre, +x up, +y left, route in white."""
    from PIL import Image, ImageDraw

    rh, rw = size
    ppm = rh / meters_ahead
    img = Image.new("RGB", (rw, rh), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    pts = np.asarray(route, dtype=np.float64).reshape(-1, 2)
    uv = [(rw / 2 - y * ppm, rh - 1 - x * ppm) for x, y in pts]
    if len(uv) >= 2:
        draw.line(uv, fill=(255, 255, 255), width=width_px)
    draw.rectangle([rw / 2 - 1, rh - 3, rw / 2 + 1, rh - 1], fill=(255, 0, 0))  # the ego
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


class SimLingoProcessor(BaseImageProcessor):
    """Turns camera frames, the ego speed and the route into [`SimLingoForWaypointPrediction`] inputs.

    Args:
        image_size (`list[int]`, *optional*): (width, height) frames are resized to; `None` keeps them.
        route_as (`str`, *optional*, defaults to `"target_point"`): the model's route input
            (`target_point`, `coords` or `image`).
        route_image_size (`list[int]`, *optional*, defaults to `[64, 64]`): (RH, RW) of the BEV route image.
        route_meters_ahead (`float`, *optional*, defaults to 40.0): metres the route image covers ahead.
    """

    model_input_names = ["pixel_values", "speed", "target_point", "target_point_next", "route_coords", "route_image"]

    def __init__(self, image_size: Sequence[int] | None = None, route_as: str = "target_point",
                 route_image_size: Sequence[int] = (64, 64), route_meters_ahead: float = 40.0, **kwargs):
        super().__init__(**kwargs)
        if route_as not in ("target_point", "coords", "image"):
            raise UserError(f"SimLingoProcessor.route_as must be target_point, coords or image, got {route_as!r}")
        self.image_size = list(image_size) if image_size is not None else None
        self.route_as = route_as
        self.route_image_size = list(route_image_size)
        self.route_meters_ahead = float(route_meters_ahead)

    def preprocess(self, images, speed, target_point=None, target_point_next=None, route=None, **kwargs) -> BatchFeature:
        """Model inputs for a batch.

        Args:
            images: per sample, T frames (oldest first), each a list of N camera images (PIL or uint8 HxWx3);
                a single frame per sample may be given as the list of its N camera images.
            speed: (B,) or (B, 1) ego speed, m/s.
            target_point: (B, 2) ego-frame target point (route_as target_point / coords).
            target_point_next: (B, 2), optional (defaults to target_point): the second target-point token
                (route_as="target_point") and the second coordinate (route_as="coords").
            route: per sample, (K, 2) ego-frame route points (route_as="image").
        """
        import torch

        size = tuple(self.image_size) if self.image_size is not None else None
        batch = []
        for i, sample in enumerate(images):
            frames = sample if sample and isinstance(sample[0], (list, tuple)) else [sample]
            arrays = [np.stack([frame_to_uint8_chw(cam, size) for cam in frame]) for frame in frames]
            shapes = {a.shape for a in arrays}
            if len(shapes) != 1:
                raise UserError(f"sample {i}: every frame needs the same cameras and image size, got {sorted(shapes)}")
            batch.append(np.stack(arrays))  # (T, N, 3, H, W)
        shapes = {b.shape for b in batch}
        if len(shapes) != 1:
            raise UserError(f"every sample needs the same (T, N, 3, H, W); got {sorted(shapes)} (set image_size)")
        out: dict[str, Any] = {"pixel_values": torch.from_numpy(np.stack(batch))}
        out["speed"] = torch.as_tensor(np.asarray(speed, dtype=np.float32).reshape(len(batch), -1)[:, :1])
        if self.route_as in ("target_point", "coords"):
            if target_point is None:
                raise UserError(f"route_as={self.route_as!r} needs target_point (B, 2) in the ego frame, metres")
            tp = np.asarray(target_point, dtype=np.float32).reshape(len(batch), 2)
            out["target_point"] = torch.from_numpy(tp)
            nxt = tp if target_point_next is None else np.asarray(target_point_next, dtype=np.float32).reshape(-1, 2)
            out["target_point_next"] = torch.from_numpy(np.ascontiguousarray(nxt))
            out["route_coords"] = torch.from_numpy(np.stack([tp, nxt], axis=1))  # (B, 2, 2)
        else:
            if route is None:
                raise UserError("route_as='image' needs `route`: per sample, (K, 2) ego-frame route points")
            out["route_image"] = torch.from_numpy(np.stack([
                render_route_image(r, tuple(self.route_image_size), self.route_meters_ahead) for r in route
            ]))
        return BatchFeature(out)

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)


__all__ = ["SimLingoProcessor", "frame_to_uint8_chw", "render_route_image"]
