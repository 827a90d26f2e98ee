"""Checking a model argument before anything loads it: an existing directory, or a Hub id that can be fetched.

transformers answers a missing local directory with "Repo id must be in the form 'repo_name' or
'namespace/repo_name'", which sends a user looking in the wrong place. `check_model_source` says what is
wrong instead: no such directory, a directory that holds no model, an invalid Hub id, or a valid Hub id
while the Hub is unreachable (offline), each with what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError, UserFileNotFoundError

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` is set."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARS)


MODEL_FILES = ("config.json", "adapter_config.json")  # a model, or a PEFT adapter on top of one


def check_model_source(name_or_path: str, flag: str = "--model", needs: tuple[str, ...] = MODEL_FILES) -> str:
    """Return `name_or_path` if it is a model directory (holding one of `needs`) or a Hub id that can be
    fetched; otherwise raise a `UserError` naming `flag`, the value and what to do."""
    value = str(name_or_path)
    path = Path(value).expanduser()
    if path.is_dir():
        if needs and not any((path / n).is_file() for n in needs):
            raise UserError(
                f"{flag} {value}: the directory holds no {' or '.join(needs)}; give the directory a model was saved "
                "to (`save_pretrained` / the training run's output_dir or one of its checkpoint-* folders)"
            )
        return value
    if path.exists():
        raise UserError(f"{flag} {value}: this is a file; give the model's directory (with {needs[0]})")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    looks_local = value.startswith((".", "/", "~")) or value.count("/") > 1 or os.sep != "/" and os.sep in value
    try:
        validate_repo_id(value)
        valid_id = not looks_local
    except HFValidationError:
        valid_id = False
    if not valid_id:
        raise UserFileNotFoundError(
            f"{flag} {value}: no such directory, and it is not a valid Hub id ('name' or 'org/name'); check the path"
        )
    if hub_offline():
        raise UserError(
            f"{flag} {value}: not an existing directory, and the Hub is unreachable (HF_HUB_OFFLINE is set), so "
            "it cannot be fetched as a Hub id; pass the local directory of a saved model (or unset HF_HUB_OFFLINE "
            "on a machine with Hub access)"
        )
    return value


__all__ = ["MODEL_FILES", "check_model_source", "hub_offline"]
