"""Vision towers taken from any transformers VLM or vision model.

A family stores its tower as a `vision_config` sub-config; the tower itself is built with
`AutoModel.from_config`, so every vision model type transformers knows works. Pretrained weights are
read straight from the source checkpoint's safetensors files, only the tower's tensors, so a 2 B VLM
never has its language model materialised just to borrow its encoder.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from ...errors import UserError, UserFileNotFoundError
from .config_utils import resolve_vision_config

logger = logging.getLogger(__name__)

# Composite configs keep the tower under one of these attribute names.
_VISION_ATTRS = ("vision_config", "vision_tower_config")


def vision_config_from_pretrained(name_or_path: str, **kwargs) -> PretrainedConfig:
    """The vision sub-config of a Hub id / local directory (a VLM, a CLIP/SigLIP pair or a vision model)."""
    config = AutoConfig.from_pretrained(name_or_path, **kwargs)
    for attr in _VISION_ATTRS:
        sub = getattr(config, attr, None)
        if isinstance(sub, PretrainedConfig):
            return sub
        if isinstance(sub, dict):
            return resolve_vision_config(sub, default_type=sub.get("model_type", ""))
    if hasattr(config, "image_size") and hasattr(config, "hidden_size"):
        return config
    raise UserError(
        f"{name_or_path!r} (model_type={config.model_type!r}) has no vision tower: expected a VLM config with "
        "a `vision_config`, or a vision model config"
    )


def build_vision_tower(vision_config: PretrainedConfig) -> nn.Module:
    """Build the (randomly initialised) vision tower for `vision_config` via `AutoModel.from_config`."""
    return AutoModel.from_config(vision_config)


def _checkpoint_files(name_or_path: str, revision: str | None = None, token: str | bool | None = None) -> list[Path]:
    """Local paths of the safetensors files of a checkpoint (downloading them from the Hub if needed)."""
    local = Path(name_or_path)
    if local.is_dir():
        index = local / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [local / s for s in shards]
        files = sorted(local.glob("*.safetensors"))
        if files:
            return files
        raise UserFileNotFoundError(
            f"no *.safetensors weights in {local}; save the source model with `save_pretrained` "
            "(safe_serialization is the default) or convert its .bin weights first"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError

    try:
        index_path = hf_hub_download(name_or_path, "model.safetensors.index.json", revision=revision, token=token)
    except EntryNotFoundError:
        return [Path(hf_hub_download(name_or_path, "model.safetensors", revision=revision, token=token))]
    shards = sorted(set(json.loads(Path(index_path).read_text())["weight_map"].values()))
    return [Path(hf_hub_download(name_or_path, s, revision=revision, token=token)) for s in shards]


def load_vision_tower_weights(
    tower: nn.Module, name_or_path: str, revision: str | None = None, token: str | bool | None = None
) -> str:
    """Copy the vision tower's weights from a checkpoint into `tower`; returns how they were found.

    First only the tower's tensors are read from the safetensors files: the prefix under which the
    checkpoint stores the tower (e.g. `model.vision_model.`) is found by matching the tower's parameter
    names as suffixes, so any VLM layout works without a table. Checkpoints whose stored names differ
    from the module names (transformers renames some on load, e.g. DINOv2's attention projections) fall
    back to loading the source model with `AutoModel.from_pretrained` and copying its tower.
    """
    try:
        return "prefix " + repr(_load_tower_tensors(tower, name_or_path, revision=revision, token=token))
    except _NameMismatch as err:
        logger.info("%s; loading the full source model to take its vision tower", err)
    source = AutoModel.from_pretrained(name_or_path, revision=revision, token=token)
    for name, module in source.named_modules():
        if type(module) is type(tower):
            tower.load_state_dict(module.state_dict())
            return f"module {name or '<root>'!r} of {type(source).__name__}"
    raise UserError(
        f"{name_or_path!r} loads as {type(source).__name__}, which has no {type(tower).__name__} vision tower; "
        "is it the checkpoint the vision_config came from?"
    )


class _NameMismatch(ValueError):
    """The checkpoint's stored tensor names do not match the tower's parameter names."""


def _load_tower_tensors(
    tower: nn.Module, name_or_path: str, revision: str | None = None, token: str | bool | None = None
) -> str:
    from safetensors import safe_open

    files = _checkpoint_files(name_or_path, revision=revision, token=token)
    wanted = [k for k in tower.state_dict() if not k.endswith("position_ids")]
    key_to_file: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            for key in handle.keys():
                key_to_file[key] = f
    # Vote for the prefix with the parameter names that appear once in the tower.
    prefixes: Counter[str] = Counter()
    for ckpt_key in key_to_file:
        for name in wanted[:50]:
            if ckpt_key.endswith(name) and (len(ckpt_key) == len(name) or ckpt_key[-len(name) - 1] == "."):
                prefixes[ckpt_key[: len(ckpt_key) - len(name)]] += 1
    if not prefixes:
        raise _NameMismatch(
            f"no vision-tower weights found in {name_or_path!r}: none of its tensors ends with the tower's "
            f"parameter names (e.g. {wanted[0]!r}); is it the checkpoint the vision_config came from?"
        )
    prefix = prefixes.most_common(1)[0][0]
    missing = [k for k in wanted if prefix + k not in key_to_file]
    if missing:
        raise _NameMismatch(
            f"checkpoint {name_or_path!r} lacks {len(missing)} vision-tower tensors under prefix {prefix!r}, "
            f"e.g. {missing[:3]}; the checkpoint and the vision_config do not match"
        )
    state: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for k in wanted:
        by_file.setdefault(key_to_file[prefix + k], []).append(k)
    for f, keys in by_file.items():
        with safe_open(str(f), framework="pt") as handle:
            for k in keys:
                state[k] = handle.get_tensor(prefix + k)
    result = tower.load_state_dict(state, strict=False)
    unexpected_missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if unexpected_missing:
        raise UserError(f"vision tower weights incomplete after loading: {unexpected_missing[:5]}")
    logger.info("loaded %d vision-tower tensors from %s (prefix %r)", len(state), name_or_path, prefix)
    return prefix
