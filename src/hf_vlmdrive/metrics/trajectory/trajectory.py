"""Trajectory metrics: ADE / FDE, at horizons, and nuScenes-style L2 in both conventions."""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Displacement errors between predicted and ground-truth future trajectories of shape (N, T, 2), with the
points sampled at `frequency_hz` starting one step after the present (WOD-E2E: 20 points at 4 Hz = 5 s).

- `ade`, `fde`: mean L2 over all points / L2 at the last point (metres).
- `ade@{h}s`, `fde@{h}s` for each horizon h in `horizons_s` (default 3 and 5 s): over the points up to
  h / at h.
- nuScenes planning L2 at each of `l2_horizons_s` (default 1, 2, 3 s), in BOTH conventions, labelled:
  `l2@{h}s_stp3` = ST-P3 / VAD convention, the mean L2 over all points up to h ("average up to t");
  `l2@{h}s_uniad` = UniAD convention, the L2 of the single point at h ("at t"); plus `l2_avg_stp3` and
  `l2_avg_uniad`, the mean over the horizons (the "Avg." column of those papers).
  Both use every point at the data's own rate.
- The same L2 on the points subsampled to 2 Hz (t = 0.5, 1.0, 1.5, ... s), the rate of the nuScenes
  samples the published tables (ST-P3, VAD, UniAD) are computed on: `l2@{h}s_stp3_2hz`,
  `l2@{h}s_uniad_2hz`, `l2_avg_stp3_2hz`, `l2_avg_uniad_2hz`. These are the figures comparable with
  papers. "At t" is the same point at both rates (`_uniad_2hz` == `_uniad`); "average up to t" differs
  (at 2 Hz, 2 points up to 1 s instead of 4). Computed when `frequency_hz` is a multiple of 2 Hz.
- Optional `masks` (N, T) drop invalid future points: "average up to t" (ADE, `_stp3`) is the mean
  over the valid points up to t; "at t" (FDE@h, `_uniad`) leaves out a sample whose point at t is
  invalid; a sample with no valid point at a horizon is left out of that horizon's average (the count
  of samples valid at h is returned as `num_samples@{h}s`). Masked points are never counted as zero
  error. `fde` uses each sample's last valid point.

Returned keys also include `num_samples` and `protocol` (a string stating the conventions).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: array-like (N, T, 2), predicted waypoints in metres.
    references: array-like (N, T, 2), ground-truth waypoints in metres.
    masks: optional array-like (N, T) of 0/1, valid ground-truth points.
    frequency_hz: sampling rate of the points (default 4.0).
    horizons_s: horizons for ADE/FDE (default (3, 5)).
    l2_horizons_s: horizons for nuScenes L2 (default (1, 2, 3)).
Returns:
    dict of floats (plus `protocol`, a string).
Examples:
    >>> import numpy as np
    >>> from hf_vlmdrive.metrics import load_metric
    >>> metric = load_metric("trajectory")
    >>> gt = np.zeros((1, 20, 2)); pred = gt.copy(); pred[..., 1] = 1.0
    >>> round(metric.compute(predictions=pred, references=gt)["ade"], 3)
    1.0
"""

_CITATION = """
@inproceedings{hu2022stp3, title={ST-P3: End-to-end Vision-based Autonomous Driving via Spatial-Temporal Feature Learning}, year={2022}}
@inproceedings{hu2023uniad, title={Planning-oriented Autonomous Driving}, year={2023}}
"""


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row mean of `values` over `mask`; NaN for rows without a valid entry."""
    count = mask.sum(axis=1)
    total = (values * mask).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _horizon_index(horizon_s: float, frequency_hz: float, num_points: int) -> int:
    index = int(round(horizon_s * frequency_hz)) - 1
    if not 0 <= index < num_points:
        raise ValueError(
            f"horizon {horizon_s:g} s is outside the {num_points} points at {frequency_hz} Hz "
            f"(covering {num_points / frequency_hz:g} s)"
        )
    return index


def trajectory_metrics(
    predictions,
    references,
    masks=None,
    frequency_hz: float = 4.0,
    horizons_s=(3.0, 5.0),
    l2_horizons_s=(1.0, 2.0, 3.0),
) -> dict:
    """Compute the trajectory metrics described in `_DESCRIPTION` with numpy; see the module docstring."""
    pred = np.asarray(predictions, dtype=np.float64)
    ref = np.asarray(references, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[-1] < 2:
        raise ValueError(f"predictions must have shape (N, T, 2), got {pred.shape}")
    if pred.shape != ref.shape:
        raise ValueError(f"predictions {pred.shape} and references {ref.shape} must have the same shape")
    n, t = pred.shape[:2]
    mask = np.ones((n, t), dtype=bool) if masks is None else np.asarray(masks).astype(bool)
    if mask.shape != (n, t):
        raise ValueError(f"masks must have shape {(n, t)}, got {mask.shape}")
    dist = np.linalg.norm(pred[..., :2] - ref[..., :2], axis=-1)  # (N, T)

    def mean_of(rows: np.ndarray) -> float:
        rows = rows[~np.isnan(rows)]
        return float(rows.mean()) if rows.size else float("nan")

    def at(index: int) -> np.ndarray:
        return np.where(mask[:, index], dist[:, index], np.nan)

    def up_to(index: int) -> np.ndarray:
        return _masked_mean(dist[:, : index + 1], mask[:, : index + 1])

    # FDE is the L2 at the last *valid* point of each sample.
    last_valid = np.where(mask.any(axis=1), t - 1 - np.argmax(mask[:, ::-1], axis=1), -1)
    fde_rows = np.where(last_valid >= 0, dist[np.arange(n), np.clip(last_valid, 0, None)], np.nan)
    out: dict = {"ade": mean_of(_masked_mean(dist, mask)), "fde": mean_of(fde_rows)}
    for h in horizons_s:
        i = _horizon_index(h, frequency_hz, t)
        out[f"ade@{h:g}s"] = mean_of(up_to(i))
        out[f"fde@{h:g}s"] = mean_of(at(i))
        out[f"num_samples@{h:g}s"] = int(mask[:, i].sum())
    stp3, uniad = [], []
    for h in l2_horizons_s:
        i = _horizon_index(h, frequency_hz, t)
        out[f"l2@{h:g}s_stp3"] = mean_of(up_to(i))
        out[f"l2@{h:g}s_uniad"] = mean_of(at(i))
        stp3.append(out[f"l2@{h:g}s_stp3"])
        uniad.append(out[f"l2@{h:g}s_uniad"])
    if l2_horizons_s:
        out["l2_avg_stp3"] = float(np.mean(stp3))
        out["l2_avg_uniad"] = float(np.mean(uniad))
    step = frequency_hz / 2.0  # points per 0.5 s
    has_2hz = bool(l2_horizons_s) and step >= 1 and abs(step - round(step)) < 1e-9
    if has_2hz:
        step = int(round(step))
        keep = np.arange(step - 1, t, step)  # the points at 0.5, 1.0, 1.5, ... s
        d2, m2 = dist[:, keep], mask[:, keep]
        stp3_2hz, uniad_2hz = [], []
        for h in l2_horizons_s:
            i = _horizon_index(h, 2.0, len(keep))
            out[f"l2@{h:g}s_stp3_2hz"] = mean_of(_masked_mean(d2[:, : i + 1], m2[:, : i + 1]))
            out[f"l2@{h:g}s_uniad_2hz"] = mean_of(np.where(m2[:, i], d2[:, i], np.nan))
            stp3_2hz.append(out[f"l2@{h:g}s_stp3_2hz"])
            uniad_2hz.append(out[f"l2@{h:g}s_uniad_2hz"])
        out["l2_avg_stp3_2hz"] = float(np.mean(stp3_2hz))
        out["l2_avg_uniad_2hz"] = float(np.mean(uniad_2hz))
    out["num_samples"] = int(n)
    out["protocol"] = (
        f"L2 metres over {t} points at {frequency_hz:g} Hz; l2@*_stp3 = mean up to t (ST-P3/VAD), "
        "l2@*_uniad = at t (UniAD)"
        + ("; l2@*_2hz = the same on the points subsampled to 2 Hz (0.5 s steps), the figures comparable "
           "with published nuScenes tables" if has_2hz else "")
        + "; masked points are left out (mean over the valid points up to t; a sample invalid at t is "
        "left out of 'at t'), never counted as zero error"
    )
    return out


def constant_velocity_baseline(
    past_states, num_points: int = 20, frequency_hz: float = 4.0, source: str = "velocity"
) -> np.ndarray:
    """Constant-velocity extrapolation of the past ego states (B, P, >=2) -> (B, num_points, 2).

    The ego is at the origin of its frame at the present (the last past state). `source="velocity"` uses
    the last state's vel x,y (columns 2:4, WOD-E2E layout); `source="positions"` differentiates the last
    two positions instead (for data without velocities).
    """
    past = np.asarray(past_states, dtype=np.float64)
    if past.ndim != 3 or past.shape[-1] < 2:
        raise ValueError(f"past_states must have shape (B, P, D>=2), got {past.shape}")
    if source == "velocity":
        if past.shape[-1] < 4:
            raise ValueError("source='velocity' needs vel x,y in columns 2:4 of past_states")
        velocity = past[:, -1, 2:4]
    elif source == "positions":
        if past.shape[1] < 2:
            raise ValueError("source='positions' needs at least two past states")
        velocity = (past[:, -1, :2] - past[:, -2, :2]) * frequency_hz
    else:
        raise ValueError(f"source must be 'velocity' or 'positions', got {source!r}")
    times = np.arange(1, num_points + 1) / frequency_hz  # (T,)
    origin = past[:, -1, :2]
    return origin[:, None, :] + velocity[:, None, :] * times[None, :, None]


def straight_route_baseline(num_samples: int, num_points: int = 20, spacing: float = 1.0) -> np.ndarray:
    """The route a lane-keeping-straight car would follow: points `spacing` m apart straight ahead."""
    line = np.stack([spacing * np.arange(num_points), np.zeros(num_points)], axis=-1)
    return np.broadcast_to(line, (num_samples, num_points, 2)).copy()


class Trajectory(evaluate.Metric):
    """ADE / FDE / horizon and nuScenes-L2 (both conventions) trajectory metrics."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                        "references": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                    }
                ),
            ],
        )

    def _compute(self, predictions, references, masks=None, frequency_hz=4.0, horizons_s=(3.0, 5.0), l2_horizons_s=(1.0, 2.0, 3.0)):
        return trajectory_metrics(
            predictions, references, masks=masks, frequency_hz=frequency_hz, horizons_s=horizons_s, l2_horizons_s=l2_horizons_s
        )
