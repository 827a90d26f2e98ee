"""One optimizer parameter-group builder for every Trainer subclass: name pattern -> lr / lr multiplier /
weight-decay rule.

A family lists `ParamGroupRule`s (first match wins; parameters no rule matches go to the `base` group at
`learning_rate`). Each group is split into a decay half (`<name>`) and a no-decay half (`<name>_no_decay`)
by one rule for the whole library: no weight decay on tensors with fewer than 2 dimensions (biases, norm
weights, learnable scalars / gates) nor on norms, embeddings and learnable queries (by name). Frozen
parameters are in no group. Because the groups are built in `create_optimizer`, DeepSpeed ZeRO (which
wraps the optimizer Trainer creates) and multi-GPU runs use them unchanged.

    class MyTrainer(ParameterGroupsMixin, Trainer):
        def parameter_group_rules(self):
            return [ParamGroupRule("vision", ("vision_model.*",), lr=self.args.vision_learning_rate),
                    ParamGroupRule("gates", ("*attn_gate", "*ff_gate"), lr_multiplier=50.0)]
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass

from torch import nn

logger = logging.getLogger(__name__)

NO_DECAY_MARKERS = ("norm", "bias", "embedding", "queries", "class_embedding")


@dataclass(frozen=True)
class ParamGroupRule:
    """Parameters whose names match one of `patterns` (fnmatch) form group `name`.

    Learning rate: `lr` when set, else `learning_rate * lr_multiplier` (multiplier 1 by default).
    `weight_decay` overrides the run's weight decay for the decay half of the group.
    """

    name: str
    patterns: tuple[str, ...]
    lr: float | None = None
    lr_multiplier: float | None = None
    weight_decay: float | None = None

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def learning_rate(self, base: float) -> float:
        if self.lr is not None:
            return float(self.lr)
        return base * (1.0 if self.lr_multiplier is None else float(self.lr_multiplier))


def uses_weight_decay(name: str, param) -> bool:
    """The library's one decay rule: weight matrices only, not norms / biases / embeddings / queries."""
    return param.ndim >= 2 and not any(marker in name.lower() for marker in NO_DECAY_MARKERS)


def build_parameter_groups(
    model: nn.Module, rules: list[ParamGroupRule], learning_rate: float, weight_decay: float
) -> list[dict]:
    """Optimizer parameter groups (trainable parameters only; empty groups dropped), each with a `name`."""
    order = [r.name for r in rules] + ["base"]
    buckets: dict[tuple[str, bool], list] = {}
    settings: dict[str, tuple[float, float]] = {"base": (learning_rate, weight_decay)}
    for rule in rules:
        settings[rule.name] = (rule.learning_rate(learning_rate),
                               weight_decay if rule.weight_decay is None else rule.weight_decay)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = next((r.name for r in rules if r.matches(name)), "base")
        buckets.setdefault((group, uses_weight_decay(name, param)), []).append(param)
    groups = []
    for group in order:
        for decay in (True, False):
            params = buckets.get((group, decay))
            if params:
                lr, wd = settings[group]
                groups.append({"params": params, "lr": lr, "weight_decay": wd if decay else 0.0,
                               "name": group if decay else f"{group}_no_decay"})
    return groups


class ParameterGroupsMixin:
    """`Trainer.create_optimizer` with the groups of `parameter_group_rules()` (put it before `Trainer`)."""

    def parameter_group_rules(self) -> list[ParamGroupRule]:
        """The family's rules (default: none, everything in `base`)."""
        return []

    def create_optimizer(self, model=None):
        """Build the optimizer Trainer would (`--optim` and its settings), with one group per rule."""
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = build_parameter_groups(opt_model, self.parameter_group_rules(), self.args.learning_rate,
                                            self.args.weight_decay)
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs.pop("lr", None)  # each group carries its own
            self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
            for g in groups:
                logger.info("param group %-22s lr=%.2e wd=%g params=%d", g["name"], g["lr"], g["weight_decay"],
                            sum(p.numel() for p in g["params"]))
        return self.optimizer


__all__ = ["NO_DECAY_MARKERS", "ParamGroupRule", "ParameterGroupsMixin", "build_parameter_groups", "uses_weight_decay"]
