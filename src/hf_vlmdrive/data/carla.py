"""Reader of the CARLA / PDM-Lite / SimLingo on-disk layout (SPEC 1.2) for SimLingo-base training.

Layout: route folders `Town*_Rep*_<n>/` (searched recursively under the root) with per-frame files at 4 Hz:
`rgb/NNNN.jpg`, `measurements/NNNN.json.gz`, `boxes/NNNN.json.gz`, and a per-route `results.json.gz`.

What a sample holds (numpy; stacked into tensors by [`SimLingoCollator`]):

- `pixel_values` uint8 (T, N, 3, H, W): frames i-T+1..i (clamped at the route's start) of N cameras;
- `speed` float32 (1,), m/s; `target_point` (2,), `target_point_next` (2,) and `route_coords` (2, 2) =
  [target_point, target_point_next], ego frame; `route_image` uint8 (3, RH, RW) BEV drawing of the route (when asked);
- `intrinsics` (N, 3, 3) from the camera FOV and image size, `extrinsics` (N, 4, 4) camera-to-ego;
- `speed_wps_labels` (10, 2): future frames' ego_matrix translations in the current ego frame,
  R0^T (p - t0), x,y only, one per frame (4 Hz, 2.5 s); `speed_wps_mask` (10,): False where the future
  frame is past the route's end or its measurements are unreadable (the point is masked, not crashed);
- `route_labels` (20, 2): the measurement's route (up to 40 points 1 m apart) resampled to 20 equally
  spaced points (`route_spacing` m apart, from the ego origin, clamped at the route's end: the released
  code; `route_resampling="extrapolate"`: SPEC's variant), `route_mask` (20,);
- `command` int (CARLA 1..6).

Samples: the released code's rule (the first 10 frames and frames without a complete future are not
samples; `skip_first_frames=0, require_full_future=False` keeps every frame).
Routes are filtered by their `results.json.gz` (the released rule: score_composed 100, or score_route > 94
with only min-speed / outside-lane infractions; `route_filter="min_score"`: score_composed below `min_score`
or a failed status);
a missing or corrupt `results.json.gz`, and missing or corrupt measurement files, are skipped with a
warning and counted in `dataset.skipped` (a `collections.Counter`).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError, UserFileNotFoundError
from ..models.simlingo.processing_simlingo import frame_to_uint8_chw, render_route_image

logger = logging.getLogger(__name__)

CAMERA_FOLDERS = ("rgb", "rgb_left", "rgb_right")
CAMERA_YAW_DEG = {"rgb": 0.0, "rgb_left": 45.0, "rgb_right": -45.0}
REQUIRED_KEYS = ("speed", "target_point", "command", "route", "ego_matrix")


def read_json_gz(path: str | Path):
    """Load a gzipped JSON file; errors name the file."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a readable gzipped JSON file: {err}") from err


def waypoints_from_poses(ego_matrix_now: np.ndarray, future_matrices: np.ndarray) -> np.ndarray:
    """Future ego positions in the current ego frame, x,y only: R0^T (p - t0).

    `ego_matrix_now` (4, 4) world pose, `future_matrices` (K, 4, 4) -> (K, 2).
    """
    rot = np.asarray(ego_matrix_now)[:3, :3]
    t0 = np.asarray(ego_matrix_now)[:3, 3]
    p = np.asarray(future_matrices)[:, :3, 3]
    return ((p - t0) @ rot)[:, :2]  # rows of R0^T (p - t0)


ROUTE_RESAMPLINGS = ("reference", "extrapolate")
ROUTE_FILTERS = ("reference", "min_score")


def equal_spacing_route(points: np.ndarray, num_points: int = 20, spacing: float = 1.0,
                        mode: str = "reference") -> np.ndarray:
    """Resample an ego-frame polyline (P, 2) to `num_points` points `spacing` metres apart along it.

    `mode="reference"` (the released simlingo_base, dataset_base.py:454-466): the ego origin (0, 0) is
    prepended, arc lengths are the cumulative distances (plus 1e-4 per point, to keep them increasing) and
    the points are `np.interp`olated at 0, spacing, 2*spacing, ...: the first point is the origin and past
    the route's end the last point is repeated (clamped).
    `mode="extrapolate"` (SPEC 1.2's variant): from the route's first point; past its end the last segment
    is extended linearly (a single point is extended straight ahead)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        raise UserError("route has no points")
    if mode not in ROUTE_RESAMPLINGS:
        raise UserError(f"route resampling mode must be one of {ROUTE_RESAMPLINGS}, got {mode!r}")
    wanted = spacing * np.arange(num_points)
    if mode == "reference":
        route = np.concatenate([np.zeros((1, 2)), pts])
        shift = np.roll(route, 1, axis=0)
        shift[0] = shift[1]
        dists = np.cumsum(np.linalg.norm(route - shift, axis=1)) + np.arange(len(route)) * 1e-4
        return np.stack([np.interp(wanted, dists, route[:, 0]), np.interp(wanted, dists, route[:, 1])], axis=-1)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(pts, axis=0), axis=-1) > 1e-6])
    pts = pts[keep]
    if len(pts) == 1:
        pts = np.stack([pts[0], pts[0] + np.array([1.0, 0.0])])
    seg = np.diff(pts, axis=0)
    seg_len = np.linalg.norm(seg, axis=-1)
    arc = np.concatenate([[0.0], np.cumsum(seg_len)])
    idx = np.clip(np.searchsorted(arc, wanted, side="right") - 1, 0, len(seg) - 1)
    direction = seg[idx] / seg_len[idx, None]
    return pts[idx] + direction * (wanted - arc[idx])[:, None]


def shift_points(points: np.ndarray, y_translation: float, yaw_deg: float) -> np.ndarray:
    """Ego-frame points (K, 2) seen from the shifted camera of PDM-Lite's augmentation: R(yaw)^T (p - (0, y))
    (the released dataset_base.py:592-609 `augment_route` / `augment_target_point`, get_waypoints:711-721)."""
    yaw = np.deg2rad(yaw_deg)
    rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (rot.T @ (pts - np.array([[0.0, y_translation]])).T).T


def camera_intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """3x3 pinhole intrinsics of a CARLA camera with horizontal FOV `fov_deg`."""
    focal = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def camera_extrinsics(yaw_deg: float, x: float = -1.5, z: float = 2.0) -> np.ndarray:
    """4x4 camera-to-ego transform (PDM-Lite's camera mount: 1.5 m behind the centre, 2 m up)."""
    pose = np.eye(4)
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[0, 3], pose[2, 3] = x, z
    return pose


@dataclass
class _Route:
    path: Path
    frames: list[str]  # frame ids with readable measurements, sorted
    measurements: dict[str, dict]


class CarlaRouteDataset(torch.utils.data.Dataset):
    """Samples of SimLingo-base from CARLA route folders (see the module docstring for the keys).

    Args:
        root: a folder holding route folders `Town*_Rep*_*` (at any depth), or a list of such roots.
        num_frames: T frames per sample (the current one and T-1 before it).
        cameras: camera folders to read (`rgb`, `rgb_left`, `rgb_right`), N = len(cameras).
        image_size: `(width, height)` the jpgs are resized to; `None` keeps them as stored.
        num_speed_wps: future frames turned into speed waypoints (4 Hz).
        num_route_points, route_spacing: the resampled route.
        route_image_size: `(RH, RW)` of `route_image`; `None` leaves `route_image` out.
        route_filter: `"reference"` (the released simlingo_base, dataset_base.py:176-185): a route is kept
            when `score_composed` >= 100, or when `score_route` > 94 and its only infractions are
            `min_speed_infractions` / `outside_route_lanes`; `"min_score"` (SPEC 1.2's variant): kept when
            `score_composed` >= `min_score` and its status is not "Failed...".
        min_score: the threshold of `route_filter="min_score"`; `None` disables the filter (either kind; and
            the need for results.json.gz).
        skip_first_frames: the first frames of every route give no sample (the reference: 10,
            `skip_first_n_frames`).
        require_full_future: keep only frames with the reference's complete future: frame c (current) of a
            route with F frames (jpgs of the first camera) is a sample when c <= F - num_speed_wps - 4
            (dataset_base.py:198, `range(skip_first_n_frames, num_seq - pred_len - hist_len - 1)` with
            pred_len = num_speed_wps + 1 and the current frame seq + hist_len - 1). `False` (SPEC's variant)
            keeps every frame and masks the missing future points.
        route_resampling: `"reference"` or `"extrapolate"`, see [`equal_spacing_route`].
        shift_augmentation_prob: probability of the released shifted-camera augmentation
            (`img_shift_augmentation`, carla_data.py:48-81; the reference trains with 0.5): the frame is read
            from `rgb_augmented/` and the waypoints, route and target points are moved into that camera's
            frame with the measurement's `augmentation_translation` (m, y) and `augmentation_rotation`
            (degrees), see [`shift_points`]. Only with `cameras=("rgb",)`; frames without an augmented render
            or those keys are read unshifted. 0 (default) turns it off (evaluation; data without renders).
        seed: seed of the augmentation's random draws (per sample index, so workers agree).
        require_results: with the filter on, skip route folders without a results.json.gz (counted);
            `False` keeps them.
        camera_fov: horizontal field of view of the cameras, degrees (PDM-Lite: 110).
    """

    def __init__(
        self,
        root: str | Path | list[str | Path],
        num_frames: int = 1,
        cameras: tuple[str, ...] = ("rgb",),
        image_size: tuple[int, int] | None = None,
        num_speed_wps: int = 10,
        num_route_points: int = 20,
        route_spacing: float = 1.0,
        route_image_size: tuple[int, int] | None = None,
        min_score: float | None = 100.0,
        require_results: bool = True,
        camera_fov: float = 110.0,
        route_filter: str = "reference",
        skip_first_frames: int = 10,
        require_full_future: bool = True,
        route_resampling: str = "reference",
        shift_augmentation_prob: float = 0.0,
        seed: int = 0,
    ):
        if not 0.0 <= shift_augmentation_prob <= 1.0:
            raise UserError(f"shift_augmentation_prob must be in [0, 1], got {shift_augmentation_prob}")
        if shift_augmentation_prob > 0 and tuple(cameras) != ("rgb",):
            raise UserError(f"the shifted-camera augmentation needs cameras=('rgb',), got {tuple(cameras)}")
        self.shift_augmentation_prob = shift_augmentation_prob
        self.seed = seed
        self._draws = 0
        if route_filter not in ROUTE_FILTERS:
            raise UserError(f"route_filter must be one of {ROUTE_FILTERS}, got {route_filter!r}")
        if route_resampling not in ROUTE_RESAMPLINGS:
            raise UserError(f"route_resampling must be one of {ROUTE_RESAMPLINGS}, got {route_resampling!r}")
        if skip_first_frames < 0:
            raise UserError(f"skip_first_frames must be >= 0, got {skip_first_frames}")
        self.route_filter = route_filter
        self.skip_first_frames = skip_first_frames
        self.require_full_future = require_full_future
        self.route_resampling = route_resampling
        bad = [c for c in cameras if c not in CAMERA_FOLDERS]
        if bad:
            raise UserError(f"cameras must be among {CAMERA_FOLDERS}, got {bad}")
        if num_frames < 1:
            raise UserError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = num_frames
        self.cameras = tuple(cameras)
        self.image_size = tuple(image_size) if image_size is not None else None
        self.num_speed_wps = num_speed_wps
        self.num_route_points = num_route_points
        self.route_spacing = route_spacing
        self.route_image_size = tuple(route_image_size) if route_image_size is not None else None
        self.min_score = min_score
        self.require_results = require_results
        self.camera_fov = camera_fov
        self.skipped: Counter[str] = Counter()
        self.excluded: Counter[str] = Counter()  # frames the sampling rule leaves out (not problems)
        roots = root if isinstance(root, (list, tuple)) else [root]
        route_dirs: list[Path] = []
        for r in roots:
            r = Path(r)
            if not r.is_dir():
                raise UserFileNotFoundError(f"CARLA data root {r} does not exist or is not a folder")
            found = sorted(p for p in r.rglob("Town*_Rep*") if p.is_dir() and (p / "measurements").is_dir())
            route_dirs += found
        if not route_dirs:
            raise UserFileNotFoundError(
                f"no CARLA route folders (Town*_Rep*_*/ with a measurements/ folder) under {[str(r) for r in roots]}"
            )
        self.routes: list[_Route] = []
        self.index: list[tuple[int, int]] = []
        for path in route_dirs:
            route = self._load_route(path)
            if route is None:
                continue
            num_seq = len(list((path / self.cameras[0]).glob("*.jpg")))
            for i, frame in enumerate(route.frames):
                number = int(frame)
                if number < self.skip_first_frames:
                    self.excluded["frame_in_first_frames"] += 1
                elif self.require_full_future and number > num_seq - self.num_speed_wps - 4:
                    self.excluded["frame_without_full_future"] += 1
                else:
                    self.index.append((len(self.routes), i))
            self.routes.append(route)
        if self.skipped:
            logger.warning("CARLA reader skipped: %s", dict(self.skipped))
        if self.excluded:
            logger.info("CARLA reader: frames that are not samples: %s", dict(self.excluded))
        if not self.index:
            raise UserError(f"no usable frames under {[str(r) for r in roots]} (skipped: {dict(self.skipped)}; not "
                            f"samples: {dict(self.excluded)}; skip_first_frames={skip_first_frames}, "
                            f"require_full_future={require_full_future})")

    # ------------------------------------------------------------------ scanning
    def _route_passes(self, path: Path) -> bool:
        if self.min_score is None:  # filtering disabled: results.json.gz is not needed
            return True
        results = path / "results.json.gz"
        if not results.is_file():
            if self.require_results:
                logger.warning("skipping route %s: no results.json.gz (pass require_results=False to keep it)", path)
                self.skipped["route_without_results"] += 1
                return False
            return True
        try:
            record = read_json_gz(results)
            if isinstance(record, dict) and "_checkpoint" in record:  # a leaderboard checkpoint file
                record = record["_checkpoint"]["records"][0]
            score = float(record["scores"]["score_composed"])
            status = str(record.get("status", "Completed"))
            if self.route_filter == "reference":
                keep = score >= 100.0 or (
                    float(record["scores"]["score_route"]) > 94.0
                    and int(record["num_infractions"]) == len(record["infractions"]["min_speed_infractions"])
                    + len(record["infractions"]["outside_route_lanes"]))
            else:
                keep = score >= self.min_score and not status.startswith("Failed")
        except (ValueError, KeyError, IndexError, TypeError) as err:
            logger.warning("skipping route %s: corrupt results.json.gz (%s)", path, err)
            self.skipped["route_corrupt_results"] += 1
            return False
        if not keep:
            self.skipped["route_filtered_by_results"] += 1
            return False
        return True

    def _load_route(self, path: Path) -> _Route | None:
        if not self._route_passes(path):
            return None
        measurements: dict[str, dict] = {}
        for file in sorted((path / "measurements").glob("*.json.gz")):
            frame = file.name[: -len(".json.gz")]
            try:
                data = read_json_gz(file)
                missing = [k for k in REQUIRED_KEYS if k not in data]
                if missing:
                    raise UserError(f"{file} lacks key(s) {missing}")
                np.asarray(data["ego_matrix"], dtype=np.float64).reshape(4, 4)
            except (ValueError, TypeError) as err:
                logger.warning("skipping frame: %s", err)
                self.skipped["corrupt_measurements"] += 1
                continue
            measurements[frame] = data
        frames = []
        for frame in sorted(measurements):
            if all((path / cam / f"{frame}.jpg").is_file() for cam in self.cameras):
                frames.append(frame)
            else:
                self.skipped["frame_without_image"] += 1
        # Frames whose measurements are missing although their image exists.
        for jpg in (path / self.cameras[0]).glob("*.jpg") if (path / self.cameras[0]).is_dir() else []:
            if jpg.stem not in measurements and not (path / "measurements" / f"{jpg.stem}.json.gz").is_file():
                logger.warning("skipping frame %s: no measurements/%s.json.gz", jpg, jpg.stem)
                self.skipped["missing_measurements"] += 1
        if not frames:
            self.skipped["route_without_frames"] += 1
            return None
        return _Route(path, frames, measurements)

    def __len__(self) -> int:
        return len(self.index)

    # ------------------------------------------------------------------ samples
    def _image(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as img:
                return frame_to_uint8_chw(img, self.image_size)  # what SimLingoProcessor does to a frame
        except OSError as err:
            raise UserError(f"cannot decode image {path}: {err}; delete or re-render that frame") from err

    def _shift_of(self, route: _Route, frame: str, m: dict, i: int) -> tuple[float, float] | None:
        """(y translation m, yaw deg) of the shifted camera for this draw, or None (the normal camera)."""
        if self.shift_augmentation_prob <= 0:
            return None
        self._draws += 1
        rng = np.random.default_rng([self.seed, i, self._draws])
        if rng.random() >= self.shift_augmentation_prob:
            return None
        if "augmentation_translation" not in m or "augmentation_rotation" not in m:
            return None
        if not (route.path / "rgb_augmented" / f"{frame}.jpg").is_file():
            return None
        return float(m["augmentation_translation"]), float(m["augmentation_rotation"])

    def __getitem__(self, i: int) -> dict:
        route_i, frame_i = self.index[i]
        route = self.routes[route_i]
        frame = route.frames[frame_i]
        m = route.measurements[frame]
        number = int(frame)
        shift = self._shift_of(route, frame, m, i)
        # Past frames by frame number (4 Hz); clamped to the earliest readable frame.
        history = []
        for k in range(self.num_frames - 1, -1, -1):
            past = f"{max(number - k, 0):0{len(frame)}d}"
            history.append(past if past in route.measurements and all(
                (route.path / cam / f"{past}.jpg").is_file() for cam in self.cameras) else frame)
        folders = ("rgb_augmented",) if shift is not None else self.cameras
        pixel_values = np.stack(
            [np.stack([self._image(route.path / cam / f"{f}.jpg") for cam in folders]) for f in history]
        )  # (T, N, 3, H, W)
        height, width = pixel_values.shape[-2:]

        ego_now = np.asarray(m["ego_matrix"], dtype=np.float64).reshape(4, 4)
        wps = np.zeros((self.num_speed_wps, 2), dtype=np.float32)
        wps_mask = np.zeros(self.num_speed_wps, dtype=bool)
        for k in range(1, self.num_speed_wps + 1):
            future = route.measurements.get(f"{number + k:0{len(frame)}d}")
            if future is None:  # past the route's end, or an unreadable file: masked
                continue
            wps[k - 1] = waypoints_from_poses(ego_now, np.asarray(future["ego_matrix"]).reshape(1, 4, 4))[0]
            wps_mask[k - 1] = True

        route_pts = np.asarray(m["route"], dtype=np.float64).reshape(-1, 2)
        tp = np.asarray(m["target_point"], dtype=np.float32).reshape(2)
        tp_next = np.asarray(m.get("target_point_next", m["target_point"]), dtype=np.float32).reshape(2)
        if shift is not None:
            wps = np.where(wps_mask[:, None], shift_points(wps, *shift), 0.0).astype(np.float32)
            if len(route_pts):
                route_pts = shift_points(route_pts, *shift)
            tp = shift_points(tp, *shift)[0].astype(np.float32)
            tp_next = shift_points(tp_next, *shift)[0].astype(np.float32)
        if len(route_pts):
            route_labels = equal_spacing_route(route_pts, self.num_route_points, self.route_spacing,
                                               self.route_resampling)
            route_mask = np.ones(self.num_route_points, dtype=bool)
        else:
            route_labels = np.zeros((self.num_route_points, 2))
            route_mask = np.zeros(self.num_route_points, dtype=bool)
        sample = {
            "pixel_values": pixel_values,
            "speed": np.array([float(m["speed"])], dtype=np.float32),
            "target_point": tp,
            "target_point_next": tp_next,
            "route_coords": np.stack([tp, tp_next]),
            "intrinsics": np.stack([camera_intrinsics(width, height, self.camera_fov)] * len(self.cameras)).astype(
                np.float32),
            "extrinsics": np.stack([camera_extrinsics(CAMERA_YAW_DEG[c]) for c in self.cameras]).astype(np.float32),
            "speed_wps_labels": wps,
            "speed_wps_mask": wps_mask,
            "route_labels": route_labels.astype(np.float32),
            "route_mask": route_mask,
            "command": int(m["command"]),
            "shifted": shift is not None,
            "route_name": route.path.name,
            "frame": frame,
        }
        if self.route_image_size is not None:
            sample["route_image"] = render_route_image(route_pts, self.route_image_size)
        return sample


from .collators import SimLingoCollator  # noqa: E402  (its home is data/collators.py; re-exported here)

__all__ = [
    "CarlaRouteDataset",
    "SimLingoCollator",
    "camera_extrinsics",
    "camera_intrinsics",
    "equal_spacing_route",
    "read_json_gz",
    "render_route_image",
    "shift_points",
    "waypoints_from_poses",
]
