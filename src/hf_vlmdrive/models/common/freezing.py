"""One freezing mechanism for every family: fnmatch patterns over parameter names.

A family says what its config freezes by overriding `frozen_parameter_patterns()` (the waypoint and
SimLingo families: `["vision_model.*"]` under `config.freeze_vision`; GeoVLA: `config.freeze_patterns`).
`FreezingMixin` then gives every family the same behaviour:

- frozen means no gradient *and* eval mode: every top-most submodule whose parameters are all frozen stays
  in eval mode (dropout off, deterministic features for the feature caches) while the rest trains;
- LoRA adapter parameters (see `models/common/lora.py`) are never frozen by a pattern: a tower that carries
  adapters is frozen in its own weights only, and follows the model's train / eval mode;
- `from_pretrained` re-applies the freezing the config asks for (weight loading materialises fresh
  parameters with `requires_grad=True`).
"""

from __future__ import annotations

import fnmatch

from ...errors import UserError
from .lora import is_lora_parameter_name


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class FreezingMixin:
    """Pattern-based freezing shared by every family (put it before `PreTrainedModel` in the bases)."""

    def frozen_parameter_patterns(self) -> list[str]:
        """fnmatch patterns of the parameters the config freezes (family hook; default: none)."""
        return []

    def freeze(self, patterns: list[str]) -> list[str]:
        """Freeze the parameters whose names match `patterns` (LoRA adapters excepted); returns their names."""
        frozen = []
        for name, param in self.named_parameters():
            if _matches(name, patterns) and not is_lora_parameter_name(name):
                param.requires_grad_(False)
                frozen.append(name)
        self.train(self.training)
        return frozen

    def unfreeze(self, patterns: list[str]) -> list[str]:
        """Make the parameters whose names match `patterns` trainable again; returns their names."""
        thawed = []
        for name, param in self.named_parameters():
            if _matches(name, patterns):
                param.requires_grad_(True)
                thawed.append(name)
        self.train(self.training)
        return thawed

    def apply_freezing(self, patterns: list[str] | None = None) -> list[str]:
        """Freeze what the config asks for (or `patterns`); returns the frozen parameter names."""
        return self.freeze(self.frozen_parameter_patterns() if patterns is None else list(patterns))

    def frozen_module_names(self) -> list[str]:
        """Names of the top-most submodules whose parameters are all frozen (these stay in eval mode)."""
        # One bottom-up pass (Trainer calls `train()` every step): (has parameters, all of them frozen) per module.
        status: dict[int, tuple[bool, bool]] = {}

        def visit(module) -> tuple[bool, bool]:
            has, frozen = False, True
            for param in module.parameters(recurse=False):
                has, frozen = True, frozen and not param.requires_grad
            for child in module.children():
                child_has, child_frozen = status[id(child)] if id(child) in status else visit(child)
                has, frozen = has or child_has, frozen and child_frozen
            status[id(module)] = (has, frozen)
            return has, frozen

        visit(self)
        names: list[str] = []

        def collect(module, prefix: str) -> None:
            for name, child in module.named_children():
                has, frozen = status[id(child)]
                if has and frozen:
                    names.append(prefix + name)
                elif has:
                    collect(child, f"{prefix}{name}.")

        collect(self, "")
        return names

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            for name in self.frozen_module_names():
                self.get_submodule(name).eval()
        return self

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, then re-apply the freezing the config asks for."""
        model = super().from_pretrained(*args, **kwargs)
        model.apply_freezing()
        return model


class FrozenVisionMixin(FreezingMixin):
    """`FreezingMixin` for the families that keep a vision tower in `self.vision_model`, frozen under
    `config.freeze_vision`.

    A tower that carries LoRA adapters is frozen in its own weights only: the adapter parameters keep
    `requires_grad`, the tower follows the model's train / eval mode (LoRA dropout), and `vision_is_frozen`
    is False, so gradients flow through the tower to the adapters.
    """

    VISION_PATTERNS = ["vision_model.*"]

    def frozen_parameter_patterns(self) -> list[str]:
        return list(self.VISION_PATTERNS) if self.config.freeze_vision else []

    def freeze_vision_model(self) -> None:
        """Freeze the tower: no gradients, eval mode. LoRA adapters on the tower stay trainable."""
        self.config.freeze_vision = True
        self.freeze(self.VISION_PATTERNS)

    def unfreeze_vision_model(self) -> None:
        """Make the whole tower trainable (not allowed while it carries LoRA adapters)."""
        if any(is_lora_parameter_name(n) for n, _ in self.vision_model.named_parameters()):
            raise UserError(
                "the vision tower carries LoRA adapters, which train on a frozen tower; merge them first "
                "(`merge_vision_lora()`) to fine-tune the whole tower"
            )
        self.config.freeze_vision = False
        self.unfreeze(self.VISION_PATTERNS)

    @property
    def vision_is_frozen(self) -> bool:
        """True when no tower parameter requires a gradient (False while LoRA adapters train)."""
        return not any(p.requires_grad for p in self.vision_model.parameters())


__all__ = ["FreezingMixin", "FrozenVisionMixin"]
