"""One weight-initialisation convention for every family.

- `_init_weights` of a family initialises only its own modules, with `transformers.initialization`
  (whose functions skip tensors already loaded from a checkpoint, so `from_pretrained` never
  re-initialises loaded weights).
- Pretrained sub-models (a vision tower, a Llama, a Qwen2.5-VL, DINOv2: any `PreTrainedModel` child)
  initialise themselves: transformers' `initialize_weights` dispatches each one's own `_init_weights`.
- Plain `nn.Module` parts that must keep their constructor's initialisation (torchvision's ResNet18) are
  marked once with `keep_own_init(module)`; `init_module` leaves them alone.
"""

from __future__ import annotations

from torch import nn
from transformers import initialization as init

_KEEP = "_keep_own_init"


def keep_own_init(module: nn.Module) -> nn.Module:
    """Mark `module` and its submodules so that the family's `_init_weights` leaves them as constructed."""
    for m in module.modules():
        setattr(m, _KEEP, True)
    return module


def keeps_own_init(module: nn.Module) -> bool:
    """True for modules marked with `keep_own_init`."""
    return getattr(module, _KEEP, False)


def init_module(module: nn.Module, std: float = 0.02, truncated: bool = True) -> None:
    """The shared rule for a family's own modules: Linear weights ~ (truncated) normal(0, std), zero biases;
    LayerNorm weight 1, bias 0; Embedding ~ normal(0, std). A family that wants other values for some modules
    (AdaLN-Zero's zero modulation) sets them in its `_init_weights` branch of the parent module, which
    transformers visits after the children."""
    if keeps_own_init(module):
        return
    if isinstance(module, nn.Linear):
        if truncated:
            init.trunc_normal_(module.weight, std=std)
        else:
            init.normal_(module.weight, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            init.ones_(module.weight)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        init.normal_(module.weight, std=std)


__all__ = ["init_module", "keep_own_init", "keeps_own_init"]
