"""A frozen-by-default vision tower, shared by the families that keep one in `self.vision_model`."""

from __future__ import annotations

from .lora import is_lora_parameter_name


class FrozenVisionMixin:
    """Freeze / unfreeze `self.vision_model` under `config.freeze_vision`, and keep the freeze across loading.

    Frozen means no gradients and eval mode (dropout off) even while the rest of the model trains.
    Weight loading materialises fresh parameters (with `requires_grad=True`), so `from_pretrained`
    re-applies the freeze the config asks for.

    A tower that carries LoRA adapters (see `models/common/lora.py`) is frozen in its own weights only: the
    adapter parameters keep `requires_grad`, the tower follows the model's train / eval mode (LoRA dropout),
    and `vision_is_frozen` is False, so gradients flow through the tower to the adapters.
    """

    def _vision_adapter_parameters(self) -> list:
        return [p for n, p in self.vision_model.named_parameters() if is_lora_parameter_name(n)]

    def freeze_vision_model(self) -> None:
        """Freeze the tower: no gradients, eval mode. LoRA adapters on the tower stay trainable."""
        self.config.freeze_vision = True
        self.vision_model.requires_grad_(False)
        adapters = self._vision_adapter_parameters()
        for param in adapters:
            param.requires_grad_(True)
        self.vision_model.train(self.training and bool(adapters))

    def unfreeze_vision_model(self) -> None:
        """Make the whole tower trainable (not allowed while it carries LoRA adapters)."""
        if self._vision_adapter_parameters():
            raise ValueError(
                "the vision tower carries LoRA adapters, which train on a frozen tower; merge them first "
                "(`merge_vision_lora()`) to fine-tune the whole tower"
            )
        self.config.freeze_vision = False
        self.vision_model.requires_grad_(True)
        self.vision_model.train(self.training)

    @property
    def vision_is_frozen(self) -> bool:
        """True when no tower parameter requires a gradient (False while LoRA adapters train)."""
        return not any(p.requires_grad for p in self.vision_model.parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        if self.vision_is_frozen:
            self.vision_model.eval()
        return self

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, then re-apply the freezing the config asks for."""
        model = super().from_pretrained(*args, **kwargs)
        if model.config.freeze_vision:
            model.freeze_vision_model()
        return model


__all__ = ["FrozenVisionMixin"]
