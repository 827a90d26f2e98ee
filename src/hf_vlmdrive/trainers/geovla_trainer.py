"""`GeoVLATrainer`: `Trainer` with one optimizer parameter group per module and geometry-cache logging.

Groups (by parameter-name prefix, built by the library's one builder `trainers/param_groups.py`; each split
into weight-decay / no-decay halves):

    vlm.*                  -> vlm_learning_rate
    action_head.*          -> action_head_learning_rate
    geometry_compressor.*  -> compressor_learning_rate
    everything else        -> learning_rate ("base")

Frozen parameters (`requires_grad=False`, e.g. the geometry encoder) are in no group. Because the groups
are built in `create_optimizer`, DeepSpeed ZeRO-2 (which wraps the optimizer Trainer creates) and
multi-GPU runs use them unchanged.
"""

from __future__ import annotations

import logging

from transformers import Trainer

from ..data.lerobot import LeRobotMixture, WeightedMixtureSampler
from .param_groups import ParameterGroupsMixin, ParamGroupRule, build_parameter_groups

logger = logging.getLogger(__name__)

MODULE_GROUPS = (("vlm", "vlm."), ("action_head", "action_head."), ("compressor", "geometry_compressor."))


def module_group(name: str) -> str:
    """The group ('vlm', 'action_head', 'compressor' or 'base') of a parameter name."""
    for group, prefix in MODULE_GROUPS:
        if name.startswith(prefix):
            return group
    return "base"


class GeoVLATrainer(ParameterGroupsMixin, Trainer):
    """Trainer for [`GeoVLAForActionPrediction`] (per-module learning rates, mixture sampling, cache stats)."""

    def learning_rates(self) -> dict[str, float]:
        """Learning rate of each module group from the training arguments."""
        args = self.args
        base = args.learning_rate
        return {
            "base": base,
            "vlm": getattr(args, "vlm_learning_rate", None) or base,
            "action_head": getattr(args, "action_head_learning_rate", None) or base,
            "compressor": getattr(args, "compressor_learning_rate", None) or base,
        }

    def parameter_group_rules(self) -> list[ParamGroupRule]:
        """One group per module prefix, at its learning rate (see `trainers/param_groups.py`)."""
        rates = self.learning_rates()
        return [ParamGroupRule(group, (prefix + "*",), lr=rates[group]) for group, prefix in MODULE_GROUPS]

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if isinstance(dataset, LeRobotMixture) and len(dataset.datasets) > 1:
            return WeightedMixtureSampler(dataset, seed=self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Trainer's log, plus the geometry cache's hit rate and size when a cache is attached."""
        cache = getattr(self.accelerator.unwrap_model(self.model), "geometry_cache", None)
        if cache is not None and "loss" in logs:
            stats = cache.stats()
            logs["geom_cache_hit_rate"] = round(stats["geom_cache_hit_rate"], 4)
            logs["geom_cache_entries"] = stats["geom_cache_entries"]
            logs["geom_cache_spilled"] = stats["geom_cache_spilled"]
        super().log(logs, *args, **kwargs)


__all__ = ["GeoVLATrainer", "build_parameter_groups", "module_group"]
