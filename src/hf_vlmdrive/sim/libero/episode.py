"""One closed-loop episode, openpi's loop: seed, reset, fixed initial state, wait steps, replan every k steps."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import ACTION_DIM, LIBERO_DUMMY_ACTION, LiberoEvalConfig
from .observation import libero_observation


def _as_chunk(result: Any, replan_steps: int) -> np.ndarray:
    """The first `replan_steps` actions of `policy.infer`'s result, checked (shape (T, 7), finite, T large enough)."""
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


__all__ = ["run_episode"]
