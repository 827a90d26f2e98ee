"""Scripted-expert demonstrations in the real LIBERO simulator, written as a LeRobot v3.0 dataset.

    from hf_vlmdrive.sim.libero.demos import DemoConfig, generate_demos
    report = generate_demos(DemoConfig(out="libero_demos", suite="libero_object", task_ids=[0, 1, 2],
                                       episodes_per_task=50))
    report["tasks"]["0"]   # {"attempts": 50, "successes": 49, "init_state_ids": [...], ...}

(`hf-vlmdrive data libero-demos ...` runs the same.) For every task, the expert (`ScriptedExpert`) runs from
initial state 0, 1, 2, ... with the evaluation protocol's start (seed, reset, `set_init_state`, 10 wait steps)
until `episodes_per_task` attempts succeeded or the initial states are used up (`max_attempts_per_task`,
default: all of them). Only successful attempts become demonstrations. Initial states: `"fixed"` - the
benchmark's 50 per task (`suite.get_task_init_states`), the same the closed-loop evaluation runs from - or
`"sampled"` - new placements drawn by `env.reset()` after `env.seed(sample_seed + k)` (the way the benchmark made
its own), so a policy can be evaluated on initial states it never saw in training.

Resumable: each attempt is staged on disk as soon as it ends (`<out>/.staging/task<T>/init<I>.json`, and for
a success `init<I>.npz` with its frames, states and actions), so an interrupted run loses at most the attempt
in progress and a rerun of the same command skips every attempt already staged (more episodes per task or more
tasks extend it). Settings that change the demonstrations (`DemoConfig.settings()`) are stored with the stage;
a rerun with other settings fails with an error that says so. When every planned attempt is staged, the
dataset is assembled from the stage with `hf_vlmdrive.data.lerobot.write_lerobot_dataset` (mp4 video, LeRobot
v3.0, `meta/stats.json`) into `<out>` and `<out>/meta/libero_demos.json` records, per dataset episode, the suite,
task, initial state id and source, and per task the attempts, successes and their initial state ids.

Dataset features (as the public LIBERO LeRobot datasets, e.g. physical-intelligence/libero, there at 256 px):
`observation.images.image` (agentview) and `observation.images.wrist_image` (eye in hand), uint8 S x S x 3,
rotated 180 degrees as the evaluation harness sends them (`preprocess_image`); `observation.state` float32 (8,)
= eef pos (3) + axis-angle (3) + gripper qpos (2) (`libero_state`); `action` float32 (7,) = the expert's
delta-pose command (6) + gripper (-1 open, +1 closed); the task's language instruction. One frame per env step
(20 Hz control); the dataset declares `fps` (10, as the public datasets).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError
from .config import LIBERO_MAX_STEPS
from .env import LiberoSuite, _close
from .expert import ExpertConfig, ScriptedExpert, run_expert_episode
from .results import _versions

logger = logging.getLogger(__name__)

DEMOS_FORMAT = "hf_vlmdrive.libero_demos/1"
CAMERAS = {"image": "observation.images.image", "wrist_image": "observation.images.wrist_image"}
STATE_NAMES = ["eef_pos_x", "eef_pos_y", "eef_pos_z", "eef_axis_angle_x", "eef_axis_angle_y", "eef_axis_angle_z",
               "gripper_qpos_left", "gripper_qpos_right"]
ACTION_NAMES = ["d_x", "d_y", "d_z", "d_roll", "d_pitch", "d_yaw", "gripper"]


class DemoStageError(UserError):
    """The staging directory was written with other settings, or holds a damaged attempt."""


@dataclass
class DemoConfig:
    """What `generate_demos` makes. See the module docstring.

    out: dataset directory (the stage lives in `<out>/.staging`).
    suite / task_ids: LIBERO suite and its task ids.
    episodes_per_task: demonstrations (successful attempts) wanted per task.
    max_attempts_per_task: attempts per task at most (default: every fixed initial state; for "sampled":
        2 x episodes_per_task).
    init_states: "fixed" (the benchmark's, ids 0, 1, ...) or "sampled" (`env.reset()` after
        `env.seed(sample_seed + id)`).
    image_size / camera_size: stored image size; rendered size (default: image_size).
    seed: `env.seed(seed)` before every episode, as the evaluation. max_steps: expert steps at most (default:
        the suite's evaluation budget). num_steps_wait: dummy steps first (10, as the evaluation).
    fps / episodes_per_file / codec: passed to the LeRobot writer.
    """

    out: str
    suite: str = "libero_object"
    task_ids: Sequence[int] = (0, 1, 2)
    episodes_per_task: int = 50
    max_attempts_per_task: int | None = None
    init_states: str = "fixed"
    sample_seed: int = 100_000
    image_size: int = 128
    camera_size: int | None = None
    seed: int = 7
    max_steps: int | None = None
    num_steps_wait: int = 10
    fps: int = 10
    episodes_per_file: int = 50
    codec: str | None = None
    expert: ExpertConfig = field(default_factory=ExpertConfig)

    def __post_init__(self):
        self.task_ids = [int(t) for t in self.task_ids]
        if not self.task_ids:
            raise UserError("task_ids is empty: give at least one task id, e.g. --tasks 0,1,2")
        if self.init_states not in ("fixed", "sampled"):
            raise UserError(f"init_states must be 'fixed' or 'sampled', got {self.init_states!r}")
        for name in ("episodes_per_task", "image_size", "fps", "episodes_per_file"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_attempts_per_task is not None and self.max_attempts_per_task < 1:
            raise UserError(f"max_attempts_per_task must be >= 1, got {self.max_attempts_per_task}")
        if self.max_steps is None:
            if self.suite not in LIBERO_MAX_STEPS:
                raise UserError(f"no default max_steps for suite {self.suite!r}: set max_steps")
            self.max_steps = LIBERO_MAX_STEPS[self.suite]
        self.camera_size = int(self.camera_size or self.image_size)
        if isinstance(self.expert, Mapping):
            self.expert = ExpertConfig(**self.expert)

    def attempts_for(self, n_fixed_states: int) -> int:
        if self.init_states == "fixed":
            return min(self.max_attempts_per_task or n_fixed_states, n_fixed_states)
        return self.max_attempts_per_task or 2 * self.episodes_per_task

    def settings(self) -> dict[str, Any]:
        """Everything that changes an attempt's outcome or its stored frames (a stage must agree on it)."""
        return {"suite": self.suite, "init_states": self.init_states,
                "sample_seed": self.sample_seed if self.init_states == "sampled" else None,
                "image_size": self.image_size, "camera_size": self.camera_size, "seed": self.seed,
                "max_steps": self.max_steps, "num_steps_wait": self.num_steps_wait, "expert": asdict(self.expert)}


# ------------------------------------------------------------------------------------------------ the stage


class DemoStage:
    """Finished attempts on disk: `<root>/settings.json`, `task<T>/init<I>.json` (+ `.npz` for a success)."""

    def __init__(self, root: str | Path, settings: Mapping[str, Any]):
        self.root = Path(root)
        self.settings = json.loads(json.dumps(dict(settings)))
        path = self.root / "settings.json"
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            clash = {k: (old.get(k), v) for k, v in self.settings.items() if old.get(k) != v}
            if clash:
                raise DemoStageError(
                    f"{self.root} holds attempts made with other settings ({clash}, as (stage, now)): use another "
                    "--out, or delete that directory to start over")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            _write_json(path, self.settings)

    def _base(self, task_id: int, init_id: int) -> Path:
        return self.root / f"task{int(task_id):02d}" / f"init{int(init_id):04d}"

    def record(self, task_id: int, init_id: int) -> dict[str, Any] | None:
        """The staged record of an attempt, or None when it has not finished."""
        path = self._base(task_id, init_id).with_suffix(".json")
        if not path.exists():
            return None
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DemoStageError(f"{path} is damaged ({err}): delete it to rerun that attempt") from err
        if rec.get("success") and not self._base(task_id, init_id).with_suffix(".npz").exists():
            return None  # the frames are missing: run it again
        return rec

    def records(self, task_id: int) -> list[dict[str, Any]]:
        """Every finished attempt of a task, by initial state id."""
        folder = self.root / f"task{int(task_id):02d}"
        out = []
        for path in sorted(folder.glob("init*.json")) if folder.exists() else []:
            rec = self.record(task_id, int(path.stem[4:]))
            if rec is not None:
                out.append(rec)
        return sorted(out, key=lambda r: r["init_state_id"])

    def save(self, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> None:
        """Stage one finished attempt: the arrays first (atomically), then the record that marks it done."""
        base = self._base(record["task_id"], record["init_state_id"])
        base.parent.mkdir(parents=True, exist_ok=True)
        if arrays is not None:
            tmp = base.with_name(base.name + ".tmp.npz")
            np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
            os.replace(tmp, base.with_suffix(".npz"))
        _write_json(base.with_suffix(".json"), record)

    def arrays_path(self, task_id: int, init_id: int) -> Path:
        return self._base(task_id, init_id).with_suffix(".npz")


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class _StagedImages(Mapping):
    """A staged episode's cameras, read from its npz when asked (the writer goes over episodes several times;
    holding every frame of a dataset in memory would need GBs). A small LRU keeps the last few arrays."""

    _cache: OrderedDict = OrderedDict()
    _cache_size = 4

    def __init__(self, path: Path, frames: int, size: int):
        self._path, self._frames, self._size = path, frames, size

    def __getitem__(self, key: str) -> np.ndarray:
        name = {v: k for k, v in CAMERAS.items()}.get(key)
        if name is None:
            raise KeyError(key)
        cache_key = (str(self._path), name)
        if cache_key in self._cache:
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        with np.load(self._path) as data:
            array = data[name]
        if array.shape != (self._frames, self._size, self._size, 3):
            raise DemoStageError(f"{self._path}: {name} has shape {array.shape}, expected "
                                 f"({self._frames}, {self._size}, {self._size}, 3); delete it to rerun that attempt")
        self._cache[cache_key] = array
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(CAMERAS.values()))

    def __len__(self) -> int:
        return len(CAMERAS)


def staged_episodes(stage: DemoStage, task_ids: Sequence[int], episodes_per_task: int, languages: Mapping[int, str],
                    image_size: int) -> tuple[list, list[dict[str, Any]]]:
    """(LeRobot episodes, their records): the first `episodes_per_task` successes of each task, in id order."""
    from ...data.lerobot import LeRobotEpisode

    episodes, records = [], []
    for task_id in task_ids:
        wins = [r for r in stage.records(task_id) if r["success"]][:episodes_per_task]
        for rec in wins:
            path = stage.arrays_path(task_id, rec["init_state_id"])
            with np.load(path) as data:
                state, action = np.asarray(data["states"], np.float32), np.asarray(data["actions"], np.float32)
            if len(state) != rec["steps"] or action.shape != (rec["steps"], 7):
                raise DemoStageError(f"{path}: {len(state)} states / {action.shape} actions for {rec['steps']} "
                                     "steps; delete it to rerun that attempt")
            episodes.append(LeRobotEpisode(task=languages[task_id], state=state, action=action,
                                           images=_StagedImages(path, rec["steps"], image_size)))
            records.append(rec)
    return episodes, records


# ------------------------------------------------------------------------------------------------ generation


def _init_state(suite, env, config: DemoConfig, task_id: int, init_id: int, fixed: np.ndarray | None) -> np.ndarray:
    if config.init_states == "fixed":
        return np.asarray(fixed[init_id])
    env.seed(config.sample_seed + init_id)
    env.reset()
    return np.asarray(env.get_sim_state())


def summarize_stage(stage: DemoStage, config: DemoConfig, languages: Mapping[int, str]) -> dict[str, Any]:
    """Per task: attempts, successes, success rate, initial state ids tried / succeeded, seconds per attempt."""
    tasks = {}
    for task_id in config.task_ids:
        recs = stage.records(task_id)
        wins = [r for r in recs if r["success"]]
        tasks[str(task_id)] = {
            "task": languages.get(task_id), "attempts": len(recs), "successes": len(wins),
            "success_rate": len(wins) / len(recs) if recs else None,
            "init_state_ids": [r["init_state_id"] for r in recs],
            "failed_init_state_ids": [r["init_state_id"] for r in recs if not r["success"]],
            "errors": sum(r.get("error") is not None for r in recs),
            "mean_steps_success": float(np.mean([r["steps"] for r in wins])) if wins else None,
            "mean_attempt_s": float(np.mean([r["wall_s"] for r in recs])) if recs else None,
            "failed_phases": {str(r["init_state_id"]): r.get("phases", [""])[-1] for r in recs if not r["success"]},
        }
    return tasks


def generate_demos(config: DemoConfig, progress: bool = True, *, suite_factory=LiberoSuite,
                   assemble: bool = True) -> dict[str, Any]:
    """Run (or resume) the attempts of `config`, then write the LeRobot dataset. Returns the report dict.

    The report (also `<out>/meta/libero_demos.json` once assembled): `tasks` (see `summarize_stage`),
    `episodes` (one record per dataset episode: suite, task_id, init_state_id, init_states, steps), `dataset`
    (path, episodes, frames, bytes, seconds to assemble) and `wall_s` of this call.
    """
    start = time.perf_counter()
    out = Path(config.out)
    stage = DemoStage(out / ".staging", config.settings())
    try:
        suite = suite_factory(config.suite)
    except ValueError as err:  # an unknown suite name
        raise UserError(str(err)) from err
    for t in config.task_ids:
        if not 0 <= t < int(suite.n_tasks):
            raise UserError(f"task id {t} out of range: {config.suite} has {suite.n_tasks} tasks (0-{suite.n_tasks - 1})")
    languages = {t: suite.task_language(t) for t in config.task_ids}
    fixed = {t: suite.init_states(t) for t in config.task_ids} if config.init_states == "fixed" else {}

    plan = [(t, list(range(config.attempts_for(len(fixed[t]) if fixed else 0)))) for t in config.task_ids]
    staged = {t: {r["init_state_id"]: r for r in stage.records(t)} for t in config.task_ids}

    def wins_of(task_id: int, ids: Sequence[int]) -> int:
        return sum(bool(r["success"]) for i, r in staged[task_id].items() if i in ids)

    # the bar counts demonstrations (successes) towards episodes_per_task per task; attempts in the postfix
    bar = None
    if progress:
        from tqdm.auto import tqdm

        done_before = sum(min(wins_of(t, ids), config.episodes_per_task) for t, ids in plan)
        bar = tqdm(total=len(plan) * config.episodes_per_task, initial=done_before, desc=f"{config.suite} demos",
                   unit="demo")
    env = None
    try:
        for task_id, ids in plan:
            recs = staged[task_id]
            wins = wins_of(task_id, ids)
            for init_id in ids:
                if wins >= config.episodes_per_task:
                    break
                if init_id in recs:
                    continue
                rec: dict[str, Any] = {"suite": config.suite, "task_id": task_id, "task": languages[task_id],
                                       "init_state_id": init_id, "init_states": config.init_states,
                                       "seed": config.seed, "success": False, "steps": 0, "error": None}
                t0 = time.perf_counter()
                arrays = None
                try:
                    if env is None:
                        env = suite.make_env(task_id, config.camera_size)
                        try:
                            expert = ScriptedExpert.for_env(env, config.expert)
                        except ValueError as err:
                            raise UserError(f"{config.suite} task {task_id} ({languages[task_id]!r}): {err}") from err
                    state = _init_state(suite, env, config, task_id, init_id, fixed.get(task_id))
                    result = run_expert_episode(env, expert, state, seed=config.seed,
                                                num_steps_wait=config.num_steps_wait, max_steps=config.max_steps,
                                                image_size=config.image_size)
                    rec.update(success=bool(result["success"]), steps=int(result["steps"]), phases=result["phases"])
                    if result["success"]:
                        arrays = {"image": result["image"], "wrist_image": result["wrist_image"],
                                  "states": result["states"], "actions": result["actions"]}
                        if config.init_states == "sampled":
                            arrays["init_state"] = state
                except UserError:
                    raise
                except Exception as err:  # noqa: BLE001 - a failed attempt is a result; the env is rebuilt
                    rec["error"] = f"{type(err).__name__}: {err}"
                    logger.warning("attempt task %d init %d raised %s", task_id, init_id, rec["error"])
                    _close(env)
                    env = None
                rec["wall_s"] = round(time.perf_counter() - t0, 3)
                stage.save(rec, arrays)
                wins += bool(rec["success"])
                recs[init_id] = rec
                if bar is not None:
                    bar.set_postfix(task=task_id, attempts=len(recs), failed=len(recs) - wins)
                    bar.update(int(rec["success"]))
            _close(env)
            env = None
    finally:
        _close(env)
        if bar is not None:
            bar.close()

    report: dict[str, Any] = {"format": DEMOS_FORMAT, "settings": config.settings(),
                              "config": json.loads(json.dumps(asdict(config))),
                              "tasks": summarize_stage(stage, config, languages), "versions": dict(_versions())}
    if assemble:
        report.update(assemble_dataset(stage, config, languages, report["tasks"]))
    report["wall_s"] = round(time.perf_counter() - start, 2)
    if assemble:
        _write_json(out / "meta" / "libero_demos.json", report)
    return report


def assemble_dataset(stage: DemoStage, config: DemoConfig, languages: Mapping[int, str],
                     tasks: Mapping[str, Any]) -> dict[str, Any]:
    """Write the LeRobot v3.0 dataset of the staged successes into `config.out` (replacing an older one)."""
    from ...data.lerobot import write_lerobot_dataset

    out = Path(config.out)
    episodes, records = staged_episodes(stage, config.task_ids, config.episodes_per_task, languages,
                                        config.image_size)
    if not episodes:
        raise UserError(f"no successful attempt to write (per task: "
                        f"{ {t: (v['successes'], v['attempts']) for t, v in tasks.items()} } successes/attempts)")
    t0 = time.perf_counter()
    tmp = out / ".assembling"
    shutil.rmtree(tmp, ignore_errors=True)
    write_lerobot_dataset(tmp, episodes, fps=config.fps, version="v3.0", image_storage="video", codec=config.codec,
                          episodes_per_file=config.episodes_per_file, robot_type="panda", state_names=STATE_NAMES,
                          action_names=ACTION_NAMES)
    for part in ("meta", "data", "videos"):
        shutil.rmtree(out / part, ignore_errors=True)
        os.replace(tmp / part, out / part)
    shutil.rmtree(tmp, ignore_errors=True)
    size = sum(p.stat().st_size for part in ("meta", "data", "videos") for p in (out / part).rglob("*") if p.is_file())
    episode_rows = [{"episode_index": i, "suite": r["suite"], "task_id": r["task_id"], "task": r["task"],
                     "init_state_id": r["init_state_id"], "init_states": r["init_states"], "steps": r["steps"]}
                    for i, r in enumerate(records)]
    return {"episodes": episode_rows,
            "dataset": {"path": str(out), "episodes": len(episodes), "frames": int(sum(len(e) for e in episodes)),
                        "bytes": int(size), "assemble_s": round(time.perf_counter() - t0, 2),
                        "image_size": config.image_size, "fps": config.fps}}


def format_demo_report(report: Mapping[str, Any]) -> str:
    """Plain-text table: per task attempts, successes, rate, failed initial state ids; then the dataset line."""
    rows = [("task", "attempts", "successes", "rate", "s/attempt", "failed init ids")]
    for task_id, t in report["tasks"].items():
        rate = "-" if t["success_rate"] is None else f"{100 * t['success_rate']:.0f}%"
        per = "-" if t["mean_attempt_s"] is None else f"{t['mean_attempt_s']:.1f}"
        rows.append((f"{task_id}: {(t['task'] or '')[:55]}", str(t["attempts"]), str(t["successes"]), rate, per,
                     ",".join(map(str, t["failed_init_state_ids"])) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if "dataset" in report:
        d = report["dataset"]
        lines += ["", f"dataset: {d['path']} - {d['episodes']} episodes, {d['frames']} frames, "
                      f"{d['bytes'] / 1e6:.1f} MB, {d['image_size']} px, assembled in {d['assemble_s']} s"]
    return "\n".join(lines)


__all__ = ["ACTION_NAMES", "CAMERAS", "DemoConfig", "DemoStage", "DemoStageError", "STATE_NAMES",
           "assemble_dataset", "format_demo_report", "generate_demos", "staged_episodes", "summarize_stage"]
