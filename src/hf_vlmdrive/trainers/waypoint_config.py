"""Arguments of the waypoint recipe: `WaypointScriptArguments` (which model, which data, `model_config`).

Training hyperparameters are `transformers.TrainingArguments`; model hyperparameters are the fields of
[`WaypointVLMConfig`], given under `model_config` (YAML mapping, `--model_config.<field> VALUE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arguments import ModelConfigArguments
from ..models.waypoint_vlm.configuration_waypoint_vlm import WaypointVLMConfig


@dataclass
class WaypointDataArguments:
    """Where the data comes from (see `hf_vlmdrive.data.waypoint`) and the frozen-feature cache."""

    train_data: str = field(default="synthetic:2000", metadata={"help": "'synthetic:N[:SEED]', a TFRecord glob or a saved dataset dir."})
    eval_data: str | None = field(default="synthetic:200:1", metadata={"help": "Held-out data, same forms."})
    camera_names: list[str] = field(default_factory=lambda: ["FRONT"], metadata={"help": "Cameras, in order."})
    image_width: int = field(default=192, metadata={"help": "Width of synthetic images."})
    image_height: int = field(default=128, metadata={"help": "Height of synthetic images."})
    use_feature_cache: bool = field(
        default=True,
        metadata={"help": "Cache the frozen tower's outputs on disk (hf_vlmdrive.features) so that only the first "
                  "pass runs the tower; ignored, with a log line, when the tower is trainable (LoRA / unfrozen)."},
    )
    feature_cache_dir: str | None = field(
        default=None, metadata={"help": "Root of the feature cache (default $HF_VLMDRIVE_FEATURE_CACHE or ~/.cache/hf_vlmdrive/features)."}
    )
    feature_cache_dtype: str = field(
        default="auto", metadata={"help": "Storage dtype of cached features: auto (the tower's), float32, float16, bfloat16."}
    )


@dataclass
class WaypointScriptArguments(ModelConfigArguments, WaypointDataArguments):
    """Which model to train (continue one, wrap a pretrained backbone, or build from `model_config`) and the data.

    Exactly one model source: `model_name_or_path` (a saved waypoint_vlm model), `backbone` (a VLM / vision
    model whose tower to use), or `model_config.vision_config` (a randomly initialised tower, tiny runs).
    `model_config` holds [`WaypointVLMConfig`] fields (`pooling`, `head_hidden_sizes`, `lora`: {r: 16}, ...);
    `num_cameras` comes from `camera_names`.
    """

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved waypoint_vlm model (directory or Hub id) to continue training."}
    )
    backbone: str | None = field(
        default=None,
        metadata={"help": "Hub id or directory of a VLM / vision model whose vision tower to use (e.g. HuggingFaceTB/SmolVLM-Base)."},
    )
    model_config_class = WaypointVLMConfig
    data_derived_fields = ("num_cameras",)


__all__ = ["WaypointDataArguments", "WaypointScriptArguments"]
