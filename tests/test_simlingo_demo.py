"""SimLingo's quick path learns both outputs: synthetic routes whose speed follows speed-limit zones the camera
shows (tinted asphalt), and the documented run beats the straight-line route and constant-velocity speed
waypoints on held-out routes (slow)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from hf_vlmdrive.data.synthetic.carla import write_carla_route
from hf_vlmdrive.data.synthetic.driving import SPEED_ZONE_LIMITS, DrivingWorld, PinholeCamera
from hf_vlmdrive.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _zone_world(seed: int, obstacle_probability: float = 0.0) -> DrivingWorld:
    return DrivingWorld.random(np.random.default_rng(seed), t_start=-1.0, t_end=20.0,
                               obstacle_probability=obstacle_probability, speed_profile="zones")


def test_default_profile_is_unchanged():
    """The keyword is additive: without it the same seed draws the same world as before (no zones)."""
    a = DrivingWorld.random(np.random.default_rng(5))
    b = DrivingWorld.random(np.random.default_rng(5), speed_profile="random")
    np.testing.assert_array_equal(a.ego_v, b.ego_v)
    np.testing.assert_array_equal(a.road_xy, b.road_xy)
    assert len(a.zones) == 0 and a.speed_limit_at(0.0) is None
    with pytest.raises(UserError, match="speed_profile"):
        DrivingWorld.random(np.random.default_rng(5), speed_profile="fast")


@pytest.mark.parametrize("seed", range(4))
def test_speed_follows_the_zones(seed):
    """Independent check of the zone rule: never faster than a slower zone ahead allows (entered at its limit
    within a small tolerance), bounded acceleration, and the current limit reached after a few seconds in a zone."""
    world = _zone_world(seed)
    s, v = world.ego_s, world.ego_v
    assert np.all(np.diff(s) >= 0)
    accel = np.diff(v) / np.diff(world.times)
    assert accel.max() <= 1.5 + 1e-6 and accel.min() >= -3.0 - 1e-6
    limits = np.array([world.speed_limit_at(x) for x in s])
    assert set(np.unique(limits)) <= set(SPEED_ZONE_LIMITS)
    starts = world.zones[:, 0]
    entered = [i for i in range(1, len(s)) if np.searchsorted(starts, s[i - 1], "right") != np.searchsorted(starts, s[i], "right")]
    assert entered, "the route crosses no zone boundary"
    for i in entered:
        assert v[i] <= limits[i] + 0.6, (i, v[i], limits[i])  # entered a slower zone at (about) its limit
    # 4 s into a zone that lasts, the ego drives at (about) its limit.
    for i in entered:
        j = i + 80  # 4 s at dt 0.05
        if j < len(s) and limits[j] == limits[i] and np.searchsorted(starts, s[j] + 40, "right") == np.searchsorted(starts, s[j], "right"):
            assert abs(v[j] - limits[j]) < 0.5, (j, v[j], limits[j])


def test_obstacle_still_stops_the_ego():
    """Whatever the initial speed, the ego stops before the obstacle and never drives through it (200 worlds;
    an earlier draw of the obstacle distance let 3 of them pass it)."""
    for seed in range(200):
        world = DrivingWorld.random(np.random.default_rng(seed), t_start=-1.0, t_end=11.0, obstacle_probability=1.0,
                                    speed_profile="zones")
        assert world.ego_s.max() < world.obstacles[0].s - 2.0, seed
    world = _zone_world(1, obstacle_probability=1.0)
    assert world.speed(19.0) < 0.3


def test_camera_shows_the_zone_colour():
    """The asphalt just ahead of the ego has its zone's tint; a boundary ahead shows the next zone's tint higher
    up in the image."""
    world = _zone_world(3)
    cam = PinholeCamera(128, 64, 110.0, mount_x=-1.5, mount_z=2.0)
    img = np.asarray(world.render(0.0, cam)).astype(float)
    s0 = float(np.interp(0.0, world.times, world.ego_s))
    near = img[60, 64]  # the road right ahead (few metres)
    expected = np.array(SPEED_ZONE_LIMITS[world.speed_limit_at(s0 + 4.0)], dtype=float)
    others = [np.array(c, float) for lim, c in SPEED_ZONE_LIMITS.items() if lim != world.speed_limit_at(s0 + 4.0)]
    d = np.linalg.norm(near - expected)
    assert all(d < np.linalg.norm(near - o) for o in others), (near, expected)


def test_carla_writer_records_the_limit(tmp_path):
    route = write_carla_route(tmp_path / "Town01_Rep0_0", seed=2, num_frames=8, width=32, height=16,
                              speed_profile="zones")
    world = DrivingWorld.random(np.random.default_rng(2), t_start=-1.0, t_end=7 / 4 + 1.0, obstacle_probability=0.3,
                                speed_profile="zones")
    with gzip.open(route / "measurements" / "0004.json.gz", "rt") as f:
        m = json.load(f)
    assert m["speed"] == pytest.approx(world.speed(1.0))
    assert m["speed_limit"] == world.speed_limit_at(float(np.interp(1.0, world.times, world.ego_s)))
    assert not math.isclose(m["speed_limit"], 13.89)


@pytest.mark.slow
def test_quick_path_beats_both_baselines(tmp_path, monkeypatch):
    """`hf-vlmdrive train simlingo --config examples/configs/simlingo_synthetic.yaml` on its fixed seed (0): both
    outputs at least 30 % below their baselines on held-out routes (measured: docs/simlingo.md)."""
    import torch
    from huggingface_hub import ModelCard

    from hf_vlmdrive.cli import main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    out = tmp_path / "run"
    assert main(["train", "simlingo", "--config", str(REPO / "examples/configs/simlingo_synthetic.yaml"),
                 "--output_dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    wps, route = metrics["speed_wps"], metrics["route"]
    assert wps["model"]["ade"] < 0.7 * wps["constant_velocity"]["ade"], wps
    assert route["model"]["ade"] < 0.7 * route["straight_line"]["ade"], route
    assert wps["model"]["fde"] < wps["constant_velocity"]["fde"] and route["model"]["fde"] < route["straight_line"]["fde"]
    assert metrics["num_samples"] >= 150
    assert (out / "predictions.png").stat().st_size > 20_000
    card = ModelCard.load(out / "README.md")
    assert "constant velocity" in card.text
