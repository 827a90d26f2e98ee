"""`hf-vlmdrive`: one command-line entry point, one module per command group.

Every module of this package (other than the helpers starting with `_`) defines
`register(registry)` and adds its commands there, e.g. `registry.add(("train", "waypoint"), run, "...")`.
Modules are discovered at start-up, so a new command group is a new file and nothing else.
Commands parse their own arguments (dataclasses + `HfArgumentParser`, YAML via `--config`).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import USER_ERROR_EXIT_CODE, TrainingInterrupted, UserError, debug_enabled
from ..log import configure_logging

Runner = Callable[[list[str]], int | None]


@dataclass
class CommandRegistry:
    """Maps command paths such as ("train", "waypoint") to a runner taking the remaining argv."""

    commands: dict[tuple[str, ...], tuple[Runner, str]] = field(default_factory=dict)

    def add(self, path: Sequence[str], run: Runner, help: str) -> None:
        """Register `run` under `path` (e.g. `("eval", "captions")`) with a one-line `help`."""
        key = tuple(path)
        if key in self.commands:
            raise UserError(f"command {' '.join(key)!r} registered twice")
        self.commands[key] = (run, help)

    def resolve(self, argv: list[str]) -> tuple[tuple[str, ...], Runner, list[str]] | None:
        """Longest registered command path that prefixes `argv`."""
        for length in range(min(len(argv), 3), 0, -1):
            key = tuple(argv[:length])
            if key in self.commands:
                return key, self.commands[key][0], argv[length:]
        return None

    def usage(self) -> str:
        lines = ["usage: hf-vlmdrive <command> [<args>] (each command takes --help)", "", "commands:"]
        width = max((len(" ".join(k)) for k in self.commands), default=10)
        for key in sorted(self.commands):
            lines.append(f"  {' '.join(key):<{width}}  {self.commands[key][1]}")
        return "\n".join(lines)


def build_registry() -> CommandRegistry:
    """Import every command module of this package and let it register its commands."""
    registry = CommandRegistry()
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(registry)
    return registry


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hf-vlmdrive` console script. Returns the process exit code.

    A [`UserError`] (bad path, value, file or config, missing extra) is printed as one or two lines and
    gives exit code 2; `--debug` (anywhere on the command line) or `HF_VLMDRIVE_DEBUG=1` shows its
    traceback. Any other exception is a bug and keeps its traceback. An interrupted training run
    ([`TrainingInterrupted`]) prints where it stopped and the command that resumes it (exit code 130).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or debug_enabled()
    argv = [a for a in argv if a != "--debug"]
    configure_logging(debug)
    registry = build_registry()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(registry.usage())
        return 0
    found = registry.resolve(argv)
    if found is None:
        print(f"hf-vlmdrive: unknown command {' '.join(argv[:2])!r}\n\n{registry.usage()}", file=sys.stderr)
        return 2
    command, run, rest = found
    prog = "hf-vlmdrive " + " ".join(command)
    try:
        code = run(rest)
    except UserError as err:
        if debug:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        print(f"  (run with --debug for the traceback; `{prog} --help` lists the arguments)", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    except TrainingInterrupted as stop:
        print(f"{prog}: {stop}", file=sys.stderr)
        print(f"  resume with: {stop.resume_hint(' '.join([prog, *rest]))}", file=sys.stderr)
        return stop.exit_code
    return 0 if code is None else int(code)


__all__ = ["CommandRegistry", "build_registry", "main"]
