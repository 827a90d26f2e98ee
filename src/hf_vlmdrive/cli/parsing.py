"""Argument parsing shared by the CLI and the examples: dataclasses + `HfArgumentParser` + YAML.

`parse_args(types, argv)` reads `--config file.yaml` (if given) as defaults, then applies the remaining
command-line flags on top, so `train.py --config cfg.yaml --learning_rate 3e-4` works as in TRL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser


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
    parser = HfArgumentParser(list(types), prog=prog)
    if config_path is not None:
        values = load_yaml_config(config_path)
        known = {f.name for t in types for f in dataclasses.fields(t) if f.init}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SystemExit(f"config file {config_path}: unknown argument(s) {unknown}")
        parser.set_defaults(**values)
    return parser.parse_args_into_dataclasses(args=argv)


__all__ = ["load_yaml_config", "parse_args"]
