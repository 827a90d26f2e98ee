"""`Trainer` for SimLingo-base: AdamW parameter groups + OneCycleLR (SPEC 1.2), and the evaluation against
a constant-velocity baseline.

`Trainer` stays the loop; only `create_optimizer` / `create_scheduler` are overridden:

- four AdamW groups (the library's one builder, `trainers/param_groups.py`): {vision tower, rest} x
  {decay, no decay}; the tower's groups use `vision_learning_rate`, the others `learning_rate`; weight decay
  (0.1) only on weight matrices, not on norms, biases, embeddings (camera / temporal / position / patch) or
  learnable queries;
- OneCycleLR over the run's optimiser steps, `pct_start` (5 %) warm-up, stepped by Trainer each step.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

from .param_groups import ParameterGroupsMixin, ParamGroupRule, build_parameter_groups


def simlingo_parameter_groups(
    model: nn.Module, learning_rate: float, vision_learning_rate: float | None = None, weight_decay: float = 0.1
) -> list[dict]:
    """AdamW parameter groups of SimLingo-base (trainable parameters only; empty groups dropped): `vision`,
    `vision_no_decay`, `base`, `base_no_decay`, built by the library's one builder (`trainers/param_groups.py`)."""
    return build_parameter_groups(model, simlingo_group_rules(vision_learning_rate), learning_rate, weight_decay)


def simlingo_group_rules(vision_learning_rate: float | None) -> list[ParamGroupRule]:
    """The vision tower at `vision_learning_rate` (default: the base learning rate)."""
    return [ParamGroupRule("vision", ("vision_model.*", "*.vision_model.*"), lr=vision_learning_rate)]


class SimLingoTrainer(ParameterGroupsMixin, Trainer):
    """`Trainer` with SimLingo's AdamW parameter groups and per-step OneCycleLR (see the module docstring).

    Use with [`SimLingoTrainingArguments`]; with plain `TrainingArguments` the vision tower shares
    `learning_rate` and the warm-up is 5 %.
    """

    def parameter_group_rules(self) -> list[ParamGroupRule]:
        return simlingo_group_rules(getattr(self.args, "vision_learning_rate", None))

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            optimizer = self.optimizer if optimizer is None else optimizer
            args = self.args
            total = max(int(num_training_steps), 4)
            # OneCycleLR needs at least two warm-up steps (it divides by pct_start * total - 1); very short
            # runs get a slightly longer warm-up than the configured fraction.
            pct_start = max(getattr(args, "pct_start", 0.05), 2.0 / total)
            self.lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in optimizer.param_groups],
                total_steps=total,
                pct_start=pct_start,
                div_factor=getattr(args, "div_factor", 25.0),
                final_div_factor=getattr(args, "final_div_factor", 1e4),
                cycle_momentum=getattr(args, "cycle_momentum", False),
                anneal_strategy="cos",
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler


_MOVED_TO_RECIPE = ("plot_simlingo_predictions", "predict_simlingo", "simlingo_metrics", "straight_route_baseline")


def __getattr__(name: str):
    # Evaluation lives in the recipe (`simlingo_recipe.py`); the old import path works for one release.
    if name in _MOVED_TO_RECIPE:
        from . import simlingo_recipe

        return getattr(simlingo_recipe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SimLingoTrainer", "simlingo_group_rules", "simlingo_parameter_groups"]
