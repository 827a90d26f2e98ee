"""Arguments of the RoboVLM recipe (SPEC 1.4): data, backbone and `model_config`, plus Trainer's arguments with
RoboVLMs' optimiser defaults (Adam(W) lr 2e-5, no weight decay, gradient clipping 1.0)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..arguments import ModelConfigArguments
from ..errors import UserError
from ..models.robovlm.configuration_robovlm import RoboVLMConfig


@dataclass
class RoboVLMTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults of RoboVLMs' Kosmos configs (`learning_rate` 2e-5, `weight_decay` 0,
    `gradient_clip_val` 1.0); every column is kept for the collator."""

    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate (RoboVLMs: 2e-5)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (RoboVLMs: 0)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (RoboVLMs: 1.0)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep every column for the collator."})


@dataclass
class RoboVLMScriptArguments(ModelConfigArguments):
    """Data and model arguments of the RoboVLM recipe.

    Model hyperparameters are [`RoboVLMConfig`] fields under `model_config` (`head_type`, `window_size`,
    `freeze_backbone`, `lora: {r: 16}`, `action_low` / `action_high`, ..., and `backbone_config` for a random
    tiny Kosmos-2 when no `backbone_name_or_path` is given). `action_dim` is taken from the data.
    """

    model_config_class = RoboVLMConfig
    data_derived_fields = ("action_dim",)

    data_dir: str | None = field(
        default=None, metadata={"help": "Training episodes: a folder of HDF5 episode files or a LeRobot dataset; "
                                        "synthetic mobile-robot episodes are written under output_dir if unset."})
    eval_data_dir: str | None = field(
        default=None, metadata={"help": "Held-out episodes (same formats); synthetic ones (another seed) if unset."})
    camera_key: str | None = field(default=None, metadata={"help": "LeRobot camera feature (default: the first)."})
    synthetic_episodes: int = field(default=40, metadata={"help": "Synthetic training episodes to write."})
    synthetic_eval_episodes: int = field(default=10, metadata={"help": "Synthetic held-out episodes to write."})
    synthetic_image_size: int = field(default=32, metadata={"help": "Side of the synthetic frames."})
    backbone_name_or_path: str | None = field(
        default=None, metadata={"help": "Kosmos-2 Hub id or directory (microsoft/kosmos-2-patch14-224); a tiny "
                                        "random Kosmos-2 (model_config.backbone_config) if unset."})
    prompt_template: str = field(default="<grounding>An image of a robot {instruction}",
                                 metadata={"help": "Prompt with {instruction} (RoboVLMs' Kosmos prompt)."})
    window_stride: int = field(default=1, metadata={"help": "Frames between the starts of training windows."})
    eval_batch_size: int = field(default=16, metadata={"help": "Batch size of the held-out evaluation."})

    def __post_init__(self):
        super().__post_init__()
        if self.window_stride < 1:
            raise UserError(f"window_stride must be >= 1, got {self.window_stride!r}")
        if "{instruction}" not in self.prompt_template:
            raise UserError(f"prompt_template must contain '{{instruction}}', got {self.prompt_template!r}")


__all__ = ["RoboVLMScriptArguments", "RoboVLMTrainingArguments"]
