"""[`LeRobotDataset`]: a LeRobot v2.1 / v3.0 directory read as a map-style torch `Dataset` of frames.

One sample per frame: the images of every camera, the language instruction, the state and an action chunk of
`action_horizon` steps whose steps past the episode's end repeat the last action and are flagged in
`action_is_pad` (LeRobot's `delta_timestamps` padding). Reads parquet with pyarrow and mp4 with PyAV
([`VideoFrameReader`]), without the `lerobot` package.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ...errors import UserError, UserFileNotFoundError
from .depth import (
    DEPTH_PIX_FMT,
    DEPTH_UNITS,
    DepthQuantization,
    convert_depth_unit,
    dequantize_depth,
    is_depth_feature,
)
from .layout import DEFAULT_CHUNKS_SIZE, SUPPORTED_VERSIONS, LeRobotFormatError, _pa, _read_json, _read_jsonl
from .stats import aggregate_episode_stats, compute_stats, load_stats
from .video import VideoFrameReader

logger = logging.getLogger(__name__)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Log `message` as a warning once per process (readers are re-created by DataLoader workers)."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


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


# Columns every LeRobot data file has besides the features a dataset declares.
_INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _feature_to_numpy(column, shape: Sequence[int], dtype: str, name: str, source: str) -> np.ndarray:
    """A numeric feature column (scalars or, nested, fixed-length lists) as an (N, *shape) array of `dtype`."""
    pa, _ = _pa()
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(column)
    while pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        column = column.flatten()
    try:
        values = column.to_numpy(zero_copy_only=False).astype(np.dtype(dtype))
    except TypeError as err:
        raise LeRobotFormatError(f"{source}: feature {name!r} has dtype {dtype!r} that is not numeric: {err}") from err
    if values.size != n * int(np.prod(shape)):
        raise LeRobotFormatError(
            f"{source}: feature {name!r} has {values.size // max(n, 1)} values per row but meta/info.json says "
            f"shape {list(shape)}"
        )
    return values.reshape(n, *shape)


class LeRobotDataset(Dataset):
    """A LeRobot v2.1 / v3.0 dataset directory as a map-style torch `Dataset` of frames.

    Each item is a dict:
        images (`list[np.ndarray]`): one (H, W, 3) uint8 RGB frame per camera, in `camera_keys` order;
        camera_keys (`list[str]`); language (`str`): the task; state (`np.ndarray` (S,) float32);
        actions (`np.ndarray` (T, A) float32): actions of this frame and the next T-1 frames;
        action_is_pad (`np.ndarray` (T,) bool): True where the chunk runs past the episode's end (the last
        action is repeated there); episode_index, frame_index, index, task_index (`int`); timestamp (`float`, s
        within the episode); dataset (`str`); and every extra numeric feature of `extra_keys` (reward, done,
        environment state ...) under its own name, shaped as LeRobot returns it (a shape [1] feature as a numpy
        scalar, LeRobot's 0-d tensor), in its meta/info.json dtype.
    A dataset with depth cameras (`is_depth_map` in a feature's info, LeRobot v3.0 since lerobot 0.4.4) adds:
        depth (`list[np.ndarray]`): one float32 depth map per depth camera, in `depth_keys` order, shaped as
        meta/info.json says (e.g. (H, W, 1)), with lerobot's values (see `depth.py`): millimetres rounded to
        whole millimetres (`depth_unit="mm"`, lerobot's default) or metres; depth_keys (`list[str]`).

    Args:
        root: the dataset directory (with `meta/info.json`).
        action_horizon: T, the action-chunk length.
        camera_keys: RGB cameras to return (default: every `image`/`video` feature that is not a depth map,
            sorted).
        depth_keys: depth cameras to return (default: every depth-map feature, sorted).
        depth_unit: "mm" (lerobot's default `depth_output_unit`) or "m".
        extra_keys: other numeric features to return (default: every feature that is not a camera, the state,
            the action or an index column).
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
        depth_keys: Sequence[str] | None = None,
        depth_unit: str = "mm",
        extra_keys: Sequence[str] | None = None,
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
        if depth_unit not in DEPTH_UNITS:
            raise UserError(f"depth_unit must be one of {DEPTH_UNITS}, got {depth_unit!r}")
        self.depth_unit = depth_unit
        cams = [k for k, f in self.features.items() if f.get("dtype") in ("image", "video")]
        depths = [k for k in cams if is_depth_feature(self.features[k])]
        undeclared = self._undeclared_cameras(cams)
        if undeclared:
            _warn_once(
                f"{self.root}: camera(s) {undeclared} have video folders on disk but are not features of "
                "meta/info.json, so they are ignored; add them to info.json's features to use them"
            )
        if camera_keys is None:
            camera_keys = sorted(set(cams) - set(depths))
        for cam in camera_keys:
            if cam in depths:
                raise UserError(
                    f"{self.root}: camera {cam!r} is a depth map (is_depth_map in meta/info.json), not an RGB camera; "
                    f"pass it in depth_keys (items carry it under 'depth'); depth cameras are {depths}"
                )
            if cam not in cams:
                on_disk = " (it has video files on disk, but info.json does not declare it)" if cam in undeclared else ""
                raise LeRobotFormatError(
                    f"{self.root}: camera {cam!r} is not an image/video feature of meta/info.json{on_disk}; "
                    f"cameras are {cams}"
                )
        self.camera_keys = list(camera_keys)
        if depth_keys is None:
            depth_keys = sorted(depths)
        for key in depth_keys:
            if key not in depths:
                raise UserError(
                    f"{self.root}: {key!r} is not a depth-map feature of meta/info.json (an image/video feature whose "
                    f"info has is_depth_map: true); depth cameras are {depths}"
                )
        self.depth_keys = list(depth_keys)
        self._depth_quant = {
            key: DepthQuantization.from_feature(self.features[key], key, str(self.root / "meta" / "info.json"))
            for key in self.depth_keys if self.features[key]["dtype"] == "video"
        }
        skip = {state_key, action_key, *cams, *_INDEX_COLUMNS}
        extras = [k for k, f in self.features.items() if k not in skip and f.get("dtype") not in ("string", None)]
        if extra_keys is None:
            extra_keys = extras
        for key in extra_keys:
            if key not in extras:
                raise UserError(
                    f"{self.root}: {key!r} is not an extra numeric feature of meta/info.json; extra features are {extras}"
                )
        self.extra_keys = list(extra_keys)
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
            for cam in [*self.camera_keys, *self.depth_keys]:
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
        cols: dict[str, list] = {k: [] for k in _INDEX_COLUMNS}
        extras: dict[str, list] = {k: [] for k in self.extra_keys}
        image_cams = [c for c in [*self.camera_keys, *self.depth_keys] if self.features[c]["dtype"] == "image"]
        self._image_columns: dict[str, list] = {c: [] for c in image_cams}
        for path in self._data_files():
            if not path.is_file():
                raise UserFileNotFoundError(f"data file {path} is missing (named by meta/info.json data_path)")
            table = pq.read_table(path)
            for needed in [self.state_key, self.action_key, *cols, *image_cams, *extras]:
                if needed not in table.column_names:
                    raise LeRobotFormatError(f"{path} lacks column {needed!r}; it has {table.column_names}")
            states.append(_list_to_numpy(table.column(self.state_key), state_w, self.state_key, str(path)))
            actions.append(_list_to_numpy(table.column(self.action_key), action_w, self.action_key, str(path)))
            for k in cols:
                cols[k].append(table.column(k).to_numpy())
            for c in image_cams:
                self._image_columns[c].append(table.column(c).combine_chunks())
            for k in extras:
                feature = self.features[k]
                shape = [int(x) for x in feature.get("shape", [1])]
                extras[k].append(_feature_to_numpy(table.column(k), shape, feature["dtype"], k, str(path)))
            tables.append(path)
        self.states = np.concatenate(states) if states else np.zeros((0, state_w), np.float32)
        self.actions = np.concatenate(actions) if actions else np.zeros((0, action_w), np.float32)
        self._columns = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
        # LeRobot returns a shape [1] feature as a scalar: (N, 1) -> (N,), so that a row is a 0-d array.
        self._extras = {k: (np.concatenate(v) if v else np.zeros((0, *self.features[k].get("shape", [1]))))
                        for k, v in extras.items()}
        self._extras = {k: v.reshape(len(v)) if v.shape[1:] == (1,) else v for k, v in self._extras.items()}
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

    def _image_bytes(self, cam: str, row: int) -> bytes:
        """The encoded image (PNG, TIFF ...) of a `dtype: image` feature at `row`: inline bytes or a file."""
        value = self._image_columns[cam][row].as_py()
        data = value.get("bytes") if isinstance(value, dict) else value
        if data is None:
            path = value.get("path") if isinstance(value, dict) else None
            if not path:
                raise LeRobotFormatError(f"{self.root}: row {row} of {cam!r} has neither image bytes nor a path")
            data = (self.root / path).read_bytes()
        return data

    def read_image(self, cam: str, row: int) -> np.ndarray:
        """The (H, W, 3) uint8 frame of camera `cam` at row `row`; checked against info.json's shape."""
        feature = self.features[cam]
        if feature["dtype"] == "image":
            from PIL import Image

            rgb = np.asarray(Image.open(io.BytesIO(self._image_bytes(cam, row))).convert("RGB"))
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

    def read_depth(self, key: str, row: int) -> np.ndarray:
        """The float32 depth map of depth camera `key` at row `row`, in `depth_unit`, shaped as meta/info.json
        says (e.g. (H, W, 1)), with the values lerobot 0.6.1 returns: a depth video's 12-bit codes are
        de-quantised with the feature's `video.depth_min` / `video.depth_max` / `video.shift` / `video.use_log`;
        a depth image (raw TIFF) keeps its values, converted from its `depth_unit` when that differs."""
        feature = self.features[key]
        if feature["dtype"] == "image":
            from PIL import Image

            values = np.asarray(Image.open(io.BytesIO(self._image_bytes(key, row))), dtype=np.float32)
            stored = (feature.get("info") or {}).get("depth_unit")
            values = convert_depth_unit(values, stored, self.depth_unit)
        else:
            path, t = self._video_path_and_time(key, row)
            values = dequantize_depth(self._video.read(path, t, DEPTH_PIX_FMT), self._depth_quant[key], self.depth_unit)
        expected = tuple(int(x) for x in feature["shape"])
        if values.size != int(np.prod(expected)):
            raise LeRobotFormatError(
                f"{self.root}: depth camera {key!r} frame has shape {values.shape} but meta/info.json says "
                f"{list(expected)}"
            )
        return values.reshape(expected)

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
        episodes, timestamps, frames, indices, tasks, _ = self._row_lists()
        actions, is_pad = self.action_chunk(row)
        task = self.tasks.get(tasks[row])
        if task is None:
            raise LeRobotFormatError(f"{self.root}: row {row} has task_index {tasks[row]}, unknown to the task table")
        item = {
            "images": [self.read_image(cam, row) for cam in self.camera_keys],
            "camera_keys": list(self.camera_keys),
            "language": task,
            "state": self.states[row].copy(),
            "actions": actions,
            "action_is_pad": is_pad,
            "episode_index": episodes[row],
            "frame_index": frames[row],
            "index": indices[row],
            "task_index": tasks[row],
            "timestamp": timestamps[row],
            "dataset": self.name,
        }
        for key in self.extra_keys:
            item[key] = self._extras[key][row].copy()
        if self.depth_keys:
            item["depth"] = [self.read_depth(key, row) for key in self.depth_keys]
            item["depth_keys"] = list(self.depth_keys)
        return item


__all__ = ["LeRobotDataset"]
