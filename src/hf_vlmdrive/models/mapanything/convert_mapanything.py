"""`hf-vlmdrive convert mapanything`: Meta's released MapAnything (`facebook/map-anything`,
`facebook/map-anything-apache`: `config.json` + `model.safetensors`) -> a directory `AutoModel` loads as
[`MapAnythingModel`] and `AutoImageProcessor` as [`MapAnythingImageProcessor`].

The key map and the accounting of every released key are in `released_layout.py`; the strict load is
`modeling_mapanything.model_from_state`.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UserError
from .configuration_mapanything import FEATURE_MODES
from .image_processing_mapanything import MapAnythingImageProcessor
from .modeling_mapanything import model_from_state
from .released_layout import MapAnythingConversionReport, read_released


def convert_mapanything(
    src: str,
    output: str,
    *,
    feature_mode: str = "mapanything",
    encoder_width: int | None = None,
    encoder_num_heads: int | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    image_size: tuple[int, int] | None = None,
) -> MapAnythingConversionReport:
    """Convert a released MapAnything (folder or Hub id) into `output`: the trunk (`AutoModel`) and the matching
    [`MapAnythingImageProcessor`] (`AutoImageProcessor`; `image_size` (H, W), default per mode). Returns the key
    accounting."""
    if feature_mode not in FEATURE_MODES:
        raise UserError(f"feature_mode must be one of {FEATURE_MODES}, got {feature_mode!r}")
    config, state, report = read_released(src, revision=revision, token=token, encoder_width=encoder_width,
                                          encoder_num_heads=encoder_num_heads, feature_mode=feature_mode)
    model = model_from_state(config, state, src)
    model.config._name_or_path = str(src)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    size = {"height": image_size[0], "width": image_size[1]} if image_size is not None else None
    MapAnythingImageProcessor(feature_mode=feature_mode, size=size, patch_size=config.patch_size).save_pretrained(out)
    return report


__all__ = ["convert_mapanything"]
