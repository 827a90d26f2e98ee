"""Robot episodes for RoboVLM (SPEC 1.4 / 2): one HDF5 file per episode, or a LeRobot dataset, behind one interface.

HDF5 layout of one episode file (`<root>/<episode_id>.hdf5` or `.h5`):

```
/observations/images   uint8   (T, H, W, 3)   RGB frames (chunked, gzip)
/action                float32 (T, A)         e.g. (linear_x, angular_z) for a mobile robot
attrs: task (str, the language instruction), fps (int, optional), action_names (JSON list, optional)
```

`open_episodes(path)` returns an [`EpisodeSource`]: `HDF5EpisodeSource` for a folder of such files,
`LeRobotEpisodeSource` for a LeRobot v2.1 / v3.0 directory (read with the library's own reader,
`hf_vlmdrive.data.lerobot`). Both list `EpisodeInfo`s (id, task, length, files, bytes on disk) from metadata
only and load an [`Episode`] (frames, actions, task) on demand.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..errors import UserError, UserFileNotFoundError, require_extra

IMAGES_KEY = "observations/images"
ACTION_KEY = "action"
HDF5_SUFFIXES = (".hdf5", ".h5")


def _h5py():
    require_extra("h5py", "robovlm", "reading HDF5 episodes")
    import h5py

    return h5py


@dataclass
class EpisodeInfo:
    """Metadata of one episode (read without loading its frames)."""

    episode_id: str
    task: str
    length: int
    files: list[str] = field(default_factory=list)
    size_bytes: int = 0


@dataclass
class Episode:
    """One episode in memory: `images` (T, H, W, 3) uint8, `actions` (T, A) float32, the task string."""

    episode_id: str
    task: str
    images: np.ndarray
    actions: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)


class EpisodeSource:
    """A collection of episodes: `infos` (metadata, in a fixed order) and `load(i)`."""

    format: str = ""
    root: Path
    infos: list[EpisodeInfo]

    def __len__(self) -> int:
        return len(self.infos)

    def load(self, index: int) -> Episode:
        raise NotImplementedError

    def load_frames(self, index: int, frames: Sequence[int]) -> np.ndarray:
        """Only the given frames of episode `index`: (len(frames), H, W, 3) uint8."""
        return self.load(index).images[list(frames)]

    @property
    def tasks(self) -> list[str]:
        """The distinct tasks, sorted."""
        return sorted({i.task for i in self.infos})


def write_episode_hdf5(path: str | Path, images: np.ndarray, actions: np.ndarray, task: str, fps: int | None = None,
                       action_names: Sequence[str] | None = None) -> Path:
    """Write one episode in the layout of the module docstring. Returns the path."""
    h5py = _h5py()
    images = np.asarray(images)
    actions = np.asarray(actions, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UserError(f"images must be uint8 (T, H, W, 3), got {images.dtype} {images.shape}")
    if actions.ndim != 2 or len(actions) != len(images):
        raise UserError(f"actions must be (T={len(images)}, A), got {actions.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset(IMAGES_KEY, data=images, chunks=(1, *images.shape[1:]), compression="gzip", compression_opts=4)
        f.create_dataset(ACTION_KEY, data=actions)
        f.attrs["task"] = str(task)
        if fps is not None:
            f.attrs["fps"] = int(fps)
        if action_names is not None:
            f.attrs["action_names"] = json.dumps(list(action_names))
    return path


class HDF5EpisodeSource(EpisodeSource):
    """A folder of one-HDF5-file-per-episode files (sorted by name; the file stem is the episode id)."""

    format = "hdf5"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserFileNotFoundError(f"episode folder {self.root} does not exist")
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix in HDF5_SUFFIXES and p.is_file())
        if not self.paths:
            raise UserFileNotFoundError(f"{self.root} holds no episode files ({' / '.join(HDF5_SUFFIXES)})")
        h5py = _h5py()
        self.infos = []
        for p in self.paths:
            try:
                with h5py.File(p, "r") as f:
                    for key in (IMAGES_KEY, ACTION_KEY):
                        if key not in f:
                            raise UserError(f"{p}: no dataset {key!r}; an episode file needs {IMAGES_KEY!r} "
                                            f"(T, H, W, 3) uint8 and {ACTION_KEY!r} (T, A)")
                    n_img, n_act = f[IMAGES_KEY].shape[0], f[ACTION_KEY].shape[0]
                    if n_img != n_act:
                        raise UserError(f"{p}: {n_img} frames in {IMAGES_KEY!r} but {n_act} rows in {ACTION_KEY!r}")
                    task = f.attrs.get("task")
                    if task is None:
                        raise UserError(f"{p}: the file has no 'task' attribute (the language instruction)")
                    task = task.decode() if isinstance(task, bytes) else str(task)
            except OSError as err:
                raise UserError(f"{p}: not a readable HDF5 file ({err})") from err
            rel = str(p.relative_to(self.root))
            self.infos.append(EpisodeInfo(p.stem, task, int(n_act), [rel], p.stat().st_size))

    def load(self, index: int) -> Episode:
        h5py = _h5py()
        info = self.infos[index]
        with h5py.File(self.paths[index], "r") as f:
            return Episode(info.episode_id, info.task, f[IMAGES_KEY][()], f[ACTION_KEY][()].astype(np.float32))

    def load_frames(self, index: int, frames: Sequence[int]) -> np.ndarray:
        h5py = _h5py()
        with h5py.File(self.paths[index], "r") as f:
            return np.stack([f[IMAGES_KEY][int(t)] for t in frames])


class LeRobotEpisodeSource(EpisodeSource):
    """A LeRobot v2.1 / v3.0 dataset read by `hf_vlmdrive.data.lerobot.LeRobotDataset` (one camera)."""

    format = "lerobot"

    def __init__(self, root: str | Path, camera_key: str | None = None):
        from .lerobot import LeRobotDataset

        self.root = Path(root)
        self.dataset = LeRobotDataset(self.root, action_horizon=1, read_stats=False)
        cams = self.dataset.camera_keys
        if not cams:
            raise UserError(f"{self.root}: the LeRobot dataset has no image / video feature")
        if camera_key is not None and camera_key not in cams:
            raise UserError(f"{self.root}: camera {camera_key!r} not in the dataset's cameras {cams}")
        self.camera_key = camera_key or cams[0]
        files = [p for p in self.root.rglob("*") if p.is_file()]
        total = sum(p.stat().st_size for p in files)
        frames = max(1, len(self.dataset))
        self.infos = []
        self._episodes = sorted(self.dataset.episode_bounds)
        for ep in self._episodes:
            start, end = self.dataset.episode_bounds[ep]
            task = self.dataset[start]["language"]
            # Files are shared between episodes in v3.0: each episode is given its share of the bytes by frames.
            self.infos.append(EpisodeInfo(f"episode_{ep:06d}", task, end - start, [], int(total * (end - start) / frames)))

    def load(self, index: int) -> Episode:
        ep = self._episodes[index]
        start, end = self.dataset.episode_bounds[ep]
        images = self.load_frames(index, range(end - start))
        info = self.infos[index]
        return Episode(info.episode_id, info.task, images, self.dataset.actions[start:end].astype(np.float32))

    def load_frames(self, index: int, frames: Sequence[int]) -> np.ndarray:
        start, _ = self.dataset.episode_bounds[self._episodes[index]]
        return np.stack([self.dataset.read_image(self.camera_key, start + int(t)) for t in frames])


def open_episodes(path: str | Path, camera_key: str | None = None) -> EpisodeSource:
    """The episodes at `path`: a LeRobot dataset (has `meta/info.json`) or a folder of HDF5 episode files."""
    path = Path(path)
    if not path.exists():
        raise UserFileNotFoundError(f"episodes path {path} does not exist")
    if (path / "meta" / "info.json").is_file():
        return LeRobotEpisodeSource(path, camera_key=camera_key)
    return HDF5EpisodeSource(path)


class RoboVLMWindowDataset(Dataset):
    """Training windows over an [`EpisodeSource`]: every `stride`-th start of `window_size` consecutive frames.

    Item keys: `frames` (L, H, W, 3) uint8, `actions` (L, chunk, A) float32 (the action of frame t and the next
    chunk-1 frames), `action_mask` (L, chunk) bool (False past the episode's end), `task` (str), `episode_id`, `start`.
    Episodes shorter than the window give one window padded by repeating the last frame (masked).
    """

    def __init__(self, source: EpisodeSource, window_size: int, chunk_size: int = 1, stride: int = 1,
                 cache_episodes: int = 256):
        self.source, self.window, self.chunk = source, int(window_size), int(chunk_size)
        self.index: list[tuple[int, int]] = []
        for i, info in enumerate(source.infos):
            starts = range(0, max(1, info.length - self.window + 1), int(stride))
            self.index += [(i, s) for s in starts]
        if not self.index:
            raise UserError(f"{source.root}: no episodes to make windows from")
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self._cache_size = cache_episodes

    def __len__(self) -> int:
        return len(self.index)

    def _episode(self, i: int):
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        ep = self.source.load(i)
        self._cache[i] = ep
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return ep

    def __getitem__(self, k: int) -> dict[str, Any]:
        i, start = self.index[k]
        ep = self._episode(i)
        n = len(ep)
        frames_idx = np.minimum(np.arange(start, start + self.window), n - 1)
        steps = frames_idx[:, None] + np.arange(self.chunk)[None]  # (L, chunk)
        mask = (steps < n) & (np.arange(start, start + self.window) < n)[:, None]
        actions = ep.actions[np.minimum(steps, n - 1)]  # (L, chunk, A)
        return {"frames": ep.images[frames_idx], "actions": actions.astype(np.float32), "action_mask": mask,
                "task": ep.task, "episode_id": ep.episode_id, "start": int(start)}


__all__ = [
    "RoboVLMWindowDataset",
    "ACTION_KEY",
    "IMAGES_KEY",
    "Episode",
    "EpisodeInfo",
    "EpisodeSource",
    "HDF5EpisodeSource",
    "LeRobotEpisodeSource",
    "open_episodes",
    "write_episode_hdf5",
]
