"""LeRobot datasets (v2.1 and v3.0) read and written without the `lerobot` package.

Layouts (LeRobot's own, the files a Hub dataset such as `lerobot/libero_*` ships):

```
v3.0                                               v2.1
meta/info.json            codebase_version "v3.0"  meta/info.json         codebase_version "v2.1"
meta/stats.json                                    meta/stats.json (optional) / episodes_stats.jsonl
meta/tasks.parquet        task, task_index         meta/tasks.jsonl       {"task_index", "task"}
meta/episodes/chunk-000/file-000.parquet           meta/episodes.jsonl    {"episode_index", "tasks", "length"}
    episode_index, tasks, length, data/chunk_index, data/file_index,
    dataset_from_index, dataset_to_index,
    videos/<key>/chunk_index, videos/<key>/file_index,
    videos/<key>/from_timestamp, videos/<key>/to_timestamp
data/chunk-000/file-000.parquet  (many episodes)   data/chunk-000/episode_000000.parquet (one episode)
videos/<key>/chunk-000/file-000.mp4 (many episodes) videos/chunk-000/<key>/episode_000000.mp4
```

Data parquet rows carry `observation.state`, `action`, `timestamp`, `frame_index`, `episode_index`,
`index`, `task_index` and, for `dtype: image` cameras, a struct `{bytes, path}` with PNG bytes. A `dtype:
video` camera lives in mp4 files; in v3.0 an episode's frames start at its `from_timestamp` in a file
shared with other episodes, so the frame of a row is at `from_timestamp + timestamp` (decoded with PyAV
by seeking to that time).

[`LeRobotDataset`] returns one sample per frame: the images of every camera, the language instruction,
the state and an action chunk of `action_horizon` steps whose steps past the episode's end repeat the last
action and are flagged in `action_is_pad` (LeRobot's `delta_timestamps` padding). [`LeRobotMixture`]
mixes several datasets with weights (`"libero_all"` = the four LIBERO suites). [`write_lerobot_dataset`]
writes valid v3.0 (or v2.1) datasets from in-memory episodes, so tests and demos run offline.
"""

from __future__ import annotations

import bisect
import collections
import io
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ...errors import UserError, UserFileNotFoundError

logger = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("v2.1", "v3.0")
DEFAULT_CHUNKS_SIZE = 1000
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
STAT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)

# Named mixtures: each name is a list of (sub-directory, weight). LIBERO suites as published in LeRobot
# format (`lerobot/libero_object` ...); weights proportional to episode counts would be
# 454 / 428 / 432 / 379, equal weights are the reference recipe's default.
MIXTURES: dict[str, list[tuple[str, float]]] = {
    "libero_all": [("libero_object", 1.0), ("libero_goal", 1.0), ("libero_spatial", 1.0), ("libero_10", 1.0)],
}


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:  # pragma: no cover - pyarrow is a dependency of datasets
        raise ImportError("reading LeRobot datasets needs pyarrow: pip install 'hf_vlmdrive[lerobot]'") from err
    return pa, pq


def _av():
    try:
        import av
    except ImportError as err:  # pragma: no cover
        raise ImportError("LeRobot mp4 videos need PyAV: pip install 'hf_vlmdrive[lerobot]'") from err
    return av


class LeRobotFormatError(UserError):
    """A LeRobot dataset on disk does not match its own `meta/info.json` (or the format)."""


# ----------------------------------------------------------------------------------------------- video
def pick_video_codec(preferred: Sequence[str] = ("libx264", "libsvtav1", "mpeg4")) -> str:
    """The first encoder of `preferred` that this PyAV build has (H.264 when available)."""
    av = _av()
    for name in preferred:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - PyAV raises several types for unknown encoders
            continue
    raise RuntimeError(f"none of the video encoders {list(preferred)} is available in this PyAV build")


# LeRobot's `encode_video_frames` writes a key frame every 2 frames (g=2) so that random access stays cheap.
DEFAULT_GOP = 2


def encode_video(path: str | Path, frames: np.ndarray, fps: int, codec: str | None = None, gop: int = DEFAULT_GOP) -> str:
    """Write uint8 frames (N, H, W, 3) to an mp4 at `fps` (frame i at pts i / fps), a key frame every `gop`
    frames (LeRobot's default g=2) and no B-frames. Returns the codec."""
    av = _av()
    codec = codec or pick_video_codec()
    if int(gop) < 1:
        raise UserError(f"gop (frames between key frames) must be >= 1, got {gop}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise UserError(f"video frames need even height and width for yuv420p, got {height}x{width}")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"crf": "18", "g": str(gop), "bf": "0"}
        else:
            stream.options = {"g": str(gop)}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return codec


_INHERITED_VIDEOS: list = []  # containers and converters a forked process inherited (see VideoFrameReader._video)


class _OpenVideo:
    """One open mp4: its container and stream, the key frames' pts, and where its decoder stands."""

    __slots__ = ("container", "stream", "time_base", "keyframes", "decoder", "pos", "last", "ahead")

    def __init__(self, path: str, threads: int = 1):
        av = _av()
        self.container = av.open(path)
        self.stream = self.container.streams.video[0]
        if threads:  # 0 = FFmpeg's default (slice threads, one per core)
            self.stream.codec_context.thread_count = threads
        self.time_base = float(self.stream.time_base)
        # The key-frame index: demux once (packets only, nothing decoded), then rewind.
        self.keyframes = sorted(p.pts for p in self.container.demux(self.stream) if p.pts is not None and p.is_keyframe)
        self.container.seek(0, stream=self.stream, backward=True)
        self.decoder = None  # the frame iterator after the last seek
        self.pos: int | None = None  # pts of the last frame the decoder produced
        self.last: tuple[int, np.ndarray] | None = None  # (pts, RGB) of the last frame returned
        self.ahead: collections.deque = collections.deque()  # decoded, not yet converted frames after `last`

    def close(self) -> None:
        self.container.close()


class VideoFrameReader:
    """Decode frames at given timestamps from mp4 files, keeping containers and decoders open between calls.

    Per file it keeps the container, the decoder and a key-frame index (read once from the packets). A
    frame is found by decoding forward from the decoder's current position when that position lies
    between the target's key frame and the target (sequential reading, or a later frame of the same
    group of pictures), and otherwise by one seek to the key frame at or before the target. Only the target
    frame is converted to RGB. Containers are not picklable: a DataLoader worker gets an empty reader and
    opens its own files.

    When reads come in order (the previous target was the last frame decoded), the next `read_ahead`
    frames of the file are decoded at once (not converted), so that reading two cameras in turn does not
    switch decoders every frame. `decoder_threads` is the decoder's thread count; 1 (the default) is fastest for the small frames of
    robot datasets and has no frame-pipeline latency after a seek, and DataLoader workers parallelise
    across samples. 0 = FFmpeg's default.

    Frames are converted to RGB by the reader's own single-threaded converter, made in the process that uses
    it. PyAV >= 19 converts `frame.to_ndarray(format=...)` with one cached converter per thread that runs a
    pool of FFmpeg threads; a forked DataLoader worker inherits the parent's cached converter without its
    threads and waits for them forever.
    """

    def __init__(self, tolerance_s: float = 1e-3, max_open: int = 16, decoder_threads: int = 1, read_ahead: int = 8):
        self.tolerance_s = tolerance_s
        self.max_open = max_open
        self.decoder_threads = decoder_threads
        self.read_ahead = read_ahead
        self._open: dict[str, _OpenVideo] = {}  # insertion order = least recently opened first
        self._reformatter = None  # this process's RGB converter (av.video.reformatter.VideoReformatter)
        self._pid = os.getpid()

    def close(self) -> None:
        """Close every open container."""
        for video in self._open.values():
            video.close()
        self._open.clear()

    def __getstate__(self):  # containers are not picklable (DataLoader workers re-open their own)
        return {"tolerance_s": self.tolerance_s, "max_open": self.max_open, "decoder_threads": self.decoder_threads,
                "read_ahead": self.read_ahead}

    def __setstate__(self, state):
        self.__init__(**state)

    def _video(self, path: str) -> _OpenVideo:
        if self._pid != os.getpid():
            # A forked DataLoader worker inherits the parent's open containers (fork copies, it does not
            # pickle): their file offsets are shared with the parent and freeing them here hangs in FFmpeg,
            # so they are set aside untouched (never used, never freed) and this process opens its own. The
            # same for the RGB converter: its FFmpeg state belongs to the parent.
            _INHERITED_VIDEOS.append((self._open, self._reformatter))
            self._open, self._reformatter = {}, None
            self._pid = os.getpid()
        video = self._open.get(path)
        if video is None:
            if not Path(path).is_file():
                raise UserFileNotFoundError(f"video file {path} is missing (named by meta/info.json video_path)")
            if len(self._open) >= self.max_open:
                self._open.pop(next(iter(self._open))).close()
            video = _OpenVideo(path, self.decoder_threads)
            self._open[path] = video
        return video

    def _rgb(self, frame) -> np.ndarray:
        """The frame as (H, W, 3) uint8 RGB, converted by this process's own single-threaded converter."""
        if self._reformatter is None:
            _av()
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        return self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()

    def read(self, path: str | Path, timestamp: float) -> np.ndarray:
        """The RGB frame (H, W, 3) uint8 shown at `timestamp` seconds in `path` (a str is fastest)."""
        # Fast path: this process's own open file (a forked worker must not use the parent's; see `_video`).
        video = self._open.get(path) if self._pid == os.getpid() else None
        if video is None:
            video = self._video(str(path))
        tb, tol = video.time_base, self.tolerance_s
        last = video.last
        if last is not None and abs(last[0] * tb - timestamp) <= tol:
            return last[1]
        ahead = video.ahead
        while ahead:  # frames decoded ahead by a sequential read: the next target is usually the first
            frame = ahead.popleft()
            t = frame.pts * tb
            if t < timestamp - tol:
                continue
            if t - timestamp > tol:
                ahead.appendleft(frame)
                break
            rgb = self._rgb(frame)
            video.last = (frame.pts, rgb)
            return rgb
        pos = video.pos
        sequential = last is not None and pos is not None and last[0] == pos and not ahead
        # Decode forward (no seek) when the decoder stands before the target and at most one group of
        # pictures further back than a seek would land (the key frame before the target's own key frame):
        # sequential reading never seeks.
        keys = video.keyframes
        k = bisect.bisect_right(keys, (timestamp + tol) / tb) - 1  # the target's key frame
        key = keys[k] if k >= 0 else (keys[0] if keys else 0)
        if video.decoder is None or pos is None or pos * tb >= timestamp - tol or pos < (keys[k - 1] if k >= 1 else key):
            video.container.seek(key, stream=video.stream, backward=True)
            video.decoder = video.container.decode(video.stream)
            video.pos, sequential = None, False
            ahead.clear()
        for frame in video.decoder:
            pts = frame.pts
            video.pos = pts
            t = pts * tb
            if t < timestamp - tol:
                continue
            if t - timestamp > tol:
                ahead.append(frame)  # keep it: it may be the next target
                break
            rgb = self._rgb(frame)
            video.last = (pts, rgb)
            if sequential and self.read_ahead:
                # Reading in order (the previous target was the decoder's last frame): decode the next
                # frames of this file now, in one run, while its decoder state is hot in the CPU caches.
                for nxt in video.decoder:
                    ahead.append(nxt)
                    video.pos = nxt.pts
                    if len(ahead) >= self.read_ahead:
                        break
            return rgb
        if not ahead:  # the decoder ran out: start afresh next time (else it stands at the frame after)
            video.decoder, video.pos = None, None
        raise LeRobotFormatError(
            f"no frame at t={timestamp:.4f}s (tolerance {tol}s) in {path}; the episode's from_timestamp / "
            "timestamps disagree with the video"
        )


# ----------------------------------------------------------------------------------------------- writer
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


def make_synthetic_libero(
    root: str | Path,
    num_episodes: int = 6,
    episode_length: int = 20,
    image_size: int = 32,
    cameras: Sequence[str] = ("observation.images.image", "observation.images.wrist_image"),
    state_dim: int = 8,
    action_dim: int = 7,
    seed: int = 0,
    **writer_kwargs,
) -> Path:
    """A small LIBERO-like dataset: two cameras, 8-d state, 7-d actions that depend on the task and image.

    The actions are a smooth, learnable function of the episode's task and of the scene (a coloured
    square whose position drifts along the episode), so a short training run has signal to fit.
    """
    rng = np.random.default_rng(seed)
    tasks = ["put the bowl on the plate", "open the top drawer", "pick up the black bowl", "turn on the stove"]
    episodes = []
    for e in range(num_episodes):
        task_id = e % len(tasks)
        t = np.linspace(0, 1, episode_length, dtype=np.float32)
        phase = rng.uniform(0, 2 * np.pi)
        action = np.stack(
            [0.5 * np.sin(2 * np.pi * t + phase + k) * (1 + 0.3 * task_id) for k in range(action_dim - 1)]
            + [np.where(t > 0.5, 1.0, -1.0).astype(np.float32)], axis=1
        ).astype(np.float32)
        state = np.concatenate([np.cumsum(action[:, :6], axis=0) * 0.05, np.zeros((episode_length, state_dim - 6))], 1)
        state = state.astype(np.float32)
        images = {}
        for c, cam in enumerate(cameras):
            frames = np.zeros((episode_length, image_size, image_size, 3), dtype=np.uint8)
            frames[...] = np.array([40 + 50 * task_id, 60, 90 + 30 * c], dtype=np.uint8)
            for i in range(episode_length):
                x = int((image_size - 8) * (0.5 + 0.5 * np.sin(2 * np.pi * t[i] + phase)))
                frames[i, 4:12, x : x + 8] = (255, 220 - 40 * task_id, 30)
            images[cam] = frames
        episodes.append(LeRobotEpisode(task=tasks[task_id], state=state, action=action, images=images))
    return write_lerobot_dataset(root, episodes, **writer_kwargs)


# ----------------------------------------------------------------------------------------------- stats
def compute_stats(dataset: LeRobotDataset, image_samples: int = 256) -> dict[str, dict[str, list]]:
    """LeRobot `meta/stats.json` statistics: min/max/mean/std/count and quantiles q01..q99 per feature.

    Vector features use every frame; camera features use up to `image_samples` evenly spaced frames and
    report per-channel statistics of [0, 1] pixel values with shape (3, 1, 1), as LeRobot does.
    """
    stats: dict[str, dict[str, list]] = {}
    for key, values in (("observation.state", dataset.states), ("action", dataset.actions)):
        stats[key] = _vector_stats(values)
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        stats[key] = _vector_stats(dataset._columns[key].reshape(-1, 1).astype(np.float64))
    if dataset.camera_keys and len(dataset):
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(image_samples, len(dataset))).astype(int))
        for cam in dataset.camera_keys:
            pixels = np.stack([dataset.read_image(cam, int(i)) for i in picks]).astype(np.float64) / 255.0
            per_channel = pixels.reshape(-1, 3)
            s = _vector_stats(per_channel)
            stats[cam] = {k: (np.asarray(v).reshape(3, 1, 1).tolist() if k != "count" else v) for k, v in s.items()}
    return stats


def _vector_stats(values: np.ndarray) -> dict[str, list]:
    values = np.asarray(values, dtype=np.float64)
    out = {
        "min": values.min(0).tolist(), "max": values.max(0).tolist(),
        "mean": values.mean(0).tolist(), "std": values.std(0).tolist(), "count": [int(len(values))],
    }
    for q in STAT_QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(values, q, axis=0).tolist()
    return out


def aggregate_episode_stats(episodes_stats: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, list]]:
    """Dataset statistics from per-episode ones (v2.1 `episodes_stats.jsonl`): min/max/mean/std/count.

    Means are count-weighted and variances pooled (within + between episodes), as LeRobot aggregates them.
    Quantiles cannot be aggregated exactly and are left out.
    """
    out: dict[str, dict[str, list]] = {}
    keys = set().union(*(e.keys() for e in episodes_stats)) if episodes_stats else set()
    for key in sorted(keys):
        entries = [e[key] for e in episodes_stats if key in e]
        counts = np.array([float(np.asarray(e["count"]).reshape(-1)[0]) for e in entries])
        means = np.stack([np.asarray(e["mean"], np.float64) for e in entries])
        stds = np.stack([np.asarray(e["std"], np.float64) for e in entries])
        w = (counts / counts.sum()).reshape(-1, *([1] * (means.ndim - 1)))
        mean = (w * means).sum(0)
        var = (w * (stds**2 + (means - mean) ** 2)).sum(0)
        out[key] = {
            "min": np.min(np.stack([np.asarray(e["min"], np.float64) for e in entries]), 0).tolist(),
            "max": np.max(np.stack([np.asarray(e["max"], np.float64) for e in entries]), 0).tolist(),
            "mean": mean.tolist(), "std": np.sqrt(var).tolist(), "count": [int(counts.sum())],
        }
    return out


def save_stats(stats: Mapping[str, Any], path: str | Path) -> None:
    """Write statistics as LeRobot's `meta/stats.json` (plain JSON lists)."""
    Path(path).write_text(json.dumps(stats, indent=2), encoding="utf-8")


def load_stats(root: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read `meta/stats.json` of a dataset directory (or a stats file) into numpy arrays."""
    path = Path(root)
    if path.is_dir():
        path = path / "meta" / "stats.json"
    if not path.is_file():
        raise UserFileNotFoundError(
            f"{path} is missing; compute it with `python scripts/compute_norm_stats.py --root <dataset>`"
        )
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {k: {s: np.asarray(v, dtype=np.float64) for s, v in d.items()} for k, d in raw.items()}


# ----------------------------------------------------------------------------------------------- reader
def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise UserFileNotFoundError(f"{path} is missing; is {path.parent.parent} a LeRobot dataset?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LeRobotFormatError(f"{path} is not valid JSON: {err}") from err


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserFileNotFoundError(f"{path} is missing (required by LeRobot v2.1)")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise LeRobotFormatError(f"{path}:{n} is not valid JSON: {err}") from err
    return out


def _list_to_numpy(column, width: int, name: str, source: str) -> np.ndarray:
    pa, _ = _pa()
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = column.value_lengths().to_numpy(zero_copy_only=False) if len(column) else np.zeros(0)
        if len(column) and (lengths.min() != width or lengths.max() != width):
            bad = int(lengths[lengths != width][0])
            raise LeRobotFormatError(
                f"{source}: feature {name!r} has {bad} values per row but meta/info.json says shape [{width}]"
            )
        return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), width)
    if width != 1:
        raise LeRobotFormatError(f"{source}: feature {name!r} is a scalar column but meta/info.json says shape [{width}]")
    return column.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 1)


class LeRobotDataset(Dataset):
    """A LeRobot v2.1 / v3.0 dataset directory as a map-style torch `Dataset` of frames.

    Each item is a dict:
        images (`list[np.ndarray]`): one (H, W, 3) uint8 RGB frame per camera, in `camera_keys` order;
        camera_keys (`list[str]`); language (`str`): the task; state (`np.ndarray` (S,) float32);
        actions (`np.ndarray` (T, A) float32): actions of this frame and the next T-1 frames;
        action_is_pad (`np.ndarray` (T,) bool): True where the chunk runs past the episode's end (the last
        action is repeated there); episode_index, frame_index, index (`int`); dataset (`str`).

    Args:
        root: the dataset directory (with `meta/info.json`).
        action_horizon: T, the action-chunk length.
        camera_keys: cameras to return (default: every `image`/`video` feature, sorted).
        state_key / action_key: feature names of the state and the action.
        read_stats: read `meta/stats.json` into `self.stats` (missing file: computed in memory, warned).
        name: a name for this dataset in mixtures (default: the directory name).
    """

    def __init__(
        self,
        root: str | Path,
        action_horizon: int = 8,
        camera_keys: Sequence[str] | None = None,
        state_key: str = "observation.state",
        action_key: str = "action",
        read_stats: bool = True,
        name: str | None = None,
        video_tolerance_s: float = 1e-3,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserFileNotFoundError(f"LeRobot dataset directory {self.root} does not exist")
        self.name = name or self.root.name
        self.action_horizon = int(action_horizon)
        if self.action_horizon < 1:
            raise UserError(f"action_horizon must be >= 1, got {action_horizon}")
        self.info = _read_json(self.root / "meta" / "info.json")
        self.version = self.info.get("codebase_version")
        if self.version not in SUPPORTED_VERSIONS:
            raise LeRobotFormatError(
                f"{self.root / 'meta/info.json'}: codebase_version={self.version!r} is not supported; this "
                f"reader handles {SUPPORTED_VERSIONS} (convert older datasets with lerobot's converters)"
            )
        for key in ("fps", "features", "data_path"):
            if key not in self.info:
                raise LeRobotFormatError(f"{self.root / 'meta/info.json'} lacks the required key {key!r}")
        self.fps = int(self.info["fps"])
        self.features: dict[str, dict] = self.info["features"]
        for key in (state_key, action_key):
            if key not in self.features:
                raise LeRobotFormatError(
                    f"{self.root / 'meta/info.json'}: feature {key!r} not found; features are {sorted(self.features)}"
                )
        self.state_key, self.action_key = state_key, action_key
        cams = [k for k, f in self.features.items() if f.get("dtype") in ("image", "video")]
        undeclared = self._undeclared_cameras(cams)
        if undeclared:
            _warn_once(
                f"{self.root}: camera(s) {undeclared} have video folders on disk but are not features of "
                "meta/info.json, so they are ignored; add them to info.json's features to use them"
            )
        if camera_keys is None:
            camera_keys = sorted(cams)
        for cam in camera_keys:
            if cam not in cams:
                on_disk = " (it has video files on disk, but info.json does not declare it)" if cam in undeclared else ""
                raise LeRobotFormatError(
                    f"{self.root}: camera {cam!r} is not an image/video feature of meta/info.json{on_disk}; "
                    f"cameras are {cams}"
                )
        self.camera_keys = list(camera_keys)
        self._video = VideoFrameReader(tolerance_s=video_tolerance_s)
        self._video_files: dict[tuple[str, int], tuple[str, float]] = {}
        self._rows: tuple[list, ...] | None = None
        self._load_meta()
        self._load_data()
        self.stats = None
        if read_stats:
            episodes_stats = self.root / "meta" / "episodes_stats.jsonl"
            if (self.root / "meta" / "stats.json").is_file():
                self.stats = load_stats(self.root)
            elif episodes_stats.is_file():
                agg = aggregate_episode_stats([r["stats"] for r in _read_jsonl(episodes_stats)])
                self.stats = {k: {s: np.asarray(v, dtype=np.float64) for s, v in d.items()} for k, d in agg.items()}
            else:
                logger.warning("%s has no meta/stats.json; computing statistics in memory", self.root)
                self.stats = {k: {s: np.asarray(v) for s, v in d.items()} for k, d in compute_stats(self).items()}

    # -------------------------------------------------------------- metadata
    def _load_meta(self) -> None:
        _, pq = _pa()
        meta = self.root / "meta"
        if self.version == "v3.0":
            tasks_path = meta / "tasks.parquet"
            if not tasks_path.is_file():
                raise UserFileNotFoundError(f"{tasks_path} is missing (required by LeRobot v3.0)")
            table = pq.read_table(tasks_path).to_pydict()
            # pandas writes the task strings as the index: a `task` column or `__index_level_0__`.
            names = table.get("task") or table.get("__index_level_0__")
            if names is None or "task_index" not in table:
                raise LeRobotFormatError(f"{tasks_path} needs columns 'task' (or the index) and 'task_index'")
            self.tasks = {int(i): str(t) for t, i in zip(names, table["task_index"])}
            files = sorted((meta / "episodes").glob("chunk-*/file-*.parquet"))
            if not files:
                raise UserFileNotFoundError(f"no episode metadata in {meta / 'episodes'} (chunk-XXX/file-XXX.parquet)")
            rows: list[dict] = []
            for f in files:
                rows.extend(pq.read_table(f).to_pylist())
            required = ["episode_index", "length", "dataset_from_index", "dataset_to_index"]
            for cam in self.camera_keys:
                if self.features[cam]["dtype"] == "video":
                    required += [f"videos/{cam}/chunk_index", f"videos/{cam}/file_index", f"videos/{cam}/from_timestamp"]
            missing = [c for c in required if rows and c not in rows[0]]
            if missing:
                raise LeRobotFormatError(f"{files[0]} lacks episode columns {missing}")
        else:
            self.tasks = {int(r["task_index"]): str(r["task"]) for r in _read_jsonl(meta / "tasks.jsonl")}
            rows = _read_jsonl(meta / "episodes.jsonl")
        self.episodes = {int(r["episode_index"]): r for r in rows}

    def _undeclared_cameras(self, declared: list[str]) -> list[str]:
        """Video keys present under `videos/` (v3.0: videos/<key>/...; v2.1: videos/chunk-XXX/<key>/) that
        info.json does not declare."""
        videos = self.root / "videos"
        if not videos.is_dir():
            return []
        found: set[str] = set()
        for child in videos.iterdir():
            if not child.is_dir():
                continue
            if child.name.startswith("chunk-"):  # v2.1
                found.update(c.name for c in child.iterdir() if c.is_dir())
            else:  # v3.0
                found.add(child.name)
        return sorted(found - set(declared))

    def _data_files(self) -> list[Path]:
        chunks = int(self.info.get("chunks_size", DEFAULT_CHUNKS_SIZE))
        files: list[Path] = []
        if self.version == "v3.0":
            seen = []
            for ep in self.episodes.values():
                key = (int(ep.get("data/chunk_index", 0)), int(ep.get("data/file_index", 0)))
                if key not in seen:
                    seen.append(key)
            for c, f in sorted(seen):
                files.append(self.root / self.info["data_path"].format(chunk_index=c, file_index=f))
        else:
            for e in sorted(self.episodes):
                files.append(self.root / self.info["data_path"].format(episode_chunk=e // chunks, episode_index=e))
        return files

    def _load_data(self) -> None:
        pa, pq = _pa()
        tables = []
        state_w = int(np.prod(self.features[self.state_key]["shape"]))
        action_w = int(np.prod(self.features[self.action_key]["shape"]))
        states, actions = [], []
        cols: dict[str, list] = {k: [] for k in ("timestamp", "frame_index", "episode_index", "index", "task_index")}
        image_cams = [c for c in self.camera_keys if self.features[c]["dtype"] == "image"]
        self._image_columns: dict[str, list] = {c: [] for c in image_cams}
        for path in self._data_files():
            if not path.is_file():
                raise UserFileNotFoundError(f"data file {path} is missing (named by meta/info.json data_path)")
            table = pq.read_table(path)
            for needed in [self.state_key, self.action_key, *cols, *image_cams]:
                if needed not in table.column_names:
                    raise LeRobotFormatError(f"{path} lacks column {needed!r}; it has {table.column_names}")
            states.append(_list_to_numpy(table.column(self.state_key), state_w, self.state_key, str(path)))
            actions.append(_list_to_numpy(table.column(self.action_key), action_w, self.action_key, str(path)))
            for k in cols:
                cols[k].append(table.column(k).to_numpy())
            for c in image_cams:
                self._image_columns[c].append(table.column(c).combine_chunks())
            tables.append(path)
        self.states = np.concatenate(states) if states else np.zeros((0, state_w), np.float32)
        self.actions = np.concatenate(actions) if actions else np.zeros((0, action_w), np.float32)
        self._columns = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
        self._image_columns = {c: pa.concat_arrays(v) if len(v) > 1 else v[0] for c, v in self._image_columns.items()}
        self._columns["timestamp"] = self._columns["timestamp"].astype(np.float64).reshape(-1)
        # Episode boundaries from the rows themselves, checked against the episode metadata.
        ep = self._columns["episode_index"].astype(np.int64).reshape(-1)
        self._columns["episode_index"] = ep
        change = np.flatnonzero(np.diff(ep)) + 1
        starts = np.concatenate([[0], change]).astype(np.int64)
        ends = np.concatenate([change, [len(ep)]]).astype(np.int64)
        self._episode_end = np.zeros(len(ep), dtype=np.int64)
        for s, e in zip(starts, ends):
            self._episode_end[s:e] = e
            ep_index = int(ep[s])
            meta = self.episodes.get(ep_index)
            if meta is None:
                raise LeRobotFormatError(f"{self.root}: data rows of episode {ep_index} have no episode metadata")
            if int(meta["length"]) != e - s:
                raise LeRobotFormatError(
                    f"{self.root}: episode {ep_index} has {e - s} data rows but its metadata says length={meta['length']}"
                )
        if len(starts) != len(self.episodes):
            raise LeRobotFormatError(
                f"{self.root}: {len(self.episodes)} episodes in the metadata but {len(starts)} in the data files"
            )
        self.episode_bounds = {int(ep[s]): (int(s), int(e)) for s, e in zip(starts, ends)}

    # -------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.actions)

    @property
    def num_episodes(self) -> int:
        """Number of episodes."""
        return len(self.episode_bounds)

    def _video_path_and_time(self, cam: str, row: int) -> tuple[str, float]:
        rows = self._row_lists()
        ep_index, ts = rows[0][row], rows[1][row]
        key = (cam, ep_index)
        found = self._video_files.get(key)
        if found is None:  # once per (camera, episode): the file and the episode's offset in it
            template = self.info.get("video_path")
            if not template:
                raise LeRobotFormatError(f"{self.root}/meta/info.json: camera {cam!r} is a video but video_path is null")
            if self.version == "v3.0":
                meta = self.episodes[ep_index]
                path = self.root / template.format(
                    video_key=cam, chunk_index=int(meta[f"videos/{cam}/chunk_index"]),
                    file_index=int(meta[f"videos/{cam}/file_index"]),
                )
                found = (str(path), float(meta[f"videos/{cam}/from_timestamp"]))
            else:
                chunk = ep_index // int(self.info.get("chunks_size", DEFAULT_CHUNKS_SIZE))
                found = (str(self.root / template.format(episode_chunk=chunk, video_key=cam, episode_index=ep_index)), 0.0)
            self._video_files[key] = found
        return found[0], found[1] + ts

    def _row_lists(self) -> tuple[list, ...]:
        """Per-row columns as Python lists (built once): indexing them per item costs no numpy scalars."""
        if self._rows is None:
            c = self._columns
            self._rows = (c["episode_index"].tolist(), c["timestamp"].tolist(), c["frame_index"].reshape(-1).tolist(),
                          c["index"].reshape(-1).tolist(), c["task_index"].reshape(-1).tolist(),
                          self._episode_end.tolist())
            self._expected_shape = {cam: tuple(int(x) for x in self.features[cam]["shape"]) for cam in self.camera_keys}
            self._horizon = np.arange(self.action_horizon)
        return self._rows

    def read_image(self, cam: str, row: int) -> np.ndarray:
        """The (H, W, 3) uint8 frame of camera `cam` at row `row`; checked against info.json's shape."""
        feature = self.features[cam]
        if feature["dtype"] == "image":
            from PIL import Image

            value = self._image_columns[cam][row].as_py()
            data = value.get("bytes") if isinstance(value, dict) else value
            if data is None:
                path = value.get("path") if isinstance(value, dict) else None
                if not path:
                    raise LeRobotFormatError(f"{self.root}: row {row} of {cam!r} has neither image bytes nor a path")
                data = (self.root / path).read_bytes()
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        else:
            path, t = self._video_path_and_time(cam, row)
            rgb = self._video.read(path, t)
        self._row_lists()
        expected = self._expected_shape.get(cam) or tuple(int(x) for x in feature["shape"])
        if rgb.shape != expected:
            raise LeRobotFormatError(
                f"{self.root}: camera {cam!r} frame has shape {rgb.shape} but meta/info.json says {list(expected)}"
            )
        return rgb

    def action_chunk(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Actions of rows [row, row+T) within the episode, the last one repeated past its end, and the pad mask."""
        end = self._row_lists()[5][row]
        if row + self.action_horizon <= end:  # the common case: the whole chunk lies inside the episode
            return self.actions[row:row + self.action_horizon].copy(), np.zeros(self.action_horizon, dtype=bool)
        idx = row + self._horizon
        return self.actions[np.minimum(idx, end - 1)], idx >= end  # fancy indexing: a new array

    def __getitem__(self, row: int) -> dict[str, Any]:
        if not 0 <= row < len(self):
            raise IndexError(f"index {row} out of range for a dataset of {len(self)} frames")
        episodes, _, frames, indices, tasks, _ = self._row_lists()
        actions, is_pad = self.action_chunk(row)
        task = self.tasks.get(tasks[row])
        if task is None:
            raise LeRobotFormatError(f"{self.root}: row {row} has task_index {tasks[row]}, unknown to the task table")
        return {
            "images": [self.read_image(cam, row) for cam in self.camera_keys],
            "camera_keys": list(self.camera_keys),
            "language": task,
            "state": self.states[row].copy(),
            "actions": actions,
            "action_is_pad": is_pad,
            "episode_index": episodes[row],
            "frame_index": frames[row],
            "index": indices[row],
            "dataset": self.name,
        }


# ----------------------------------------------------------------------------------------------- mixtures
class LeRobotMixture(Dataset):
    """Several LeRobot datasets concatenated, with a sampling weight per dataset.

    Indexing is over the concatenation; [`WeightedMixtureSampler`] draws datasets by weight (a dataset's
    frames are drawn uniformly inside it). Cameras, state and action widths must agree.
    """

    def __init__(self, datasets: Sequence[LeRobotDataset], weights: Sequence[float] | None = None):
        if not datasets:
            raise UserError("a mixture needs at least one dataset")
        weights = list(weights) if weights is not None else [1.0] * len(datasets)
        if len(weights) != len(datasets) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise UserError(f"mixture weights must be {len(datasets)} non-negative numbers with a positive sum, got {weights}")
        ref = datasets[0]
        for ds in datasets[1:]:
            if ds.camera_keys != ref.camera_keys or ds.states.shape[1] != ref.states.shape[1] or ds.actions.shape[1] != ref.actions.shape[1]:
                raise UserError(f"dataset {ds.name!r} does not match {ref.name!r} in cameras / state / action widths")
        self.datasets = list(datasets)
        self.weights = [w / sum(weights) for w in weights]
        self.offsets = np.cumsum([0] + [len(d) for d in datasets])
        self.camera_keys = ref.camera_keys

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        d = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.datasets[d][i - int(self.offsets[d])]

    @property
    def states(self) -> np.ndarray:
        """All states of every dataset, (N, S)."""
        return np.concatenate([d.states for d in self.datasets])

    @property
    def actions(self) -> np.ndarray:
        """All actions of every dataset, (N, A)."""
        return np.concatenate([d.actions for d in self.datasets])


class WeightedMixtureSampler(Sampler[int]):
    """Draw `num_samples` indices of a [`LeRobotMixture`]: a dataset by weight, then a frame uniformly."""

    def __init__(self, mixture: LeRobotMixture, num_samples: int | None = None, seed: int = 0):
        self.mixture = mixture
        self.num_samples = num_samples or len(mixture)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random stream (called by Trainer/accelerate each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        which = torch.multinomial(torch.tensor(self.mixture.weights), self.num_samples, replacement=True, generator=g)
        for d in which.tolist():
            size = len(self.mixture.datasets[d])
            yield int(self.mixture.offsets[d]) + int(torch.randint(size, (1,), generator=g))


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Log `message` as a warning once per process (readers are re-created by DataLoader workers)."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def load_mixture(
    spec: str | Sequence[str] | Mapping[str, float], root: str | Path, **dataset_kwargs
) -> LeRobotMixture:
    """Open a mixture: a named one (`"libero_all"`), a list of sub-directories, or {sub-directory: weight}.

    Sub-directories are relative to `root`; a single dataset directory is `[""]` or its own path.
    """
    root = Path(root)
    if isinstance(spec, str):
        if spec in MIXTURES:
            pairs = MIXTURES[spec]
        else:
            pairs = [(s.strip(), 1.0) for s in spec.split(",") if s.strip()]
    elif isinstance(spec, Mapping):
        pairs = [(k, float(v)) for k, v in spec.items()]
    else:
        pairs = [(s, 1.0) for s in spec]
    datasets = []
    for sub, _ in pairs:
        path = root / sub if sub not in ("", ".") else root
        if not path.is_dir():
            raise UserFileNotFoundError(f"mixture member {sub!r}: directory {path} does not exist")
        datasets.append(LeRobotDataset(path, name=sub or root.name, **dataset_kwargs))
    return LeRobotMixture(datasets, [w for _, w in pairs])


__all__ = [
    "MIXTURES",
    "SUPPORTED_VERSIONS",
    "LeRobotDataset",
    "LeRobotEpisode",
    "LeRobotFormatError",
    "LeRobotMixture",
    "VideoFrameReader",
    "WeightedMixtureSampler",
    "aggregate_episode_stats",
    "compute_stats",
    "DEFAULT_GOP",
    "encode_video",
    "load_mixture",
    "load_stats",
    "make_synthetic_libero",
    "pick_video_codec",
    "save_stats",
    "write_lerobot_dataset",
]
