"""Training arguments of SimLingo-base (SPEC 1.2): AdamW lr 3e-5, weight decay 0.1, separate vision lr,
OneCycleLR with 5 % warm-up stepped per optimiser step."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class SimLingoTrainingArguments(TrainingArguments):
    """`TrainingArguments` with SimLingo's optimiser defaults and the extra knobs its schedule needs.

    `learning_rate` is the peak learning rate of everything but the vision tower; `vision_learning_rate`
    that of the tower (defaults to `learning_rate`). Weight decay applies to weight matrices only (no
    norms, biases, embeddings or learnable queries). `lr_scheduler_type` is ignored: the schedule is
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
        default=False,
        metadata={"help": "Let OneCycleLR cycle AdamW's beta1 (0.85-0.95); off keeps betas (0.9, 0.999)."},
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep every column for the collator."})

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.pct_start < 1.0:
            raise ValueError(f"SimLingoTrainingArguments.pct_start must be in (0, 1), got {self.pct_start!r}")
        if self.vision_learning_rate is not None and self.vision_learning_rate < 0:
            raise ValueError(
                f"SimLingoTrainingArguments.vision_learning_rate must be >= 0, got {self.vision_learning_rate!r}"
            )


__all__ = ["SimLingoTrainingArguments"]
