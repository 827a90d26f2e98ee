"""hf_vlmdrive: Hugging Face Trainer-native vision-language models that drive cars and robots.

Importing the package registers every model family with the transformers Auto classes, so that

    >>> import hf_vlmdrive  # noqa: F401
    >>> from transformers import AutoModel
    >>> model = AutoModel.from_pretrained("path/or/hub-id")  # doctest: +SKIP

returns the right family. The import is light: it loads the configuration classes only; a family's
modeling code is imported when its model class is first used (see `hf_vlmdrive.models.auto`).
The names below are imported on first access (PEP 562).
"""

from __future__ import annotations

from .lazy import lazy_exports
from .log import drop_import_noise
from .models.auto import register_auto_classes

__version__ = "0.1.0.dev0"

# name -> submodule that defines it
_LAZY_ATTRS = {
    "FlamingoConfig": ".models.flamingo.configuration_flamingo",
    "GeoVLAConfig": ".models.geovla.configuration_geovla",
    "MosaicGPTConfig": ".models.mosaic_gpt.configuration_mosaic_gpt",
    "RoboVLMConfig": ".models.robovlm.configuration_robovlm",
    "SimLingoConfig": ".models.simlingo.configuration_simlingo",
    "WaypointVLMConfig": ".models.waypoint_vlm.configuration_waypoint_vlm",
    "register_lazy": ".models.auto",
}

__all__ = [*_LAZY_ATTRS, "register_auto_classes", "__version__"]

register_auto_classes()
drop_import_noise()  # two upstream import-time warnings (see hf_vlmdrive.log)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
