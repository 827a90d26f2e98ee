"""Image decoding shared by the collators, the processors and the feature caches (PIL only, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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


def load_chat_image(image: Any):
    """An RGB `PIL.Image` from a file path, an undecoded `datasets.Image` dict or an image; other values as they are."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return im.convert("RGB")
    if isinstance(image, dict) and ("bytes" in image or "path" in image):  # undecoded datasets.Image
        import io

        src = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
        with Image.open(src) as im:
            return im.convert("RGB")
    return image.convert("RGB") if hasattr(image, "convert") else image


__all__ = ["as_pil_image", "load_chat_image"]
