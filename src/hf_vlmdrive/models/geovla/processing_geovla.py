"""All inference preprocessing of GeoVLA: `GeoVLAProcessor`, a Qwen2.5-VL processor that also prepares the
geometry encoder's views and the robot state.

```
 images: V uint8 (H, W, 3) per sample --+--> Qwen2.5-VL image processor + prompt (one image per camera,
 instruction: str per sample -----------+      then the instruction, in the chat template)
                                        |      -> input_ids, attention_mask, pixel_values, image_grid_thw
                                        +--> bilinear resize to S_g, ImageNet normalisation
                                               -> geometry_pixel_values (B, V, 3, S_g, S_g)
 state (B, S), actions (B, T, A), action_is_pad (B, T): float32 / bool tensors, dataset units (the model
 normalises them with its own statistics)
```

The geometry preprocessing is deterministic (no antialias randomness, no crop): identical inputs give
bit-identical tensors, which the geometry feature cache relies on. `save_pretrained` writes the Qwen2.5-VL
files plus the GeoVLA settings (`geometry_image_size`, mean / std, prompt) in `processor_config.json`;
`AutoProcessor.from_pretrained(checkpoint_dir)` loads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Qwen2_5_VLProcessor
from transformers.feature_extraction_utils import BatchFeature

from ...errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_PROMPT = "What action should the robot take to {instruction}?"


def preprocess_geometry_views(
    images: Sequence[np.ndarray], size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Deterministic preprocessing for the geometry encoder: uint8 (H, W, 3) views -> (V, 3, size, size).

    Bilinear resize (no antialias randomness, no crop) and ImageNet normalisation, as DINOv2 expects.
    """
    views = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images])).permute(0, 3, 1, 2)
    views = views.float() / 255.0  # (V, 3, H, W)
    if views.shape[-2:] != (size, size):
        views = F.interpolate(views, size=(size, size), mode="bilinear", align_corners=False)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (views - mean_t) / std_t


class GeoVLAProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor plus GeoVLA's geometry views, prompt and state / action tensors.

    `processor(images=..., text=...)` behaves as Qwen2.5-VL's; `processor(images=..., instructions=...)`
    (or [`prepare_inputs`]) returns every input of [`GeoVLAForActionPrediction`].

    Args:
        image_processor, tokenizer, video_processor, chat_template: Qwen2.5-VL's parts.
        geometry_image_size (`int`, *optional*, defaults to 224): side of the geometry encoder's square input.
        geometry_image_mean, geometry_image_std (`list[float]`, *optional*): its normalisation (ImageNet).
        prompt (`str`, *optional*): format string of the instruction; `{instruction}` is replaced by the task.
        use_chat_template (`bool`, *optional*, defaults to `True`): wrap the prompt with the chat template
            when the processor has one.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        video_processor=None,
        chat_template=None,
        geometry_image_size: int = 224,
        geometry_image_mean: Sequence[float] = IMAGENET_MEAN,
        geometry_image_std: Sequence[float] = IMAGENET_STD,
        prompt: str = DEFAULT_PROMPT,
        use_chat_template: bool = True,
        **kwargs,
    ):
        if "{instruction}" not in prompt:
            raise UserError(f"GeoVLAProcessor.prompt must contain '{{instruction}}', got {prompt!r}")
        self.geometry_image_size = int(geometry_image_size)
        self.geometry_image_mean = [float(x) for x in geometry_image_mean]
        self.geometry_image_std = [float(x) for x in geometry_image_std]
        self.prompt = prompt
        self.use_chat_template = bool(use_chat_template)
        super().__init__(image_processor, tokenizer, video_processor, chat_template=chat_template, **kwargs)

    @classmethod
    def from_vlm_processor(cls, vlm_processor: Qwen2_5_VLProcessor, **settings) -> GeoVLAProcessor:
        """Wrap an existing Qwen2.5-VL processor (same image processor, tokenizer and chat template)."""
        return cls(
            image_processor=vlm_processor.image_processor,
            tokenizer=vlm_processor.tokenizer,
            video_processor=getattr(vlm_processor, "video_processor", None),
            chat_template=getattr(vlm_processor, "chat_template", None),
            **settings,
        )

    def format_prompt(self, num_images: int, instruction: str) -> str:
        """The VLM text of one sample: one image placeholder per camera, then the instruction."""
        text = self.prompt.format(instruction=instruction)
        if self.use_chat_template and getattr(self, "chat_template", None):
            content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": text}]
            return self.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
        return "".join(f"<|vision_start|>{self.image_token}<|vision_end|>" for _ in range(num_images)) + text

    def geometry_views(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(V, 3, S_g, S_g) geometry-encoder input of one sample's camera images."""
        return preprocess_geometry_views(images, self.geometry_image_size, self.geometry_image_mean,
                                         self.geometry_image_std)

    def prepare_inputs(
        self,
        images: Sequence[Sequence[np.ndarray]],
        instructions: Sequence[str],
        state: Any = None,
        actions: Any = None,
        action_is_pad: Any = None,
    ) -> BatchFeature:
        """Every [`GeoVLAForActionPrediction`] input for a batch.

        Args:
            images: per sample, one uint8 (H, W, 3) image per camera (the same cameras, in order).
            instructions: per sample, the task in words.
            state: (B, S) raw robot state (optional at training-data time, required by the model).
            actions: (B, T, A) raw action chunk (training only); action_is_pad: (B, T) (training only).
        """
        if len(images) != len(instructions):
            raise UserError(f"got {len(images)} image lists but {len(instructions)} instructions")
        arrays = [[np.asarray(im, dtype=np.uint8) for im in per] for per in images]
        for i, per in enumerate(arrays):
            bad = [tuple(a.shape) for a in per if a.ndim != 3 or a.shape[-1] != 3]
            if bad or not per:
                raise UserError(f"sample {i}: images must be a non-empty list of uint8 (H, W, 3) arrays, got shapes {bad}")
        texts = [self.format_prompt(len(per), instr) for per, instr in zip(arrays, instructions)]
        enc = super().__call__(text=texts, images=arrays, return_tensors="pt", padding=True)
        out = {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
        out["geometry_pixel_values"] = torch.stack([self.geometry_views(per) for per in arrays])  # (B, V, 3, S, S)
        if state is not None:
            out["state"] = torch.from_numpy(np.stack([np.asarray(s, np.float32) for s in state]))
        if actions is not None:
            out["actions"] = torch.from_numpy(np.stack([np.asarray(a, np.float32) for a in actions]))
        if action_is_pad is not None:
            out["action_is_pad"] = torch.from_numpy(np.stack([np.asarray(p, bool) for p in action_is_pad]))
        return BatchFeature(out)

    def __call__(self, images=None, text=None, videos=None, instructions=None, state=None, actions=None,
                 action_is_pad=None, **kwargs):
        if instructions is not None:
            return self.prepare_inputs(images, instructions, state=state, actions=actions, action_is_pad=action_is_pad)
        return super().__call__(images=images, text=text, videos=videos, **kwargs)


__all__ = ["DEFAULT_PROMPT", "GeoVLAProcessor", "IMAGENET_MEAN", "IMAGENET_STD", "preprocess_geometry_views"]
