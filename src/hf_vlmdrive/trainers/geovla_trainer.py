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

Flow-matching noise and times: in training, each sample's draws come from a generator seeded by (`--seed`, the
sample's position in the run's stream of training samples), passed to the model as `noise=` / `time=`
(`models.common.flow_matching.sample_flow_draws`). Position of sample i of the micro-batch on rank p:
`((global_step * GA + micro_step) * world_size + p) * per_device_train_batch_size + i`, which is the same sample
and the same number for N processes x batch B, one process x batch N * B and gradient accumulation (Trainer hands
rank p the p-th batch of each group of N). So the ranks draw different noise (Trainer seeds every rank alike, and
the global RNG would give every rank the same draws), the loss of N x B equals 1 x N * B exactly, and a resumed
run draws what the uninterrupted one would have. Batches that carry `noise` keep it; evaluation keeps the
model's own draws.
"""

from __future__ import annotations

import logging

from transformers import Trainer

from ..data.lerobot import LeRobotMixture, WeightedMixtureSampler
from ..distributed import per_rank_seed_callback
from ..models.common.flow_matching import sample_flow_draws
from .callbacks import GeometryCacheCallback, add_logging_callbacks
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
    """Trainer for [`GeoVLAForActionPrediction`] (per-module learning rates, mixture sampling, cache stats, flow
    noise by sample position; under N processes every rank but the first gets its own dropout stream)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The geometry cache's counters (geometry_cache/hit_rate, entries, memory_mb, disk_mb, misses, spilled) in
        # every training log record, ahead of the reporters (console, tensorboard / wandb, log_history).
        add_logging_callbacks(self, GeometryCacheCallback(
            lambda: getattr(self.accelerator.unwrap_model(self.model), "geometry_cache", None)))
        self.add_callback(per_rank_seed_callback())

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

    def sample_positions(self, batch_size: int) -> range:
        """Positions in the run's sample stream of this rank's current micro-batch (see the module docstring);
        call once per micro-batch (it counts the micro-steps of the current optimizer step)."""
        args, step = self.args, self.state.global_step
        if getattr(self, "_draw_step", None) != step:
            self._draw_step, self._micro_step = step, 0
        else:
            self._micro_step += 1
        micro_batches = step * args.gradient_accumulation_steps + self._micro_step
        first = (micro_batches * args.world_size + args.process_index) * args.per_device_train_batch_size
        return range(first, first + batch_size)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Trainer's loss, with the flow-matching noise and times of each sample drawn by its position."""
        if model.training and inputs.get("noise") is None and inputs.get("actions") is not None:
            cfg = self.accelerator.unwrap_model(model).config
            actions = inputs["actions"]
            noise, time = sample_flow_draws(
                self.sample_positions(actions.shape[0]), self.args.seed, cfg.num_flow_samples,
                (cfg.action_chunk_size, cfg.action_dim), cfg.flow_beta_alpha, cfg.flow_beta_beta,
                cfg.flow_time_scale, rule=cfg.flow_time_sampling)
            inputs = {**inputs, "noise": noise.to(actions.device), "time": time.to(actions.device)}
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if isinstance(dataset, LeRobotMixture) and len(dataset.datasets) > 1:
            return WeightedMixtureSampler(dataset, seed=self.args.seed)
        return super()._get_train_sampler(train_dataset)


__all__ = ["GeoVLATrainer", "build_parameter_groups", "module_group"]
