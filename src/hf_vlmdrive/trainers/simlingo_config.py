"""Training arguments of SimLingo-base (SPEC 1.2): AdamW lr 3e-5, weight decay 0.1, separate vision lr,
OneCycleLR with 5 % warm-up stepped per optimiser step."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..arguments import ModelConfigArguments
from ..errors import UserError
from ..models.simlingo.configuration_simlingo import SimLingoConfig


@dataclass
class SimLingoTrainingArguments(TrainingArguments):
    """`TrainingArguments` with SimLingo's optimiser defaults and the extra knobs its schedule needs.

    `learning_rate` is the peak learning rate of everything but the vision tower; `vision_learning_rate`
    that of the tower (defaults to `learning_rate`). Weight decay applies to weight matrices only (no
    norms, biases, embeddings or learnable queries, nor the route head unless `decay_route_head`). `lr_scheduler_type` is ignored: the schedule is
    always OneCycleLR (cosine annealing) with `pct_start` warm-up, stepped once per optimiser step.
    """

    learning_rate: float = field(default=3e-5, metadata={"help": "Peak learning rate (all but the vision tower)."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay of weight matrices."})
    vision_learning_rate: float | None = field(
        default=None, metadata={"help": "Peak learning rate of the vision tower (defaults to learning_rate)."}
    )
    pct_start: float = field(default=0.05, metadata={"help": "OneCycleLR warm-up fraction of the steps."})
    div_factor: float = field(default=25.0, metadata={"help": "OneCycleLR: initial lr = peak / div_factor."})
    final_div_factor: float = field(default=1e4, metadata={"help": "OneCycleLR: final lr = initial / this."})
    cycle_momentum: bool = field(
        default=True,
        metadata={"help": "Let OneCycleLR cycle AdamW's beta1 (0.95 -> 0.85 -> 0.95; torch's default, the released "
                          "simlingo_base); off keeps betas (0.9, 0.999)."},
    )
    decay_route_head: bool = field(
        default=False,
        metadata={"help": "Weight-decay the route head's weight matrices (SPEC 1.2's variant); the released "
                          "simlingo_base exempts the whole route head."},
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep every column for the collator."})
    # SimLingo trains with torch's plain (for-each) AdamW; transformers 5 defaults to the fused kernel, which
    # rounds differently.
    optim: str = field(default="adamw_torch", metadata={"help": "Optimizer (Trainer's --optim); SimLingo: adamw_torch."})

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.pct_start < 1.0:
            raise UserError(f"SimLingoTrainingArguments.pct_start must be in (0, 1), got {self.pct_start!r}")
        if self.vision_learning_rate is not None and self.vision_learning_rate < 0:
            raise UserError(
                f"SimLingoTrainingArguments.vision_learning_rate must be >= 0, got {self.vision_learning_rate!r}"
            )


@dataclass
class CarlaReaderArguments:
    """How CARLA route folders are read (`CarlaRouteDataset`): shared by training and evaluation."""

    image_width: int = field(default=128, metadata={"help": "Width the jpgs are resized to when read."})
    image_height: int = field(default=64, metadata={"help": "Height the jpgs are resized to when read."})
    cameras: str = field(default="rgb", metadata={"help": "Comma-separated camera folders (rgb,rgb_left,rgb_right)."})
    skip_first_frames: int = field(
        default=10, metadata={"help": "First frames of every route that give no sample (the released code: 10)."})
    require_full_future: bool = field(
        default=True, metadata={"help": "Only frames with a complete future (the released code); false keeps every "
                                        "frame and masks the missing future points."})
    route_filter: str = field(
        default="reference", metadata={"help": "results.json.gz filter: reference (score 100, or score_route > 94 "
                                               "with only min-speed / outside-lane infractions) or min_score (100)."})
    route_resampling: str = field(
        default="reference", metadata={"help": "Route labels: reference (from the ego origin, clamped at the end) or "
                                               "extrapolate (from the first route point, extended linearly)."})


@dataclass
class SimLingoScriptArguments(ModelConfigArguments, CarlaReaderArguments):
    """Data and model arguments of the SimLingo-base recipe (training hyper-parameters are in
    [`SimLingoTrainingArguments`]).

    Model hyperparameters are [`SimLingoConfig`] fields under `model_config` (`route_as`, `speed_wps_mode`,
    `num_frames`, `freeze_vision`, `head_hidden_size`, ..., `vision_config: {hidden_size: 64, ...}` for the
    random CLIP tower, `text_config` overrides of the `lm_size` preset); `num_cameras` comes from `cameras`.
    """

    train_data_dir: str | None = field(
        default=None, metadata={"help": "Root of CARLA route folders for training; synthetic routes if unset."}
    )
    eval_data_dir: str | None = field(
        default=None, metadata={"help": "Root of held-out CARLA route folders; synthetic routes if unset."}
    )
    synthetic_train_routes: int = field(default=24, metadata={"help": "Synthetic training routes to write."})
    synthetic_eval_routes: int = field(default=6, metadata={"help": "Synthetic held-out routes to write."})
    synthetic_frames_per_route: int = field(default=40, metadata={"help": "Frames (4 Hz) per synthetic route."})
    synthetic_speed_profile: str = field(
        default="random", metadata={"help": "Speed of the synthetic routes: random (constant random acceleration, "
                                            "stops before obstacles) or zones (speed-limit zones tinted in the "
                                            "camera image; the speed follows what the camera shows)."})
    shift_augmentation_prob: float = field(
        default=0.5, metadata={"help": "Training frames read from rgb_augmented/ with the labels moved into that "
                                       "camera's frame (the released img_shift_augmentation, 0.5); frames without "
                                       "an augmented render are read as they are; 0 turns it off; rgb camera only."})
    vision_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "LLaVA-NeXT Hub id / dir whose vision tower to use (e.g. "
                          "llava-hf/llava-v1.6-mistral-7b-hf); a small random CLIP tower if unset."},
    )
    lm_size: str = field(default="micro", metadata={"help": "Llama preset: tiny (reference, ~50M), small, micro."})
    route_image_size: int = field(default=64, metadata={"help": "Side of the BEV route image (route_as=image)."})

    eval_batch_size: int = field(default=16, metadata={"help": "Batch size of the held-out evaluation."})
    num_plot_samples: int = field(default=6, metadata={"help": "Samples drawn in predictions.png."})

    model_config_class = SimLingoConfig
    data_derived_fields = ("num_cameras",)


@dataclass(kw_only=True)  # required fields after the reader's defaults
class SimLingoEvalArguments(CarlaReaderArguments):
    """Arguments of `hf-vlmdrive eval simlingo`."""

    model_name_or_path: str = field(metadata={"help": "A trained SimLingo checkpoint (dir or Hub id)."})
    data_dir: str = field(metadata={"help": "Root of CARLA route folders to evaluate on."})
    output_dir: str | None = field(default=None, metadata={"help": "Where metrics.json / predictions.png go."})
    route_image_size: int = field(default=64, metadata={"help": "Side of the BEV route image (route_as=image)."})
    batch_size: int = field(default=16, metadata={"help": "Evaluation batch size."})
    num_plot_samples: int = field(default=6, metadata={"help": "Samples drawn in predictions.png."})


__all__ = ["CarlaReaderArguments", "SimLingoEvalArguments", "SimLingoScriptArguments", "SimLingoTrainingArguments"]
