"""CARLA / PDM-Lite layout: the synthetic writer, the reader, malformed routes, and the SimLingo CLI."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
import torch

from hf_vlmdrive.data.carla import (
    CarlaRouteDataset,
    SimLingoCollator,
    equal_spacing_route,
    read_json_gz,
    waypoints_from_poses,
)
from hf_vlmdrive.data.synthetic.carla import write_carla_dataset, write_carla_route
from hf_vlmdrive.data.synthetic.driving import DrivingWorld


@pytest.fixture(scope="module")
def routes(tmp_path_factory):
    root = tmp_path_factory.mktemp("carla")
    write_carla_dataset(root, num_routes=2, seed=3, frames_per_route=14, width=64, height=32,
                        camera_names=("FRONT", "FRONT_LEFT"), failed_routes=1, progress=False)
    return root


def test_writer_produces_the_pdm_lite_layout(routes):
    route = routes / "Town12_Rep0_0"
    assert sorted(p.name for p in route.iterdir()) == ["boxes", "measurements", "results.json.gz", "rgb", "rgb_left"]
    assert len(list((route / "rgb").glob("*.jpg"))) == 14
    m = read_json_gz(route / "measurements" / "0000.json.gz")
    for key in ("speed", "target_point", "target_point_next", "command", "route", "ego_matrix", "steer", "throttle",
                "brake", "vehicle_hazard", "light_hazard"):
        assert key in m
    assert np.asarray(m["ego_matrix"]).shape == (4, 4) and len(m["route"]) == 40 and 1 <= m["command"] <= 6
    assert np.allclose(np.linalg.norm(np.diff(np.asarray(m["route"]), axis=0), axis=-1), 1.0, atol=0.02)
    assert read_json_gz(route / "boxes" / "0000.json.gz")[0]["class"] == "ego_car"
    assert read_json_gz(route / "results.json.gz")["scores"]["score_composed"] == 100.0
    assert read_json_gz(routes / "Town12_Rep0_2" / "results.json.gz")["scores"]["score_composed"] < 100.0


def test_waypoints_are_future_poses_in_the_current_ego_frame(tmp_path):
    write_carla_route(tmp_path / "Town01_Rep0_0", seed=11, num_frames=16, width=32, height=16)
    ds = CarlaRouteDataset(tmp_path)
    world = DrivingWorld.random(np.random.default_rng(11), t_start=-1.0, t_end=15 / 4 + 1.0)
    sample = ds[2]  # frame 2 at t = 0.5 s
    expected = world.future_waypoints(0.5, num=10, hz=4.0)
    assert sample["speed_wps_mask"].all()
    assert np.allclose(sample["speed_wps_labels"], expected, atol=1e-4)
    assert sample["speed"][0] == pytest.approx(world.speed(0.5))
    # Route: 20 points 1 m apart along the lane.
    r = sample["route_labels"]
    assert r.shape == (20, 2) and np.allclose(np.linalg.norm(np.diff(r, axis=0), axis=-1), 1.0, atol=0.05)


def test_pose_math_and_route_resampling():
    yaw = math.radians(90)
    now = np.eye(4)
    now[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    now[:3, 3] = [10.0, 5.0, 0.0]
    future = np.eye(4)
    future[:3, 3] = [10.0, 8.0, 0.0]  # 3 m further along world +y = the ego's +x
    assert np.allclose(waypoints_from_poses(now, future[None]), [[3.0, 0.0]])
    pts = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 3.0]])
    res = equal_spacing_route(pts, num_points=7, spacing=1.0)
    assert np.allclose(res, [[0, 0], [1, 0], [2, 0], [2, 1], [2, 2], [2, 3], [2, 4]])  # extended past the end
    assert np.allclose(equal_spacing_route(np.array([[1.0, 1.0]]), 3, 2.0), [[1, 1], [3, 1], [5, 1]])


def test_reader_filters_by_results_and_masks_route_end(routes):
    ds = CarlaRouteDataset(routes, image_size=(32, 16))
    assert ds.skipped["route_filtered_by_results"] == 1
    assert len(ds) == 2 * 14
    last = ds[13]
    assert last["frame"] == "0013" and not last["speed_wps_mask"].any()
    near_end = ds[10]  # 3 future frames exist
    assert near_end["speed_wps_mask"].tolist() == [True] * 3 + [False] * 7
    assert np.all(near_end["speed_wps_labels"][3:] == 0)
    assert CarlaRouteDataset(routes, min_score=None).skipped["route_filtered_by_results"] == 0
    assert len(CarlaRouteDataset(routes, min_score=None)) == 3 * 14


def test_reader_multi_camera_temporal_and_route_image(routes):
    ds = CarlaRouteDataset(routes, num_frames=3, cameras=("rgb", "rgb_left"), image_size=(32, 16),
                           route_image_size=(24, 24))
    s = ds[5]
    assert s["pixel_values"].shape == (3, 2, 3, 16, 32) and s["pixel_values"].dtype == np.uint8
    assert s["intrinsics"].shape == (2, 3, 3) and s["extrinsics"].shape == (2, 4, 4)
    assert s["route_image"].shape == (3, 24, 24) and s["route_image"].max() == 255
    first = ds[0]["pixel_values"]  # clamped at the route's start: all three frames are frame 0
    assert np.array_equal(first[0], first[2])
    assert not np.array_equal(s["pixel_values"][0], s["pixel_values"][2])
    batch = SimLingoCollator()([ds[0], ds[5]])
    assert batch["pixel_values"].shape == (2, 3, 2, 3, 16, 32) and batch["speed_wps_mask"].dtype == torch.bool
    assert "route_name" not in batch
    assert SimLingoCollator(keep_meta=True)([ds[0]])["route_name"] == ["Town12_Rep0_0"]


def test_reader_counts_missing_and_corrupt_measurements(tmp_path):
    write_carla_route(tmp_path / "Town02_Rep1_0", seed=5, num_frames=10, width=32, height=16)
    write_carla_route(tmp_path / "Town02_Rep1_1", seed=6, num_frames=10, width=32, height=16)
    (tmp_path / "Town02_Rep1_0" / "measurements" / "0004.json.gz").unlink()
    (tmp_path / "Town02_Rep1_1" / "measurements" / "0002.json.gz").write_bytes(b"not gzip at all")
    with gzip.open(tmp_path / "Town02_Rep1_1" / "measurements" / "0006.json.gz", "wt") as f:
        json.dump({"speed": 1.0}, f)  # lacks keys
    ds = CarlaRouteDataset(tmp_path)
    assert ds.skipped["missing_measurements"] == 1
    assert ds.skipped["corrupt_measurements"] == 2
    assert len(ds) == 20 - 3
    # The frame before the hole: its 1st future point is missing (masked), the later ones are there.
    sample = ds[3]
    assert sample["frame"] == "0003"
    assert sample["speed_wps_mask"][:6].tolist() == [False, True, True, True, True, True]


def test_reader_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CarlaRouteDataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no CARLA route folders"):
        CarlaRouteDataset(tmp_path)
    write_carla_route(tmp_path / "Town03_Rep0_0", seed=1, num_frames=4, width=32, height=16)
    (tmp_path / "Town03_Rep0_0" / "results.json.gz").write_bytes(b"broken")
    with pytest.raises(ValueError, match="no usable frames"):
        CarlaRouteDataset(tmp_path)
    assert len(CarlaRouteDataset(tmp_path, min_score=None)) == 4  # filter off: results not read
    (tmp_path / "Town03_Rep0_0" / "results.json.gz").unlink()
    assert len(CarlaRouteDataset(tmp_path, require_results=False)) == 4
    (tmp_path / "Town03_Rep0_0" / "rgb" / "0001.jpg").write_bytes(b"no jpeg")
    with pytest.raises(ValueError, match="0001.jpg"):
        CarlaRouteDataset(tmp_path, require_results=False)[1]


def test_cli_train_and_eval_simlingo(tmp_path, cli):
    out = tmp_path / "run"
    code = cli("train", "simlingo", "--output_dir", out, "--synthetic_train_routes", 2, "--synthetic_eval_routes", 1,
               "--synthetic_frames_per_route", 6, "--image_width", 32, "--image_height", 16, "--vision_image_size", 16,
               "--vision_hidden_size", 32, "--max_steps", 3, "--per_device_train_batch_size", 4, "--report_to", "none",
               "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true", "--num_plot_samples", 2)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for output, baseline in (("speed_wps", "constant_velocity"), ("route", "straight_line")):
        for name in ("model", baseline):
            assert math.isfinite(metrics[output][name]["ade"])
    assert (out / "predictions.png").stat().st_size > 0 and (out / "model.safetensors").is_file()
    code = cli("eval", "simlingo", "--model_name_or_path", out, "--data_dir", out / "data" / "heldout",
               "--output_dir", tmp_path / "eval", "--image_width", 32, "--image_height", 16, "--num_plot_samples", 1)
    assert code == 0
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["speed_wps"]["model"]["ade"] == pytest.approx(metrics["speed_wps"]["model"]["ade"], rel=1e-5)
