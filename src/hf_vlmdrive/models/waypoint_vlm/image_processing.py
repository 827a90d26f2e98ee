"""The image processor that goes with a waypoint model: the backbone's own, at the tower's input size."""

from __future__ import annotations

import logging

from transformers import AutoImageProcessor, SiglipImageProcessor

from .configuration_waypoint_vlm import WaypointVLMConfig

logger = logging.getLogger(__name__)

# Default normalisation per tower family when no pretrained processor is available.
_DEFAULT_MEAN_STD = {
    "clip_vision_model": ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]),
    "dinov2": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}
# VLM processors that split images into tiles; the waypoint head wants one square image per camera.
_TILING_PROCESSORS = ("Idefics3ImageProcessor", "SmolVLMImageProcessor", "Idefics2ImageProcessor")


def build_image_processor(config: WaypointVLMConfig, source: str | None = None):
    """Image processor for `config`'s tower.

    With `source` (the backbone's Hub id or directory) the backbone's own processor is used, so its
    normalisation and resizing are the ones the tower was trained with. A VLM processor that tiles
    images (Idefics3 / SmolVLM) is replaced by a plain resize to the tower's `image_size` with the same
    mean/std, which is what the reference system did (1280x1920 -> 384x384). Without a source, a
    resize-and-normalise processor with the tower family's usual statistics is built.
    """
    size = config.image_size
    if source is not None:
        try:
            processor = AutoImageProcessor.from_pretrained(source)
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


__all__ = ["build_image_processor"]
