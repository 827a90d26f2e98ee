"""Checking a model argument before anything loads it: an existing directory, or a Hub id that can be fetched.

transformers answers a missing local directory with "Repo id must be in the form 'repo_name' or
'namespace/repo_name'", which sends a user looking in the wrong place. `check_model_source` says what is
wrong instead: no such directory, a directory that holds no model, an invalid Hub id, or a valid Hub id
while the Hub is unreachable (offline), each with what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path

from .errors import UserError, UserFileNotFoundError

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` is set."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARS)


MODEL_FILES = ("config.json", "adapter_config.json")  # a model, or a PEFT adapter on top of one

# model_type -> the family's name in messages (and the command that trains it)
FAMILY_NAMES = {
    "waypoint_vlm": "waypoint (WaypointVLM, `hf-vlmdrive train waypoint`)",
    "simlingo": "SimLingo (`hf-vlmdrive train simlingo`)",
    "flamingo": "Flamingo (`hf-vlmdrive sft flamingo` / `convert open-flamingo`)",
    "robovlm": "RoboVLM (`hf-vlmdrive train robovlm`)",
    "geovla": "GeoVLA (`hf-vlmdrive train geovla`)",
    "smolvlm": "SmolVLM2 (`hf-vlmdrive sft roadscene`)",
    "idefics3": "Idefics3 / SmolVLM (`hf-vlmdrive sft roadscene`)",
}


def family_name(model_type: str) -> str:
    """How messages name a model type: the family and the command that trains it, else the type itself."""
    return FAMILY_NAMES.get(model_type, f"{model_type!r}")


def local_model_type(name_or_path: str) -> str | None:
    """`model_type` of a local model directory's config.json (None for a Hub id, an adapter or no field)."""
    config = Path(str(name_or_path)).expanduser() / "config.json"
    if not config.is_file():
        return None
    import json

    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as err:
        raise UserError(f"{config} is not a readable JSON config ({err}); re-save the model") from err


def check_model_source(name_or_path: str, flag: str = "--model", needs: tuple[str, ...] = MODEL_FILES,
                       families: Collection[str] | Callable[[str], bool] | None = None,
                       command: str | None = None, wanted: str | None = None) -> str:
    """Return `name_or_path` if it is a model directory (holding one of `needs`) or a Hub id that can be
    fetched; otherwise raise a `UserError` naming `flag`, the value and what to do.

    With `families` (model types, or a predicate on the model type), a local directory whose config.json
    names another model type is refused before anything loads it, naming the family found and the one
    `command` needs (`wanted` says it in words; by default the names of `families`).
    """
    value = str(name_or_path)
    path = Path(value).expanduser()
    if path.is_dir():
        if needs and not any((path / n).is_file() for n in needs):
            raise UserError(
                f"{flag} {value}: the directory holds no {' or '.join(needs)}; give the directory a model was saved "
                "to (`save_pretrained` / the training run's output_dir or one of its checkpoint-* folders)"
            )
        if families is not None:
            check_model_family(value, flag, families, command, wanted)
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


def check_model_family(name_or_path: str, flag: str, families: Collection[str] | Callable[[str], bool],
                       command: str | None = None, wanted: str | None = None) -> None:
    """Refuse a local model directory of another family (see `check_model_source`)."""
    model_type = local_model_type(name_or_path)
    if model_type is None:
        return
    ok = families(model_type) if callable(families) else model_type in families
    if ok:
        return
    if wanted is None:
        wanted = "another kind of model" if callable(families) else " or ".join(family_name(f) for f in families)
    raise UserError(f"{flag} {name_or_path} holds a {family_name(model_type)} model; "
                    f"{command or 'this command'} needs {wanted}")


def generates_text(model_type: str) -> bool:
    """Whether transformers' `AutoModelForImageTextToText` (which `generate` loads) takes this model type."""
    from transformers import AutoModelForImageTextToText
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from . import models  # noqa: F401  (the library's families, registered lazily)

    try:
        config_class = CONFIG_MAPPING[model_type]
    except KeyError:
        return True  # a type transformers does not know: let from_pretrained say so
    return config_class in AutoModelForImageTextToText._model_mapping


__all__ = ["FAMILY_NAMES", "MODEL_FILES", "check_model_family", "check_model_source", "family_name", "generates_text", "hub_offline",
           "local_model_type"]
