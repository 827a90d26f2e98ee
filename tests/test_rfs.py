"""Rater Feedback Score = Waymo's official `get_rater_feedback_score`.

`_official_rfs` below is an independent port, written here from the official source
(github:waymo-research/waymo-open-dataset, src/waymo_open_dataset/metrics/python/rater_feedback_utils.py,
commit 99a4cb3f), with the official default arguments. It does not use hf_vlmdrive.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_vlmdrive.metrics.rfs.rfs import rater_feedback_score, speed_scale

# ----------------------------------------------------------------------------------------------------
# Port of the official code (process_rater_specified_trajectories + get_rater_feedback_score).
# ----------------------------------------------------------------------------------------------------
_THRESHOLD_TIME_SECONDS = np.array([3, 5], dtype=np.int64)
_BASE_THRESHOLDS = np.array([1.0, 1.8], dtype=np.float64)


def _official_process(trajectory_batches, labels_batches, target_num_waypoints, target_num_trajectories):
    out_t, out_l = [], []
    for trajs, labels in zip(trajectory_batches, labels_batches):
        n = len(trajs)
        if n > target_num_trajectories:
            trajs, labels = trajs[:target_num_trajectories], labels[:target_num_trajectories]
        elif n < target_num_trajectories:
            pad = target_num_trajectories - n
            trajs = list(trajs) + [trajs[-1]] * pad
            labels = list(labels) + [labels[-1]] * pad
        fixed = []
        for t in trajs:
            if len(t) > target_num_waypoints:
                t = t[:target_num_waypoints]
            elif len(t) < target_num_waypoints:
                t = np.concatenate([t, np.array([t[-1]] * (target_num_waypoints - len(t)))], axis=0)
            fixed.append(t)
        out_t.append(np.array(fixed))
        out_l.append(np.array(labels))
    return np.array(out_t), np.array(out_l)


def _official_rfs(inference_trajectories, inference_probs, rater_trajectories, rater_labels, init_speed,
                  lat_lng=(1.0, 4.0), decay_factor=0.1, frequency=4, length_seconds=5, num_raters=3,
                  minimum_score=4.0):
    raters, labels = _official_process(rater_trajectories, rater_labels, length_seconds * frequency, num_raters)
    assert inference_trajectories.shape[-2] == raters.shape[-2]
    padded = np.pad(raters, ((0, 0), (0, 0), (1, 0), (0, 0)), constant_values=0)
    lng_dir = padded[..., 1:, :] - padded[..., :-1, :]
    mag = np.linalg.norm(lng_dir, axis=-1)
    lng_dir[..., 0, 0] = np.where(mag[..., 0] == 0, 1, lng_dir[..., 0, 0])
    lng_dir[..., 0, 1] = np.where(mag[..., 0] == 0, 0, lng_dir[..., 0, 1])
    for t in range(1, lng_dir.shape[2]):
        lng_dir[..., t, 0] = np.where(mag[..., t] == 0, lng_dir[..., t - 1, 0], lng_dir[..., t, 0])
        lng_dir[..., t, 1] = np.where(mag[..., t] == 0, lng_dir[..., t - 1, 1], lng_dir[..., t, 1])
    lat_dir = np.stack([lng_dir[..., 1] * -1, lng_dir[..., 0]], axis=-1)
    lng_dir = lng_dir / np.linalg.norm(lng_dir, axis=-1, keepdims=True)
    lat_dir = lat_dir / np.linalg.norm(lat_dir, axis=-1, keepdims=True)
    vec = inference_trajectories[..., None, :, :, :] - raters[..., None, :, :]  # [B, P, I, T, 2]
    lng_d = np.abs(np.sum(lng_dir[..., None, :, :] * vec, axis=-1))
    lat_d = np.abs(np.sum(lat_dir[..., None, :, :] * vec, axis=-1))
    idx = _THRESHOLD_TIME_SECONDS * frequency - 1
    lng_d, lat_d = lng_d[..., idx], lat_d[..., idx]  # [B, P, I, 2]
    scale = np.clip(0.5 + 0.5 * (init_speed - 1.4) / (11 - 1.4), 0.5, 1.0)
    lat_thr = scale[..., None] * (_BASE_THRESHOLDS * lat_lng[0])
    lng_thr = scale[..., None] * (_BASE_THRESHOLDS * lat_lng[1])
    nd = np.maximum(lng_d / lng_thr[..., None, None, :], lat_d / lat_thr[..., None, None, :])
    within = np.any(np.all(nd <= 1.0, axis=3), axis=1)  # [B, I]
    decay = decay_factor ** np.maximum(nd - 1.0, 0.0)
    per_axis = np.amax(labels[..., None, None] * decay, axis=1)  # [B, I, 2]
    per_inf = np.mean(per_axis, axis=-1)
    per_inf[~within] = np.maximum(minimum_score, per_inf[~within])
    return np.sum(per_inf * inference_probs, axis=-1)


# ----------------------------------------------------------------------------------------------------
# Random frames: ours (padded layout) vs the official port (lists of valid raters).
# ----------------------------------------------------------------------------------------------------
def _random_rater(rng, speed):
    """A plausible rater trajectory (20, 2): curving, with occasional stops (zero displacements)."""
    steps = np.full(20, speed / 4.0) * rng.uniform(0.3, 1.5) + rng.normal(0, 0.2, 20)
    steps = np.clip(steps, 0, None)
    if rng.random() < 0.3:  # stop for a while (repeated points, also from t = 0)
        a = rng.integers(0, 15)
        steps[a:a + rng.integers(1, 8)] = 0.0
    if rng.random() < 0.05:
        steps[:] = 0.0  # never moves
    heading = np.cumsum(rng.normal(0, 0.08, 20)) + rng.normal(0, 0.2)
    return np.cumsum(np.stack([steps * np.cos(heading), steps * np.sin(heading)], -1), axis=0)


def _random_frame(rng):
    speed = float(rng.choice([0.0, 1.4, 11.0, rng.uniform(0, 20)], p=[0.1, 0.05, 0.05, 0.8]))
    n_valid = int(rng.integers(1, 6))  # > 3 exercises the official truncation to three
    n_invalid = int(rng.integers(0, 3))
    valid_trajs = [_random_rater(rng, speed) for _ in range(n_valid)]
    valid_scores = [float(rng.choice([rng.integers(0, 11), rng.uniform(0, 10)])) for _ in range(n_valid)]
    slots = [("v", k) for k in range(n_valid)] + [("x", k) for k in range(n_invalid)]
    order = rng.permutation(len(slots))
    raters, scores = [], []
    for j in order:
        kind, k = slots[j]
        if kind == "v":
            raters.append(valid_trajs[k])
            scores.append(valid_scores[k])
        else:
            raters.append(np.zeros((20, 2)) if rng.random() < 0.5 else _random_rater(rng, speed))
            scores.append(-1.0)
    kept = [raters[j] for j in range(len(raters)) if scores[j] >= 0]
    kept_scores = [scores[j] for j in range(len(raters)) if scores[j] >= 0]
    n_pred = int(rng.integers(1, 7))
    preds = []
    for _ in range(n_pred):
        base = kept[int(rng.integers(0, len(kept)))]
        noise = rng.choice([0.05, 0.5, 1.5, 4.0, 20.0])
        preds.append(base + rng.normal(0, noise, (20, 2)))
    probs = rng.dirichlet(np.ones(n_pred)) * float(rng.choice([1.0, rng.uniform(0.2, 2.0)]))
    return speed, np.array(raters), np.array(scores), kept, kept_scores, np.array(preds), probs


def test_matches_official_on_random_frames():
    rng = np.random.default_rng(0)
    diffs, inside_counts = [], [0, 0]
    for _ in range(1000):
        speed, raters, scores, kept, kept_scores, preds, probs = _random_frame(rng)
        ours = rater_feedback_score(preds[None], raters[None], scores[None], initial_speed=np.array([speed]),
                                    probabilities=probs[None])["frame_scores"][0]
        ref = _official_rfs(preds[None], probs[None], [kept], [np.array(kept_scores)], np.array([speed]))[0]
        diffs.append(abs(ours - ref))
        inside_counts[int(ref > 4.0)] += 1
    print(f"{len(diffs)} frames, max |ours - official| = {max(diffs):.3g}, official > 4: {inside_counts[1]}")
    assert max(diffs) < 1e-9, max(diffs)
    assert min(inside_counts) > 100  # both regimes are exercised


def test_matches_official_batched_with_equal_rater_counts():
    rng = np.random.default_rng(1)
    b = 64
    speed = rng.uniform(0, 15, b)
    raters = np.stack([np.stack([_random_rater(rng, s) for _ in range(3)]) for s in speed])
    scores = rng.integers(0, 11, (b, 3)).astype(float)
    preds = raters[:, :2] + rng.normal(0, 1.0, (b, 2, 20, 2))
    probs = rng.uniform(0, 1, (b, 2))
    ours = rater_feedback_score(preds, raters, scores, initial_speed=speed, probabilities=probs)["frame_scores"]
    ref = _official_rfs(preds, probs, [list(r) for r in raters], list(scores), speed)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


def test_official_published_samples():
    """Two frames of the official test (frequency 1 there); rescaled to our 4 Hz / 20-point layout."""
    # official TEST_DATA index 1271 (speed 6.09), MODEL2 -> 7.307854143879492 with the 5 s-long raters
    r1 = np.array([[6.116130709045365, -0.0064596553261253575], [11.283734185302137, 0.06930987395980992],
                   [14.445738365972602, 0.22190593950062976], [15.863924647712793, 0.3513780388188934],
                   [16.220629990528778, 0.3979054272808753]])
    r2 = np.array([[6.3023491185483635, 0.027379927538731863], [13.151817455762284, 0.5152881368030648],
                   [20.08838570878538, 2.2066481916076555], [26.655734316468852, 5.669334168663681],
                   [32.556009257534924, 10.914624712820569]])
    pred = np.array([[6.22, 0.06], [12.87, 0.42], [19.53, 1.58], [25.81, 3.93], [31.42, 7.51]])

    def to20(x):  # points at 1..5 s -> 20 points at 4 Hz, the 1 s points at indices 3, 7, 11, 15, 19
        out = np.repeat(x, 4, axis=0)
        return out

    ours = rater_feedback_score(to20(pred)[None], np.stack([to20(r1), to20(r2)])[None], np.array([[8.0, 10.0]]),
                                initial_speed=np.array([6.091951370239258]))["frame_scores"][0]
    # the direction at 3 s / 5 s is the last non-zero displacement: here the 2 s -> 3 s and 4 s -> 5 s ones,
    # exactly the official frequency-1 directions
    assert ours == pytest.approx(7.307854143879492, abs=1e-12)


# ----------------------------------------------------------------------------------------------------
# Hand cases.
# ----------------------------------------------------------------------------------------------------
def straight(speed=4.0):
    """20 points along +x at `speed` m/s, 4 Hz: point k at (k+1)/4 * speed."""
    t = np.arange(1, 21) / 4.0
    return np.stack([t * speed, np.zeros(20)], axis=-1)


def rfs(pred, raters, scores, v=11.0, **kw):
    return rater_feedback_score(np.asarray(pred)[None], np.asarray(raters)[None], np.asarray(scores)[None],
                                initial_speed=np.array([v]), **kw)


def test_speed_scale():
    assert speed_scale(0.0) == 0.5 and speed_scale(1.4) == 0.5
    assert speed_scale(11.0) == 1.0 and speed_scale(30.0) == 1.0
    assert speed_scale(6.2) == pytest.approx(0.75)


def test_prediction_exactly_on_a_rater_trajectory():
    r = straight()
    out = rfs(r, [r, r + [0, 5.0]], [7.5, 9.0])
    assert out["rfs"] == pytest.approx(7.5)  # inside rater 1 (7.5, no floor); rater 2 is far at both horizons


def test_each_horizon_is_scored_separately_and_averaged():
    r = straight()
    pred = r.copy()
    pred[11, 1] += 1.2  # v = 11 -> scale 1: 3 s lateral 1.2 / 1.0 -> excess 0.2
    pred[19, 1] += 2.7  # 5 s lateral 2.7 / 1.8 = 1.5 -> excess 0.5
    expected = (10 * 0.1**0.2 + 10 * 0.1**0.5) / 2  # 5.73: mean of the two horizons, above the floor
    assert rfs(pred, [r], [10.0])["rfs"] == pytest.approx(expected)
    pred[19, 1] = 1.26  # 5 s inside (0.7): 3 s scored 10 * 0.1**0.2, 5 s scored 10; outside -> floor 4
    assert rfs(pred, [r], [10.0])["rfs"] == pytest.approx((10 * 0.1**0.2 + 10.0) / 2)


def test_best_rater_is_chosen_per_horizon():
    r1 = straight()
    r2 = straight()
    r2[19] += [0.0, 10.0]  # r2 agrees with r1 at 3 s, is 10 m to the left at 5 s
    pred = r1.copy()
    pred[11, 1] += 1.1  # at 3 s: excess 0.1 against both
    pred[19] = r2[19]  # at 5 s: exactly on r2, far from r1
    # 3 s: best is r1 (score 9) -> 9 * 0.1**0.1; 5 s: best is r2 (score 6, distance 0) -> 6
    expected = (9 * 0.1**0.1 + 6.0) / 2
    assert rfs(pred, [r1, r2], [9.0, 6.0])["rfs"] == pytest.approx(expected)
    # one rater for both horizons would give less: r1 alone -> floor 4, r2 alone -> (6 * 0.1**0.1 + 6) / 2
    assert rfs(pred, [r1], [9.0])["rfs"] == pytest.approx(4.0)
    assert rfs(pred, [r2], [6.0])["rfs"] == pytest.approx((6 * 0.1**0.1 + 6.0) / 2)
    assert (6 * 0.1**0.1 + 6.0) / 2 < expected


def test_floor_applies_outside_every_region_only():
    r = straight()
    far = r + [50.0, 50.0]
    assert rfs(far, [r], [9.0])["rfs"] == pytest.approx(4.0)
    assert rfs(far, [r], [2.0])["rfs"] == pytest.approx(4.0)  # floor 4 even above a low rater score
    assert rfs(r, [r], [2.0])["rfs"] == pytest.approx(2.0)  # inside the region of a rater scored 2: no floor
    assert rfs(r, [r, r + [0, 30.0]], [2.0, 9.0])["rfs"] == pytest.approx(2.0)  # inside r1 (2) beats the floor
    # inside at 3 s for rater 1 and at 5 s for rater 2, but not both for one rater: floored
    r1, r2 = straight(), straight()
    r2[11] += [0.0, 10.0]
    r1[19] += [0.0, 10.0]
    pred = straight()
    pred[11], pred[19] = r1[11], r2[19]
    assert rfs(pred, [r1, r2], [2.0, 3.0])["rfs"] == pytest.approx(4.0)  # mean (2 + 3) / 2 = 2.5 -> 4


def test_probabilities_are_used_as_given():
    r = straight()
    preds = np.stack([r, r + [50.0, 50.0]])
    out = rater_feedback_score(preds[None], r[None, None], np.array([[9.0]]), initial_speed=np.array([11.0]),
                               probabilities=np.array([[0.5, 0.25]]))
    assert out["rfs"] == pytest.approx(0.5 * 9.0 + 0.25 * 4.0)  # 5.5, no renormalisation to 1
    out = rater_feedback_score(preds[None], r[None, None], np.array([[9.0]]), initial_speed=np.array([11.0]))
    assert out["rfs"] == pytest.approx((9.0 + 4.0) / 2)  # none given: uniform
    with pytest.raises(ValueError):
        rater_feedback_score(preds[None], r[None, None], np.array([[9.0]]), initial_speed=np.array([11.0]),
                             probabilities=np.array([[-0.5, 1.5]]))


def test_inside_trust_region_gets_full_score():
    r = straight()
    pred = r.copy()
    pred[:, 1] += 0.9  # lateral 0.9 m < 1.0 m at 3 s and < 1.8 m at 5 s (v = 10 -> scale 0.96875)
    pred[:, 0] += 3.5  # longitudinal 3.5 < 4 * 0.96875 = 3.875 at 3 s
    assert rfs(pred, [r], [8.0], v=10.0)["rfs"] == pytest.approx(8.0)


def test_longitudinal_uses_four_times_the_threshold():
    r = straight()
    pred = r.copy()
    pred[:, 0] += 4.4  # 4.4 / 4.0 = 1.1 at 3 s; at 5 s 4.4 / 7.2 < 1 -> outside, (9 * 0.1**0.1 + 9) / 2 = 8.51
    assert rfs(pred, [r], [9.0])["rfs"] == pytest.approx((9.0 * 0.1**0.1 + 9.0) / 2)


def test_zero_initial_speed_halves_the_region():
    r = straight(0.0)  # a stopped rater trajectory: heading falls back to +x
    pred = r.copy()
    pred[:, 1] += 0.6  # scale 0.5 -> lateral threshold 0.5 m at 3 s: excess 0.2; at 5 s 0.6/0.9 inside
    assert rfs(pred, [r], [10.0], v=0.0)["rfs"] == pytest.approx((10 * 0.1**0.2 + 10) / 2)
    assert rfs(pred, [r], [10.0], v=11.0)["rfs"] == pytest.approx(10.0)


def test_rotated_rater_frame():
    t = np.arange(1, 21) / 4.0
    r = np.stack([np.zeros(20), t * 8.0], -1)  # driving along +y: an offset along +y is longitudinal
    assert rfs(r + [0.0, 3.0], [r], [8.0])["rfs"] == pytest.approx(8.0)  # 3 m < 4 m longitudinal
    pred = r + [1.1, 0.0]  # 1.1 m lateral: excess 0.1 at 3 s, inside at 5 s
    assert rfs(pred, [r], [8.0])["rfs"] == pytest.approx(max(4.0, (8.0 * 0.1**0.1 + 8.0) / 2))


def test_invalid_raters_are_ignored_and_frames_without_raters_are_nan():
    r = straight()
    out = rfs(r, [r, r + [0, 30.0], np.zeros((20, 2))], [-1.0, 6.0, -1.0])
    assert out["rfs"] == pytest.approx(4.0)  # only the far (score 6) rater is valid
    out = rater_feedback_score(
        np.stack([r, r]), np.stack([[r], [r]]), np.array([[-1.0], [7.0]]), initial_speed=np.array([5.0, 5.0])
    )
    assert out["num_frames"] == 1 and out["num_frames_without_raters"] == 1 and out["rfs"] == pytest.approx(7.0)
    assert math.isnan(out["frame_scores"][0])


def test_only_the_first_three_valid_raters_count():
    r = straight()
    raters = [r + [0, 30.0], np.zeros((20, 2)), r + [0, 40.0], r + [0, 50.0], r]
    assert rfs(r, raters, [5.0, -1.0, 5.0, 5.0, 9.0])["rfs"] == pytest.approx(4.0)  # the 4th valid (r) is cut
    assert rfs(r, raters[:2] + raters[4:], [5.0, -1.0, 9.0])["rfs"] == pytest.approx(9.0)


def test_malformed_prediction_is_a_miss_and_past_states_speed():
    r = straight()
    assert rfs(np.full((20, 2), np.nan), [r], [9.0])["rfs"] == pytest.approx(4.0)
    past = np.zeros((1, 16, 6))
    past[0, -1, 2:4] = [6.0, 8.0]  # |v| = 10
    out = rater_feedback_score(r[None], r[None, None], np.array([[8.0]]), past_states=past)
    assert out["rfs"] == pytest.approx(8.0)


def test_evaluate_metric_module_reports_the_same():
    from hf_vlmdrive.metrics import load_metric

    rng = np.random.default_rng(3)
    b = 8
    speed = rng.uniform(0, 15, b)
    raters = np.stack([np.stack([_random_rater(rng, s) for _ in range(3)]) for s in speed])
    scores = rng.integers(0, 11, (b, 3)).astype(float)
    preds = raters[:, 0] + rng.normal(0, 1.5, (b, 20, 2))
    ref = _official_rfs(preds[:, None], np.ones((b, 1)), [list(x) for x in raters], list(scores), speed)
    metric = load_metric("rfs")
    out = metric.compute(predictions=preds.tolist(), references=raters.tolist(), rater_scores=scores.tolist(),
                         initial_speed=speed.tolist())
    assert out["rfs"] == pytest.approx(ref.mean(), abs=1e-9) and out["num_frames"] == b
