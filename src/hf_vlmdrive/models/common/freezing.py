"""A frozen-by-default vision tower, shared by the families that keep one in `self.vision_model`."""

from __future__ import annotations


class FrozenVisionMixin:
    """Freeze / unfreeze `self.vision_model` under `config.freeze_vision`, and keep the freeze across loading.

    Frozen means no gradients and eval mode (dropout off) even while the rest of the model trains.
    Weight loading materialises fresh parameters (with `requires_grad=True`), so `from_pretrained`
    re-applies the freeze the config asks for.
    """

    def freeze_vision_model(self) -> None:
        """Freeze the tower: no gradients, eval mode."""
        self.config.freeze_vision = True
        self.vision_model.requires_grad_(False)
        self.vision_model.eval()

    def unfreeze_vision_model(self) -> None:
        """Make the whole tower trainable."""
        self.config.freeze_vision = False
        self.vision_model.requires_grad_(True)
        self.vision_model.train(self.training)

    @property
    def vision_is_frozen(self) -> bool:
        """True when no tower parameter requires a gradient."""
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
