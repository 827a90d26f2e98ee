"""`Trainer` for SimLingo-base: AdamW parameter groups + OneCycleLR (SPEC 1.2), and the evaluation against
a constant-velocity baseline.

`Trainer` stays the loop; only `create_optimizer` / `create_scheduler` are overridden:

- AdamW groups (the library's one builder, `trainers/param_groups.py`): {vision tower, route head, rest} x
  {decay, no decay}; the tower's groups use `vision_learning_rate`, the others `learning_rate`; weight decay
  (0.1) only on weight matrices, not on norms, biases, embeddings (camera / temporal / position / patch) or
  learnable queries, and not on the whole route head (the released code's `black_list_weight_names` holds
  "route_head": simlingo_base_training/models/utils.py:25-41; `decay_route_head=True` is SPEC's variant);
- OneCycleLR over the run's optimiser steps, `pct_start` (5 %) warm-up, stepped by Trainer each step, with
  torch's default momentum cycling (AdamW beta1 0.95 -> 0.85 -> 0.95; models/driving.py:290-292 leaves
  `cycle_momentum` at its default `True`); `cycle_momentum=False` keeps betas (0.9, 0.999).

Under DeepSpeed ZeRO the optimizer Trainer holds is accelerate's wrapper around `DeepSpeedZeroOptimizer`, which
has no `defaults` (OneCycleLR reads them to cycle the momentum); the schedule is attached to the torch AdamW inside
it, whose param groups (lr, betas) DeepSpeed steps with, so the schedule is the same as without DeepSpeed.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

from .param_groups import ParameterGroupsMixin, ParamGroupRule, build_parameter_groups


def simlingo_parameter_groups(
    model: nn.Module, learning_rate: float, vision_learning_rate: float | None = None, weight_decay: float = 0.1,
    decay_route_head: bool = False,
) -> list[dict]:
    """AdamW parameter groups of SimLingo-base (trainable parameters only; empty groups dropped): `vision`,
    `vision_no_decay`, `route_head`, `route_head_no_decay` (both without weight decay unless
    `decay_route_head`), `base`, `base_no_decay`, built by the library's one builder (`trainers/param_groups.py`)."""
    return build_parameter_groups(model, simlingo_group_rules(vision_learning_rate, decay_route_head), learning_rate,
                                  weight_decay)


def simlingo_group_rules(vision_learning_rate: float | None, decay_route_head: bool = False) -> list[ParamGroupRule]:
    """The vision tower at `vision_learning_rate` (default: the base learning rate); the route head without
    weight decay (the released code; `decay_route_head=True`: SPEC's variant, it decays like the rest)."""
    rules = [ParamGroupRule("vision", ("vision_model.*", "*.vision_model.*"), lr=vision_learning_rate)]
    if not decay_route_head:
        rules.append(ParamGroupRule("route_head", ("route_head.*", "*.route_head.*"), weight_decay=0.0))
    return rules


def scheduled_optimizer(optimizer):
    """The torch optimizer whose param groups a torch LR scheduler must drive: `optimizer` itself, or under
    DeepSpeed ZeRO the AdamW inside accelerate's `DeepSpeedOptimizerWrapper` -> `DeepSpeedZeroOptimizer` (neither
    has `defaults`; both hand on the inner optimizer's `param_groups`, the groups DeepSpeed steps with)."""
    while not hasattr(optimizer, "defaults") and hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


class SimLingoTrainer(ParameterGroupsMixin, Trainer):
    """`Trainer` with SimLingo's AdamW parameter groups and per-step OneCycleLR (see the module docstring).

    Use with [`SimLingoTrainingArguments`]; with plain `TrainingArguments` the vision tower shares
    `learning_rate` and the warm-up is 5 %.
    """

    def parameter_group_rules(self) -> list[ParamGroupRule]:
        return simlingo_group_rules(getattr(self.args, "vision_learning_rate", None),
                                    getattr(self.args, "decay_route_head", False))

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            optimizer = scheduled_optimizer(self.optimizer if optimizer is None else optimizer)
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
                cycle_momentum=getattr(args, "cycle_momentum", True),
                anneal_strategy="cos",
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler


__all__ = ["SimLingoTrainer", "scheduled_optimizer", "simlingo_group_rules", "simlingo_parameter_groups"]
