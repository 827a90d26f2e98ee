"""Figures: predicted vs. true trajectories drawn into the camera images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def project_ground_waypoints(waypoints: np.ndarray, camera) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame ground points (T, 2) -> pixels (T, 2) and a visibility mask, through a `PinholeCamera`."""
    points = np.concatenate([waypoints, np.zeros((len(waypoints), 1))], axis=-1)
    uv, ok = camera.project(points)
    inside = ok & (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    return uv, inside


def plot_waypoint_predictions(
    images: Sequence,
    predictions: np.ndarray,
    references: np.ndarray,
    path: str | Path,
    baselines: np.ndarray | None = None,
    camera=None,
    titles: Sequence[str] | None = None,
) -> Path:
    """Save a PNG: each image with its true (green), predicted (red) and baseline (blue) trajectories.

    With a `camera` (a `PinholeCamera` matching the images) the trajectories are projected into the
    image; beside each image a bird's-eye panel shows them in metres (x forward, y left).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(9, 2.8 * n), squeeze=False, gridspec_kw={"width_ratios": [1.6, 1]})
    for i in range(n):
        ax_img, ax_bev = axes[i]
        img = np.asarray(images[i].convert("RGB"))
        ax_img.imshow(img)
        ax_img.set_axis_off()
        tracks = [(references[i], "tab:green", "true"), (predictions[i], "tab:red", "predicted")]
        if baselines is not None:
            tracks.append((baselines[i], "tab:blue", "constant velocity"))
        for track, color, label in tracks:
            if camera is not None:
                uv, ok = project_ground_waypoints(np.asarray(track), camera)
                ax_img.plot(uv[ok, 0], uv[ok, 1], "o-", color=color, markersize=2, linewidth=1)
            # Bird's-eye: y left is plotted to the left (negated on the horizontal axis).
            ax_bev.plot(-np.asarray(track)[:, 1], np.asarray(track)[:, 0], "o-", color=color, markersize=2, label=label)
        ax_bev.set_aspect("equal", adjustable="datalim")
        ax_bev.set_xlabel("-y (m, right)")
        ax_bev.set_ylabel("x (m, forward)")
        ax_bev.grid(alpha=0.3)
        if titles is not None:
            ax_img.set_title(titles[i], fontsize=8)
        if i == 0:
            ax_bev.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot_waypoint_predictions", "project_ground_waypoints"]
