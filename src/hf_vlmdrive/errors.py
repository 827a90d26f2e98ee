"""The library's one user-error type, and the command line's handler for it.

`UserError` is raised for anything a person can fix: a bad path, value, file or config, a missing extra.
It subclasses `ValueError` (and the subclasses below also the built-in type a caller would catch, e.g.
`FileNotFoundError`), so Python callers catch what they always caught. The CLI (`hf_vlmdrive.cli.main`)
prints a `UserError` as one or two lines and exits with code 2; any other exception is a bug and keeps its
traceback. `--debug` (or `HF_VLMDRIVE_DEBUG=1`) shows the traceback of user errors too.
"""

from __future__ import annotations

import os

DEBUG_ENV = "HF_VLMDRIVE_DEBUG"
USER_ERROR_EXIT_CODE = 2


class UserError(ValueError):
    """Something the user gave is wrong; the message names it, the offending value and what to do."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A path the user gave does not exist."""


class UserKeyError(UserError, KeyError):
    """A key the user's data or statistics lack."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0]) if self.args else ""


class UserTypeError(UserError, TypeError):
    """A value of the wrong type in the user's input."""


class MissingExtraError(UserError, ImportError):
    """An optional dependency (a pip extra of hf_vlmdrive) is not installed."""


class TrainingInterrupted(Exception):
    """Raised by `hf_vlmdrive.interrupt.train_interruptibly`; not a user error and not a bug."""

    exit_code = 130

    def __init__(self, step: int, checkpoint: str | None, output_dir: str):
        self.step, self.checkpoint, self.output_dir = step, checkpoint, output_dir
        where = f"saved {checkpoint}" if checkpoint else f"no checkpoint could be saved in {output_dir}"
        super().__init__(f"interrupted at step {step}; {where}")

    def resume_hint(self, command: str) -> str:
        """`command` with `--resume_from_checkpoint last` (replacing any earlier value)."""
        parts = command.split()
        out, skip = [], False
        for part in parts:
            if skip:
                skip = False
                continue
            if part == "--resume_from_checkpoint":
                skip = True
                continue
            if part.startswith("--resume_from_checkpoint="):
                continue
            out.append(part)
        return " ".join(out + ["--resume_from_checkpoint", "last"])


def require_extra(module: str, extra: str, what: str) -> None:
    """Import `module` or raise `MissingExtraError` naming the extra to install."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{what} needs the {module!r} package ({err}); install it with: pip install 'hf_vlmdrive[{extra}]'"
        ) from err


def debug_enabled() -> bool:
    """True when `HF_VLMDRIVE_DEBUG` asks for tracebacks of user errors."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


__all__ = [
    "DEBUG_ENV",
    "MissingExtraError",
    "TrainingInterrupted",
    "USER_ERROR_EXIT_CODE",
    "UserError",
    "UserFileNotFoundError",
    "UserKeyError",
    "UserTypeError",
    "debug_enabled",
    "require_extra",
]
