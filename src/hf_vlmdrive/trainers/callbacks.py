"""Trainer callbacks that log what the seeds watched, to every `report_to` (tensorboard, wandb, ...) and stdout.

- [`ModuleGradNormCallback`]: the gradient norm of each named module group (e.g. GeoVLA's geometry compressor,
  action model and VLM) at every optimiser step: is gradient flowing into a new part, and how much.
- [`PeakMemoryCallback`]: peak memory so far: CUDA's `max_memory_allocated` when training on a GPU, the process's
  peak resident set size otherwise.
- [`GeometryCacheCallback`]: the geometry feature cache's hit rate, entries and RAM / disk use.

Each adds its values to the logs Trainer emits every `logging_steps`. `add_logging_callbacks(trainer, ...)` puts
them in front of the reporting callbacks, so that tensorboard / wandb / the console receive the values in the same
record as `loss` (a callback added with `trainer.add_callback` comes after them and would only change the record
after it was reported).
"""

from __future__ import annotations

import logging
import resource
import sys
from collections.abc import Callable, Mapping, Sequence

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


def _emit(state, logs: dict, values: dict) -> None:
    """Add `values` to the record being reported and to `state.log_history` (Trainer appends a copy of the record
    there before the callbacks see it; recipes and reports read the history)."""
    logs.update(values)
    if state is not None and state.log_history and state.log_history[-1].get("step") == state.global_step:
        state.log_history[-1].update(values)


def _under_deepspeed() -> bool:
    """True when accelerate runs this training through DeepSpeed."""
    try:
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedType

        return AcceleratorState().distributed_type == DistributedType.DEEPSPEED
    except Exception:  # no accelerator state yet: not a DeepSpeed run
        return False


class ModuleGradNormCallback(TrainerCallback):
    """Logs `grad_norm/<group>`: the L2 norm of the gradients of every trainable parameter whose name starts with
    one of the group's prefixes, measured at the optimiser step (after gradient accumulation and, when
    `max_grad_norm` > 0, after clipping: then the groups' norms keep their ratio, and their total is at most
    `max_grad_norm`). Like Trainer's own `grad_norm`, a record holds the norms of the step it is logged at (only
    those steps pay for the measurement: one `torch._foreach_norm` per group, as gradient clipping does).

    Args:
        groups: `{name: prefix or prefixes}` over `model.named_parameters()` names, e.g.
            `{"geometry_compressor": "geometry_compressor.", "action_model": "action_head.", "vlm": "vlm."}`.
            A group no trainable parameter falls into is logged as 0 (a frozen or absent part: no gradient flows).

    Under DeepSpeed the callback logs nothing (said once at the start): DeepSpeed reduces, partitions and applies the
    gradients inside the backward pass, before Trainer's optimiser-step event, and gathering them per parameter
    would be one collective per tensor. Trainer's own global `grad_norm` is still logged.
    """

    def __init__(self, groups: Mapping[str, str | Sequence[str]]):
        self.groups = {name: (p,) if isinstance(p, str) else tuple(p) for name, p in groups.items()}
        self._params: dict[str, list[torch.nn.Parameter]] | None = None
        self._norms: dict[str, float] = {}
        self._disabled = False

    def on_train_begin(self, args, state, control, **kwargs):
        self._disabled = _under_deepspeed()
        if self._disabled:
            logger.info("per-module gradient norms are not logged under DeepSpeed (it applies the gradients inside "
                        "the backward pass); the global grad_norm is")

    def _group_params(self, model) -> dict[str, list[torch.nn.Parameter]]:
        if self._params is None:
            self._params = {name: [] for name in self.groups}
            for pname, param in model.named_parameters():
                if not param.requires_grad:
                    continue
                for name, prefixes in self.groups.items():
                    if pname.startswith(prefixes):
                        self._params[name].append(param)
                        break
        return self._params

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        step = state.global_step + 1  # the step this optimiser step completes
        logged = args.logging_strategy == "steps" and args.logging_steps and step % args.logging_steps == 0
        if self._disabled or model is None or not (logged or step == 1 and args.logging_first_step):
            return
        for name, params in self._group_params(model).items():
            grads = [p.grad.detach() for p in params if p.grad is not None]
            if not grads:
                self._norms[name] = 0.0
                continue
            norms = torch._foreach_norm(grads)
            self._norms[name] = float(torch.linalg.vector_norm(torch.stack([n.float() for n in norms])))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or not self._norms:
            return
        _emit(state, logs, {f"grad_norm/{name}": self._norms.get(name, 0.0) for name in self.groups})
        self._norms = {}


def peak_memory_mb() -> tuple[str, float]:
    """(`"cuda_allocated"` | `"rss"`, MiB): CUDA's peak allocated memory on this process's device when CUDA is in
    use, else the process's peak resident set size."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return "cuda_allocated", torch.cuda.max_memory_allocated() / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return "rss", kb / (2**20 if sys.platform == "darwin" else 2**10)


class PeakMemoryCallback(TrainerCallback):
    """Logs `memory/peak_cuda_allocated_mb` (GPU) or `memory/peak_rss_mb` (CPU) with every training log record."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        kind, mb = peak_memory_mb()
        _emit(state, logs, {f"memory/peak_{kind}_mb": round(mb, 1)})


class GeometryCacheCallback(TrainerCallback):
    """Logs the geometry feature cache's counters (`geometry_cache/hit_rate`, `entries`, `memory_mb`, `disk_mb`,
    `misses`, `spilled`) with every training log record. `cache` is the cache or a function returning it (None: nothing
    logged), so a cache attached after the callback was made is still found."""

    KEYS = ("hit_rate", "entries", "memory_mb", "disk_mb", "misses", "spilled")

    def __init__(self, cache: Callable[[], object] | object):
        self._cache = cache

    def on_log(self, args, state, control, logs=None, **kwargs):
        cache = self._cache() if callable(self._cache) else self._cache
        if logs is None or "loss" not in logs or cache is None:
            return
        stats = cache.stats()
        _emit(state, logs, {f"geometry_cache/{key}": stats[f"geom_cache_{key}"] for key in self.KEYS})


def add_logging_callbacks(trainer, *callbacks: TrainerCallback) -> None:
    """Put `callbacks` before the trainer's reporting callbacks (see the module docstring)."""
    handler = trainer.callback_handler
    for cb in reversed(callbacks):
        handler.callbacks.insert(0, cb)


__all__ = [
    "GeometryCacheCallback",
    "ModuleGradNormCallback",
    "PeakMemoryCallback",
    "add_logging_callbacks",
    "peak_memory_mb",
]
