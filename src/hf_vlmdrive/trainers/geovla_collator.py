"""Batching LeRobot samples for GeoVLA: Qwen2.5-VL processor inputs + geometry views + state/actions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_geometry_views(
    images: Sequence[np.ndarray], size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Deterministic preprocessing for the geometry encoder: uint8 (H, W, 3) views -> (V, 3, size, size).

    Bilinear resize (no antialias randomness, no crop) and ImageNet normalisation, as DINOv2 expects. The
    result is bit-identical for identical inputs, which the geometry feature cache relies on.
    """
    views = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images])).permute(0, 3, 1, 2)
    views = views.float() / 255.0  # (V, 3, H, W)
    if views.shape[-2:] != (size, size):
        views = F.interpolate(views, size=(size, size), mode="bilinear", align_corners=False)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (views - mean_t) / std_t


@dataclass
class GeoVLACollator:
    """Collate [`LeRobotDataset`] samples into [`GeoVLAForActionPrediction`] inputs.

    Input keys per sample: `images` (list of (H, W, 3) uint8, one per camera), `language`, `state` (S,),
    `actions` (T, A), `action_is_pad` (T,).
    Output keys: `input_ids`, `attention_mask`, `pixel_values`, `image_grid_thw` (from the Qwen2.5-VL
    processor: one image placeholder per camera followed by the instruction), `geometry_pixel_values`
    (B, V, 3, S, S), `state` (B, S), `actions` (B, T, A), `action_is_pad` (B, T). State and actions stay
    in dataset units: the model normalises them with its own statistics.

    Args:
        processor: a `Qwen2_5_VLProcessor` (e.g. `AutoProcessor.from_pretrained(vlm)`).
        geometry_image_size: side of the geometry encoder's square input.
        use_chat_template: wrap the prompt with the processor's chat template when it has one.
        prompt: format string of the instruction, `{instruction}` is replaced by the task.
    """

    processor: Any
    geometry_image_size: int
    use_chat_template: bool = True
    prompt: str = "What action should the robot take to {instruction}?"

    def _text(self, num_images: int, instruction: str) -> str:
        text = self.prompt.format(instruction=instruction)
        if self.use_chat_template and getattr(self.processor, "chat_template", None):
            content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": text}]
            return self.processor.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
        image_token = getattr(self.processor, "image_token", "<|image_pad|>")
        return "".join(f"<|vision_start|>{image_token}<|vision_end|>" for _ in range(num_images)) + text

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        texts = [self._text(len(s["images"]), s["language"]) for s in samples]
        images = [[np.array(im, dtype=np.uint8) for im in s["images"]] for s in samples]
        enc = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        batch = {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
        batch["geometry_pixel_values"] = torch.stack(
            [preprocess_geometry_views(s["images"], self.geometry_image_size) for s in samples]
        )
        batch["state"] = torch.from_numpy(np.stack([np.asarray(s["state"], np.float32) for s in samples]))
        batch["actions"] = torch.from_numpy(np.stack([np.asarray(s["actions"], np.float32) for s in samples]))
        batch["action_is_pad"] = torch.from_numpy(np.stack([np.asarray(s["action_is_pad"], bool) for s in samples]))
        return batch


__all__ = ["GeoVLACollator", "IMAGENET_MEAN", "IMAGENET_STD", "preprocess_geometry_views"]
