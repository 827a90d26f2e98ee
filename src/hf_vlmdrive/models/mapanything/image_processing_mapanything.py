"""All inference preprocessing of the MapAnything trunk: `MapAnythingImageProcessor`.

```
 images: per sample, V views (PIL | uint8 (H, W, 3) | float (H, W, 3) in [0, 1])
   --> RGB, bilinear resize to (height, width) (multiples of 14)
   --> [0, 1] float32
   --> mapanything mode: (x - ImageNet mean) / ImageNet std       qwenmapanythingpi mode: unchanged
   --> pixel_values float32 (B, V, 3, height, width)
```

mapanything mode gives the encoder what MapAnything's own loader gives it (its `data_norm_type` "dinov2":
ImageNet mean / std); qwenmapanythingpi mode what starVLA's QwenMapAnythingPI gave it (PIL bilinear resize to
224 x 224, `to_tensor`, no normalisation). MapAnything's own `load_images` also crops to one of its trained aspect
ratios around 518 px; that choice of size is left to the caller (`size`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from ...errors import UserError
from .configuration_mapanything import FEATURE_MODES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The sizes each mode was used at: MapAnything trained around 518 px; QwenMapAnythingPI resized to 224 x 224.
DEFAULT_SIZES = {"mapanything": {"height": 518, "width": 518}, "qwenmapanythingpi": {"height": 224, "width": 224}}


class MapAnythingImageProcessor(BaseImageProcessor):
    """Turns the views of each sample into [`MapAnythingModel`] `pixel_values`.

    Args:
        feature_mode (`str`, *optional*, defaults to `"mapanything"`): `"mapanything"` (ImageNet normalisation) or
            `"qwenmapanythingpi"` (pixels in [0, 1]); the model's `config.feature_mode`.
        size (`dict`, *optional*): `{"height": H, "width": W}`, multiples of `patch_size`; default 518 x 518 in
            mapanything mode, 224 x 224 in qwenmapanythingpi mode.
        patch_size (`int`, *optional*, defaults to 14): the encoder's patch size.
        image_mean (`list[float]`, *optional*): defaults to ImageNet's (mapanything mode only).
        image_std (`list[float]`, *optional*): defaults to ImageNet's (mapanything mode only).
    """

    model_input_names = ["pixel_values"]

    def __init__(self, feature_mode: str = "mapanything", size: dict[str, int] | None = None, patch_size: int = 14,
                 image_mean: Sequence[float] | None = None, image_std: Sequence[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        if feature_mode not in FEATURE_MODES:
            raise UserError(f"MapAnythingImageProcessor.feature_mode must be one of {FEATURE_MODES}, got {feature_mode!r}")
        size = dict(size) if size is not None else dict(DEFAULT_SIZES[feature_mode])
        if set(size) != {"height", "width"} or any(
            not isinstance(size[k], int) or size[k] < patch_size or size[k] % patch_size for k in size
        ):
            raise UserError(
                f"MapAnythingImageProcessor.size must be {{'height': H, 'width': W}} with H and W positive multiples of "
                f"patch_size={patch_size}, got {size!r}"
            )
        self.feature_mode = feature_mode
        self.size = size
        self.patch_size = int(patch_size)
        self.image_mean = list(image_mean) if image_mean is not None else list(IMAGENET_MEAN)
        self.image_std = list(image_std) if image_std is not None else list(IMAGENET_STD)

    @property
    def do_normalize(self) -> bool:
        """ImageNet normalisation happens in mapanything mode only."""
        return self.feature_mode == "mapanything"

    def _view(self, image: Any) -> np.ndarray:
        """One view -> float32 (3, H, W) in [0, 1], bilinear-resized to `size`."""
        from PIL import Image

        h, w = self.size["height"], self.size["width"]
        if isinstance(image, np.ndarray) and image.dtype != np.uint8:
            arr = np.asarray(image, dtype=np.float32)
            if arr.ndim != 3 or arr.shape[-1] != 3:
                raise UserError(f"a float view must be (H, W, 3) in [0, 1], got shape {arr.shape}")
            image = Image.fromarray(np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8))
        img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
        if not hasattr(img, "convert"):
            raise UserError(f"a view must be a PIL image or an (H, W, 3) array, got {type(image).__name__}")
        img = img.convert("RGB")
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0  # (3, H, W), torchvision's to_tensor

    def preprocess(self, images: Sequence[Sequence[Any]], **kwargs) -> BatchFeature:
        """`images`: per sample, its V views (view 0 = the reference view); a sample may also be one image.
        Returns `pixel_values` float32 `(B, V, 3, H, W)`."""
        import torch

        batch = []
        for i, sample in enumerate(images):
            views = list(sample) if isinstance(sample, (list, tuple)) else [sample]
            if not views:
                raise UserError(f"sample {i} has no views")
            batch.append(np.stack([self._view(v) for v in views]))
        if len({b.shape[0] for b in batch}) != 1:
            raise UserError(f"every sample needs the same number of views, got {[b.shape[0] for b in batch]}")
        pixels = torch.from_numpy(np.stack(batch))  # (B, V, 3, H, W) in [0, 1]
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=torch.float32).reshape(1, 1, 3, 1, 1)
            std = torch.tensor(self.image_std, dtype=torch.float32).reshape(1, 1, 3, 1, 1)
            pixels = (pixels - mean) / std
        return BatchFeature({"pixel_values": pixels})

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)


__all__ = ["DEFAULT_SIZES", "IMAGENET_MEAN", "IMAGENET_STD", "MapAnythingImageProcessor"]
