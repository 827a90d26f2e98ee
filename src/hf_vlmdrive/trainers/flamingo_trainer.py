"""`FlamingoTrainer`: `Trainer` with the Flamingo parameter groups and the gate regularisation.

Groups (first match wins, `trainers/param_groups.py`; frozen parameters are in no group):

    *attn_gate, *ff_gate              -> learning_rate x gate_lr_multiplier (no weight decay: scalars)
    *.gated_cross_attn_layer.*        -> learning_rate, weight decay (OpenFlamingo decays these only)
    perceiver.*, LM input embeddings  -> learning_rate, no weight decay (as OpenFlamingo's train.py)
    everything else (LoRA adapters)   -> learning_rate ("base")

Loss: the LM's next-token cross-entropy + `gate_regularization * mean(tanh(g)^2)` over every gate g.
"""

from __future__ import annotations

import torch
from transformers import Trainer

from ..distributed import per_rank_seed_callback
from .param_groups import ParameterGroupsMixin, ParamGroupRule

GATE_PATTERNS = ("*attn_gate", "*ff_gate")
EMBEDDING_PATTERNS = ("*embed_tokens.*", "*embed_in.*", "*.wte.*")


def gate_penalty(model) -> torch.Tensor | None:
    """`mean(tanh(g)^2)` over every trainable gate of the (possibly PEFT-wrapped) model, or None without gates."""
    gates = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith(("attn_gate", "ff_gate"))]
    if not gates:
        return None
    return torch.stack([g.tanh().pow(2).sum() for g in gates]).sum() / len(gates)


class FlamingoTrainer(ParameterGroupsMixin, Trainer):
    """Trainer for [`FlamingoForConditionalGeneration`] (gate lr multiplier, gate regularisation)."""

    def __init__(self, *args, gate_lr_multiplier: float = 50.0, gate_regularization: float = 0.2, **kwargs):
        self.gate_lr_multiplier = float(gate_lr_multiplier)
        self.gate_regularization = float(gate_regularization)
        super().__init__(*args, **kwargs)
        self.add_callback(per_rank_seed_callback())  # N processes: ranks > 0 get their own dropout streams

    def parameter_group_rules(self) -> list[ParamGroupRule]:
        """Gates at `gate_lr_multiplier` x lr; gated blocks decayed; resampler and embeddings not decayed."""
        return [
            ParamGroupRule("gates", GATE_PATTERNS, lr_multiplier=self.gate_lr_multiplier, weight_decay=0.0),
            ParamGroupRule("gated_cross_attn", ("*.gated_cross_attn_layer.*",)),
            ParamGroupRule("perceiver", ("perceiver.*", "*.perceiver.*"), weight_decay=0.0),
            ParamGroupRule("embeddings", EMBEDDING_PATTERNS, weight_decay=0.0),
        ]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy + the gate regularisation (logged as `gate_penalty`)."""
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.gate_regularization > 0:
            penalty = gate_penalty(model)
            if penalty is not None:
                # Once per optimiser step, like the cross-entropy: when that is normalised by the whole step's token
                # count (num_items_in_batch), Trainer no longer divides the loss by the accumulation steps, so the
                # penalty, added at every micro-step, is divided here (else GA k would apply it k times).
                scaled = (self.loss_is_scaled_for_ga if getattr(self, "loss_is_scaled_for_ga", None) is not None
                          else (self.model_accepts_loss_kwargs and num_items_in_batch is not None)
                          or self.compute_loss_func is not None)
                steps = getattr(self, "current_gradient_accumulation_steps", 1) if scaled and model.training else 1
                loss = loss + self.gate_regularization * penalty / steps
                self._last_gate_penalty = float(penalty.detach())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Trainer's log plus the latest gate penalty."""
        if "loss" in logs and hasattr(self, "_last_gate_penalty"):
            logs["gate_penalty"] = round(self._last_gate_penalty, 6)
        super().log(logs, *args, **kwargs)


__all__ = ["EMBEDDING_PATTERNS", "GATE_PATTERNS", "FlamingoTrainer", "gate_penalty"]
