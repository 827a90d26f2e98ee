"""Figures of every family: predicted vs. true trajectories drawn into the camera images (waypoints, SimLingo),
road-scene answers and captions beside their image, action chunks and per-episode actions (GeoVLA, RoboVLM)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _save_figure(fig, path: str | Path, **savefig_kwargs) -> Path:
    """Write `fig` to `path` (parent folders made), close it, return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **savefig_kwargs)
    plt.close(fig)
    return path


def project_ground_waypoints(waypoints: np.ndarray, camera) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame ground points (T, 2) -> pixels (T, 2) and a visibility mask, through a `PinholeCamera`."""
    points = np.concatenate([waypoints, np.zeros((len(waypoints), 1))], axis=-1)
    uv, ok = camera.project(points)
    inside = ok & (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    return uv, inside


def project_ego_to_image(points: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray,
                         image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame ground points (P, 2) -> pixels (P, 2) and a visibility mask, through a 3x3 pinhole
    `intrinsics` and a 4x4 camera-to-ego `extrinsics` whose camera axes are x forward, y left, z up (the
    CARLA reader's and the synthetic renderer's convention): u = c_u - f y / x, v = c_v - f z / x. With
    `image_size` (width, height) points outside the image are masked too."""
    pts = np.concatenate([np.asarray(points, np.float64).reshape(-1, 2), np.zeros((len(points), 1)),
                          np.ones((len(points), 1))], axis=-1)
    cam = (np.linalg.inv(np.asarray(extrinsics, np.float64)) @ pts.T).T[:, :3]
    k = np.asarray(intrinsics, np.float64)
    depth = cam[:, 0]
    ok = depth > 0.5
    safe = np.where(ok, depth, 1.0)
    uv = np.stack([k[0, 2] - k[0, 0] * cam[:, 1] / safe, k[1, 2] - k[1, 1] * cam[:, 2] / safe], axis=-1)
    if image_size is not None:
        ok &= (uv[:, 0] >= 0) & (uv[:, 0] < image_size[0]) & (uv[:, 1] >= 0) & (uv[:, 1] < image_size[1])
    return uv, ok


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
    return _save_figure(fig, path, dpi=110)


def _bvpi_lines(record: dict | None) -> list[tuple[str, str]]:
    """(label, value) lines of a parsed BVPI answer for the road-scene figure."""
    if record is None:
        return [("answer", "unparseable")]
    lines = [(f, str(record.get(f, "-"))) for f in ("sidewalk_pos", "road_pos", "road_vs_sidewalk", "object_present",
                                                    "object_present_outside")]
    for group, label in (("objects_on_sidewalk", "on sidewalk"), ("objects_outside_sidewalk", "outside")):
        objs = record.get(group) or {}
        shown = [f"{o} {p if isinstance(p, str) else '/'.join(p)}" for o, p in objs.items() if p != "not present"]
        lines.append((label, ", ".join(shown) or "nothing"))
    return lines


def plot_roadscene_predictions(
    images: Sequence,
    predictions: Sequence[str],
    references: Sequence[str],
    path: str | Path,
    caption_predictions: Sequence[str] | None = None,
    caption_references: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
) -> Path:
    """Save a PNG: per scene, the image | the reference | the model's answer (BVPI fields, then the caption).

    `predictions` / `references` are raw BVPI answers (JSON text); each predicted line is green when it equals
    the reference's line and red otherwise (an unparseable answer is one red line).
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics.bvpi.bvpi import parse_bvpi_output

    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(13, 2.6 * n), gridspec_kw={"width_ratios": [1, 2.2, 2.2]}, squeeze=False)
    for i in range(n):
        ax_img, ax_ref, ax_pred = axes[i]
        ax_img.imshow(np.asarray(images[i]), interpolation="nearest")
        ax_img.set_title(titles[i] if titles else f"scene {i}", fontsize=9)
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ref_lines = _bvpi_lines(parse_bvpi_output(references[i]))
        pred_lines = _bvpi_lines(parse_bvpi_output(predictions[i]))
        ref_map = dict(ref_lines)
        for ax, lines, caption, head in (
            (ax_ref, ref_lines, caption_references[i] if caption_references else None, "reference"),
            (ax_pred, pred_lines, caption_predictions[i] if caption_predictions else None, "model prediction"),
        ):
            ax.axis("off")
            ax.set_title(head, fontsize=9, loc="left")
            y = 0.97
            for label, value in lines:
                color = "black" if ax is ax_ref else ("green" if ref_map.get(label) == value else "red")
                ax.text(0.0, y, f"{label}: {value}", color=color, fontsize=8, va="top", family="monospace",
                        transform=ax.transAxes)
                y -= 0.1
            if caption is not None:
                ok = caption_references is not None and caption == caption_references[i]
                color = "black" if ax is ax_ref else ("green" if ok else "darkorange")
                ax.text(0.0, y - 0.02, "caption: " + "\n".join(textwrap.wrap(caption, 70)), color=color, fontsize=8,
                        va="top", transform=ax.transAxes)
    fig.suptitle("Road-scene BVPI answers and captions on held-out scenes (green: equal to the reference, "
                 "red / orange: different)", fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path, dpi=90)


def plot_caption_predictions(
    images: Sequence,
    predictions: Sequence[str],
    references: Sequence[str],
    path: str | Path,
    titles: Sequence[str] | None = None,
    title: str | None = None,
    alternatives: Sequence[Sequence[str]] | None = None,
    baseline: str | None = None,
) -> Path:
    """Save a PNG: per image (row), the image | the reference caption | the predicted caption, the road-scene
    figure's layout for captions alone. A prediction is green when it equals the reference or one of
    `alternatives[i]` (all references of image i), orange otherwise; `baseline` (a constant caption) is printed
    under the figure."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(13, 1.9 * n + (0.5 if baseline else 0)),
                             gridspec_kw={"width_ratios": [1, 2.2, 2.2]}, squeeze=False)
    for i in range(n):
        ax_img, ax_ref, ax_pred = axes[i]
        ax_img.imshow(np.asarray(images[i]), interpolation="nearest")
        ax_img.set_title(titles[i] if titles else f"image {i}", fontsize=9)
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ok = predictions[i] == references[i] or (alternatives is not None and predictions[i] in alternatives[i])
        for ax, text, head, colour in ((ax_ref, references[i], "reference", "black"),
                                       (ax_pred, predictions[i], "model prediction", "green" if ok else "darkorange")):
            ax.axis("off")
            ax.set_title(head, fontsize=9, loc="left")
            ax.text(0.0, 0.9, "\n".join(textwrap.wrap(text or "(empty)", 60)), color=colour, fontsize=8.5, va="top",
                    transform=ax.transAxes)
    fig.suptitle(title or "Captions on held-out images (green: equal to a reference, orange: different)", fontsize=10)
    if baseline:
        fig.text(0.01, 0.005, "baseline (constant caption, every image): " + "\n".join(textwrap.wrap(baseline, 150)),
                 fontsize=8, color="tab:blue", va="bottom")
    fig.tight_layout(rect=(0, 0.5 / (1.9 * n + 0.5) if baseline else 0, 1, 1))
    return _save_figure(fig, path, dpi=90)


def plot_action_chunks(
    references: np.ndarray,
    predictions: np.ndarray,
    path: str | Path,
    action_names: Sequence[str] | None = None,
    baselines: dict[str, np.ndarray] | None = None,
    titles: Sequence[str] | None = None,
    step_label: str = "chunk step",
    units: Sequence[str] | None = None,
) -> Path:
    """Save a PNG: per sample (row) and action dimension (column), the true and predicted action chunks over
    the chunk's steps, with each named baseline's chunk (dashed). Arrays are (N, T, A) in dataset units.
    `step_label` names the x axis (e.g. "frame of the episode" for per-frame actions over an episode) and
    `units` the unit of each dimension (default "dataset units")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    references, predictions = np.asarray(references), np.asarray(predictions)
    n, steps, dims = references.shape
    names = list(action_names) if action_names is not None else [f"a{d}" for d in range(dims)]
    fig, axes = plt.subplots(n, dims, figsize=(2.1 * dims, 2.3 * n), squeeze=False, sharex=True)
    colours = ("tab:blue", "tab:orange", "tab:purple")
    x = np.arange(steps)
    for i in range(n):
        for d in range(dims):
            ax = axes[i, d]
            ax.plot(x, references[i, :, d], "o-", color="tab:green", markersize=3, label="true")
            ax.plot(x, predictions[i, :, d], "s-", color="tab:red", markersize=3, label="predicted")
            for (name, chunk), colour in zip((baselines or {}).items(), colours):
                ax.plot(x, np.asarray(chunk)[i, :, d], "--", color=colour, linewidth=1.2, label=name)
            ax.set_title(names[d] if titles is None or d else f"{titles[i]}\n{names[d]}", fontsize=8, loc="left")
            ax.set_xlabel(step_label, fontsize=7)
            if units is not None:
                ax.set_ylabel(f"{names[d]} ({units[d]})", fontsize=7)
            else:
                ax.set_ylabel(f"{names[d]} (dataset units)" if d == 0 else names[d], fontsize=7)
            ax.tick_params(labelsize=6)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save_figure(fig, path, dpi=110)


# ---------------------------------------------------------------------------------------- SimLingo
def distinct_samples(predictions: dict[str, np.ndarray], num: int, groups: list | None = None) -> list[int]:
    """`num` sample indices that look different: greedy farthest-point selection over (route end lateral
    offset, route end distance, speed), preferring samples from routes not chosen yet (`groups[i]` = the route
    of sample i). Deterministic; starts from the sample whose route turns most."""
    route = predictions["route_labels"]
    feats = np.stack([route[:, -1, 1], 0.5 * route[:, -1, 0], predictions["speed"][:, 0]], -1).astype(np.float64)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    n = len(feats)
    chosen = [int(np.argmax(np.abs(route[:, -1, 1])))] if n else []
    while len(chosen) < min(num, n):
        dist = np.min(np.linalg.norm(feats[:, None] - feats[chosen][None], axis=-1), axis=1)
        if groups is not None:
            used = {groups[c] for c in chosen}
            dist = dist + np.array([0.0 if groups[i] in used else 10.0 for i in range(n)])
        dist[chosen] = -np.inf
        chosen.append(int(np.argmax(dist)))
    return chosen


def plot_simlingo_predictions(predictions: dict[str, np.ndarray], path: str | Path, num: int = 6,
                              route_spacing: float = 1.0, dataset=None, indices: list[int] | None = None,
                              waypoint_hz: float = 4.0) -> Path:
    """Save a figure of `num` distinct held-out samples (see `distinct_samples`), one row each: the front
    camera image with the true / predicted / baseline route and speed waypoints projected onto the ground
    (needs `dataset`, the [`CarlaRouteDataset`] the predictions came from), and the same in bird's-eye view
    (metres, x forward, lateral with the left to the left). Baselines: the straight-line route and the
    constant-velocity waypoints (`waypoint_hz` speed waypoints per second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics.trajectory.trajectory import straight_route_baseline

    groups = [dataset.index[i][0] for i in range(len(dataset))] if dataset is not None else None
    picks = list(indices) if indices is not None else distinct_samples(predictions, num, groups)
    num_route = predictions["route"].shape[1]
    straight = straight_route_baseline(1, num_route, route_spacing)[0]
    cols = 2 if dataset is not None else 1
    fig, axes = plt.subplots(len(picks), cols, figsize=(4.6 * cols, 2.9 * len(picks)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.5, 1]} if cols == 2 else None)
    for row, i in enumerate(picks):
        m = predictions["speed_wps_mask"][i].astype(bool)
        rm = predictions["route_mask"][i].astype(bool)
        v = float(predictions["speed"][i, 0])
        pr_w = predictions["speed_wps"][i]
        cv = np.stack([v * np.arange(1, len(pr_w) + 1) / waypoint_hz, np.zeros(len(pr_w))], -1)
        tracks = [  # (points, style, colour, label)
            (predictions["route_labels"][i][rm], "-", "tab:green", "route true"),
            (predictions["route"][i], "-", "tab:red", "route predicted"),
            (straight, "--", "tab:blue", "route baseline (straight line)"),
            (predictions["speed_wps_labels"][i][m], "o", "tab:green", "waypoints true"),
            (pr_w, "x", "tab:red", "waypoints predicted"),
            (cv, ".", "tab:blue", "waypoints baseline (constant velocity)"),
        ]
        route_ade = float(np.linalg.norm(predictions["route"][i][rm] - predictions["route_labels"][i][rm], axis=-1).mean())
        title = f"sample {i}, v = {v:.1f} m/s, route ADE {route_ade:.2f} m"
        if dataset is not None:
            sample = dataset[i]
            title = f"{sample['route_name']} frame {sample['frame']}: v = {v:.1f} m/s, route ADE {route_ade:.2f} m"
            image = np.asarray(sample["pixel_values"][-1, 0]).transpose(1, 2, 0)
            ax = axes[row][0]
            ax.imshow(image)
            h, w = image.shape[:2]
            for pts, style, colour, label in tracks:
                uv, ok = project_ego_to_image(pts, sample["intrinsics"][0], sample["extrinsics"][0], (w, h))
                ax.plot(uv[ok, 0], uv[ok, 1], style, color=colour, ms=3, lw=1.4, label=label)
            ax.set_xlim(0, w - 1)
            ax.set_ylim(h - 1, 0)
            ax.set_xlabel("image u (px)", fontsize=7)
            ax.set_ylabel("image v (px)", fontsize=7)
            ax.set_title(title, fontsize=8, loc="left")
            ax.tick_params(labelsize=6)
        ax = axes[row][cols - 1]
        for pts, style, colour, label in tracks:
            ax.plot(-pts[:, 1], pts[:, 0], style, color=colour, ms=3, lw=1.4, label=label)
        ax.set_xlabel("lateral -y (m, right +)", fontsize=7)
        ax.set_ylabel("x (m, forward)", fontsize=7)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=6)
        if dataset is None:
            ax.set_title(title, fontsize=8, loc="left")
    handles, labels = axes[0][cols - 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.9 / (3 * len(picks) + 1), 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------- RoboVLM
def plot_episode_actions(episodes: list[dict[str, Any]], baseline_action: np.ndarray, path: str | Path,
                         names: list[str] | None = None, units: list[str] | None = None) -> Path:
    """Figure: per held-out episode (row) and action value (column, the gripper too when the robot has one), the
    true and the predicted action at every frame, with the constant training-mean action (dashed)."""
    ref = np.stack([e["target"] for e in episodes])
    pred = np.stack([e["pred"] for e in episodes])
    base = np.broadcast_to(np.asarray(baseline_action, np.float32), ref.shape)
    return plot_action_chunks(ref, pred, path, action_names=names,
                              baselines={"baseline: training-mean action": base},
                              titles=[f"{e['episode_id']}: {e['task']}" for e in episodes],
                              step_label="frame of the held-out episode", units=units)


__all__ = ["distinct_samples", "plot_action_chunks", "plot_caption_predictions", "plot_episode_actions",
           "plot_episode_frame_strips", "plot_roadscene_predictions", "plot_simlingo_predictions",
           "plot_waypoint_predictions", "project_ego_to_image", "project_ground_waypoints"]


def read_video_frames(path: str | Path) -> np.ndarray:
    """Every frame of an mp4 as uint8 (N, H, W, 3) (PyAV)."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames)


def plot_episode_frame_strips(
    videos: Sequence[str | Path], output_path: str | Path, titles: Sequence[str] | None = None, num_frames: int = 8,
    fps: float = 20.0, rotate_180: bool = False, dpi: int = 110,
) -> Path:
    """One row per episode video: `num_frames` evenly spaced frames (first and last included), each labelled
    with its step and time at `fps` (one frame per env step: LIBERO controls at 20 Hz). The frames are shown as the policy received them
    (the eval harness's videos hold agentview | wrist as sent); `rotate_180` turns each camera half by 180
    degrees (the raw simulator orientation). Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos = [Path(v) for v in videos]
    if not videos:
        raise ValueError("plot_episode_frame_strips: no videos given")
    titles = list(titles) if titles is not None else [v.stem for v in videos]
    if len(titles) != len(videos):
        raise ValueError(f"{len(titles)} titles for {len(videos)} videos")
    clips = [read_video_frames(v) for v in videos]
    height, width = clips[0].shape[1:3]
    panel_w = 1.9  # inches per frame; rows as tall as the frames plus their labels
    fig, axes = plt.subplots(len(clips), num_frames, squeeze=False,
                             figsize=(num_frames * panel_w + 1.6, len(clips) * (panel_w * height / width + 0.45) + 0.2))
    for row, (clip, title) in enumerate(zip(clips, titles)):
        picks = np.unique(np.linspace(0, len(clip) - 1, num_frames).round().astype(int))
        for col in range(num_frames):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(picks):
                ax.axis("off")
                continue
            frame = clip[picks[col]]
            if rotate_180:
                # agentview | wrist were rotated together per camera: rotate each half back on its own
                halves = np.split(frame, 2, axis=1) if frame.shape[1] == 2 * frame.shape[0] else [frame]
                frame = np.concatenate([h[::-1, ::-1] for h in halves], axis=1)
            ax.imshow(frame)
            ax.set_xlabel(f"step {picks[col]} ({picks[col] / fps:.1f} s)", fontsize=7)
        axes[row, 0].set_ylabel(title, fontsize=8, rotation=0, ha="right", va="center", wrap=True)
    fig.tight_layout()
    return _save_figure(fig, output_path, dpi=dpi, bbox_inches="tight")
