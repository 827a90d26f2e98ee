"""All inference preprocessing of the waypoint family: `WaypointVLMProcessor`.

```
 images: PIL | [PIL] * N per sample ---> the backbone's image processor ---> pixel_values (B, [N,] 3, S, S)
 past_states (B, 16, 6) ----------------------------------------------------> float32
 intent (B,) (Waymo enum) --------------------------------------------------> int64
 future_waypoints (B, 20, 2), optional -------------------------------------> labels float32
```

The image processor is the backbone's own (its normalisation and resizing are those the tower was
trained with); a VLM processor that tiles images (Idefics3 / SmolVLM) is replaced by a plain resize to
the tower's `image_size` with the same mean/std, as the reference system did (1280x1920 -> 384x384).
`save_pretrained` writes `processor_config.json` + `preprocessor_config.json` beside the weights;
`AutoProcessor.from_pretrained(dir)` loads it back (and `AutoImageProcessor` still loads the image part).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from transformers import AutoImageProcessor, SiglipImageProcessor
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from ...errors import UserError
from .configuration_waypoint_vlm import WaypointVLMConfig

logger = logging.getLogger(__name__)

# Default normalisation per tower family when no pretrained processor is available.
_DEFAULT_MEAN_STD = {
    "clip_vision_model": ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]),
    "dinov2": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}
# VLM processors that split images into tiles; the waypoint head wants one square image per camera.
_TILING_PROCESSORS = ("Idefics3ImageProcessor", "SmolVLMImageProcessor", "Idefics2ImageProcessor")


def build_image_processor(config: WaypointVLMConfig, source: str | None = None, **hub_kwargs):
    """The image processor for `config`'s tower: the backbone's own (from `source`, a Hub id or directory)
    or, without a source, a resize-and-normalise processor with the tower family's usual statistics."""
    size = config.image_size
    if source is not None:
        try:
            processor = AutoImageProcessor.from_pretrained(source, **hub_kwargs)
        except (OSError, ValueError) as err:
            logger.warning("no image processor loadable from %s (%s); using a plain resize processor", source, err)
        else:
            name = type(processor).__name__.replace("Fast", "")
            if name not in _TILING_PROCESSORS:
                return processor
            return SiglipImageProcessor(
                size={"height": size, "width": size},
                image_mean=list(processor.image_mean),
                image_std=list(processor.image_std),
            )
    mean, std = _DEFAULT_MEAN_STD.get(config.vision_config.model_type, ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]))
    return SiglipImageProcessor(size={"height": size, "width": size}, image_mean=mean, image_std=std)


def _pil(image: Any):
    from ...data.images import as_pil_image

    if isinstance(image, np.ndarray):
        from PIL import Image

        return Image.fromarray(np.asarray(image, dtype=np.uint8))
    return as_pil_image(image)


def _batched(values: Any, name: str, sample_ndim: int) -> np.ndarray:
    """`values` as an array with a leading batch dimension: one sample (`sample_ndim` dimensions, e.g. a plain
    int intent or a (16, 6) past_states) gets a batch of 1; a batch (list or array) is stacked."""
    if isinstance(values, (list, tuple)) and values and sample_ndim > 0:
        array = np.stack([np.asarray(v) for v in values])
    else:
        array = np.asarray(values)
    if array.ndim == sample_ndim:
        array = array[None]
    if array.ndim != sample_ndim + 1:
        raise UserError(
            f"{name} must have {sample_ndim} dimension(s) per sample (one sample) or {sample_ndim + 1} (a batch), "
            f"got shape {tuple(array.shape)}"
        )
    return array


class WaypointVLMProcessor(ProcessorMixin):
    """Turns camera images, past ego states and the driving intent into [`WaypointVLMModel`] inputs.

    Args:
        image_processor: the tower's image processor (see `build_image_processor`).
        num_cameras (`int`, *optional*, defaults to 1): cameras per sample; with more than one, `images` is
            a list of `num_cameras` images per sample and `pixel_values` is (B, N, 3, S, S).
    """

    def __init__(self, image_processor=None, num_cameras: int = 1, **kwargs):
        if image_processor is None:
            raise UserError("WaypointVLMProcessor needs an image_processor (see `build_image_processor`)")
        self.num_cameras = int(num_cameras)
        super().__init__(image_processor, **kwargs)

    @classmethod
    def from_config(cls, config: WaypointVLMConfig, source: str | None = None, **hub_kwargs) -> WaypointVLMProcessor:
        """The processor for a model config (with the backbone's image processor when `source` is given)."""
        return cls(build_image_processor(config, source, **hub_kwargs), num_cameras=config.num_cameras)

    def preprocess_images(self, images: list) -> Any:
        """A flat list of images (PIL, numpy uint8 (H, W, 3), or undecoded `datasets.Image` dicts) ->
        pixel_values (M, 3, S, S)."""
        return self.image_processor(images=[_pil(i) for i in images], return_tensors="pt")["pixel_values"]

    def __call__(
        self,
        images: list | None = None,
        past_states: Any = None,
        intent: Any = None,
        future_waypoints: Any = None,
        return_tensors: str = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Model inputs for a batch, or for one sample (then every output has a batch dimension of 1).

        Args:
            images: one image per sample (`num_cameras == 1`), or a list of `num_cameras` images per sample;
                a bare image (not in a list) is one sample.
            past_states: (B, 16, 6) past ego states (pos x,y; vel x,y; accel x,y), oldest first; (16, 6) is
                one sample.
            intent: (B,) driving intents (Waymo enum); a plain int is one sample.
            future_waypoints: (B, 20, 2), optional; returned as `labels`; (20, 2) is one sample.
        """
        import torch

        out: dict[str, Any] = {}
        if images is not None and self.num_cameras == 1 and not isinstance(images, (list, tuple)):
            if not (isinstance(images, np.ndarray) and images.ndim == 4):  # (B, H, W, 3) stays a batch
                images = [images]
        if images is not None:
            if self.num_cameras == 1 and not (images and isinstance(images[0], (list, tuple))):
                out["pixel_values"] = self.preprocess_images(list(images))  # (B, 3, S, S)
            else:
                counts = {len(per) for per in images}
                if counts != {self.num_cameras}:
                    raise UserError(
                        f"images must hold {self.num_cameras} camera image(s) per sample (num_cameras), got "
                        f"{sorted(counts)}"
                    )
                flat = [img for per in images for img in per]
                pixels = self.preprocess_images(flat)
                out["pixel_values"] = pixels.reshape(len(images), self.num_cameras, *pixels.shape[1:])  # (B, N, 3, S, S)
        if past_states is not None:
            out["past_states"] = torch.as_tensor(_batched(past_states, "past_states", 2), dtype=torch.float32)
        if intent is not None:
            out["intent"] = torch.as_tensor(_batched(intent, "intent", 0).astype(np.int64))
        if future_waypoints is not None:
            out["labels"] = torch.as_tensor(_batched(future_waypoints, "future_waypoints", 2), dtype=torch.float32)
        sizes = {name: len(value) for name, value in out.items()}
        if len(set(sizes.values())) > 1:
            raise UserError(f"the inputs hold different numbers of samples: {sizes}; give each one entry per sample")
        return BatchFeature(out, tensor_type=None)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "past_states", "intent"]


def image_processor_of(processor: Any) -> Any:
    """The image processor inside a [`WaypointVLMProcessor`] (or the argument itself, for a bare image processor)."""
    return processor.image_processor if isinstance(processor, WaypointVLMProcessor) else processor


__all__ = ["WaypointVLMProcessor", "build_image_processor", "image_processor_of"]
