"""Arguments of GeoVLA training: `GeoVLATrainingArguments` (Trainer's, plus per-module learning rates and the
geometry cache) and `GeoVLAScriptArguments` (data and model)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


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
        default=None, metadata={"help": "Where cache entries beyond the budget spill (a temp dir if unset)."}
    )
    image_augmentation: bool = field(
        default=False, metadata={"help": "Random image augmentation (refused together with the geometry cache)."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep every collated key (GeoVLA needs them)."})


@dataclass
class GeoVLAScriptArguments:
    """Data and model arguments of `examples/train_libero.py` / `hf-vlmdrive train geovla`."""

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
        default="facebook/dinov2-giant", metadata={"help": "DINOv2 or saved geovla_geometry encoder; 'tiny-random' builds one."}
    )
    geometry_num_layers: int = field(default=4, metadata={"help": "Multi-view transformer layers (new encoders only)."})
    geometry_num_heads: int = field(default=16, metadata={"help": "Multi-view transformer heads (new encoders only)."})
    geometry_output_size: int = field(default=1536, metadata={"help": "Raw geometry token width (new encoders only)."})
    compressor_type: str = field(default="pool", metadata={"help": "pool | per_layer | qformer."})
    num_geometry_tokens: int = field(default=16, metadata={"help": "K geometry tokens per DiT layer."})
    compressor_num_heads: int = field(default=8, metadata={"help": "Heads of the qformer compressor."})
    dit_num_layers: int = field(default=16, metadata={"help": "DiT depth."})
    dit_hidden_size: int = field(default=1024, metadata={"help": "DiT width."})
    dit_num_heads: int = field(default=16, metadata={"help": "DiT heads."})
    dit_vlm_layer_map: list[int] | None = field(default=None, metadata={"help": "VLM hidden state per DiT layer."})
    action_chunk_size: int = field(default=8, metadata={"help": "T, actions per chunk."})
    num_inference_steps: int = field(default=10, metadata={"help": "Euler steps at inference."})
    normalization_mode: str = field(default="mean_std", metadata={"help": "mean_std | quantile."})
    freeze_patterns: list[str] | None = field(
        default=None, metadata={"help": "fnmatch patterns of frozen parameters (default: geometry_encoder.*)."}
    )

    def __post_init__(self):
        if not self.dataset_root:
            raise ValueError("dataset_root is required (a LeRobot dataset directory, or the parent of a mixture)")


__all__ = ["GeoVLAScriptArguments", "GeoVLATrainingArguments"]
