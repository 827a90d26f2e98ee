"""Arguments of GeoVLA training: `GeoVLATrainingArguments` (Trainer's, plus per-module learning rates and the
geometry cache) and `GeoVLAScriptArguments` (data and model)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..arguments import ModelConfigArguments
from ..errors import UserError
from ..models.geovla.configuration_geovla import GeoVLAConfig


@dataclass
class GeoVLATrainingArguments(TrainingArguments):
    """`TrainingArguments` plus a learning rate per module group and the geometry feature cache.

    `learning_rate` is the base rate (parameters outside the named groups); the reference recipe uses
    base 1e-5, VLM 1e-5, action head 1e-4, compressor 1e-4.
    """

    vlm_learning_rate: float | None = field(default=None, metadata={"help": "LR of `vlm.*` (default: learning_rate)."})
    action_head_learning_rate: float | None = field(
        default=None, metadata={"help": "LR of `action_head.*` (the DiT; default: learning_rate)."}
    )
    compressor_learning_rate: float | None = field(
        default=None, metadata={"help": "LR of `geometry_compressor.*` (default: learning_rate)."}
    )
    geometry_cache_mb: float = field(
        default=0.0, metadata={"help": "RAM budget (MB per process) of the frozen geometry feature cache; 0 = off."}
    )
    geometry_cache_dir: str | None = field(
        default=None, metadata={"help": "Where cache entries beyond the budget spill (a temp dir, removed when "
                                        "training ends, if unset). The ranks of a run may share it."}
    )
    geometry_cache_disk_mb: float | None = field(
        default=None, metadata={"help": "Disk budget (MB per process) of the spill folder; beyond it the least "
                                        "recently used spilled entries are dropped (re-encoded on their next use). "
                                        "None = unbounded."}
    )
    image_augmentation: bool = field(
        default=False, metadata={"help": "Random image augmentation (refused together with the geometry cache)."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep every collated key (GeoVLA needs them)."})


@dataclass
class GeoVLAScriptArguments(ModelConfigArguments):
    """Data and model arguments of `examples/train_libero.py` / `hf-vlmdrive train geovla`.

    Model hyperparameters are [`GeoVLAConfig`] fields under `model_config` (`dit_num_layers`,
    `compressor_type`, `flow_beta_alpha`, `state_key`, ..., and `geometry_config`: MapAnything fields such as
    `feature_mode`, or the stand-in's `{model_type: geovla_geometry, num_layers, num_heads, output_size}` with a
    DINOv2 `geometry_name_or_path`); `action_dim`, `state_dim` and the number of views come from the dataset.
    """

    dataset_root: str | None = field(
        default=None, metadata={"help": "(required) LeRobot dataset directory, or the parent of a mixture's members."}
    )
    mixture: str | None = field(
        default=None, metadata={"help": "Named mixture ('libero_all') or comma-separated sub-directories of dataset_root."}
    )
    make_synthetic_dataset: bool = field(
        default=False, metadata={"help": "Write a synthetic LIBERO-like v3.0 dataset at dataset_root if it is missing."}
    )
    synthetic_episodes: int = field(default=8, metadata={"help": "Episodes of the synthetic dataset."})
    synthetic_episode_length: int = field(default=24, metadata={"help": "Frames per synthetic episode."})
    synthetic_image_storage: str = field(default="video", metadata={"help": "'video' (mp4) or 'image' (inline PNG)."})
    camera_keys: list[str] | None = field(default=None, metadata={"help": "Cameras to use (default: all, sorted)."})
    vlm_name_or_path: str = field(
        default="Qwen/Qwen2.5-VL-3B-Instruct", metadata={"help": "Qwen2.5-VL Hub id or directory; 'tiny-random' builds one."}
    )
    geometry_name_or_path: str = field(
        default="facebook/map-anything",
        metadata={"help": "MapAnything (released layout: facebook/map-anything is CC-BY-NC-4.0, "
                          "facebook/map-anything-apache Apache-2.0; or a converted directory), a DINOv2 checkpoint "
                          "or a saved geovla_geometry encoder (the stand-in); 'tiny-random' builds a tiny stand-in."}
    )

    model_config_class = GeoVLAConfig
    data_derived_fields = ("action_dim", "state_dim", "vlm_config", "vlm_name_or_path", "geometry_name_or_path")

    def __post_init__(self):
        super().__post_init__()
        if not self.dataset_root:
            raise UserError("dataset_root is required (a LeRobot dataset directory, or the parent of a mixture)")
        geometry = self.model_config.get("geometry_config")
        if geometry is not None and not isinstance(geometry, dict):
            raise UserError(f"model_config.geometry_config must be a mapping of geometry config fields, got {geometry!r}")

    @property
    def action_chunk_size(self) -> int:
        """T of the model (model_config or GeoVLAConfig's default): also the dataset's action horizon."""
        default = inspect.signature(GeoVLAConfig.__init__).parameters["action_chunk_size"].default
        return int(self.model_config.get("action_chunk_size", default))  # no default config built to read one int


__all__ = ["GeoVLAScriptArguments", "GeoVLATrainingArguments"]
