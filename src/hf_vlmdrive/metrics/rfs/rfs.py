"""Waymo Rater Feedback Score (RFS) of the WOD-E2E challenge (SPEC 3.3)."""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Rater Feedback Score: predicted trajectories are scored against up to three rater trajectories, each
scored 0-10 by human raters (score < 0 or missing = invalid rater trajectory, ignored).

Reading of the official metric implemented here (20 points at 4 Hz, point k at t = (k + 1) / 4 s):
1. Trust regions at t = 3 s (point 12) and t = 5 s (point 20), around the rater trajectory's point,
   in the rater trajectory's own frame at that time (longitudinal = its heading, from the previous
   point; lateral = perpendicular). Base thresholds 1.0 m (3 s) and 1.8 m (5 s), multiplied by 1.0
   laterally and 4.0 longitudinally, and by the speed scale clip(0.5 + 0.5 * (v - 1.4) / 9.6, 0.5, 1)
   of the ego's initial speed v (m/s; |velocity| of the last past state).
2. Normalised distance at a time t: max(|lateral| / lateral threshold, |longitudinal| / longitudinal
   threshold); the excess is max(0, normalised distance - 1). The 3 s and 5 s results are combined by
   taking the larger excess: a prediction is inside the trust region only if it is inside at both times.
3. Score against one rater trajectory of score s: s when the excess is 0 (inside), otherwise
   max(4, s * 0.1 ** excess) - the score decays by a factor 0.1 per unit of normalised excess
   distance, floored at 4 (a rater trajectory scored below 4 keeps its own score as the floor).
4. The score of a prediction is its score against the best-matching valid rater trajectory (the one
   giving the highest score).
5. The score of a frame is the probability-weighted mean of its predictions' scores (probabilities
   normalised to sum to 1; uniform when not given). Frames without any valid rater trajectory get NaN
   and are left out of the mean; their number is returned.
Malformed predictions (NaN / inf) score the floor (min(4, rater score)) against every rater: a miss.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: (B, I, 20, 2) or (B, 20, 2) predicted waypoints (x forward, y left, metres).
    rater_trajectories: (B, R, 20, 2) rater-specified trajectories (R <= 3, zero padded).
    rater_scores: (B, R) rater scores in [0, 10]; -1 (any negative) marks an invalid / absent one.
    initial_speed: (B,) ego speed at t = 0 in m/s, or pass `past_states` (B, 16, 6) instead.
    probabilities: optional (B, I) per-prediction probabilities.
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

HORIZON_INDICES = (11, 19)  # 3 s and 5 s at 4 Hz
BASE_THRESHOLDS = (1.0, 1.8)
LATERAL_SCALE, LONGITUDINAL_SCALE = 1.0, 4.0
DECAY_BASE, SCORE_FLOOR = 0.1, 4.0


def speed_scale(speed: np.ndarray) -> np.ndarray:
    """clip(0.5 + 0.5 * (v - 1.4) / 9.6, 0.5, 1)."""
    return np.clip(0.5 + 0.5 * (np.asarray(speed, dtype=np.float64) - 1.4) / 9.6, 0.5, 1.0)


def _headings(rater: np.ndarray, index: int) -> np.ndarray:
    """Unit heading (..., 2) of rater trajectories (..., T, 2) at `index` (last non-degenerate segment)."""
    path = np.concatenate([np.zeros(rater.shape[:-2] + (1, 2)), rater], axis=-2)  # prepend t = 0
    heading = np.zeros(rater.shape[:-2] + (2,))
    heading[..., 0] = 1.0
    found = np.zeros(rater.shape[:-2], dtype=bool)
    for k in range(index + 1, 0, -1):  # segments ending at index, index-1, ...
        seg = path[..., k, :] - path[..., k - 1, :]
        norm = np.linalg.norm(seg, axis=-1)
        use = (~found) & (norm > 1e-6)
        heading[use] = seg[use] / norm[use, None]
        found |= use
    return heading


def normalised_excess(predictions: np.ndarray, raters: np.ndarray, initial_speed: np.ndarray) -> np.ndarray:
    """Excess (B, I, R) of each prediction over each rater's trust region, the larger of 3 s and 5 s."""
    scale = speed_scale(initial_speed)[:, None, None]  # (B, 1, 1)
    excess = np.zeros(predictions.shape[:2] + raters.shape[1:2])
    for index, base in zip(HORIZON_INDICES, BASE_THRESHOLDS):
        heading = _headings(raters, index)  # (B, R, 2)
        normal = np.stack([-heading[..., 1], heading[..., 0]], axis=-1)
        diff = predictions[:, :, None, index, :] - raters[:, None, :, index, :]  # (B, I, R, 2)
        lon = np.abs((diff * heading[:, None]).sum(-1))
        lat = np.abs((diff * normal[:, None]).sum(-1))
        dist = np.maximum(lat / (base * LATERAL_SCALE * scale), lon / (base * LONGITUDINAL_SCALE * scale))
        excess = np.maximum(excess, np.maximum(dist - 1.0, 0.0))
    return excess


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
    if preds.ndim != 4 or preds.shape[-1] != 2 or preds.shape[2] < max(HORIZON_INDICES) + 1:
        raise ValueError(f"predictions must be (B, I, 20, 2) or (B, 20, 2), got {np.shape(predictions)}")
    if raters.ndim != 4 or raters.shape[0] != preds.shape[0] or raters.shape[2:] != preds.shape[2:]:
        raise ValueError(f"rater_trajectories must be (B, R, {preds.shape[2]}, 2), got {raters.shape}")
    if scores.shape != raters.shape[:2]:
        raise ValueError(f"rater_scores must be (B, R) = {raters.shape[:2]}, got {scores.shape}")
    if initial_speed is None:
        if past_states is None:
            raise ValueError("give initial_speed (B,) or past_states (B, 16, 6)")
        past = np.asarray(past_states, dtype=np.float64)
        initial_speed = np.linalg.norm(past[:, -1, 2:4], axis=-1)
    speed = np.asarray(initial_speed, dtype=np.float64).reshape(-1)
    b, i = preds.shape[:2]
    if probabilities is None:
        probs = np.full((b, i), 1.0 / i)
    else:
        probs = np.asarray(probabilities, dtype=np.float64).reshape(b, i)
        if (probs < 0).any() or not np.isfinite(probs).all():
            raise ValueError("probabilities must be finite and >= 0")
        total = probs.sum(-1, keepdims=True)
        probs = np.where(total > 0, probs / np.where(total > 0, total, 1.0), 1.0 / i)
    valid = (scores >= 0) & np.isfinite(raters).all(axis=(-1, -2))  # (B, R)
    finite = np.isfinite(preds).all(axis=(-1, -2))  # (B, I)
    safe_preds = np.where(finite[..., None, None], preds, 0.0)
    safe_raters = np.where(valid[..., None, None], raters, 0.0)
    excess = normalised_excess(safe_preds, safe_raters, speed)  # (B, I, R)
    s = scores[:, None, :]
    floor = np.minimum(SCORE_FLOOR, s)
    per_rater = np.where(excess <= 0.0, s, np.maximum(floor, s * DECAY_BASE**excess))
    per_rater = np.where(finite[..., None], per_rater, floor)  # a malformed prediction is a miss
    per_rater = np.where(valid[:, None, :], per_rater, -np.inf)
    per_pred = per_rater.max(-1)  # best-matching rater, (B, I)
    has_rater = valid.any(-1)
    frame = np.where(has_rater, (np.where(has_rater[:, None], per_pred, 0.0) * probs).sum(-1), np.nan)
    scored = frame[has_rater]
    return {
        "rfs": float(scored.mean()) if scored.size else float("nan"),
        "rfs_min": float(scored.min()) if scored.size else float("nan"),
        "num_frames": int(scored.size),
        "num_frames_without_raters": int((~has_rater).sum()),
        "frame_scores": frame,
        "protocol": "WOD-E2E rater feedback score: trust regions 1.0 m @3 s / 1.8 m @5 s, lateral x1 / "
        "longitudinal x4, speed scale clip(0.5+0.5(v-1.4)/9.6, 0.5, 1), decay 0.1**excess, floor 4, "
        "max over valid raters, probability-weighted per frame, mean over frames with raters",
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


__all__ = ["Rfs", "normalised_excess", "rater_feedback_score", "speed_scale"]
