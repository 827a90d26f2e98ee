"""SimLingo figure: camera projection matches the synthetic renderer, frames are distinct, the PNG is written."""

from __future__ import annotations

import numpy as np
import pytest

from hf_vlmdrive.data.carla import CAMERA_YAW_DEG, camera_extrinsics, camera_intrinsics
from hf_vlmdrive.data.synthetic.driving import PinholeCamera
from hf_vlmdrive.visualization import distinct_samples, plot_simlingo_predictions, project_ego_to_image


@pytest.mark.parametrize("camera", ["rgb", "rgb_left", "rgb_right"])
def test_projection_matches_the_renderers_camera(camera):
    yaw = CAMERA_YAW_DEG[camera]
    ref = PinholeCamera(128, 64, 110.0, mount_x=-1.5, mount_z=2.0, yaw_deg=yaw)
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(1, 30, 50), rng.uniform(-8, 8, 50)], -1)
    # rotate the points towards the camera so most are in front of it
    c, s = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
    pts = pts @ np.array([[c, s], [-s, c]])
    uv_ref, ok_ref = ref.project(np.concatenate([pts, np.zeros((50, 1))], -1))
    uv, ok = project_ego_to_image(pts, camera_intrinsics(128, 64, 110.0), camera_extrinsics(yaw))
    assert ok.sum() > 30
    np.testing.assert_array_equal(ok, ok_ref)
    np.testing.assert_allclose(uv[ok], uv_ref[ok], atol=1e-6)
    # a point straight ahead on the ground lands on the centre column, below the horizon
    if yaw == 0:
        uv, _ = project_ego_to_image(np.array([[10.0, 0.0]]), camera_intrinsics(128, 64, 110.0), camera_extrinsics(0.0))
        u, v = uv[0]
        assert u == pytest.approx(64.0) and v > 32


def _fake_predictions(n=12, seed=0):
    rng = np.random.default_rng(seed)
    curv = np.repeat(np.linspace(-0.05, 0.05, n // 2), 2)  # pairs of near-identical samples
    s = np.arange(20.0)
    route = np.stack([np.stack([s, curv[i] * s ** 2], -1) for i in range(n)])
    wps = route[:, 1:11] * 0.8
    return {"route": route + rng.normal(0, 0.1, route.shape), "route_labels": route, "route_mask": np.ones((n, 20), bool),
            "speed_wps": wps + rng.normal(0, 0.1, wps.shape), "speed_wps_labels": wps,
            "speed_wps_mask": np.ones((n, 10), bool), "speed": np.repeat(np.linspace(2, 8, n // 2), 2)[:, None],
            "target_point": route[:, 10]}


def test_distinct_samples_spread_over_the_data_and_routes():
    preds = _fake_predictions()
    picks = distinct_samples(preds, 6)
    assert len(set(picks)) == 6
    assert len({p // 2 for p in picks}) == 6  # never both of a near-identical pair
    assert abs(preds["route_labels"][picks[0], -1, 1]) == np.abs(preds["route_labels"][:, -1, 1]).max()
    groups = [i % 3 for i in range(12)]
    assert {groups[p] for p in distinct_samples(preds, 3, groups)} == {0, 1, 2}


def test_plot_with_camera_images(tmp_path):
    from PIL import Image

    from hf_vlmdrive.data.carla import CarlaRouteDataset
    from hf_vlmdrive.data.synthetic.carla import write_carla_dataset

    write_carla_dataset(tmp_path / "data", 2, seed=0, frames_per_route=26, width=128, height=64, progress=False)
    ds = CarlaRouteDataset(tmp_path / "data", image_size=(64, 32))
    n = len(ds)
    samples = [ds[i] for i in range(n)]
    preds = {"route_labels": np.stack([x["route_labels"] for x in samples]),
             "route_mask": np.stack([x["route_mask"] for x in samples]),
             "speed_wps_labels": np.stack([x["speed_wps_labels"] for x in samples]),
             "speed_wps_mask": np.stack([x["speed_wps_mask"] for x in samples]),
             "speed": np.stack([x["speed"] for x in samples]), "target_point": np.stack([x["target_point"] for x in samples])}
    preds["route"] = preds["route_labels"] + 0.3
    preds["speed_wps"] = preds["speed_wps_labels"] - 0.2
    path = plot_simlingo_predictions(preds, tmp_path / "p.png", num=4, dataset=ds)
    img = Image.open(path)
    assert img.width > 800 and img.height > 4 * 250
    picks = distinct_samples(preds, 4, [ds.index[i][0] for i in range(n)])
    assert {ds.index[p][0] for p in picks[:2]} == {0, 1}  # both routes shown first
    # without a dataset: bird's-eye panels only
    path2 = plot_simlingo_predictions(preds, tmp_path / "q.png", num=2)
    assert Image.open(path2).width < img.width
