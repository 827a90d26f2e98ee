"""An `argparse.ArgumentParser` whose usage errors are user errors: `hf-vlmdrive` prints them in two lines
(the error and where the arguments are listed) with exit code 2, instead of argparse's full usage block."""

from __future__ import annotations

import argparse
from typing import NoReturn

from ..errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` raising [`UserError`] on a bad command line (`--help` still prints the help)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message)


__all__ = ["ArgumentParser"]
