"""Lazy package exports (PEP 562), shared by every `__init__` of the library.

    __getattr__, __dir__ = lazy_exports(__name__, {"GeoVLAConfig": ".configuration_geovla", ...})

A name is imported from its submodule on first access and cached in the package's namespace, so
importing a package (or a light submodule of it, such as a configuration) imports nothing else.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level `__getattr__` and `__dir__` for `package` serving `table` (name -> submodule path)."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
