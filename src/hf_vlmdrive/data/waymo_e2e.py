"""Waymo Open Dataset End-to-End Driving (WOD-E2E) files: TFRecord framing, `E2EDFrame` parsing, datasets.

WOD-E2E ships uncompressed TFRecord files (`training.tfrecord*`, `validation.tfrecord*`,
`test.tfrecord*`) of serialized `waymo.open_dataset.E2EDFrame` protos. The protos are bundled
(`hf_vlmdrive.data.protos`, same field numbers as the official ones), so no TensorFlow and no
`waymo-open-dataset` package is needed.

TFRecord framing (per record): uint64 length (little endian), uint32 masked CRC32C of the 8 length
bytes, `length` data bytes, uint32 masked CRC32C of the data. Both CRCs are checked. A record whose data
CRC fails, or whose payload is not a valid `E2EDFrame`, is reported (file, byte offset, reason),
counted in `ReadStats` and skipped; a record whose *length* CRC fails makes the reader scan forward
for the next valid header; a truncated tail is reported and ends the file. A file whose very first
header is invalid is not a TFRecord file: `TFRecordError` says so.

Rows (see `E2EDRow` / `e2ed_features`): `frame_name`, `timestamp_micros`, `image` (first chosen
camera) and, for several cameras, `images`; `camera_names`; `calibrations` (per chosen camera: name,
intrinsic [f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3], extrinsic 16 doubles row-major camera->vehicle,
width, height); `past_states` (16x6: pos x,y, vel x,y, accel x,y); `future_waypoints` (20x2, None in
the test split); `intent` (UNKNOWN=0, GO_STRAIGHT=1, GO_LEFT=2, GO_RIGHT=3);
`preference_trajectories` (3x20x2, zero-padded) and `preference_scores` (3, -1 = invalid / absent).
"""

from __future__ import annotations

import glob
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError, UserFileNotFoundError

logger = logging.getLogger(__name__)

CAMERA_NAMES = {
    "UNKNOWN": 0,
    "FRONT": 1,
    "FRONT_LEFT": 2,
    "FRONT_RIGHT": 3,
    "SIDE_LEFT": 4,
    "SIDE_RIGHT": 5,
    "REAR_LEFT": 6,
    "REAR": 7,
    "REAR_RIGHT": 8,
}
CAMERA_IDS = {v: k for k, v in CAMERA_NAMES.items()}
NUM_PAST, NUM_FUTURE, MAX_RATERS = 16, 20, 3
_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


class TFRecordError(UserError):
    """A file is not a TFRecord file (or cannot be read as one at all)."""


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C: ((crc >> 15) | (crc << 17)) + 0xa282ead8, modulo 2**32."""
    import crc32c

    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------------
# TFRecord framing
# ----------------------------------------------------------------------------------------------------


class TFRecordWriter:
    """Write an uncompressed TFRecord file; atomic: records go to `<path>.tmp-<pid>`, renamed on close."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self._fh = open(self._tmp, "wb")
        self.count = 0

    def write(self, record: bytes) -> None:
        """Append one record (bytes)."""
        length = struct.pack("<Q", len(record))
        self._fh.write(length + struct.pack("<I", masked_crc32c(length)) + record)
        self._fh.write(_FOOTER.pack(masked_crc32c(record)))
        self.count += 1

    def close(self) -> None:
        """Flush, fsync and move the file into place."""
        if self._fh.closed:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # never leave a half-written file under the final name
            self._fh.close()
            self._tmp.unlink(missing_ok=True)


@dataclass
class ReadStats:
    """What a read saw: good records, and the problems (file, offset, reason) of skipped ones."""

    records: int = 0
    skipped: int = 0
    problems: list[tuple[str, int, str]] = field(default_factory=list)

    def report(self, path: str, offset: int, reason: str) -> None:
        """Count and log one skipped record."""
        self.skipped += 1
        self.problems.append((str(path), int(offset), reason))
        logger.warning("skipping record of %s at byte offset %d: %s", path, offset, reason)

    def reasons(self, most: int = 3) -> list[tuple[str, int]]:
        """The commonest skip reasons (frame names and offsets left out) with their counts."""
        import re
        from collections import Counter

        counts = Counter(re.sub(r"frame '[^']*'", "frame", reason) for _, _, reason in self.problems)
        return counts.most_common(most)

    def summary(self) -> str:
        """One line: records read, skipped, and why."""
        line = f"read {self.records} frame(s), skipped {self.skipped}"
        if self.skipped:
            line += " (" + "; ".join(f"{n}x {reason}" for reason, n in self.reasons()) + ")"
        return line


def _not_tfrecord(path: str, head: bytes) -> TFRecordError:
    hint = ""
    if head[:2] == b"\x1f\x8b":
        hint = " (it is gzip-compressed; WOD-E2E files are uncompressed TFRecords: gunzip it first)"
    return TFRecordError(
        f"{path} is not a TFRecord file: the first record header has no valid CRC32C{hint}. Expected an "
        "uncompressed TFRecord of serialized waymo.open_dataset.E2EDFrame (e.g. validation.tfrecord-00000-of-00150)"
    )


def _resync(fh, start: int, size: int) -> int | None:
    """Offset of the next position >= start whose 12 bytes form a valid TFRecord length header."""
    chunk = 1 << 16
    pos = start
    while pos + 12 <= size:
        fh.seek(pos)
        buf = fh.read(chunk + 11)
        for i in range(0, max(0, len(buf) - 11)):
            length, crc = _HEADER.unpack_from(buf, i)
            if masked_crc32c(buf[i : i + 8]) == crc and pos + i + 16 + length <= size:
                return pos + i
        pos += chunk
    return None


def iter_tfrecord(
    path: str | os.PathLike, stats: ReadStats | None = None, check_crc: bool = True
) -> Iterator[tuple[int, bytes]]:
    """Stream (byte offset, record bytes) from one TFRecord file, one record in memory at a time.

    Bad records are reported through `stats` (and the log) and skipped; see the module docstring.
    """
    path = str(path)
    stats = stats if stats is not None else ReadStats()
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        offset = 0
        while offset < size:
            fh.seek(offset)
            header = fh.read(12)
            if len(header) < 12:
                if offset == 0:
                    raise _not_tfrecord(path, header)
                stats.report(path, offset, f"truncated record header ({len(header)} of 12 bytes) at end of file")
                return
            length, length_crc = _HEADER.unpack(header)
            if check_crc and masked_crc32c(header[:8]) != length_crc:
                if offset == 0:
                    raise _not_tfrecord(path, header)
                nxt = _resync(fh, offset + 1, size)
                stats.report(
                    path, offset, "corrupt length header (CRC mismatch); "
                    + (f"resynchronised at offset {nxt}" if nxt is not None else "no further valid record")
                )
                if nxt is None:
                    return
                offset = nxt
                continue
            end = offset + 12 + length + 4
            if end > size:
                stats.report(path, offset, f"truncated record: needs {length + 4} bytes after the header, file has {size - offset - 12}")
                return
            data = fh.read(length)
            (data_crc,) = _FOOTER.unpack(fh.read(4))
            if check_crc and masked_crc32c(data) != data_crc:
                stats.report(path, offset, "corrupt record data (CRC mismatch)")
            else:
                yield offset, data
            offset = end


def resolve_tfrecord_paths(spec: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Files of a spec: a path, a glob, a directory (its `*tfrecord*` files), a comma-separated list or a list."""
    items: list[str]
    if isinstance(spec, (str, os.PathLike)):
        items = [s for s in str(spec).split(",") if s]
    else:
        items = [str(s) for s in spec]
    files: list[str] = []
    for item in items:
        if os.path.isdir(item):
            matched = sorted(glob.glob(os.path.join(item, "*tfrecord*")))
            matched = [m for m in matched if ".tmp-" not in m]
        elif any(c in item for c in "*?["):
            matched = sorted(glob.glob(item))
        else:
            matched = [item] if os.path.isfile(item) else []
        if not matched:
            raise UserFileNotFoundError(f"no TFRecord file matches {item!r}")
        files.extend(matched)
    return files


# ----------------------------------------------------------------------------------------------------
# E2EDFrame <-> rows
# ----------------------------------------------------------------------------------------------------


def _protos():
    try:
        from .protos import end_to_end_driving_data_pb2 as e2e
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading WOD-E2E needs protobuf>=7.35: pip install 'hf_vlmdrive[waymo]'") from err
    return e2e


def _camera_ids(camera_names: Iterable[str]) -> list[int]:
    ids = []
    for name in camera_names:
        if name not in CAMERA_NAMES or name == "UNKNOWN":
            raise UserError(f"unknown camera {name!r}; WOD-E2E cameras are {[n for n in CAMERA_NAMES if n != 'UNKNOWN']}")
        ids.append(CAMERA_NAMES[name])
    return ids


def _states(msg, fields: tuple[str, ...], num: int, what: str) -> np.ndarray:
    cols = []
    for name in fields:
        values = list(getattr(msg, name))
        if not values and name not in ("pos_x", "pos_y"):
            values = [0.0] * num  # velocities / accelerations may be unset
        if len(values) != num:
            raise UserError(f"{what}.{name} has {len(values)} values, expected {num}")
        cols.append(values)
    return np.asarray(cols, dtype=np.float32).T


def parse_e2ed_frame(data: bytes, camera_names: Iterable[str] = ("FRONT",)) -> dict:
    """One serialized `E2EDFrame` -> a row dict (images as JPEG bytes). Raises ValueError when malformed."""
    from google.protobuf.message import DecodeError

    e2e = _protos()
    frame = e2e.E2EDFrame()
    try:
        frame.ParseFromString(data)
    except DecodeError as err:
        raise UserError(f"not a valid E2EDFrame proto: {err}") from err
    names = list(camera_names)
    ids = _camera_ids(names)
    name = frame.frame.context.name
    if not name:
        raise UserError("E2EDFrame.frame.context.name (the frame id) is empty")
    by_id = {img.name: img.image for img in frame.frame.images}
    missing = [n for n, i in zip(names, ids) if i not in by_id]
    if missing:
        raise UserError(f"frame {name!r} has no image for camera(s) {missing}; it has {[CAMERA_IDS.get(i, i) for i in by_id]}")
    calib_by_id = {c.name: c for c in frame.frame.context.camera_calibrations}
    calibrations = []
    for cam_name, cam_id in zip(names, ids):
        c = calib_by_id.get(cam_id)
        calibrations.append(
            {
                "name": cam_name,
                "intrinsic": list(c.intrinsic) if c is not None else [],
                "extrinsic": list(c.extrinsic.transform) if c is not None else [],
                "width": int(c.width) if c is not None else 0,
                "height": int(c.height) if c is not None else 0,
            }
        )
    if not frame.HasField("past_states"):
        raise UserError(f"frame {name!r} has no past_states")
    past = _states(
        frame.past_states, ("pos_x", "pos_y", "vel_x", "vel_y", "accel_x", "accel_y"), NUM_PAST, "past_states"
    )
    future = None
    if frame.HasField("future_states") and len(frame.future_states.pos_x):
        future = _states(frame.future_states, ("pos_x", "pos_y"), NUM_FUTURE, "future_states")
    prefs = np.zeros((MAX_RATERS, NUM_FUTURE, 2), dtype=np.float32)
    scores = np.full((MAX_RATERS,), -1.0, dtype=np.float32)
    for k, traj in enumerate(frame.preference_trajectories[:MAX_RATERS]):
        xy = np.stack([np.asarray(traj.pos_x, np.float32), np.asarray(traj.pos_y, np.float32)], axis=-1)
        if len(xy) == NUM_FUTURE + 1:  # some releases include t = 0
            xy = xy[1:]
        if len(xy) != NUM_FUTURE or not traj.HasField("preference_score"):
            continue  # invalid rater trajectory: score stays -1
        prefs[k] = xy
        scores[k] = traj.preference_score
    return {
        "frame_name": name,
        "timestamp_micros": int(frame.frame.timestamp_micros),
        "camera_names": names,
        "jpeg": [by_id[i] for i in ids],
        "calibrations": calibrations,
        "past_states": past,
        "future_waypoints": future,
        "intent": int(frame.intent),
        "preference_trajectories": prefs,
        "preference_scores": scores,
    }


def iter_e2ed_rows(
    paths, camera_names: Iterable[str] = ("FRONT",), stats: ReadStats | None = None
) -> Iterator[dict]:
    """Stream parsed rows (JPEG bytes, not decoded) of every file of `paths`; bad records are skipped."""
    stats = stats if stats is not None else ReadStats()
    names = tuple(camera_names)
    _camera_ids(names)
    for path in resolve_tfrecord_paths(paths):
        for offset, data in iter_tfrecord(path, stats):
            try:
                row = parse_e2ed_frame(data, names)
            except ValueError as err:
                stats.report(path, offset, str(err))
                continue
            stats.records += 1
            yield row


def e2ed_features(camera_names: Iterable[str] = ("FRONT",), with_future: bool = True):
    """`datasets.Features` of the rows produced by `load_e2ed_dataset`."""
    import datasets

    feats = {
        "frame_name": datasets.Value("string"),
        "timestamp_micros": datasets.Value("int64"),
        "image": datasets.Image(),
    }
    if len(tuple(camera_names)) > 1:
        feats["images"] = datasets.Sequence(datasets.Image())
    feats.update(
        {
            "camera_names": datasets.Sequence(datasets.Value("string")),
            "calibrations": datasets.List(
                {
                    "name": datasets.Value("string"),
                    "intrinsic": datasets.Sequence(datasets.Value("float64")),
                    "extrinsic": datasets.Sequence(datasets.Value("float64")),
                    "width": datasets.Value("int32"),
                    "height": datasets.Value("int32"),
                }
            ),
            "past_states": datasets.Array2D((NUM_PAST, 6), "float32"),
            "intent": datasets.Value("int64"),
            "preference_trajectories": datasets.Array3D((MAX_RATERS, NUM_FUTURE, 2), "float32"),
            "preference_scores": datasets.Sequence(datasets.Value("float32"), length=MAX_RATERS),
        }
    )
    if with_future:
        feats["future_waypoints"] = datasets.Array2D((NUM_FUTURE, 2), "float32")
    return datasets.Features(feats)


def _to_example(row: dict, multi: bool, with_future: bool) -> dict:
    out = {
        "frame_name": row["frame_name"],
        "timestamp_micros": row["timestamp_micros"],
        "image": {"bytes": row["jpeg"][0], "path": None},
        "camera_names": row["camera_names"],
        "calibrations": row["calibrations"],
        "past_states": row["past_states"],
        "intent": row["intent"],
        "preference_trajectories": row["preference_trajectories"],
        "preference_scores": row["preference_scores"],
    }
    if multi:
        out["images"] = [{"bytes": b, "path": None} for b in row["jpeg"]]
    if with_future:
        future = row["future_waypoints"]
        out["future_waypoints"] = future if future is not None else np.full((NUM_FUTURE, 2), np.nan, np.float32)
    return out


def _peek_has_future(files: list[str], names: tuple[str, ...]) -> bool | None:
    """Whether the first usable frame has future states; None when no frame is usable."""
    for path in files:
        for _, data in iter_tfrecord(path, ReadStats()):
            try:
                return parse_e2ed_frame(data, names)["future_waypoints"] is not None
            except ValueError:
                continue
    return None


def _generate(files: list[str], camera_names: tuple[str, ...], with_future: bool, fingerprint: str, stats=None):
    del fingerprint  # part of the datasets cache key only
    multi = len(camera_names) > 1
    for row in iter_e2ed_rows(files, camera_names, stats):
        yield _to_example(row, multi, with_future)


def load_e2ed_dataset(
    paths,
    camera_names: Iterable[str] = ("FRONT",),
    streaming: bool = False,
    stats: ReadStats | None = None,
):
    """WOD-E2E file(s) -> `datasets.Dataset` (or `IterableDataset` with `streaming=True`).

    `paths`: a file, glob, directory, comma-separated list or list. Images are `Image()` features (JPEG
    bytes, decoded lazily). `future_waypoints` is present when the first valid frame has future states
    (not in the test split); a later frame without them gets NaNs. Pass a `ReadStats` to collect the
    skipped records (file, offset, reason); they are also logged. The non-streaming dataset is cached by
    `datasets` under a key that includes each file's size and modification time.
    """
    import datasets

    names = tuple(camera_names)
    _camera_ids(names)
    files = resolve_tfrecord_paths(paths)
    with_future = _peek_has_future(files, names)
    if with_future is None:
        _raise_nothing_read(files, names, stats)
    features = e2ed_features(names, with_future)
    fingerprint = "|".join(f"{os.path.abspath(f)}:{os.path.getsize(f)}:{os.stat(f).st_mtime_ns}" for f in files)
    kwargs = {"files": files, "camera_names": names, "with_future": with_future, "fingerprint": fingerprint}
    if streaming:
        return datasets.IterableDataset.from_generator(
            _generate, features=features, gen_kwargs={**kwargs, "stats": stats}
        )
    if stats is not None:
        # Read here (not through the datasets cache) so that `stats` reflects this read.
        return datasets.Dataset.from_list(list(_generate(**kwargs, stats=stats)), features=features)
    return datasets.Dataset.from_generator(_generate, features=features, gen_kwargs=kwargs)


def _raise_nothing_read(files: list[str], names: tuple[str, ...], stats: ReadStats | None) -> None:
    """No usable frame in `files`: say why (every frame lacking a requested camera is the common case)."""
    stats = stats if stats is not None else ReadStats()
    for _ in iter_e2ed_rows(files, names, stats):  # yields nothing: it only counts the skipped records
        break
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    if stats.skipped and all("has no image for camera" in reason for _, _, reason in stats.problems):
        first = stats.problems[0][2]
        raise UserError(
            f"no usable frame in {shown}: every frame lacks camera(s) {list(names)} ({first}); ask only for "
            "cameras the files have (--camera_names / camera_names=...)"
        )
    raise UserError(f"no usable frame in {shown}: {stats.summary()}")


# ----------------------------------------------------------------------------------------------------
# Writing frames and submissions
# ----------------------------------------------------------------------------------------------------


def build_e2ed_frame(
    frame_name: str,
    images: dict[str, bytes],
    past_states: np.ndarray,
    intent: int,
    future_waypoints: np.ndarray | None = None,
    calibrations: dict[str, dict] | None = None,
    preference_trajectories: list[np.ndarray] | None = None,
    preference_scores: list[float] | None = None,
    timestamp_micros: int = 0,
) -> bytes:
    """Serialize one `E2EDFrame` (images: camera name -> JPEG bytes; calibrations: camera name ->
    {intrinsic, extrinsic (4x4 or 16), width, height}; preference score -1 marks an invalid rater)."""
    e2e = _protos()
    msg = e2e.E2EDFrame()
    msg.frame.context.name = frame_name
    msg.frame.timestamp_micros = int(timestamp_micros)
    for cam, jpeg in images.items():
        img = msg.frame.images.add()
        img.name = _camera_ids([cam])[0]
        img.image = jpeg
    for cam, calib in (calibrations or {}).items():
        c = msg.frame.context.camera_calibrations.add()
        c.name = _camera_ids([cam])[0]
        c.intrinsic.extend(float(v) for v in calib["intrinsic"])
        c.extrinsic.transform.extend(float(v) for v in np.asarray(calib["extrinsic"], dtype=np.float64).reshape(-1))
        c.width, c.height = int(calib["width"]), int(calib["height"])
    past = np.asarray(past_states, dtype=np.float32)
    for i, name in enumerate(("pos_x", "pos_y", "vel_x", "vel_y", "accel_x", "accel_y")):
        getattr(msg.past_states, name).extend(past[:, i].tolist())
    msg.past_states.pos_z.extend([0.0] * len(past))
    if future_waypoints is not None:
        fut = np.asarray(future_waypoints, dtype=np.float32)
        msg.future_states.pos_x.extend(fut[:, 0].tolist())
        msg.future_states.pos_y.extend(fut[:, 1].tolist())
        msg.future_states.pos_z.extend([0.0] * len(fut))
    msg.intent = int(intent)
    for traj, score in zip(preference_trajectories or [], preference_scores or []):
        t = msg.preference_trajectories.add()
        xy = np.asarray(traj, dtype=np.float32)
        t.pos_x.extend(xy[:, 0].tolist())
        t.pos_y.extend(xy[:, 1].tolist())
        t.preference_score = float(score)
    return msg.SerializeToString()


def write_submission(
    path: str | os.PathLike,
    frame_names: list[str],
    trajectories: np.ndarray,
    account_name: str = "",
    method_name: str = "hf_vlmdrive",
    authors: list[str] | None = None,
    affiliation: str = "",
    description: str = "",
    method_link: str = "",
    uses_public_model_pretraining: bool = True,
    public_model_names: list[str] | None = None,
    num_model_parameters: str = "",
) -> int:
    """Write an `E2EDChallengeSubmission` (binary proto) with one 20-point trajectory per frame name.

    `trajectories` is (N, 20, 2) in the ego frame (x forward, y left, metres; t = 0.25 ... 5 s).
    Written atomically. Returns the number of predictions.
    """
    from .protos import end_to_end_driving_submission_pb2 as sub_pb2

    traj = np.asarray(trajectories, dtype=np.float32)
    if traj.ndim != 3 or traj.shape[1:] != (NUM_FUTURE, 2):
        raise UserError(f"trajectories must be (N, {NUM_FUTURE}, 2), got {traj.shape}")
    if len(frame_names) != len(traj):
        raise UserError(f"{len(frame_names)} frame names for {len(traj)} trajectories")
    if len(set(frame_names)) != len(frame_names):
        raise UserError("frame names must be unique in a submission")
    if not np.isfinite(traj).all():
        raise UserError("trajectories contain NaN / inf")
    sub = sub_pb2.E2EDChallengeSubmission()
    sub.submission_type = sub_pb2.E2EDChallengeSubmission.E2ED_SUBMISSION
    sub.account_name = account_name
    sub.unique_method_name = method_name
    sub.authors.extend(authors or [])
    sub.affiliation = affiliation
    sub.description = description
    sub.method_link = method_link
    sub.uses_public_model_pretraining = bool(uses_public_model_pretraining)
    sub.public_model_names.extend(public_model_names or [])
    sub.num_model_parameters = num_model_parameters
    for name, xy in zip(frame_names, traj):
        pred = sub.predictions.add()
        pred.frame_name = name
        pred.trajectory.pos_x.extend(xy[:, 0].tolist())
        pred.trajectory.pos_y.extend(xy[:, 1].tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(sub.SerializeToString())
    os.replace(tmp, path)
    return len(traj)


def read_submission(path: str | os.PathLike):
    """Parse an `E2EDChallengeSubmission` binary proto."""
    from .protos import end_to_end_driving_submission_pb2 as sub_pb2

    sub = sub_pb2.E2EDChallengeSubmission()
    sub.ParseFromString(Path(path).read_bytes())
    return sub


def format_num_parameters(n: int) -> str:
    """An integer followed by K / M / B / T, as the submission's `num_model_parameters` asks."""
    for suffix, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{round(n / scale)}{suffix}"
    return str(n)


__all__ = [
    "CAMERA_NAMES",
    "ReadStats",
    "TFRecordError",
    "TFRecordWriter",
    "build_e2ed_frame",
    "e2ed_features",
    "format_num_parameters",
    "iter_e2ed_rows",
    "iter_tfrecord",
    "load_e2ed_dataset",
    "masked_crc32c",
    "parse_e2ed_frame",
    "read_submission",
    "resolve_tfrecord_paths",
    "write_submission",
]
