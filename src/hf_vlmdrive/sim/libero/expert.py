"""A scripted, privileged-state expert for LIBERO pick-and-place tasks (the libero_object suite).

    from hf_vlmdrive.sim.libero import LiberoSuite
    from hf_vlmdrive.sim.libero.expert import ScriptedExpert, run_expert_episode

    suite = LiberoSuite("libero_object")
    env = suite.make_env(0, camera_size=128)
    result = run_expert_episode(env, ScriptedExpert.for_env(env), suite.init_states(0)[0])
    result["success"], result["actions"].shape      # True, (T, 7)

The expert reads what no learned policy sees - the target object's and the container's poses
(`<object>_pos`, `<object>_quat` in the observation) and their collision geometry (MuJoCo's per-geom
bounding boxes) - and drives the benchmark's own controller, robosuite's delta-pose OSC (`OSC_POSE`,
`control_delta`): an action is 7 numbers in [-1, 1], the first three scaled by the controller's
`output_max` (0.05 m) into a displacement of the goal position, the next three by 0.5 rad into an axis-angle
rotation of the goal orientation (world frame), the last one the gripper (-1 open, +1 closed). So the action
that asks for a displacement `d` (m) is `d / 0.05` (`displacement_to_action`).

Phases (`Phase`): APPROACH (above the object at hover height, the gripper turned so that its fingers close
across the object's narrow side and pointing straight down), DESCEND (to grasp height), GRASP (close, hold
still), LIFT (to carry height), CARRY (above the container), LOWER (to release height), RELEASE (open, hold
still), RETREAT (up again), then DONE (hold still, open). Each step's arm action is a proportional command
towards the phase's target, clipped to `max_action` and rate limited (`max_action_change` per step), so the
actions are smooth, bounded and a function of what the robot can see - what a policy can imitate.

The object and container come from the task's BDDL goal `(In <object> <container>_contain_region)`
(`parse_bddl`, `pick_place_target`). Episodes follow the evaluation protocol of `hf_vlmdrive.sim.libero`
(`env.seed`, `reset`, `set_init_state`, 10 wait steps of `[0]*6 + [-1]`), so a recorded demonstration starts
where a policy under evaluation starts.
"""

from __future__ import annotations

import enum
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import LIBERO_DUMMY_ACTION
from .observation import libero_state, preprocess_image

# robosuite 1.4's controllers/config/osc_pose.json, the controller LIBERO builds (input range [-1, 1]).
OSC_POSITION_SCALE = 0.05  # m of goal displacement per action unit
OSC_ROTATION_SCALE = 0.5  # rad of goal rotation per action unit
GRIPPER_OPEN, GRIPPER_CLOSED = -1.0, 1.0


class Phase(str, enum.Enum):
    """The expert's phases, in order."""

    APPROACH = "approach"
    DESCEND = "descend"
    GRASP = "grasp"
    LIFT = "lift"
    CARRY = "carry"
    LOWER = "lower"
    RELEASE = "release"
    RETREAT = "retreat"
    DONE = "done"


# ------------------------------------------------------------------------------------------------ BDDL


@dataclass
class BddlProblem:
    """What the expert needs from a LIBERO BDDL file: language, objects (name -> category), goal atoms."""

    language: str
    objects: dict[str, str]
    obj_of_interest: list[str]
    goal: list[tuple[str, ...]]


def _sexpr(text: str) -> list:
    tokens = re.findall(r"\(|\)|[^\s()]+", re.sub(r";[^\n]*", "", text))
    stack: list[list] = [[]]
    for tok in tokens:
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise ValueError("unbalanced ')' in BDDL")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise ValueError("unbalanced '(' in BDDL")
    return stack[0]


def _atoms(expr) -> list[tuple[str, ...]]:
    """Flatten `(And (In a b) (On c d))` into [("in", "a", "b"), ("on", "c", "d")]."""
    if not isinstance(expr, list) or not expr:
        return []
    head = expr[0]
    if isinstance(head, str) and head.lower() in ("and",):
        return [a for sub in expr[1:] for a in _atoms(sub)]
    if isinstance(head, str) and all(isinstance(x, str) for x in expr):
        return [(head.lower(), *expr[1:])]
    return [a for sub in expr for a in _atoms(sub)]


def parse_bddl(source: str | Path) -> BddlProblem:
    """Parse a LIBERO BDDL problem (a path or its text): `:language`, `:objects`, `:obj_of_interest`, `:goal`."""
    text = str(source)
    if "(" not in text:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"BDDL file {path} does not exist")
        text = path.read_text(encoding="utf-8")
    tree = _sexpr(text)
    (problem,) = [x for x in tree if isinstance(x, list)][:1] or [None]
    if not problem or problem[0] != "define":
        raise ValueError("not a BDDL problem: expected '(define (problem ...) ...)'")
    sections = {x[0].lower(): x[1:] for x in problem if isinstance(x, list) and x and isinstance(x[0], str)}
    language = " ".join(str(w) for w in sections.get(":language", []))
    objects: dict[str, str] = {}
    words = [w for w in sections.get(":objects", []) if isinstance(w, str)]
    pending: list[str] = []
    i = 0
    while i < len(words):
        if words[i] == "-" and i + 1 < len(words):
            for name in pending:
                objects[name] = words[i + 1]
            pending, i = [], i + 2
        else:
            pending.append(words[i])
            i += 1
    interest = [w for w in sections.get(":obj_of_interest", []) if isinstance(w, str)]
    goal = [a for part in sections.get(":goal", []) for a in _atoms(part)]
    return BddlProblem(language=language, objects=objects, obj_of_interest=interest, goal=goal)


def pick_place_target(problem: BddlProblem) -> tuple[str, str]:
    """(object, container) of a pick-and-place goal `(In <object> <container>_contain_region)`.

    Raises a ValueError naming the goal when the task is not a single pick-and-place into a container.
    """
    ins = [a for a in problem.goal if a[0] == "in" and len(a) == 3]
    if len(ins) != 1 or len(problem.goal) != 1:
        raise ValueError(f"the scripted expert handles one '(In <object> <container>_contain_region)' goal; "
                         f"this task's goal is {problem.goal}")
    _, obj, region = ins[0]
    container = next((name for name in sorted(problem.objects, key=len, reverse=True)
                      if region.startswith(name + "_")), None)
    if obj not in problem.objects or container is None:
        raise ValueError(f"goal (In {obj} {region}): object or container not among the BDDL objects "
                         f"{sorted(problem.objects)}")
    return obj, container


# ------------------------------------------------------------------------------------------------ geometry


@dataclass
class ObjectGeometry:
    """An object's collision extent in the world (from MuJoCo's per-geom bounding boxes), now.

    closing_axis: unit (x, y) along the object's narrowest horizontal extent (where the fingers close).
    width: extent along `closing_axis` (m). bottom_z / top_z: lowest / highest point (m). center: (3,) centre of
    the extent.
    """

    closing_axis: np.ndarray
    width: float
    length: float
    bottom_z: float
    top_z: float
    center: np.ndarray

    @classmethod
    def from_points(cls, points: np.ndarray) -> ObjectGeometry:
        """Extent of a world-frame point cloud (N, 3): principal axes of its horizontal footprint."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        xy = pts[:, :2] - pts[:, :2].mean(0)
        cov = xy.T @ xy / max(len(xy), 1)
        evals, evecs = np.linalg.eigh(cov)  # ascending: evecs[:, 0] is the narrow direction
        minor, major = evecs[:, 0], evecs[:, 1]
        width = float(np.ptp(xy @ minor))
        length = float(np.ptp(xy @ major))
        if math.isclose(width, length, rel_tol=1e-3):  # round footprint: any axis; keep x
            minor = np.array([1.0, 0.0])
        center = np.concatenate([(pts[:, :2].min(0) + pts[:, :2].max(0)) / 2, [(pts[:, 2].min() + pts[:, 2].max()) / 2]])
        return cls(closing_axis=minor / np.linalg.norm(minor), width=width, length=length,
                   bottom_z=float(pts[:, 2].min()), top_z=float(pts[:, 2].max()), center=center)


def collision_points(sim, body_name: str) -> np.ndarray:
    """World-frame corners (N, 3) of the bounding boxes of `body_name`'s collision geoms (and its children's)."""
    model, data = sim.model, sim.data
    raw = getattr(model, "_model", model)
    root = model.body_name2id(body_name)
    bodies = {root}
    for b in range(model.nbody):  # children follow parents in MuJoCo's body order
        if int(model.body_parentid[b]) in bodies and b != 0:
            bodies.add(b)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    corners = []
    for g in range(model.ngeom):
        if int(model.geom_bodyid[g]) not in bodies or (model.geom_contype[g] == 0 and model.geom_conaffinity[g] == 0):
            continue
        aabb = np.asarray(raw.geom_aabb[g], dtype=np.float64)
        local = aabb[:3] + signs * aabb[3:]
        rot = np.asarray(data.geom_xmat[g], dtype=np.float64).reshape(3, 3)
        corners.append(local @ rot.T + np.asarray(data.geom_xpos[g], dtype=np.float64))
    if not corners:
        raise ValueError(f"body {body_name!r} has no collision geoms")
    return np.concatenate(corners)


def object_geometry(env, object_name: str) -> ObjectGeometry:
    """`ObjectGeometry` of a LIBERO object (by its BDDL name, e.g. `alphabet_soup_1`) in a live env."""
    inner = getattr(env, "env", env)
    obj = inner.get_object(object_name) if hasattr(inner, "get_object") else None
    body = getattr(obj, "root_body", None) or f"{object_name}_main"
    return ObjectGeometry.from_points(collision_points(inner.sim, body))


# ------------------------------------------------------------------------------------------------ rotations


def _quat_to_mat(quat: Sequence[float]) -> np.ndarray:
    """(x, y, z, w) quaternion -> rotation matrix."""
    x, y, z, w = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rotation_error(goal: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle (3,) of the world-frame rotation taking `current` to `goal` (`goal @ current.T`), angle <= pi."""
    r = goal @ current.T
    cos = float(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))
    angle = math.acos(cos)
    if angle < 1e-9:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    norm = np.linalg.norm(axis)
    if norm < 1e-9:  # angle ~ pi: the axis from the symmetric part
        axis = np.sqrt(np.clip((np.diag(r) + 1) / 2, 0, None))
        norm = np.linalg.norm(axis)
    return axis / norm * angle


def top_down_orientation(closing_axis: Sequence[float], current: np.ndarray) -> np.ndarray:
    """The gripper pointing straight down with its fingers closing along `closing_axis` (x, y).

    The eef frame of LIBERO's Panda: z points out of the gripper, the fingers move along y. Of the two
    opposite finger directions the one nearer the current one is taken (the gripper is symmetric).
    """
    y = np.array([closing_axis[0], closing_axis[1], 0.0], dtype=np.float64)
    y /= np.linalg.norm(y)
    if float(y @ current[:, 1]) < 0:
        y = -y
    z = np.array([0.0, 0.0, -1.0])
    return np.stack([np.cross(y, z), y, z], axis=1)


def displacement_to_action(displacement: Sequence[float], scale: float = OSC_POSITION_SCALE) -> np.ndarray:
    """The OSC action asking for a goal displacement (m): `displacement / output_max`, not clipped."""
    return np.asarray(displacement, dtype=np.float64) / scale


# ------------------------------------------------------------------------------------------------ expert


@dataclass
class ExpertConfig:
    """The expert's targets and gains (lengths in m, rotations in rad).

    hover_height: height above the grasp point where the approach ends. grasp_clearance: the grasp point is at
    least this far above the object's bottom (the fingertips reach below the grip site). carry_height: eef
    height while carrying. release_clearance: the object's bottom this far above the container's top at
    release. position_gain: fraction of the remaining distance asked per step (1: all of it, capped).
    max_action / max_rotation_action: caps of the arm action's components. max_action_change: rate limit of
    each arm component per step. grasp_steps / release_steps: steps the gripper is given to close / open.
    position_tolerance / rotation_tolerance: when a target counts as reached. phase_timeout: steps after which
    a phase that has not reached its target moves on anyway (a stuck descent grasps where it is).
    """

    hover_height: float = 0.08
    grasp_clearance: float = 0.012
    carry_height: float = 0.28
    release_clearance: float = 0.04
    position_gain: float = 1.0
    rotation_gain: float = 1.0
    max_action: float = 1.0
    max_rotation_action: float = 0.5
    max_action_change: float = 0.25
    grasp_steps: int = 12
    release_steps: int = 10
    position_tolerance: float = 0.01
    rotation_tolerance: float = 0.08
    phase_timeout: int = 60
    position_scale: float = OSC_POSITION_SCALE
    rotation_scale: float = OSC_ROTATION_SCALE


@dataclass
class ScriptedExpert:
    """Pick `object_name` up and drop it into `container_name`, from privileged observations.

    Call `reset(obs, object_geometry, container_geometry)` after the wait steps, then `act(obs)` every step;
    `phase` tells where it is, `done` that it released the object and retreated.
    """

    object_name: str
    container_name: str
    config: ExpertConfig = field(default_factory=ExpertConfig)

    def __post_init__(self):
        self.phase = Phase.APPROACH
        self._last = np.zeros(6)
        self._steps_in_phase = 0
        self._goal_ori: np.ndarray | None = None
        self._object: ObjectGeometry | None = None
        self._container: ObjectGeometry | None = None
        self._grasp_offset = 0.0  # object bottom below the eef once grasped
        self._hold: np.ndarray | None = None
        self._object_offset = np.zeros(2)
        self._object_z0 = 0.0
        self._container_offset = np.zeros(2)
        self.history: list[str] = []
        self._stopped = False

    @classmethod
    def for_env(cls, env, config: ExpertConfig | None = None) -> ScriptedExpert:
        """The expert for a LIBERO env's pick-and-place task (object and container from its BDDL goal)."""
        inner = getattr(env, "env", env)
        source = getattr(inner, "bddl_file_name", None) or getattr(env, "bddl_file_name", None)
        if source is None:
            raise ValueError("the env has no bddl_file_name: pass object_name and container_name yourself")
        obj, container = pick_place_target(parse_bddl(source))
        return cls(obj, container, config or ExpertConfig())

    # ----------------------------------------------------------------------------------------------- state

    def reset(self, obs: Mapping[str, Any], object_geometry: ObjectGeometry,
              container_geometry: ObjectGeometry) -> None:
        """Start a new episode from `obs` with the object's and container's geometry measured now."""
        self.__post_init__()
        self._object, self._container = object_geometry, container_geometry
        self._object_offset = object_geometry.center[:2] - np.asarray(obs[f"{self.object_name}_pos"])[:2]
        self._object_z0 = float(np.asarray(obs[f"{self.object_name}_pos"])[2])
        self._container_offset = container_geometry.center[:2] - np.asarray(obs[f"{self.container_name}_pos"])[:2]
        current = _quat_to_mat(obs["robot0_eef_quat"])
        self._goal_ori = top_down_orientation(object_geometry.closing_axis, current)
        self.history = [Phase.APPROACH.value]

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def stop(self) -> None:
        """Hold still from now on (the arm action ramps down to zero at the rate limit, the gripper keeps its
        command): the episode loop calls it once the task is solved."""
        self._stopped = True

    def _next(self, phase: Phase) -> None:
        self.phase = phase
        self._steps_in_phase = 0
        self._hold = None
        self.history.append(phase.value)

    def _object_extent_z(self, obj_pos: np.ndarray) -> tuple[float, float, float]:
        """(bottom, centre, top) height of the object now: its extent at reset moved with its body."""
        geo = self._object
        shift = float(obj_pos[2] - self._object_z0)
        return geo.bottom_z + shift, float(geo.center[2]) + shift, geo.top_z + shift

    def _grasp_z(self, obj_pos: np.ndarray) -> float:
        bottom, center, top = self._object_extent_z(obj_pos)
        return float(min(max(center, bottom + self.config.grasp_clearance), top - 0.005))

    # ----------------------------------------------------------------------------------------------- acting

    def targets(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, float]:
        """(target eef position (3,), gripper command) of the current phase."""
        cfg = self.config
        eef = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        obj = np.asarray(obs[f"{self.object_name}_pos"], dtype=np.float64)
        cont = np.asarray(obs[f"{self.container_name}_pos"], dtype=np.float64)
        obj_xy = obj[:2] + self._object_offset  # the centre of the object's extent, not its body origin
        grasp_z = self._grasp_z(obj)
        cont_xy = cont[:2] + self._container_offset
        if self.phase is Phase.APPROACH:
            return np.array([*obj_xy, max(grasp_z + cfg.hover_height, min(eef[2], cfg.carry_height))]), GRIPPER_OPEN
        if self.phase is Phase.DESCEND:
            return np.array([*obj_xy, grasp_z]), GRIPPER_OPEN
        if self.phase in (Phase.GRASP, Phase.RELEASE):
            if self._hold is None:
                self._hold = eef.copy()
            return self._hold, GRIPPER_CLOSED if self.phase is Phase.GRASP else GRIPPER_OPEN
        if self.phase is Phase.LIFT:
            return np.array([eef[0], eef[1], cfg.carry_height]), GRIPPER_CLOSED
        if self.phase is Phase.CARRY:
            return np.array([*cont_xy, cfg.carry_height]), GRIPPER_CLOSED
        if self.phase is Phase.LOWER:
            top = self._container.top_z if self._container is not None else cont[2]
            return np.array([*cont_xy, top + cfg.release_clearance + self._grasp_offset]), GRIPPER_CLOSED
        if self.phase is Phase.RETREAT:
            return np.array([eef[0], eef[1], cfg.carry_height]), GRIPPER_OPEN
        return eef.copy(), GRIPPER_OPEN

    def _advance(self, obs: Mapping[str, Any], target: np.ndarray, rot_err: float) -> None:
        cfg = self.config
        eef = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        err = target - eef
        xy_ok = np.linalg.norm(err[:2]) < cfg.position_tolerance
        z_ok = abs(err[2]) < cfg.position_tolerance
        timeout = self._steps_in_phase >= cfg.phase_timeout
        p = self.phase
        if p is Phase.APPROACH and ((xy_ok and abs(err[2]) < 2 * cfg.position_tolerance
                                      and rot_err < cfg.rotation_tolerance) or timeout and xy_ok):
            self._next(Phase.DESCEND)
        elif p is Phase.DESCEND and ((z_ok and np.linalg.norm(err[:2]) < 1.5 * cfg.position_tolerance) or timeout):
            self._next(Phase.GRASP)
        elif p is Phase.GRASP and self._steps_in_phase >= cfg.grasp_steps:
            obj = np.asarray(obs[f"{self.object_name}_pos"], dtype=np.float64)
            bottom = self._object_extent_z(obj)[0]
            self._grasp_offset = float(max(eef[2] - bottom, 0.0))
            self._next(Phase.LIFT)
        elif p is Phase.LIFT and (err[2] > -2 * cfg.position_tolerance or timeout):
            self._next(Phase.CARRY)
        elif p is Phase.CARRY and (np.linalg.norm(err[:2]) < 1.5 * cfg.position_tolerance or timeout):
            self._next(Phase.LOWER)
        elif p is Phase.LOWER and (z_ok or timeout):
            self._next(Phase.RELEASE)
        elif p is Phase.RELEASE and self._steps_in_phase >= cfg.release_steps:
            self._next(Phase.RETREAT)
        elif p is Phase.RETREAT and (err[2] > -2 * cfg.position_tolerance or timeout):
            self._next(Phase.DONE)

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The 7-d action for `obs`: arm deltas in [-1, 1] (position, axis-angle rotation), gripper -1 / +1."""
        if self._goal_ori is None:
            raise RuntimeError("call reset(obs, object_geometry, container_geometry) before act()")
        cfg = self.config
        current = _quat_to_mat(obs["robot0_eef_quat"])
        rot = rotation_error(self._goal_ori, current)
        target, _ = self.targets(obs)
        if not self._stopped:
            self._advance(obs, target, float(np.linalg.norm(rot)))
        target, gripper = self.targets(obs)
        eef = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        pos = np.clip(cfg.position_gain * displacement_to_action(target - eef, cfg.position_scale),
                      -cfg.max_action, cfg.max_action)
        rot_a = np.clip(cfg.rotation_gain * rot / cfg.rotation_scale, -cfg.max_rotation_action,
                        cfg.max_rotation_action)
        desired = np.zeros(6) if self._stopped else np.concatenate([pos, rot_a])
        arm = self._last + np.clip(desired - self._last, -cfg.max_action_change, cfg.max_action_change)
        self._last = arm
        self._steps_in_phase += 1
        return np.concatenate([arm, [gripper]]).astype(np.float32)


# ------------------------------------------------------------------------------------------------ episodes


def run_expert_episode(env, expert: ScriptedExpert, init_state: np.ndarray, *, seed: int = 7,
                       num_steps_wait: int = 10, max_steps: int = 280, image_size: int | None = None,
                       stop_on_success: bool = True, settle_steps: int = 5) -> dict[str, Any]:
    """One expert episode with the evaluation protocol's start; records what a demonstration holds.

    `env.seed(seed)`, `env.reset()`, `env.set_init_state(init_state)`, `num_steps_wait` steps of
    `[0]*6 + [-1]`, then at most `max_steps` expert steps. With `stop_on_success` the episode ends
    `settle_steps` steps after the env first reports success (LIBERO's `done`) while the expert comes to a
    stop (`ScriptedExpert.stop`).

    Returns `{"success", "steps", "phases" (phase history), "wall_s", "states" (T, 8) float32 (`libero_state`
    before each action), "actions" (T, 7) float32}` and, with `image_size`, `"image"` / `"wrist_image"`
    (T, S, S, 3) uint8 (`preprocess_image`: rotated 180 degrees, as the evaluation harness sends them).
    """
    t0 = time.perf_counter()
    if hasattr(env, "seed"):
        env.seed(seed)
    env.reset()
    obs = env.set_init_state(init_state)
    for _ in range(num_steps_wait):
        obs, _, _, _ = env.step(list(LIBERO_DUMMY_ACTION))
    expert.reset(obs, object_geometry(env, expert.object_name), object_geometry(env, expert.container_name))
    states, actions, images, wrists = [], [], [], []
    success, success_at = False, None
    for step in range(max_steps):
        action = expert.act(obs)
        states.append(libero_state(obs).astype(np.float32))
        actions.append(action)
        if image_size:
            images.append(preprocess_image(obs["agentview_image"], image_size))
            wrists.append(preprocess_image(obs["robot0_eye_in_hand_image"], image_size))
        obs, _, done, _ = env.step(action.astype(np.float64).tolist())
        if done and success_at is None:
            success, success_at = True, step
            if stop_on_success:
                expert.stop()  # hold still (smoothly) until the episode ends
        if stop_on_success and success_at is not None and step - success_at >= settle_steps:
            break
    out: dict[str, Any] = {"success": success, "steps": len(actions), "phases": list(expert.history),
                           "wall_s": round(time.perf_counter() - t0, 3),
                           "states": np.asarray(states, dtype=np.float32).reshape(-1, 8),
                           "actions": np.asarray(actions, dtype=np.float32).reshape(-1, 7)}
    if image_size:
        out["image"] = np.asarray(images, dtype=np.uint8)
        out["wrist_image"] = np.asarray(wrists, dtype=np.uint8)
    return out


class ExpertPolicy:
    """The scripted expert behind the evaluation's policy interface, for `evaluate_libero` /
    `hf-vlmdrive eval libero --policy expert` (the expert row of a results table, same protocol string).

    `evaluate_libero` hands it the raw observation and the env every step (`observe_privileged`), which no
    learned policy gets; `infer` answers with the expert's action for the latest observation, repeated
    `action_horizon` times (the harness executes `replan_steps` of them open loop). The expert itself acts
    every step: evaluate it with `replan_steps=1` (`--replan-steps 1`) to measure it as it makes demonstrations.
    """

    def __init__(self, action_horizon: int = 1, config: ExpertConfig | None = None):
        self.action_horizon = int(action_horizon)
        self.config = config or ExpertConfig()
        self.reset()

    def reset(self) -> None:
        self._expert: ScriptedExpert | None = None
        self._obs: Mapping[str, Any] | None = None

    def observe_privileged(self, env, obs: Mapping[str, Any]) -> None:
        if self._expert is None:  # the first policy step of an episode, after the wait steps
            self._expert = ScriptedExpert.for_env(env, self.config)
            self._expert.reset(obs, object_geometry(env, self._expert.object_name),
                               object_geometry(env, self._expert.container_name))
        self._obs = obs

    def infer(self, request: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if self._expert is None or self._obs is None:
            raise RuntimeError("ExpertPolicy needs the simulator's state: run it through evaluate_libero")
        return {"actions": np.tile(self._expert.act(self._obs), (self.action_horizon, 1))}

    def __repr__(self) -> str:
        return f"ExpertPolicy(action_horizon={self.action_horizon})"


__all__ = [
    "BddlProblem",
    "ExpertPolicy",
    "ExpertConfig",
    "OSC_POSITION_SCALE",
    "OSC_ROTATION_SCALE",
    "ObjectGeometry",
    "Phase",
    "ScriptedExpert",
    "collision_points",
    "displacement_to_action",
    "object_geometry",
    "parse_bddl",
    "pick_place_target",
    "rotation_error",
    "run_expert_episode",
    "top_down_orientation",
]
