"""Deprecated module (removed in 0.2): the waypoint recipe is `trainers/waypoint_recipe.py`, its arguments
`trainers/waypoint_config.py` (`WaypointScriptArguments`, model hyperparameters under `model_config`).

`WaypointModelArguments` / `WaypointDataArguments` are the old argument pair; `train_waypoint` and
`build_waypoint_model` still accept them (with a FutureWarning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .waypoint_config import WaypointDataArguments, WaypointScriptArguments
from .waypoint_recipe import (
    build_waypoint_model,
    evaluate_waypoint,
    format_metrics_table,
    make_compute_metrics,
    predict_waypoints,
    save_eval_results,
    train_waypoint,
)


@dataclass
class WaypointModelArguments:
    """Which model to train: continue a waypoint model, wrap a pretrained backbone, or build a tower from a config."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved waypoint_vlm model (directory or Hub id) to continue training."}
    )
    backbone: str | None = field(
        default=None,
        metadata={"help": "Hub id or directory of a VLM / vision model whose vision tower to use (e.g. HuggingFaceTB/SmolVLM-Base)."},
    )
    vision_config: str | None = field(
        default=None,
        metadata={"help": "JSON (or a YAML mapping) of a vision config to build a randomly initialised tower (tiny runs)."},
    )
    pooling: str = field(default="mean", metadata={"help": "mean, cls or attention."})
    head_hidden_sizes: list[int] = field(default_factory=lambda: [512, 512], metadata={"help": "Head widths."})
    head_dropout: float = field(default=0.1)
    loss_type: str = field(default="mse", metadata={"help": "mse, l1 or huber."})
    num_intents: int = field(default=3)
    intent_offset: int = field(default=1)
    past_state_scale: float = field(default=1.0)
    waypoint_scale: float = field(default=1.0)
    freeze_vision: bool = field(default=True, metadata={"help": "Keep the vision tower frozen."})
    lora_rank: int = field(
        default=0,
        metadata={"help": "LoRA rank on the vision tower (stage 2; the reference used 8, 16, 32). 0 = no LoRA."},
    )
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA alpha (default 2 * lora_rank)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Tower module-name suffixes to adapt (default: the attention projections q/k/v/out)."},
    )


__all__ = [
    "WaypointDataArguments",
    "WaypointModelArguments",
    "WaypointScriptArguments",
    "build_waypoint_model",
    "evaluate_waypoint",
    "format_metrics_table",
    "make_compute_metrics",
    "predict_waypoints",
    "save_eval_results",
    "train_waypoint",
]
