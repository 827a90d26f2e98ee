"""Writing LeRobot datasets (v3.0 or v2.1 layout) from in-memory episodes, so tests and demos run offline."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError
from .dataset import LeRobotDataset
from .layout import (
    DEFAULT_CHUNKS_SIZE,
    SUPPORTED_VERSIONS,
    V3_DATA_PATH,
    V3_EPISODES_PATH,
    V3_VIDEO_PATH,
    V21_DATA_PATH,
    V21_VIDEO_PATH,
    _pa,
)
from .stats import _vector_stats, compute_stats, save_stats
from .video import DEFAULT_GOP, encode_video, pick_video_codec


@dataclass
class LeRobotEpisode:
    """One episode in memory: per-frame arrays and the task (language instruction).

    Args:
        task: the episode's language instruction.
        state: (N, S) float32 robot state.
        action: (N, A) float32 actions.
        images: camera key (e.g. `observation.images.image`) -> (N, H, W, 3) uint8 frames.
    """

    task: str
    state: np.ndarray
    action: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.action)


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _list_column(values: np.ndarray):
    pa, _ = _pa()
    values = np.asarray(values, dtype=np.float32)
    flat = pa.array(values.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, values.size + 1, values.shape[1], dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat)


def _write_v3_tasks(path: Path, tasks: Mapping[str, int]) -> None:
    """`meta/tasks.parquet` as LeRobot v3.0 writes it: the task strings as the pandas index (named `task`),
    one `task_index` column. LeRobot reads a frame's task as `tasks.iloc[task_index].name`, so a plain `task`
    column would give it row numbers; the index is stored as a `task` column too, which our reader reads."""
    import pandas as pd  # comes with `datasets`

    frame = pd.DataFrame({"task_index": pd.array(list(tasks.values()), dtype="int64")},
                         index=pd.Index([str(t) for t in tasks], name="task"))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)


def write_lerobot_dataset(
    root: str | Path,
    episodes: Sequence[LeRobotEpisode],
    fps: int = 10,
    version: str = "v3.0",
    image_storage: str = "video",
    codec: str | None = None,
    episodes_per_file: int | None = None,
    robot_type: str = "panda",
    state_names: Sequence[str] | None = None,
    action_names: Sequence[str] | None = None,
    chunks_size: int = DEFAULT_CHUNKS_SIZE,
    write_stats: bool = True,
    gop: int = DEFAULT_GOP,
) -> Path:
    """Write `episodes` as a LeRobot dataset at `root` (v3.0 or v2.1 layout; mp4 videos or inline PNGs).

    `image_storage="video"` encodes each camera as mp4 (H.264 when PyAV has libx264), a key frame every
    `gop` frames (LeRobot's default, 2); `"image"` stores
    PNG bytes inline in the data parquet (`dtype: image`). In v3.0, `episodes_per_file` episodes share
    one data file and one video file per camera (all of them by default). Returns `root`.
    """
    pa, pq = _pa()
    if version not in SUPPORTED_VERSIONS:
        raise UserError(f"version must be one of {SUPPORTED_VERSIONS}, got {version!r}")
    if image_storage not in ("video", "image"):
        raise UserError(f"image_storage must be 'video' or 'image', got {image_storage!r}")
    if not episodes:
        raise UserError("write_lerobot_dataset needs at least one episode")
    root = Path(root)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    first = episodes[0]
    state_dim, action_dim = first.state.shape[1], first.action.shape[1]
    cameras = sorted(first.images)
    for i, ep in enumerate(episodes):
        n = len(ep.action)
        if ep.state.shape != (n, state_dim) or ep.action.shape != (n, action_dim) or sorted(ep.images) != cameras:
            raise UserError(f"episode {i} does not match episode 0's state/action/camera layout")
        for cam in cameras:
            if ep.images[cam].shape[0] != n or ep.images[cam].shape[1:] != first.images[cam].shape[1:]:
                raise UserError(f"episode {i}: camera {cam!r} has shape {ep.images[cam].shape}, expected ({n}, ...)")
    codec = pick_video_codec() if image_storage == "video" and codec is None else codec
    tasks: dict[str, int] = {}
    for ep in episodes:
        tasks.setdefault(ep.task, len(tasks))

    features: dict[str, Any] = {}
    for cam in cameras:
        h, w, c = first.images[cam].shape[1:]
        feat: dict[str, Any] = {"dtype": image_storage, "shape": [h, w, c], "names": ["height", "width", "channels"]}
        if image_storage == "video":
            feat["info"] = {
                "video.height": h, "video.width": w, "video.codec": {"libx264": "h264", "libsvtav1": "av1"}.get(codec, codec),
                "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps, "video.channels": c,
                "has_audio": False,
            }
        features[cam] = feat
    features["observation.state"] = {
        "dtype": "float32", "shape": [state_dim], "names": list(state_names or [f"state_{i}" for i in range(state_dim)])
    }
    features["action"] = {
        "dtype": "float32", "shape": [action_dim], "names": list(action_names or [f"action_{i}" for i in range(action_dim)])
    }
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}

    def data_table(eps: Sequence[tuple[int, LeRobotEpisode]], start_index: int):
        cols: dict[str, Any] = {}
        for cam in cameras if image_storage == "image" else []:
            cols[cam] = pa.array(
                [{"bytes": _png_bytes(img), "path": None} for _, ep in eps for img in ep.images[cam]],
                type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
            )
        cols["observation.state"] = _list_column(np.concatenate([ep.state for _, ep in eps]))
        cols["action"] = _list_column(np.concatenate([ep.action for _, ep in eps]))
        cols["timestamp"] = pa.array(np.concatenate([np.arange(len(ep)) / fps for _, ep in eps]).astype(np.float32))
        cols["frame_index"] = pa.array(np.concatenate([np.arange(len(ep)) for _, ep in eps]).astype(np.int64))
        cols["episode_index"] = pa.array(np.concatenate([np.full(len(ep), i) for i, ep in eps]).astype(np.int64))
        total = sum(len(ep) for _, ep in eps)
        cols["index"] = pa.array(np.arange(start_index, start_index + total, dtype=np.int64))
        cols["task_index"] = pa.array(np.concatenate([np.full(len(ep), tasks[ep.task]) for _, ep in eps]).astype(np.int64))
        return pa.table(cols)

    total_frames = sum(len(ep) for ep in episodes)
    if version == "v3.0":
        per_file = episodes_per_file or len(episodes)
        rows: list[dict[str, Any]] = []
        start = 0
        for file_index, lo in enumerate(range(0, len(episodes), per_file)):
            group = list(enumerate(episodes))[lo : lo + per_file]
            chunk_index, file_in_chunk = divmod(file_index, chunks_size)
            data_path = root / V3_DATA_PATH.format(chunk_index=chunk_index, file_index=file_in_chunk)
            data_path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(data_table(group, start), data_path)
            offset = 0.0
            video_offsets: list[float] = []
            for _, ep in group:
                video_offsets.append(offset)
                offset += len(ep) / fps
            if image_storage == "video":
                for cam in cameras:
                    frames = np.concatenate([ep.images[cam] for _, ep in group])
                    encode_video(root / V3_VIDEO_PATH.format(video_key=cam, chunk_index=chunk_index,
                                                             file_index=file_in_chunk), frames, fps, codec, gop)
            for (ep_index, ep), from_ts in zip(group, video_offsets):
                row: dict[str, Any] = {
                    "episode_index": ep_index, "tasks": [ep.task], "length": len(ep),
                    "data/chunk_index": chunk_index, "data/file_index": file_in_chunk,
                    "dataset_from_index": start, "dataset_to_index": start + len(ep),
                }
                if image_storage == "video":
                    for cam in cameras:
                        row[f"videos/{cam}/chunk_index"] = chunk_index
                        row[f"videos/{cam}/file_index"] = file_in_chunk
                        row[f"videos/{cam}/from_timestamp"] = from_ts
                        row[f"videos/{cam}/to_timestamp"] = from_ts + len(ep) / fps
                row["meta/episodes/chunk_index"] = 0
                row["meta/episodes/file_index"] = 0
                rows.append(row)
                start += len(ep)
        ep_path = root / V3_EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), ep_path)
        _write_v3_tasks(root / "meta" / "tasks.parquet", tasks)
        info_paths = {"data_path": V3_DATA_PATH, "video_path": V3_VIDEO_PATH if image_storage == "video" else None,
                      "data_files_size_in_mb": 100, "video_files_size_in_mb": 500}
    else:
        start = 0
        for ep_index, ep in enumerate(episodes):
            chunk = ep_index // chunks_size
            data_path = root / V21_DATA_PATH.format(episode_chunk=chunk, episode_index=ep_index)
            data_path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(data_table([(ep_index, ep)], start), data_path)
            if image_storage == "video":
                for cam in cameras:
                    encode_video(root / V21_VIDEO_PATH.format(episode_chunk=chunk, video_key=cam,
                                                              episode_index=ep_index), ep.images[cam], fps, codec, gop)
            start += len(ep)
        with open(root / "meta" / "episodes.jsonl", "w", encoding="utf-8") as fh:
            for ep_index, ep in enumerate(episodes):
                fh.write(json.dumps({"episode_index": ep_index, "tasks": [ep.task], "length": len(ep)}) + "\n")
        with open(root / "meta" / "tasks.jsonl", "w", encoding="utf-8") as fh:
            for task, task_index in tasks.items():
                fh.write(json.dumps({"task_index": task_index, "task": task}) + "\n")
        info_paths = {"data_path": V21_DATA_PATH, "video_path": V21_VIDEO_PATH if image_storage == "video" else None,
                      "total_chunks": math.ceil(len(episodes) / chunks_size),
                      "total_videos": len(episodes) * len(cameras) if image_storage == "video" else 0}
    info = {
        "codebase_version": version,
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": total_frames,
        "total_tasks": len(tasks),
        "chunks_size": chunks_size,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        **info_paths,
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4), encoding="utf-8")
    if write_stats:
        dataset = LeRobotDataset(root, action_horizon=1, read_stats=False)
        save_stats(compute_stats(dataset, image_samples=64), root / "meta" / "stats.json")
        if version == "v2.1":  # v2.1 keeps per-episode statistics; readers aggregate them
            with open(root / "meta" / "episodes_stats.jsonl", "w", encoding="utf-8") as fh:
                for ep_index, (lo, hi) in sorted(dataset.episode_bounds.items()):
                    ep_stats = {"observation.state": _vector_stats(dataset.states[lo:hi]),
                                "action": _vector_stats(dataset.actions[lo:hi])}
                    fh.write(json.dumps({"episode_index": ep_index, "stats": ep_stats}) + "\n")
    return root


__all__ = ["LeRobotEpisode", "write_lerobot_dataset"]
