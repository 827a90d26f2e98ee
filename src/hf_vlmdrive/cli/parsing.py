"""Argument parsing shared by the CLI and the examples: dataclasses + `HfArgumentParser` + YAML.

`parse_args(types, argv)` reads `--config file.yaml` (if given) as defaults, then applies the remaining
command-line flags on top, so `train.py --config cfg.yaml --learning_rate 3e-4` works as in TRL.

Model hyperparameters are declared once, in the family's `PretrainedConfig`. A recipe's script arguments
inherit [`ModelConfigArguments`], whose one field `model_config` is a mapping of config fields:

    model_config:                       # in the YAML file
      pooling: attention
      head_hidden_sizes: [256, 256]

    --model_config.pooling attention    # on the command line (values are read as YAML: 4, [1, 2], true)
    --model_config '{"pooling": "attention"}'

Every field of the config (and of its sub-configs: `--model_config.geometry_config.num_layers 2`) is
settable this way; keys are checked against the config's signature before anything runs. The flags that
mirrored config fields before (`--pooling`, `--dit_num_layers`, ...) still work for one release, with a
deprecation warning, through each recipe's `deprecated_model_flags` table.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml
from transformers import HfArgumentParser

MODEL_CONFIG_FLAG = "--model_config"


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of argument names to values; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of argument names to values, got {type(data).__name__}")
    return data


def _set_path(target: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        nxt = target.get(key)
        if not isinstance(nxt, dict):
            nxt = target[key] = {}
        target = nxt
    target[keys[-1]] = value


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_value(tokens: list[str]) -> Any:
    values = [yaml.safe_load(t) if t != "" else "" for t in tokens]
    return values[0] if len(values) == 1 else values


def _as_mapping(value: Any, source: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)  # JSON is YAML
        except yaml.YAMLError as err:
            raise ValueError(f"{source} must be a JSON / YAML mapping of config fields, got {value!r}: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{source} must be a mapping of config fields, got {type(value).__name__}: {value!r}")
    return dict(value)


def config_fields(config_class: type) -> list[str]:
    """The keyword arguments a `PretrainedConfig` subclass takes (its own fields)."""
    params = inspect.signature(config_class.__init__).parameters
    return [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


@dataclass
class ModelConfigArguments:
    """Base of a recipe's script arguments: `model_config`, the model's config fields (see the module docstring).

    Subclasses set `model_config_class` (the family's config) and may map old flag names to config keys in
    `deprecated_model_flags` (`{"dit_num_layers": "dit_num_layers", "lora_rank": "lora.r"}`).
    """

    model_config: dict | str | None = field(
        default=None,
        metadata={"help": "Model config fields (a mapping in YAML; JSON on the command line, or "
                          "--model_config.<field> VALUE for one field). See the family's config class."},
    )

    model_config_class: ClassVar[type | None] = None
    deprecated_model_flags: ClassVar[dict[str, str]] = {}
    # Config fields the recipe derives from the data (e.g. action_dim); giving them is an error.
    data_derived_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        self.model_config = _as_mapping(self.model_config, "model_config")
        cls = self.model_config_class
        if cls is None:
            return
        known = config_fields(cls) + ["name_or_path"]
        unknown = sorted(set(self.model_config) - set(known))
        if unknown:
            raise ValueError(
                f"model_config: unknown field(s) {unknown} for {cls.__name__}; its fields are {sorted(known)}"
            )
        derived = sorted(set(self.model_config) & set(self.data_derived_fields))
        if derived:
            raise ValueError(
                f"model_config: {derived} are taken from the data by this recipe; remove them from model_config"
            )


def _extract_model_config(argv: list[str], types: Sequence[type], yaml_values: dict) -> tuple[list[str], dict | None]:
    """Pull `--model_config.k v`, `--model_config JSON` and deprecated model flags out of `argv` / the YAML
    values; returns the remaining argv and the merged model_config (None when no type takes one)."""
    owner = next((t for t in types if isinstance(t, type) and issubclass(t, ModelConfigArguments)), None)
    if owner is None:
        return argv, None
    deprecated = owner.deprecated_model_flags
    merged = _as_mapping(yaml_values.pop("model_config", None), "model_config in the YAML file")
    for key in [k for k in yaml_values if k in deprecated]:
        warnings.warn(f"config key {key!r} is deprecated: use model_config: {{{deprecated[key]}: ...}}",
                      FutureWarning, stacklevel=3)
        value = yaml_values.pop(key)
        if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
            value = yaml.safe_load(value)  # a JSON value in a string (`vision_config: '{...}'`)
        _set_path(merged, deprecated[key], value)
    rest: list[str] = []
    overrides: dict = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, _, inline = arg.partition("=")
        flag = name[2:] if name.startswith("--") else None
        is_dotted = flag is not None and flag.startswith("model_config.")
        if flag == "model_config" or is_dotted or (flag in deprecated):
            j = i + 1
            tokens = [inline] if inline else []
            while not inline and j < len(argv) and not argv[j].startswith("--"):
                tokens.append(argv[j])
                j += 1
            if not tokens and flag in deprecated:
                tokens = ["true"]  # a bare boolean flag (`--freeze_vision`)
            if not tokens:
                raise ValueError(f"{name} needs a value")
            if flag == "model_config":
                overrides = _merge(overrides, _as_mapping(" ".join(tokens), "--model_config"))
            elif is_dotted:
                _set_path(overrides, flag[len("model_config."):], _read_value(tokens))
            else:
                warnings.warn(f"--{flag} is deprecated: use --model_config.{deprecated[flag]}", FutureWarning,
                              stacklevel=3)
                _set_path(overrides, deprecated[flag], _read_value(tokens))
            i = j
            continue
        rest.append(arg)
        i += 1
    return rest, _merge(merged, overrides)


def parse_args(types: Sequence[type], argv: Sequence[str] | None = None, prog: str | None = None) -> tuple:
    """Parse `argv` into instances of the dataclasses `types` (YAML `--config` first, flags override)."""
    argv = list(argv or [])
    config_path = None
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise SystemExit("--config needs a YAML file path")
        config_path = argv[i + 1]
        del argv[i : i + 2]
    values = load_yaml_config(config_path) if config_path is not None else {}
    argv, model_config = _extract_model_config(argv, types, values)
    parser = HfArgumentParser(list(types), prog=prog)
    if values:
        known = {f.name for t in types for f in dataclasses.fields(t) if f.init}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SystemExit(f"config file {config_path}: unknown argument(s) {unknown}")
        parser.set_defaults(**values)
    if model_config is not None:
        parser.set_defaults(model_config=json.loads(json.dumps(model_config)))
    return parser.parse_args_into_dataclasses(args=argv)


__all__ = ["ModelConfigArguments", "config_fields", "load_yaml_config", "parse_args"]
