"""The LeRobot dataset layouts (v2.1 and v3.0): versions, path templates, the format error, metadata readers.

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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import UserError, UserFileNotFoundError

SUPPORTED_VERSIONS = ("v2.1", "v3.0")
DEFAULT_CHUNKS_SIZE = 1000
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


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


__all__ = ["DEFAULT_CHUNKS_SIZE", "SUPPORTED_VERSIONS", "LeRobotFormatError", "V3_DATA_PATH", "V3_EPISODES_PATH", "V3_VIDEO_PATH",
           "V21_DATA_PATH", "V21_VIDEO_PATH"]
