"""LoRA settings as a family's config holds them: validation and defaults, with no torch and no PEFT import.

Configuration modules import `normalize_lora_config` from here (`import hf_vlmdrive` imports every configuration
module, which must stay light); the adapters themselves are injected, merged and saved by `lora.py`.
"""

from __future__ import annotations

import numbers

from ...errors import UserError

LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules", "bias")

# Attention projections per vision tower type, as transformers (5.x) names the modules. DINOv2's attention
# is `q_proj`/`k_proj`/`v_proj`/`o_proj` since transformers 5 (`query`/`key`/`value`/`dense` before).
_ATTENTION_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
DEFAULT_LORA_TARGETS: dict[str, list[str]] = {
    "siglip_vision_model": _ATTENTION_TARGETS,
    "siglip2_vision_model": _ATTENTION_TARGETS,
    "idefics3_vision": _ATTENTION_TARGETS,
    "smolvlm_vision": _ATTENTION_TARGETS,
    "clip_vision_model": _ATTENTION_TARGETS,
    "dinov2": ["q_proj", "k_proj", "v_proj", "o_proj"],
}


def default_lora_targets(vision_model_type: str) -> list[str]:
    """The attention projections of a tower type (q/k/v/out), the usual LoRA targets of a ViT."""
    return list(DEFAULT_LORA_TARGETS.get(vision_model_type, _ATTENTION_TARGETS))


def normalize_lora_config(lora, vision_model_type: str, field: str = "lora") -> dict | None:
    """Validate LoRA settings and return them as a plain dict with every key of `LORA_KEYS` filled in.

    `lora` is None (no LoRA), a rank (`16`), or a dict with `r` (positive int; the reference's stage 2 used
    8, 16 and 32), `lora_alpha` (default `2 * r`), `lora_dropout` (default 0.05, in [0, 1)),
    `target_modules` (list of module-name suffixes; default: the attention projections of
    `vision_model_type`) and `bias` (`"none"`). Errors name `<field>[<key>]`, e.g.
    `WaypointVLMConfig.lora['r']`. Normalising a normalised dict returns an equal dict.
    """
    if lora is None:
        return None
    if isinstance(lora, numbers.Integral) and not isinstance(lora, bool):
        lora = {"r": int(lora)}
    if not isinstance(lora, dict):
        raise UserError(
            f"{field} must be a dict such as {{'r': 16}} (or a rank, or None), got {type(lora).__name__}: {lora!r}"
        )
    unknown = sorted(set(lora) - set(LORA_KEYS))
    if unknown:
        raise UserError(f"{field} has unknown keys {unknown}; the keys are {list(LORA_KEYS)}")
    if "r" not in lora:
        raise UserError(f"{field}['r'] (the LoRA rank) is required, e.g. {{'r': 16}}")
    r = lora["r"]
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 1:
        raise UserError(f"{field}['r'] must be a positive integer (the reference used 8, 16, 32), got {r!r}")
    alpha = lora.get("lora_alpha")
    alpha = 2 * int(r) if alpha is None else alpha
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
        raise UserError(f"{field}['lora_alpha'] must be a positive number (default 2 * r), got {alpha!r}")
    dropout = lora.get("lora_dropout", 0.05)
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise UserError(f"{field}['lora_dropout'] must be a number in [0, 1), got {dropout!r}")
    targets = lora.get("target_modules")
    if targets is None:
        targets = default_lora_targets(vision_model_type)
    if isinstance(targets, str) or not isinstance(targets, (list, tuple)) or not targets:
        raise UserError(
            f"{field}['target_modules'] must be a non-empty list of module-name suffixes such as "
            f"['q_proj', 'v_proj'], got {targets!r}"
        )
    if not all(isinstance(t, str) and t.strip(".") for t in targets):
        raise UserError(f"{field}['target_modules'] must hold non-empty module names, got {list(targets)!r}")
    bias = lora.get("bias", "none")
    if bias != "none":
        raise UserError(
            f"{field}['bias'] must be 'none', got {bias!r}: LoRA here trains adapters on a frozen tower, and "
            "PEFT's 'all' / 'lora_only' would make the tower's own biases trainable"
        )
    alpha = int(alpha) if float(alpha).is_integer() else float(alpha)
    return {
        "r": int(r),
        "lora_alpha": alpha,
        "lora_dropout": float(dropout),
        "target_modules": [str(t) for t in targets],
        "bias": "none",
    }


__all__ = ["DEFAULT_LORA_TARGETS", "LORA_KEYS", "default_lora_targets", "normalize_lora_config"]
