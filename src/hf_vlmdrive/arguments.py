"""Argument parsing shared by the recipes, the CLI and the examples: dataclasses + `HfArgumentParser` + YAML.

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
settable this way; keys are checked against the config's signature before anything runs.

This module sits below `cli/` and `trainers/` (both import it; it imports neither).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import yaml
from transformers import HfArgumentParser

from .errors import UserError, UserFileNotFoundError

MODEL_CONFIG_FLAG = "--model_config"


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of argument names to values; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserFileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config file {path} is not valid YAML: {_yaml_error_line(err)}") from err
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of argument names to values, got {type(data).__name__}")
    return data


def _yaml_error_line(err: yaml.YAMLError) -> str:
    """PyYAML's multi-line report as one line: where (line, column) and what."""
    mark = getattr(err, "problem_mark", None)
    what = " ".join(str(x) for x in (getattr(err, "context", None), getattr(err, "problem", None)) if x)
    if mark is None or not what:
        return " ".join(str(err).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}"


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
            raise UserError(f"{source} must be a JSON / YAML mapping of config fields, got {value!r}: {err}") from err
    if not isinstance(value, dict):
        raise UserError(f"{source} must be a mapping of config fields, got {type(value).__name__}: {value!r}")
    return dict(value)


def config_fields(config_class: type) -> list[str]:
    """The keyword arguments a `PretrainedConfig` subclass takes (its own fields)."""
    params = inspect.signature(config_class.__init__).parameters
    return [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


@dataclass
class ModelConfigArguments:
    """Base of a recipe's script arguments: `model_config`, the model's config fields (see the module docstring).

    Subclasses set `model_config_class` (the family's config) and list in `data_derived_fields` the config
    fields the recipe takes from the data.
    """

    model_config: dict | str | None = field(
        default=None,
        metadata={"help": "Model config fields (a mapping in YAML; JSON on the command line, or "
                          "--model_config.<field> VALUE for one field). See the family's config class."},
    )

    model_config_class: ClassVar[type | None] = None
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
            raise UserError(
                f"model_config: unknown field(s) {unknown} for {cls.__name__}; its fields are {sorted(known)}"
            )
        derived = sorted(set(self.model_config) & set(self.data_derived_fields))
        if derived:
            raise UserError(
                f"model_config: {derived} are taken from the data by this recipe; remove them from model_config"
            )


def _extract_model_config(argv: list[str], types: Sequence[type], yaml_values: dict) -> tuple[list[str], dict | None]:
    """Pull `--model_config.k v` and `--model_config JSON` out of `argv` and `model_config` out of the YAML
    values; returns the remaining argv and the merged model_config (None when no type takes one)."""
    owner = next((t for t in types if isinstance(t, type) and issubclass(t, ModelConfigArguments)), None)
    if owner is None:
        return argv, None
    merged = _as_mapping(yaml_values.pop("model_config", None), "model_config in the YAML file")
    rest: list[str] = []
    overrides: dict = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, _, inline = arg.partition("=")
        flag = name[2:] if name.startswith("--") else None
        is_dotted = flag is not None and flag.startswith("model_config.")
        if flag == "model_config" or is_dotted:
            j = i + 1
            tokens = [inline] if inline else []
            while not inline and j < len(argv) and not argv[j].startswith("--"):
                tokens.append(argv[j])
                j += 1
            if not tokens:
                raise UserError(f"{name} needs a value")
            if is_dotted:
                _set_path(overrides, flag[len("model_config."):], _read_value(tokens))
            else:
                overrides = _merge(overrides, _as_mapping(" ".join(tokens), "--model_config"))
            i = j
            continue
        rest.append(arg)
        i += 1
    return rest, _merge(merged, overrides)


def _type_name(annotation: Any) -> str:
    """`float`, `list of str`, `str or None`, `one of ['no', 'steps', 'epoch']`, ..."""
    import enum
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if args and origin not in (list, tuple, set, dict, typing.Literal):  # a Union
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(names)) + (" or null" if type(None) in args else "")
    if origin in (list, tuple, set):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"one of {[m.value for m in annotation]}"
    return getattr(annotation, "__name__", None) or str(annotation)


_BOOL_STRINGS = ("true", "false", "yes", "no", "1", "0")


def _parses(kind: type, text: str) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def value_matches(value: Any, annotation: Any) -> bool:
    """Whether a YAML value fits a dataclass field's annotation (unknown annotations accept anything)."""
    import enum
    import types
    import typing

    if annotation is Any or annotation is None:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return any(value_matches(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, set, typing.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        return not args or all(value_matches(v, args[0]) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    # Strings that argparse converts (YAML 1.1 reads `1e-3` as a string) are accepted for numbers / booleans.
    if annotation is bool:
        return isinstance(value, bool) or (isinstance(value, str) and value.lower() in _BOOL_STRINGS)
    if annotation is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and _parses(int, value))
    if annotation is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            isinstance(value, str) and _parses(float, value))
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation) or value in {m.value for m in annotation}
    return True


def check_yaml_types(values: dict[str, Any], types_: Sequence[type], source: str) -> None:
    """Check YAML values against the argument dataclasses' field types before anything runs."""
    import typing

    for cls in types_:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in values and f.init and not value_matches(values[f.name], hints.get(f.name, Any)):
                value = values[f.name]
                hint = " (YAML reads unquoted no / yes / off / on as booleans: quote it)" if isinstance(value, bool) else ""
                raise UserError(
                    f"{source}: {f.name}: {value!r} ({type(value).__name__}) is not a valid value; expected "
                    f"{_type_name(hints.get(f.name))}{hint}"
                )


def _refuse_config_fields_as_arguments(argv: list[str], values: dict, types: Sequence[type], known: set[str],
                                       config_path: str | None) -> None:
    """A model config field given as a plain flag or YAML key (`--pooling`, `pooling:`) is an error that says
    how to write it (`--model_config.pooling`, `model_config: {pooling: ...}`)."""
    owner = next((t for t in types if isinstance(t, type) and issubclass(t, ModelConfigArguments)), None)
    if owner is None or owner.model_config_class is None:
        return
    fields = set(config_fields(owner.model_config_class)) - known
    name = owner.model_config_class.__name__
    for arg in argv:
        flag = arg.partition("=")[0][2:] if arg.startswith("--") else None
        if flag in fields:
            raise UserError(f"--{flag} is a {name} field: write --model_config.{flag} VALUE")
    for key in values:
        if key in fields:
            raise UserError(f"config file {config_path}: {key!r} is a {name} field: put it under model_config "
                            f"(model_config: {{{key}: ...}})")


def _raise_user_error(message: str):
    raise UserError(message)


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose usage errors are [`UserError`]s: `hf-vlmdrive` prints them in two lines
    (the error and where the arguments are listed) with exit code 2 instead of argparse's usage block; `--help`
    still prints the help."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message)


def parse_args(types: Sequence[type], argv: Sequence[str] | None = None, prog: str | None = None) -> tuple:
    """Parse `argv` into instances of the dataclasses `types` (YAML `--config` first, flags override)."""
    argv = list(argv or [])
    config_path = None
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise UserError("--config needs a YAML file path")
        config_path = argv[i + 1]
        del argv[i : i + 2]
    values = load_yaml_config(config_path) if config_path is not None else {}
    argv, model_config = _extract_model_config(argv, types, values)
    known = {f.name for t in types for f in dataclasses.fields(t) if f.init}
    _refuse_config_fields_as_arguments(argv, values, types, known, config_path)
    parser = HfArgumentParser(list(types), prog=prog)
    parser.error = _raise_user_error  # a bad command line is a user error: two lines, not argparse's usage block
    if values:
        unknown = sorted(set(values) - known)
        if unknown:
            import difflib

            hints = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
            said = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
            raise UserError(f"config file {config_path}: unknown argument(s) {said}")
        check_yaml_types(values, types, f"config file {config_path}")
        parser.set_defaults(**values)
    if model_config is not None:
        parser.set_defaults(model_config=json.loads(json.dumps(model_config)))
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    except UserError:
        raise
    except (ValueError, TypeError) as err:  # an argument dataclass's own validation (e.g. TrainingArguments)
        where = f" (config file {config_path})" if config_path else ""
        hint = ""
        if "bf16/gpu" in str(err):  # TRL's configs default to bf16; transformers says so without the flags
            hint = " (on a machine without a GPU pass --bf16 false --use_cpu true)"
        raise UserError(f"invalid arguments{where}: {err}{hint}") from err
    _check_launcher(parsed)
    return parsed


def _check_launcher(parsed: Sequence) -> None:
    """`accelerate launch --gradient_accumulation_steps N` never reaches the Trainer: stop before any work when it
    differs from the training arguments' value (see `hf_vlmdrive.distributed`)."""
    from transformers import TrainingArguments

    from .distributed import check_launcher_gradient_accumulation

    for args in parsed:
        if isinstance(args, TrainingArguments):
            check_launcher_gradient_accumulation(args)


__all__ = ["ArgumentParser", "ModelConfigArguments", "check_yaml_types", "config_fields", "load_yaml_config", "parse_args", "value_matches"]
