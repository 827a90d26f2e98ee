"""`evaluate_libero`: every planned episode of the configured suites, with the results file and resuming."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .config import LiberoEvalConfig
from .env import LiberoSuite, _close
from .episode import run_episode
from .policies import Policy
from .results import (
    RESULTS_FORMAT,
    _jsonable,
    _load_previous,
    _versions,
    _write_json,
    episode_key,
    protocol_string,
    summarize,
)
from .video import _write_video

logger = logging.getLogger(__name__)


def evaluate_libero(policy: Policy | None, config: LiberoEvalConfig | None = None, progress: bool = True, *,
                    policy_name: str | None = None,
                    suite_factory: Callable[[str], Any] = LiberoSuite, num_workers: int = 1,
                    policy_factory: Callable[[], Policy] | None = None) -> dict[str, Any]:
    """Run the closed-loop evaluation of `policy` on `config`'s suites; return (and write) the results dict.

    Offscreen and non-interactive. With `config.results_path` the results JSON is rewritten after every
    episode and an interrupted evaluation resumes from it (finished episodes are skipped). An episode whose
    policy or env raises counts as a failure and keeps the error (`episodes[i]["error"]`); the env is then
    rebuilt for the next episode. Returns the JSON's content: `protocol`, `settings`, `per_suite` (success rate,
    episodes, successes, errors, and `tasks` with per-task rates), `average_success_rate` (mean over suites),
    `episodes` (one record per episode), `wall_s` (this call), `versions`.

    `num_workers` > 1 runs the episodes in that many simulator processes (spawned; each builds its own suites and
    envs with `suite_factory` and its own policy with `policy_factory`, a picklable callable: N in-process model
    copies, or N clients of one policy server). The episodes are split into contiguous blocks (a worker keeps its
    env across the episodes of one task); this process alone writes the results file, so resuming works the same.
    Every episode re-seeds the env and resets the policy, so its outcome does not depend on which worker ran it.
    """
    config = config or LiberoEvalConfig()
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if policy is None and policy_factory is None:
        raise ValueError("evaluate_libero needs a policy, or a policy_factory")
    if num_workers > 1 and policy_factory is None:
        raise ValueError("num_workers > 1 needs policy_factory: a picklable callable that builds the policy in each "
                         "worker process")
    path = Path(config.results_path) if config.results_path else None
    done_episodes = _load_previous(path, config)
    previous = json.loads(path.read_text(encoding="utf-8")) if path is not None and done_episodes else {}
    start = time.perf_counter()
    name = policy_name or repr(policy if policy is not None else policy_factory)
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

    def record_done(record: dict[str, Any]) -> None:
        done_episodes[record["key"]] = record
        if path is not None:
            _write_json(path, results())
        if bar is not None:
            summary = summarize(done_episodes, plan)
            bar.set_postfix(success=f"{summary['num_successes']}/{summary['num_episodes']}")
            bar.update(1)
        logger.info("%s %s in %d steps (%.1f s)%s", record["key"], "success" if record["success"] else "failure",
                    record["steps"], record["wall_s"], f" error {record['error']}" if record["error"] else "")

    try:
        if num_workers > 1 and len(todo) > 1:
            _run_in_workers(todo, plan, config, suite_factory, policy_factory, num_workers, record_done)
        else:
            if policy is None:
                policy = policy_factory()
            for record in _run_episodes(todo, suites, plan, policy, config):
                record_done(record)
    finally:
        if bar is not None:
            bar.close()
    out = results()
    if path is not None:
        _write_json(path, out)
    return out


def _run_episodes(todo, suites, plan, policy: Policy, config: LiberoEvalConfig) -> Iterator[dict[str, Any]]:
    """Run the episodes of `todo` in order with one env at a time; yield each episode's record."""
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
            yield record
    finally:
        _close(env)


def _split(todo: list, parts: int) -> list[list]:
    """`todo` in `parts` contiguous blocks of near-equal size (a block keeps a task's episodes together)."""
    size, extra = divmod(len(todo), parts)
    blocks, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        blocks.append(todo[start:end])
        start = end
    return [b for b in blocks if b]


def _worker_main(worker: int, todo, plan, config, suite_factory, policy_factory, threads: int, queue) -> None:
    """A simulator process: build suites, envs and the policy here, send back one record per episode."""
    try:
        import torch

        torch.set_num_threads(threads)
        suites = {s: suite_factory(s) for s in {s for s, _, _ in todo}}
        policy = policy_factory()
        try:
            for record in _run_episodes(todo, suites, plan, policy, config):
                queue.put(("record", worker, record))
        finally:
            if hasattr(policy, "close"):
                policy.close()
        queue.put(("done", worker, None))
    except BaseException:  # noqa: BLE001 - reported to the parent, which decides
        queue.put(("crash", worker, traceback.format_exc(limit=12)[-4000:]))


class LiberoWorkerError(RuntimeError):
    """A simulator worker process died; the episodes it did not finish are not in the results (resume reruns them)."""


def _run_in_workers(todo, plan, config, suite_factory, policy_factory, num_workers, record_done) -> None:
    import multiprocessing as mp
    import os

    blocks = _split(todo, num_workers)
    ctx = mp.get_context("spawn")  # no fork: MuJoCo / EGL and torch's threads do not survive it
    results = ctx.SimpleQueue()  # put() writes through at once: a record survives its worker dying right after
    threads = max(1, (os.cpu_count() or 1) // len(blocks))
    procs = [ctx.Process(target=_worker_main, name=f"libero-worker-{i}", daemon=True,
                         args=(i, block, plan, config, suite_factory, policy_factory, threads, results))
             for i, block in enumerate(blocks)]
    logger.info("LIBERO: %d episodes in %d worker processes (%s episodes each)", len(todo), len(procs),
                "/".join(str(len(b)) for b in blocks))
    for proc in procs:
        proc.start()
    running, crashes = set(range(len(procs))), []
    try:
        while running:
            if results.empty():
                time.sleep(0.05)
                for i in list(running):
                    if not procs[i].is_alive():  # died without a word (killed, segfault in the simulator)
                        if results.empty():  # nothing of it still in the pipe
                            running.discard(i)
                            crashes.append(f"worker {i} exited with code {procs[i].exitcode}")
                continue
            kind, worker, payload = results.get()
            if kind == "record":
                record_done(payload)
            else:
                running.discard(worker)
                if kind == "crash":
                    crashes.append(f"worker {worker}: {payload}")
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=10)
    if crashes:
        raise LiberoWorkerError("LIBERO worker process(es) failed; the finished episodes are saved, re-run with the "
                                "same --output to resume the rest:\n" + "\n".join(crashes))


__all__ = ["LiberoWorkerError", "evaluate_libero"]
