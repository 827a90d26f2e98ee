"""Write procedural driving scenes in the CARLA / PDM-Lite / SimLingo on-disk layout.

```
<root>/Town12_Rep0_<n>/
    rgb/0000.jpg ...                 front camera (1024x512 in the real data; `width`/`height` here)
    rgb_left/, rgb_right/            only when those cameras are asked for (45 deg to each side)
    measurements/0000.json.gz ...    speed, target_point(_next), command, route (40 ego-frame points 1 m
                                     apart), ego_matrix (4x4 world pose), pos_global, theta, controls, hazards
    boxes/0000.json.gz ...           ego car + obstacles (ego frame)
    results.json.gz                  the route's leaderboard record (status, scores, infractions)
```

Frames are 4 Hz (0.25 s apart), as PDM-Lite saves them. Each route is one `DrivingWorld`, so the future
ego poses (from which readers compute waypoints) are exactly the motion the images show.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np

from ...errors import UserError
from .driving import (
    CAMERA_YAWS,
    EGO_LENGTH,
    INTENT_GO_LEFT,
    INTENT_GO_RIGHT,
    DrivingWorld,
    PinholeCamera,
)

FRAME_HZ = 4.0
# CARLA RoadOption values used by PDM-Lite's `command`.
COMMAND_LEFT, COMMAND_RIGHT, COMMAND_STRAIGHT, COMMAND_LANEFOLLOW = 1, 2, 3, 4
COMMAND_CHANGELANELEFT, COMMAND_CHANGELANERIGHT = 5, 6
CAMERA_DIRS = {"FRONT": "rgb", "FRONT_LEFT": "rgb_left", "FRONT_RIGHT": "rgb_right"}
TARGET_POINT_SPACING = 30.0  # metres between the sparse route's target points


def intent_to_command(intent: int) -> int:
    """Waymo intent -> CARLA command (1 LEFT, 2 RIGHT, 4 LANEFOLLOW)."""
    return {INTENT_GO_LEFT: COMMAND_LEFT, INTENT_GO_RIGHT: COMMAND_RIGHT}.get(int(intent), COMMAND_LANEFOLLOW)


def _dump_gz(path: Path, data) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(data, f)


def _measurement(world: DrivingWorld, t: float) -> dict:
    s0 = float(np.interp(t, world.times, world.ego_s))
    next_s = (math.floor(s0 / TARGET_POINT_SPACING) + 1) * TARGET_POINT_SPACING
    if next_s - s0 < 3.0:
        next_s += TARGET_POINT_SPACING
    tp, tp_next = (world.to_ego_frame(world.lane_point(np.array([s]), 0.0), t)[0]
                   for s in (next_s, next_s + TARGET_POINT_SPACING))
    ego = world.ego_matrix(t)
    speed = world.speed(t)
    accel = float(np.interp(t, world.times, world.ego_a))
    obstacle_gaps = [ob.s - s0 for ob in world.obstacles if ob.s > s0]
    hazard = bool(obstacle_gaps) and min(obstacle_gaps) < max(15.0, 2.5 * speed)
    command = intent_to_command(world.intent(t))
    return {
        "pos_global": ego[:2, 3].tolist(),
        "theta": float(math.atan2(ego[1, 0], ego[0, 0])),
        "speed": speed,
        "target_speed": float(world.speed(t + 1.0)),
        "speed_limit": world.speed_limit_at(s0) or 13.89,
        "target_point": tp.tolist(),
        "target_point_next": tp_next.tolist(),
        "command": command,
        "next_command": command,
        "route": world.route_ahead(t, count=40, spacing=1.0).tolist(),
        "ego_matrix": ego.tolist(),
        "steer": 0.0,
        "throttle": float(max(accel, 0.0) / 3.0),
        "brake": bool(accel < -0.5),
        "junction": False,
        "vehicle_hazard": bool(hazard),
        "light_hazard": False,
        "walker_hazard": False,
        "stop_sign_hazard": False,
    }


def _boxes(world: DrivingWorld, t: float) -> list[dict]:
    boxes = [{"class": "ego_car", "extent": [EGO_LENGTH / 2, 0.9, 0.75], "position": [0.0, 0.0, 0.0], "yaw": 0.0,
              "speed": world.speed(t), "id": 0}]
    s0 = float(np.interp(t, world.times, world.ego_s))
    for i, ob in enumerate(world.obstacles):
        if not -20.0 < ob.s - s0 < 100.0:
            continue
        pos = world.to_ego_frame(world.lane_point(np.array([ob.s]), ob.offset), t)[0]
        boxes.append({"class": "static", "extent": [ob.length / 2, ob.width / 2, ob.height / 2],
                      "position": [float(pos[0]), float(pos[1]), 0.0], "yaw": 0.0, "speed": 0.0, "id": i + 1})
    return boxes


def write_carla_route(
    route_dir: str | Path,
    seed: int,
    num_frames: int = 40,
    width: int = 1024,
    height: int = 512,
    camera_names: tuple[str, ...] = ("FRONT",),
    horizontal_fov_deg: float = 110.0,
    score_composed: float = 100.0,
    obstacle_probability: float = 0.3,
    speed_profile: str = "random",
) -> Path:
    """Write one route folder (frames at 4 Hz) drawn from `DrivingWorld.random(seed)`; returns its path.
    `speed_profile="zones"` draws speed-limit zones that the camera shows (see `DrivingWorld.random`)."""
    route_dir = Path(route_dir)
    unknown = [c for c in camera_names if c not in CAMERA_DIRS]
    if unknown:
        raise UserError(f"camera_names must be among {sorted(CAMERA_DIRS)}, got {unknown}")
    rng = np.random.default_rng(seed)
    duration = (num_frames - 1) / FRAME_HZ
    world = DrivingWorld.random(rng, t_start=-1.0, t_end=duration + 1.0, obstacle_probability=obstacle_probability,
                                speed_profile=speed_profile)
    cameras = {
        name: PinholeCamera(width, height, horizontal_fov_deg, mount_x=-1.5, mount_z=2.0, yaw_deg=CAMERA_YAWS[name],
                            name=name)
        for name in camera_names
    }
    for sub in [CAMERA_DIRS[c] for c in camera_names] + ["measurements", "boxes"]:
        (route_dir / sub).mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        t = i / FRAME_HZ
        for name, camera in cameras.items():
            world.render(t, camera).save(route_dir / CAMERA_DIRS[name] / f"{i:04d}.jpg", quality=90)
        _dump_gz(route_dir / "measurements" / f"{i:04d}.json.gz", _measurement(world, t))
        _dump_gz(route_dir / "boxes" / f"{i:04d}.json.gz", _boxes(world, t))
    route_length = float(np.interp(duration, world.times, world.ego_s) - world.ego_s[np.searchsorted(world.times, 0.0)])
    completed = score_composed >= 100.0
    _dump_gz(route_dir / "results.json.gz", {
        "index": seed,
        "route_id": route_dir.name,
        "status": "Completed" if completed else "Failed - Agent got blocked",
        "scores": {"score_route": 100.0 if completed else score_composed, "score_penalty": 1.0,
                   "score_composed": float(score_composed)},
        "infractions": {k: [] for k in ("collisions_layout", "collisions_pedestrian", "collisions_vehicle",
                                        "red_light", "stop_infraction", "outside_route_lanes", "min_speed_infractions",
                                        "yield_emergency_vehicle_infractions", "scenario_timeouts", "route_dev",
                                        "vehicle_blocked", "route_timeout")},
        "num_infractions": 0 if completed else 1,
        "meta": {"route_length": route_length, "duration_game": duration, "duration_system": 0.0},
    })
    return route_dir


def write_carla_dataset(
    root: str | Path,
    num_routes: int,
    seed: int = 0,
    frames_per_route: int = 40,
    width: int = 1024,
    height: int = 512,
    camera_names: tuple[str, ...] = ("FRONT",),
    town: str = "Town12",
    failed_routes: int = 0,
    progress: bool = True,
    speed_profile: str = "random",
) -> list[Path]:
    """Write `num_routes` routes `<town>_Rep0_<n>/` under `root` (plus `failed_routes` more whose
    results.json.gz has a score below 100, which readers filter out by default). Route n uses seed
    `seed * 1_000_003 + n`, so datasets with different seeds do not share scenes. `speed_profile`: see
    `write_carla_route`."""
    from tqdm.auto import tqdm

    root = Path(root)
    paths = []
    total = num_routes + failed_routes
    for n in tqdm(range(total), desc="CARLA routes", disable=not progress):
        score = 100.0 if n < num_routes else 42.0
        paths.append(write_carla_route(root / f"{town}_Rep0_{n}", seed * 1_000_003 + n, frames_per_route, width,
                                       height, camera_names, score_composed=score, speed_profile=speed_profile))
    return paths


__all__ = [
    "CAMERA_DIRS",
    "FRAME_HZ",
    "intent_to_command",
    "write_carla_dataset",
    "write_carla_route",
]
