"""LoRA adapters on a vision tower, with PEFT's own layers (the second training stage of the waypoint family).

A family keeps its LoRA settings in its config as a plain JSON-able dict (validated by the torch-free
`lora_config.normalize_lora_config`, which configuration modules import), so `save_pretrained` /
`from_pretrained` rebuild the adapted tower from `config.json` and load base weights and adapters from one
`model.safetensors`. The helpers here:

- `inject_lora`: check that every target module exists, then `peft.inject_adapter_in_model` on the tower;
  only the LoRA parameters keep `requires_grad`;
- `merge_lora`: fold the adapters into the base weights (PEFT's `merge`) and put the plain layers back;
- `save_lora_adapter`: write the tower's adapter in PEFT's format (`adapter_config.json` +
  `adapter_model.safetensors`), loadable with `peft.PeftModel.from_pretrained(<plain tower>, dir)`.

PEFT is imported lazily: it is part of the `train` extra.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ...errors import UserError

# Adapter names used for the tower. PEFT names the parameters `<module>.lora_A.<adapter>.weight`.
ADAPTER_NAME = "default"


def is_lora_parameter_name(name: str) -> bool:
    """True for PEFT LoRA parameter names (`...q_proj.lora_A.default.weight`, `lora_magnitude_vector`, ...)."""
    return any(part.startswith("lora_") for part in name.split("."))


def lora_parameter_names(module: nn.Module) -> list[str]:
    """Names of the LoRA parameters inside `module` (empty when it carries no adapter)."""
    return [n for n, _ in module.named_parameters() if is_lora_parameter_name(n)]


def has_lora(module: nn.Module) -> bool:
    """True when `module` carries LoRA adapter parameters."""
    return any(is_lora_parameter_name(n) for n, _ in module.named_parameters())


def _require_peft():
    try:
        import peft
    except ImportError as err:  # pragma: no cover - peft is installed wherever the tests run
        raise ImportError(
            "LoRA on the vision tower needs PEFT: pip install 'hf_vlmdrive[train]' (or pip install peft)"
        ) from err
    return peft


def _matches(name: str, target: str) -> bool:
    # PEFT's rule for a list of target names: the module's full name, or a suffix after a dot.
    return name == target or name.endswith("." + target)


def _inert_linear_names(module: nn.Module) -> list[str]:
    """Linear layers owned by an `nn.MultiheadAttention` (e.g. SigLIP's pooling head `head.attention.out_proj`).

    `nn.MultiheadAttention` reads `out_proj.weight` directly instead of calling the layer, so a LoRA layer
    there would never run: such layers are excluded from the targets.
    """
    out = []
    for name, parent in module.named_modules():
        if isinstance(parent, nn.MultiheadAttention):
            out += [f"{name}.{child}" if name else child for child, m in parent.named_children() if isinstance(m, nn.Linear)]
    return out


def _lora_config(lora: dict, module: nn.Module, base_model_name_or_path: str | None = None):
    peft = _require_peft()
    return peft.LoraConfig(
        r=lora["r"],
        lora_alpha=lora["lora_alpha"],
        lora_dropout=lora["lora_dropout"],
        target_modules=list(lora["target_modules"]),
        exclude_modules=_inert_linear_names(module) or None,
        bias=lora["bias"],
        base_model_name_or_path=base_model_name_or_path,
    )


def inject_lora(module: nn.Module, lora: dict, field: str = "lora") -> list[str]:
    """Put PEFT LoRA layers into `module` (in place) for a normalised `lora` dict; returns the adapted modules.

    Every entry of `lora['target_modules']` must match at least one module (PEFT alone only fails when none
    matches); otherwise a ValueError names the missing targets and lists the tower's Linear modules. Linear
    layers inside an `nn.MultiheadAttention` (which would ignore a LoRA branch) are never adapted. After
    injection only the LoRA parameters require gradients.
    """
    if has_lora(module):
        raise UserError("the vision tower already carries LoRA adapters; merge or drop them before adding new ones")
    inert = set(_inert_linear_names(module))
    names = [n for n, _ in module.named_modules() if n and n not in inert]
    missing = [t for t in lora["target_modules"] if not any(_matches(n, t) for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in module.named_modules() if isinstance(m, nn.Linear)})
        example = next((n for n, m in module.named_modules() if isinstance(m, nn.Linear)), None)
        raise UserError(
            f"{field}['target_modules'] entries {missing} match no module of the vision tower "
            f"({type(module).__name__}); its Linear modules are named {linear} (e.g. {example!r}). "
            "Give module-name suffixes from that list."
        )
    peft = _require_peft()
    from peft.tuners.tuners_utils import BaseTunerLayer

    peft.inject_adapter_in_model(_lora_config(lora, module), module, adapter_name=ADAPTER_NAME)
    for name, param in module.named_parameters():
        param.requires_grad_(is_lora_parameter_name(name))
    return sorted(n for n, m in module.named_modules() if isinstance(m, BaseTunerLayer))


def merge_lora(module: nn.Module) -> int:
    """Fold every LoRA adapter of `module` into its base layer and put the plain layer back; returns how many.

    Uses PEFT's own `merge` of each LoRA layer (W + scale * B @ A), so the merged tower computes what the
    adapted one did (up to float rounding) without the LoRA branch.
    """
    _require_peft()
    from peft.tuners.tuners_utils import BaseTunerLayer

    targets = [(n, m) for n, m in module.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, layer in targets:
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, layer.get_base_layer())
    if hasattr(module, "peft_config"):
        del module.peft_config
    return len(targets)


def save_lora_adapter(
    module: nn.Module, lora: dict, save_directory: str | Path, base_model_name_or_path: str | None = None
) -> Path:
    """Write the LoRA adapter of `module` in PEFT's format: `adapter_config.json` + `adapter_model.safetensors`.

    The tensor names are those `peft.PeftModel.save_pretrained` writes (`base_model.model.<module>.lora_A.weight`),
    so `PeftModel.from_pretrained(<the plain tower>, save_directory)` rebuilds the adapted tower.
    """
    from safetensors.torch import save_file

    peft = _require_peft()
    if not has_lora(module):
        raise UserError("the vision tower carries no LoRA adapter to save")
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    _lora_config(lora, module, base_model_name_or_path=base_model_name_or_path).save_pretrained(str(out))
    state = peft.get_peft_model_state_dict(module, adapter_name=ADAPTER_NAME)
    state = {f"base_model.model.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(state, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    return out


__all__ = [
    "ADAPTER_NAME",
    "has_lora",
    "inject_lora",
    "is_lora_parameter_name",
    "lora_parameter_names",
    "merge_lora",
    "save_lora_adapter",
]
