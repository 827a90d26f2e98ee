"""Rater Feedback Score on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_vlmdrive.metrics.rfs.rfs import rater_feedback_score, speed_scale


def straight(speed=4.0):
    """20 points along +x at `speed` m/s, 4 Hz: point k at (k+1)/4 * speed."""
    t = np.arange(1, 21) / 4.0
    return np.stack([t * speed, np.zeros(20)], axis=-1)


def rfs(pred, raters, scores, v=10.0, **kw):
    return rater_feedback_score(np.asarray(pred)[None], np.asarray(raters)[None], np.asarray(scores)[None], initial_speed=np.array([v]), **kw)


def test_speed_scale():
    assert speed_scale(0.0) == 0.5 and speed_scale(1.4) == 0.5
    assert speed_scale(11.0) == 1.0 and speed_scale(30.0) == 1.0
    assert speed_scale(6.2) == pytest.approx(0.75)


def test_prediction_exactly_on_a_rater_trajectory():
    r = straight()
    out = rfs(r, [r, r + [0, 5.0]], [7.5, 9.0])
    assert out["rfs"] == pytest.approx(7.5)  # inside rater 1's region only (rater 2 is 5 m left: 4 + decay)


def test_inside_trust_region_gets_full_score():
    r = straight()
    pred = r.copy()
    pred[:, 1] += 0.9  # lateral 0.9 m < 1.0 m at 3 s and < 1.8 m at 5 s (v = 10 -> scale 0.96875)
    pred[:, 0] += 3.5  # longitudinal 3.5 < 4 * 0.96875 = 3.875 at 3 s
    assert rfs(pred, [r], [8.0])["rfs"] == pytest.approx(8.0)


def test_lateral_excess_decays_hand_computed():
    r = straight()
    pred = r.copy()
    pred[:, 1] += 1.5  # v = 11 -> scale 1: at 3 s 1.5/1.0 -> excess 0.5; at 5 s 1.5/1.8 -> 0
    expected = 10.0 * 0.1**0.5  # 3.162 < 4 -> floor
    assert rfs(pred, [r], [10.0], v=11.0)["rfs"] == pytest.approx(max(4.0, expected))
    pred = r.copy()
    pred[:, 1] += 1.1  # excess 0.1 at 3 s
    assert rfs(pred, [r], [10.0], v=11.0)["rfs"] == pytest.approx(10.0 * 0.1**0.1)  # 7.943


def test_longitudinal_uses_four_times_the_threshold():
    r = straight()
    pred = r.copy()
    pred[:, 0] += 4.4  # 4.4 / 4.0 = 1.1 at 3 s; at 5 s 4.4 / 7.2 < 1
    assert rfs(pred, [r], [9.0], v=11.0)["rfs"] == pytest.approx(9.0 * 0.1**0.1)


def test_five_second_horizon_and_max_of_excesses():
    r = straight()
    pred = r.copy()
    pred[19, 1] += 2.7  # only the 5 s point: 2.7 / 1.8 = 1.5 -> excess 0.5
    pred[11, 1] += 1.2  # 3 s: excess 0.2; the larger (0.5) counts
    assert rfs(pred, [r], [10.0], v=11.0)["rfs"] == pytest.approx(max(4.0, 10 * 0.1**0.5))
    pred[19, 1] = 1.26  # 5 s: 1.26/1.8 = 0.7 inside -> 3 s excess 0.2 counts
    assert rfs(pred, [r], [10.0], v=11.0)["rfs"] == pytest.approx(10 * 0.1**0.2)


def test_zero_initial_speed_halves_the_region():
    r = straight(0.0)  # a stopped rater trajectory: heading falls back to +x
    pred = r.copy()
    pred[:, 1] += 0.6  # scale 0.5 -> lateral threshold 0.5 m at 3 s: excess 0.2; at 5 s 0.6/0.9 inside
    assert rfs(pred, [r], [10.0], v=0.0)["rfs"] == pytest.approx(10 * 0.1**0.2)
    assert rfs(pred, [r], [10.0], v=11.0)["rfs"] == pytest.approx(10.0)


def test_far_outside_is_floored_at_four():
    r = straight()
    assert rfs(r + [50.0, 50.0], [r], [9.0])["rfs"] == pytest.approx(4.0)
    # a rater scored below the floor keeps its own (lower) score
    assert rfs(r + [50.0, 50.0], [r], [2.0])["rfs"] == pytest.approx(2.0)


def test_invalid_raters_are_ignored():
    r = straight()
    out = rfs(r, [r, r + [0, 30.0], np.zeros((20, 2))], [-1.0, 6.0, -1.0])
    assert out["rfs"] == pytest.approx(4.0)  # only the far (score 6) rater is valid
    out = rater_feedback_score(
        np.stack([r, r]), np.stack([[r], [r]]), np.array([[-1.0], [7.0]]), initial_speed=np.array([5.0, 5.0])
    )
    assert out["num_frames"] == 1 and out["num_frames_without_raters"] == 1 and out["rfs"] == pytest.approx(7.0)
    assert math.isnan(out["frame_scores"][0])


def test_best_matching_rater_and_probability_weighting():
    r1, r2 = straight(), straight() + [0, 3.5]
    preds = np.stack([r1, r2])  # one prediction on each rater trajectory
    out = rater_feedback_score(
        preds[None], np.stack([r1, r2])[None], np.array([[9.0, 5.0]]), initial_speed=np.array([10.0]),
        probabilities=np.array([[0.75, 0.25]]),
    )
    # pred 1 -> 9 (r1); pred 2 is inside r2 (5) but far from r1 (floor 4): best = 5
    assert out["rfs"] == pytest.approx(0.75 * 9.0 + 0.25 * 5.0)


def test_rotated_rater_frame():
    # rater heading 90 degrees (driving along +y): an offset along +y is longitudinal
    t = np.arange(1, 21) / 4.0
    r = np.stack([np.zeros(20), t * 8.0], -1)
    pred = r + [0.0, 3.0]  # 3 m longitudinal: inside (4 m threshold at scale 1)
    assert rfs(pred, [r], [8.0], v=11.0)["rfs"] == pytest.approx(8.0)
    pred = r + [1.1, 0.0]  # 1.1 m lateral: excess 0.1 at 3 s
    assert rfs(pred, [r], [8.0], v=11.0)["rfs"] == pytest.approx(8.0 * 0.1**0.1)


def test_malformed_prediction_is_a_miss_and_past_states_speed():
    r = straight()
    pred = np.full((20, 2), np.nan)
    assert rfs(pred, [r], [9.0])["rfs"] == pytest.approx(4.0)
    past = np.zeros((1, 16, 6))
    past[0, -1, 2:4] = [6.0, 8.0]  # |v| = 10
    out = rater_feedback_score(r[None], r[None, None], np.array([[8.0]]), past_states=past)
    assert out["rfs"] == pytest.approx(8.0)


def test_evaluate_metric_module():
    from hf_vlmdrive.metrics import load_metric

    r = straight()
    metric = load_metric("rfs")
    out = metric.compute(
        predictions=[r[None].tolist()], references=[[r.tolist()]], rater_scores=[[8.0]], initial_speed=[10.0]
    )
    assert out["rfs"] == pytest.approx(8.0) and out["num_frames"] == 1
