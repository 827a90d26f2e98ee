"""Waymo Rater Feedback Score (RFS) of the WOD-E2E challenge (SPEC 3.3).

Reference: `get_rater_feedback_score` in
github:waymo-research/waymo-open-dataset `src/waymo_open_dataset/metrics/python/rater_feedback_utils.py`
(commit 99a4cb3f, default arguments). `frame_scores` equals its `rater_feedback_score` output.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Rater Feedback Score: predicted trajectories are scored against up to three rater trajectories, each
scored 0-10 by human raters (score < 0 or missing = invalid rater trajectory, ignored).

Definition = Waymo's official `get_rater_feedback_score` (waymo-open-dataset,
src/waymo_open_dataset/metrics/python/rater_feedback_utils.py) with its default arguments
(frequency 4 Hz, 5 s = 20 points, point k at t = (k + 1) / 4 s; lateral / longitudinal multipliers
1.0 / 4.0; decay 0.1; minimum score outside the trust region 4.0; at most 3 rater trajectories):
1. Directions: the rater trajectory is prefixed with the origin; the longitudinal direction at point t
   is the displacement from point t - 1 to t (from the origin for t = 0); a zero displacement takes
   the previous point's direction ((1, 0) at t = 0). Lateral = longitudinal rotated 90 deg left.
2. Thresholds at t = 3 s (point 12) and t = 5 s (point 20): base 1.0 m and 1.8 m, times 1.0 laterally
   and 4.0 longitudinally, times the speed scale clip(0.5 + 0.5 * (v - 1.4) / (11 - 1.4), 0.5, 1) of
   the ego's initial speed v (m/s).
3. Normalised distance d[p, i, h] of prediction i to rater trajectory p at horizon h:
   max(|lateral| / lateral threshold, |longitudinal| / longitudinal threshold).
4. Per-horizon score: max over rater trajectories p of score[p] * 0.1 ** max(d[p, i, h] - 1, 0) (the
   best rater is chosen separately at 3 s and at 5 s); the prediction's score is the mean of its 3 s
   and 5 s scores.
5. A prediction is inside the trust region when d[p, i, h] <= 1 at both horizons for one and the same
   rater trajectory p. A prediction that is not inside scores max(4, score); inside, no floor (a rater
   trajectory scored below 4 can then give less than 4).
6. The frame score is sum_i probability[i] * score[i], with the probabilities as given (not
   renormalised); uniform 1 / I when none are given (the official requires them).
What this implementation does beyond the official (documented, not in the reference):
- frames without any valid rater trajectory get NaN and are left out of the mean (the official raises);
  their number is returned as `num_frames_without_raters`;
- more than three valid rater trajectories: the first three valid ones are used (as the official's
  truncation to 3);
- predictions longer than 20 points are cut to 20 (the official raises); shorter ones are rejected;
- a non-finite prediction is a miss: 4.0, the score of a prediction infinitely far away (the official
  returns NaN); a rater trajectory with non-finite points is treated as invalid;
- shape errors and non-finite or negative probabilities raise ValueError.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: (B, I, 20, 2) or (B, 20, 2) predicted waypoints (x forward, y left, metres).
    rater_trajectories: (B, R, 20, 2) rater-specified trajectories (zero padded).
    rater_scores: (B, R) rater scores in [0, 10]; -1 (any negative) marks an invalid / absent one.
    initial_speed: (B,) ego speed at t = 0 in m/s, or pass `past_states` (B, 16, 6) instead.
    probabilities: optional (B, I) per-prediction probabilities, used as given.
Returns:
    {"rfs": mean frame score, "rfs_min", "num_frames" (scored), "num_frames_without_raters",
     "protocol"}.
Examples:
    >>> import numpy as np
    >>> from hf_vlmdrive.metrics.rfs.rfs import rater_feedback_score
    >>> traj = np.stack([np.linspace(1, 20, 20), np.zeros(20)], -1)
    >>> out = rater_feedback_score(traj[None], traj[None, None], np.array([[8.0]]), initial_speed=np.array([10.0]))
    >>> round(out["rfs"], 3)
    8.0
"""

_CITATION = """
@article{xu2025wode2e,
  title={WOD-E2E: Waymo Open Dataset for End-to-End Driving in Challenging Long-tail Scenarios},
  author={Xu, Runsheng and others},
  year={2025}
}
"""

NUM_POINTS = 20  # 5 s at 4 Hz
HORIZON_INDICES = (11, 19)  # 3 s and 5 s at 4 Hz
BASE_THRESHOLDS = (1.0, 1.8)
LATERAL_SCALE, LONGITUDINAL_SCALE = 1.0, 4.0
DECAY_BASE, SCORE_FLOOR = 0.1, 4.0
MAX_RATERS = 3


def speed_scale(speed: np.ndarray) -> np.ndarray:
    """clip(0.5 + 0.5 * (v - 1.4) / (11 - 1.4), 0.5, 1)."""
    return np.clip(0.5 + 0.5 * (np.asarray(speed, dtype=np.float64) - 1.4) / (11 - 1.4), 0.5, 1.0)


def _longitudinal_directions(raters: np.ndarray) -> np.ndarray:
    """Unit longitudinal directions (..., T, 2) of rater trajectories (..., T, 2), the official rule."""
    path = np.concatenate([np.zeros(raters.shape[:-2] + (1, 2)), raters], axis=-2)  # prepend the origin
    directions = path[..., 1:, :] - path[..., :-1, :]
    magnitude = np.linalg.norm(directions, axis=-1)
    directions[..., 0, :] = np.where((magnitude[..., 0] == 0)[..., None], [1.0, 0.0], directions[..., 0, :])
    for t in range(1, directions.shape[-2]):
        directions[..., t, :] = np.where((magnitude[..., t] == 0)[..., None], directions[..., t - 1, :],
                                         directions[..., t, :])
    return directions / np.linalg.norm(directions, axis=-1, keepdims=True)


def normalised_distances(predictions: np.ndarray, raters: np.ndarray, initial_speed: np.ndarray) -> np.ndarray:
    """Normalised distance (B, I, R, 2) of each prediction to each rater trajectory at 3 s and 5 s."""
    scale = speed_scale(initial_speed).reshape(-1, 1, 1)  # (B, 1, 1)
    lng = _longitudinal_directions(raters)  # (B, R, T, 2)
    lat = np.stack([-lng[..., 1], lng[..., 0]], axis=-1)
    out = []
    for index, base in zip(HORIZON_INDICES, BASE_THRESHOLDS):
        diff = predictions[:, :, None, index, :] - raters[:, None, :, index, :]  # (B, I, R, 2)
        lon_d = np.abs((diff * lng[:, None, :, index]).sum(-1))
        lat_d = np.abs((diff * lat[:, None, :, index]).sum(-1))
        out.append(np.maximum(lon_d / (base * LONGITUDINAL_SCALE * scale), lat_d / (base * LATERAL_SCALE * scale)))
    return np.stack(out, axis=-1)


def rater_feedback_score(
    predictions,
    rater_trajectories,
    rater_scores,
    initial_speed=None,
    past_states=None,
    probabilities=None,
) -> dict:
    """Rater Feedback Score (see `_DESCRIPTION`); also returns per-frame scores under `frame_scores`."""
    preds = np.asarray(predictions, dtype=np.float64)
    if preds.ndim == 3:
        preds = preds[:, None]
    raters = np.asarray(rater_trajectories, dtype=np.float64)
    scores = np.asarray(rater_scores, dtype=np.float64)
    if preds.ndim != 4 or preds.shape[-1] != 2 or preds.shape[2] < NUM_POINTS:
        raise ValueError(f"predictions must be (B, I, 20, 2) or (B, 20, 2), got {np.shape(predictions)}")
    if raters.ndim != 4 or raters.shape[0] != preds.shape[0] or raters.shape[2:] != preds.shape[2:]:
        raise ValueError(f"rater_trajectories must be (B, R, {preds.shape[2]}, 2), got {raters.shape}")
    if scores.shape != raters.shape[:2]:
        raise ValueError(f"rater_scores must be (B, R) = {raters.shape[:2]}, got {scores.shape}")
    preds, raters = preds[:, :, :NUM_POINTS], raters[:, :, :NUM_POINTS]
    if initial_speed is None:
        if past_states is None:
            raise ValueError("give initial_speed (B,) or past_states (B, 16, 6)")
        past = np.asarray(past_states, dtype=np.float64)
        initial_speed = np.linalg.norm(past[:, -1, 2:4], axis=-1)
    speed = np.asarray(initial_speed, dtype=np.float64).reshape(-1)
    b, i = preds.shape[:2]
    if speed.size == 1:
        speed = np.repeat(speed, b)
    if speed.shape != (b,):
        raise ValueError(f"initial_speed must be (B,) = ({b},), got {np.shape(initial_speed)}")
    if probabilities is None:
        probs = np.full((b, i), 1.0 / i)
    else:
        probs = np.asarray(probabilities, dtype=np.float64).reshape(b, i)
        if (probs < 0).any() or not np.isfinite(probs).all():
            raise ValueError("probabilities must be finite and >= 0")
    valid = np.isfinite(scores) & (scores >= 0) & np.isfinite(raters).all(axis=(-1, -2))  # (B, R)
    valid &= np.cumsum(valid, axis=1) <= MAX_RATERS  # the first three valid raters, as the official
    finite = np.isfinite(preds).all(axis=(-1, -2))  # (B, I)
    safe_preds = np.where(finite[..., None, None], preds, 0.0)
    safe_raters = np.where(valid[..., None, None], raters, 0.0)
    dist = normalised_distances(safe_preds, safe_raters, speed)  # (B, I, R, 2)
    dist = np.where(finite[:, :, None, None], dist, np.inf)  # a malformed prediction is infinitely far
    inside = (np.all(dist <= 1.0, axis=-1) & valid[:, None, :]).any(-1)  # (B, I)
    safe_scores = np.where(valid, scores, 0.0)
    per_horizon = safe_scores[:, None, :, None] * DECAY_BASE ** np.maximum(dist - 1.0, 0.0)  # (B, I, R, 2)
    per_horizon = np.where(valid[:, None, :, None], per_horizon, -np.inf).max(axis=2)  # best rater per horizon
    per_pred = per_horizon.mean(-1)  # (B, I)
    per_pred = np.where(inside, per_pred, np.maximum(SCORE_FLOOR, per_pred))
    has_rater = valid.any(-1)
    frame = np.where(has_rater, (np.where(has_rater[:, None], per_pred, 0.0) * probs).sum(-1), np.nan)
    scored = frame[has_rater]
    return {
        "rfs": float(scored.mean()) if scored.size else float("nan"),
        "rfs_min": float(scored.min()) if scored.size else float("nan"),
        "num_frames": int(scored.size),
        "num_frames_without_raters": int((~has_rater).sum()),
        "frame_scores": frame,
        "protocol": "WOD-E2E rater feedback score = official get_rater_feedback_score (waymo-open-dataset "
        "rater_feedback_utils.py, defaults): trust regions 1.0 m @3 s / 1.8 m @5 s, lateral x1 / longitudinal "
        "x4, speed scale clip(0.5+0.5(v-1.4)/9.6, 0.5, 1), per horizon best rater score x 0.1**excess, mean "
        "of 3 s and 5 s, floor 4 outside every rater's trust region, probabilities as given; mean over "
        "frames with valid raters",
    }


class Rfs(evaluate.Metric):
    """Waymo Rater Feedback Score as an `evaluate` metric."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float64")))),
                        "references": datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float64")))),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                        "references": datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float64")))),
                    }
                ),
            ],
        )

    def _compute(self, predictions, references, rater_scores=None, initial_speed=None, past_states=None, probabilities=None):
        """`references` are the rater trajectories (B, R, 20, 2); `rater_scores` (B, R) is required."""
        if rater_scores is None:
            raise ValueError("rfs needs rater_scores (B, R) alongside the rater trajectories (references)")
        out = rater_feedback_score(
            predictions, references, rater_scores, initial_speed=initial_speed, past_states=past_states,
            probabilities=probabilities,
        )
        out.pop("frame_scores")
        return out


__all__ = ["Rfs", "normalised_distances", "rater_feedback_score", "speed_scale"]
