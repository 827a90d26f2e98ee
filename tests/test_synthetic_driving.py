"""The procedural driving scenes are physically consistent and their future is visible in the image."""

from __future__ import annotations

import numpy as np
import pytest

from hf_vlmdrive.data.synthetic.driving import (
    INTENT_GO_LEFT,
    INTENT_GO_RIGHT,
    DrivingWorld,
    PinholeCamera,
    generate_waypoint_dataset,
    sample_waypoint_scene,
)


@pytest.mark.parametrize("seed", range(5))
def test_states_are_consistent(seed):
    sample = sample_waypoint_scene(seed, 48, 32)
    past, future = sample.past_states, sample.future_waypoints
    assert past.shape == (16, 6) and future.shape == (20, 2)
    np.testing.assert_allclose(past[-1, :2], 0.0, atol=1e-9)  # the present is the origin
    assert abs(past[-1, 3]) < 1e-6  # heading along +x: no lateral velocity now
    # Velocities agree with finite differences of positions (4 Hz), within the discretisation.
    finite = np.diff(past[:, :2], axis=0) * 4.0
    mid_velocity = 0.5 * (past[1:, 2:4] + past[:-1, 2:4])
    np.testing.assert_allclose(finite, mid_velocity, atol=0.35)
    # The future continues from the present: the first step is about v * 0.25 s.
    speed = np.linalg.norm(past[-1, 2:4])
    assert np.linalg.norm(future[0]) == pytest.approx(speed * 0.25, abs=0.3)


def test_intent_follows_the_road():
    """Intent is the route's heading change ahead; most left intents end to the left (S-bends aside)."""
    left, right = [], []
    for seed in range(80):
        s = sample_waypoint_scene(seed, 32, 32)
        lateral = s.future_waypoints[-1, 1]
        if s.intent == INTENT_GO_LEFT:
            left.append(lateral > 0)
        elif s.intent == INTENT_GO_RIGHT:
            right.append(lateral < 0)
    assert len(left) > 5 and len(right) > 5
    assert np.mean(left) > 0.8 and np.mean(right) > 0.8


def test_obstacle_makes_the_ego_stop_before_it():
    rng = np.random.default_rng(0)
    world = DrivingWorld.random(rng, obstacle_probability=1.0, t_end=30.0)
    obstacle = world.obstacles[0]
    assert world.speed(29.0) == pytest.approx(0.0, abs=1e-6)
    s_end = np.interp(29.0, world.times, world.ego_s)
    assert s_end < obstacle.s - 2.0


def test_image_shows_the_road_ahead():
    """Curvature ahead moves the road in the image: left curves put more asphalt on the left."""
    cam = PinholeCamera(64, 48)
    balance = []
    for seed in range(40):
        s = sample_waypoint_scene(seed, 64, 48, obstacle_probability=0.0)
        img = np.asarray(s.images["FRONT"]).astype(float)
        road = (np.abs(img[..., 0] - img[..., 2]) < 15) & (img[..., 1] < 120)  # grey asphalt
        upper = road[cam.height // 2 : cam.height // 2 + 8]
        cols = np.nonzero(upper.any(axis=0))[0]
        if cols.size:
            balance.append((cols.mean() - cam.width / 2, s.future_waypoints[-1, 1]))
    balance = np.array(balance)
    # Far road to the left (small u) goes with a future to the left (positive y).
    assert np.corrcoef(balance[:, 0], balance[:, 1])[0, 1] < -0.3


def test_dataset_columns_and_determinism():
    a = generate_waypoint_dataset(4, seed=3, width=32, height=24, progress=False)
    b = generate_waypoint_dataset(4, seed=3, width=32, height=24, progress=False)
    c = generate_waypoint_dataset(4, seed=4, width=32, height=24, progress=False)
    assert set(a.column_names) == {"frame_name", "image", "past_states", "future_waypoints", "intent"}
    assert a[0]["image"].size == (32, 24)
    np.testing.assert_array_equal(np.asarray(a["future_waypoints"]), np.asarray(b["future_waypoints"]))
    assert not np.allclose(np.asarray(a["future_waypoints"]), np.asarray(c["future_waypoints"]))
    multi = generate_waypoint_dataset(2, width=32, height=24, camera_names=("FRONT_LEFT", "FRONT", "FRONT_RIGHT"),
                                      progress=False)
    assert len(multi[0]["images"]) == 3
    left, front, _ = (np.asarray(im) for im in multi[0]["images"])
    assert not np.array_equal(left, front)
