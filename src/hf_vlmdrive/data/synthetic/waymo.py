"""Write procedural driving scenes (`synthetic.driving`) as WOD-E2E TFRecord files.

Each scene becomes one serialized `waymo.open_dataset.E2EDFrame`: JPEG images of the chosen cameras
with their calibrations (Waymo intrinsic [f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3], 4x4 camera->vehicle
extrinsic), 16 past states, 20 future positions, intent and three rater-scored preference trajectories
derived from the scene's world:

- rater 1: the logged future (score 9-10),
- rater 2: the future with a growing lateral drift of 0.5-2 m at 5 s (score 10 - 2 * drift, i.e. 6-9),
- rater 3: a slower variant (50-85 % of the distance travelled; score 3-7), invalid (score -1) for about
  one frame in ten, as in the real data.

So the demo, the tests and the benchmark read the same format as the real dataset, through the same
reader (`hf_vlmdrive.data.waymo_e2e`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..waymo_e2e import TFRecordWriter, build_e2ed_frame
from .driving import WaypointSample, sample_waypoint_scene


def _jpeg(image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def rater_trajectories(sample: WaypointSample, rng: np.random.Generator) -> tuple[list[np.ndarray], list[float]]:
    """Three preference trajectories (20x2) and their scores for a scene (see the module docstring)."""
    future = sample.future_waypoints.astype(np.float64)
    ramp = np.linspace(1.0 / len(future), 1.0, len(future))
    drift = rng.uniform(0.5, 2.0) * rng.choice([-1.0, 1.0])
    drifted = future + np.stack([np.zeros_like(ramp), drift * ramp**2], axis=-1)
    keep = rng.uniform(0.5, 0.85)
    # Slower: the same path, covering only `keep` of each step's distance (time-scaled along the path).
    path = np.concatenate([[[0.0, 0.0]], future])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    target = arc[1:] * keep
    slower = np.stack([np.interp(target, arc, path[:, 0]), np.interp(target, arc, path[:, 1])], axis=-1)
    scores = [float(rng.uniform(9.0, 10.0)), float(10.0 - 2.0 * abs(drift)), float(3.0 + 10.0 * (keep - 0.5))]
    if rng.random() < 0.1:
        scores[2] = -1.0
    return [future, drifted, slower], scores


def synthetic_e2ed_frame(sample: WaypointSample, seed: int, with_future: bool = True, jpeg_quality: int = 95) -> bytes:
    """Serialize one synthetic sample as an `E2EDFrame`."""
    rng = np.random.default_rng([seed, 7])
    trajs, scores = rater_trajectories(sample, rng)
    calibrations = {
        name: {"intrinsic": cam.intrinsic, "extrinsic": cam.extrinsic, "width": cam.width, "height": cam.height}
        for name, cam in sample.cameras.items()
    }
    return build_e2ed_frame(
        sample.frame_name,
        {name: _jpeg(img, jpeg_quality) for name, img in sample.images.items()},
        sample.past_states,
        sample.intent,
        future_waypoints=sample.future_waypoints if with_future else None,
        calibrations=calibrations,
        preference_trajectories=trajs if with_future else None,
        preference_scores=scores if with_future else None,
        timestamp_micros=1_700_000_000_000_000 + seed * 250_000,
    )


def write_synthetic_e2ed(
    output_dir: str | os.PathLike,
    num_samples: int,
    seed: int = 0,
    split: str = "training",
    num_shards: int = 1,
    width: int = 192,
    height: int = 128,
    camera_names: tuple[str, ...] = ("FRONT", "FRONT_LEFT", "FRONT_RIGHT"),
    with_future: bool | None = None,
    obstacle_probability: float = 0.3,
    progress: bool = True,
) -> list[Path]:
    """Write `num_samples` synthetic scenes as `<split>.tfrecord-XXXXX-of-YYYYY` files; returns the paths.

    Scene i uses seed `seed * 1_000_003 + i`, like `generate_waypoint_dataset`, so the frames equal the
    in-memory synthetic dataset's (up to JPEG compression). `with_future` defaults to False for the
    `test` split (no future states nor rater trajectories there, as in the real test split).
    """
    from tqdm.auto import tqdm

    if with_future is None:
        with_future = split != "test"
    out = Path(output_dir)
    paths = [out / f"{split}.tfrecord-{k:05d}-of-{num_shards:05d}" for k in range(num_shards)]
    writers = [TFRecordWriter(p) for p in paths]
    try:
        for i in tqdm(range(num_samples), desc=f"writing {split} tfrecords", disable=not progress):
            scene_seed = seed * 1_000_003 + i
            sample = sample_waypoint_scene(
                scene_seed, width, height, tuple(camera_names), obstacle_probability=obstacle_probability
            )
            writers[i % num_shards].write(synthetic_e2ed_frame(sample, scene_seed, with_future))
    except BaseException:
        for w in writers:
            w.__exit__(RuntimeError, None, None)
        raise
    for w in writers:
        w.close()
    return paths


__all__ = ["rater_trajectories", "synthetic_e2ed_frame", "write_synthetic_e2ed"]
