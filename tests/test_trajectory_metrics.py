"""Trajectory metrics on hand-computed cases, both nuScenes L2 conventions, and the CV baseline."""

from __future__ import annotations

import numpy as np
import pytest

from hf_vlmdrive.metrics import available_metrics, load_metric
from hf_vlmdrive.metrics.trajectory.trajectory import constant_velocity_baseline, trajectory_metrics


def linear_error_case():
    """Prediction error grows linearly: the point at index i (t = (i+1)/4 s) is off by (i+1) metres in y."""
    gt = np.zeros((1, 20, 2))
    pred = gt.copy()
    pred[0, :, 1] = np.arange(1, 21)
    return pred, gt


def test_ade_fde_and_horizons_by_hand():
    pred, gt = linear_error_case()
    m = trajectory_metrics(pred, gt)
    assert m["ade"] == pytest.approx(10.5)  # mean of 1..20
    assert m["fde"] == pytest.approx(20.0)
    assert m["ade@3s"] == pytest.approx(6.5)  # mean of 1..12 (3 s = 12 points at 4 Hz)
    assert m["fde@3s"] == pytest.approx(12.0)
    assert m["ade@5s"] == pytest.approx(10.5)
    assert m["fde@5s"] == pytest.approx(20.0)


def test_l2_conventions_differ_as_documented():
    pred, gt = linear_error_case()
    m = trajectory_metrics(pred, gt)
    # ST-P3 / VAD: average of all points up to t. 1 s -> points 1..4 -> 2.5; 2 s -> 1..8 -> 4.5; 3 s -> 6.5
    assert (m["l2@1s_stp3"], m["l2@2s_stp3"], m["l2@3s_stp3"]) == pytest.approx((2.5, 4.5, 6.5))
    assert m["l2_avg_stp3"] == pytest.approx((2.5 + 4.5 + 6.5) / 3)
    # UniAD: the error at t. 1 s -> 4, 2 s -> 8, 3 s -> 12
    assert (m["l2@1s_uniad"], m["l2@2s_uniad"], m["l2@3s_uniad"]) == pytest.approx((4.0, 8.0, 12.0))
    assert m["l2_avg_uniad"] == pytest.approx(8.0)
    assert "ST-P3" in m["protocol"] and "UniAD" in m["protocol"]


def test_euclidean_distance_and_batch_mean():
    gt = np.zeros((2, 20, 2))
    pred = gt.copy()
    pred[0] = [3.0, 4.0]  # 5 m everywhere
    m = trajectory_metrics(pred, gt)  # second sample exact
    assert m["ade"] == pytest.approx(2.5) and m["fde"] == pytest.approx(2.5)
    assert m["num_samples"] == 2


def test_masks_drop_invalid_points_and_fde_uses_last_valid():
    pred, gt = linear_error_case()
    mask = np.zeros((1, 20), dtype=bool)
    mask[0, :8] = True  # only the first 2 s are known
    m = trajectory_metrics(pred, gt, masks=mask)
    assert m["ade"] == pytest.approx(4.5)
    assert m["fde"] == pytest.approx(8.0)
    assert np.isnan(m["fde@3s"]) and m["num_samples@3s"] == 0
    assert m["l2@2s_uniad"] == pytest.approx(8.0)


def test_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        trajectory_metrics(np.zeros((1, 20, 2)), np.zeros((1, 10, 2)))
    with pytest.raises(ValueError, match=r"\(N, T, 2\)"):
        trajectory_metrics(np.zeros((20, 2)), np.zeros((20, 2)))
    with pytest.raises(ValueError, match="horizon 6 s is outside"):
        trajectory_metrics(np.zeros((1, 20, 2)), np.zeros((1, 20, 2)), horizons_s=(6.0,))


def test_constant_velocity_baseline():
    past = np.zeros((1, 16, 6))
    past[0, :, 0] = np.arange(-15, 1) * 2.0  # 8 m/s along x at 4 Hz
    past[0, -1, 2:4] = [8.0, 1.0]
    cv = constant_velocity_baseline(past)
    assert cv.shape == (1, 20, 2)
    np.testing.assert_allclose(cv[0, -1], [40.0, 5.0])  # 5 s * (8, 1)
    cv_pos = constant_velocity_baseline(past, source="positions")
    np.testing.assert_allclose(cv_pos[0, 3], [8.0, 0.0])  # 1 s * 8 m/s from positions
    with pytest.raises(ValueError, match="source"):
        constant_velocity_baseline(past, source="magic")


def test_evaluate_metric_loads_by_path_offline_and_matches_function():
    assert "trajectory" in available_metrics()
    metric = load_metric("trajectory")
    pred, gt = linear_error_case()
    out = metric.compute(predictions=pred, references=gt)
    assert out == trajectory_metrics(pred, gt)
    with pytest.raises(ValueError, match="unknown metric"):
        load_metric("does_not_exist")


def test_l2_at_2hz_comparable_with_papers():
    pred, gt = linear_error_case()  # point i (t = (i+1)/4 s) off by i+1 m
    m = trajectory_metrics(pred, gt)
    # 2 Hz points: t = 0.5, 1.0, 1.5, ... s = 4 Hz indices 1, 3, 5, ... -> errors 2, 4, 6, ...
    # ST-P3 / VAD at 2 Hz: 1 s -> mean(2, 4) = 3; 2 s -> mean(2, 4, 6, 8) = 5; 3 s -> mean(2..12 even) = 7
    assert (m["l2@1s_stp3_2hz"], m["l2@2s_stp3_2hz"], m["l2@3s_stp3_2hz"]) == pytest.approx((3.0, 5.0, 7.0))
    assert m["l2_avg_stp3_2hz"] == pytest.approx(5.0)
    # UniAD "at t" is the same point at both rates
    assert (m["l2@1s_uniad_2hz"], m["l2@2s_uniad_2hz"], m["l2@3s_uniad_2hz"]) == pytest.approx((4.0, 8.0, 12.0))
    assert m["l2_avg_uniad_2hz"] == pytest.approx(m["l2_avg_uniad"])
    assert m["l2@1s_stp3"] == pytest.approx(2.5)  # the 4 Hz keys are kept
    assert "2 Hz" in m["protocol"] and "comparable" in m["protocol"] and "masked" in m["protocol"]
    # data already at 2 Hz: the 2 Hz figures equal the native ones
    m2 = trajectory_metrics(pred[:, 1::2], gt[:, 1::2], frequency_hz=2.0)
    assert m2["l2@3s_stp3_2hz"] == pytest.approx(m2["l2@3s_stp3"]) == pytest.approx(7.0)
    # a rate that is not a multiple of 2 Hz: no 2 Hz keys
    assert "l2_avg_stp3_2hz" not in trajectory_metrics(pred[:, :15], gt[:, :15], frequency_hz=5.0, horizons_s=(3.0,))


def test_l2_2hz_with_masks():
    pred, gt = linear_error_case()
    mask = np.ones((2, 20), dtype=bool)
    pred, gt = np.concatenate([pred, pred]), np.concatenate([gt, gt])
    mask[1, 3] = False  # the 1 s point of sample 2 (2 Hz index 1)
    m = trajectory_metrics(pred, gt, masks=mask)
    # sample 1: mean(2, 4) = 3; sample 2: only the 0.5 s point is valid up to 1 s -> 2; mean 2.5
    assert m["l2@1s_stp3_2hz"] == pytest.approx(2.5)
    assert m["l2@1s_uniad_2hz"] == pytest.approx(4.0)  # sample 2 is left out "at 1 s"
