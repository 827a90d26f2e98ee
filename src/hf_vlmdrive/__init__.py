"""hf_vlmdrive: Hugging Face Trainer-native vision-language models that drive cars and robots.

Importing the package registers every model family with the transformers Auto classes, so that

    >>> import hf_vlmdrive  # noqa: F401
    >>> from transformers import AutoModel
    >>> model = AutoModel.from_pretrained("path/or/hub-id")  # doctest: +SKIP

returns the right family.
"""

from .models.auto import register_auto_classes
from .models.geovla import GeoVLAConfig
from .models.simlingo import SimLingoConfig
from .models.waypoint_vlm import WaypointVLMConfig

__version__ = "0.1.0.dev0"

register_auto_classes()

__all__ = ["GeoVLAConfig", "SimLingoConfig", "WaypointVLMConfig", "register_auto_classes", "__version__"]
