"""Procedural driving scenes whose future trajectory is visible in the camera image.

A `DrivingWorld` is one road (a centre line with piecewise-constant curvature), an ego vehicle that
follows its lane with a speed profile, and obstacles. It is continuous in time, so the same world gives
a single WOD-E2E-style sample (16 past states, 20 future waypoints at 4 Hz, intent, a front image) or a
CARLA-style route (frames at 4 Hz with world poses). What a model must learn from pixels:

- the road ahead bends (a curve that starts ahead of the ego is visible only in the image; the past
  states show the curvature already driven, not the one to come);
- an obstacle in the ego lane (a red box) makes the ego brake to a stop before it;
- a speed-limit-like cue: none by default (`speed_profile="random"`: speed changes without an obstacle are
  mild and random, i.e. noise). `speed_profile="zones"` makes the speed learnable from the image: the road
  is split into speed zones whose asphalt is tinted by their limit (`SPEED_ZONE_LIMITS`: red 5 m/s, grey
  9 m/s, blue 13 m/s), and the ego tracks the current zone's limit, braking ahead of a slower zone (and of
  an obstacle) so that it enters at the new limit, accelerating once inside a faster one.

Frames: ego frame has +x forward, +y left, +z up (Waymo convention); world frame is arbitrary. The
camera frame follows Waymo's camera convention (x forward along the optical axis, y left, z up), and
the image is formed by u = c_u - f_u * y / x, v = c_v - f_v * z / x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from ...errors import UserError

# Waymo intent enum (E2EDFrame.intent).
INTENT_UNKNOWN, INTENT_GO_STRAIGHT, INTENT_GO_LEFT, INTENT_GO_RIGHT = 0, 1, 2, 3
INTENT_NAMES = {0: "UNKNOWN", 1: "GO_STRAIGHT", 2: "GO_LEFT", 3: "GO_RIGHT"}

LANE_WIDTH = 3.5
EGO_LENGTH = 4.5
# speed_profile="zones": limit (m/s) -> asphalt colour of the zone.
SPEED_ZONE_LIMITS = {5.0: (165, 70, 60), 9.0: (95, 95, 100), 13.0: (55, 70, 140)}
SPEED_PROFILES = ("random", "zones")
ZONE_ACCEL, ZONE_DECEL, ZONE_PLAN_DECEL, ZONE_GAIN = 1.5, 3.0, 1.5, 1.0  # m/s^2, m/s^2, m/s^2, 1/s


@dataclass
class PinholeCamera:
    """A front camera mounted on the ego; intrinsics as Waymo's [f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3]."""

    width: int = 192
    height: int = 128
    horizontal_fov_deg: float = 90.0
    mount_x: float = 1.5  # metres ahead of the ego origin
    mount_z: float = 1.6  # metres above the ground
    yaw_deg: float = 0.0  # optical axis, counter-clockwise from the ego's +x (left cameras positive)
    name: str = "FRONT"

    @property
    def focal(self) -> float:
        return 0.5 * self.width / math.tan(math.radians(self.horizontal_fov_deg) / 2)

    @property
    def intrinsic(self) -> list[float]:
        """[f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3] (no distortion)."""
        return [self.focal, self.focal, self.width / 2, self.height / 2, 0.0, 0.0, 0.0, 0.0, 0.0]

    @property
    def extrinsic(self) -> np.ndarray:
        """4x4 camera-to-ego transform (row-major), camera axes x forward, y left, z up."""
        pose = np.eye(4)
        pose[:2, :2] = _rot(math.radians(self.yaw_deg))
        pose[0, 3], pose[2, 3] = self.mount_x, self.mount_z
        return pose

    def project(self, points_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ego-frame points (M, 3) -> pixel coordinates (M, 2) and a mask of points in front (depth > 0.5 m)."""
        cam = points_ego - np.array([self.mount_x, 0.0, self.mount_z])  # (M, 3)
        if self.yaw_deg:
            cam = cam.copy()
            cam[:, :2] = cam[:, :2] @ _rot(math.radians(self.yaw_deg))  # into the camera's axes
        depth = cam[:, 0]
        valid = depth > 0.5
        safe = np.where(valid, depth, 1.0)
        f = self.focal
        u = self.width / 2 - f * cam[:, 1] / safe
        v = self.height / 2 - f * cam[:, 2] / safe
        return np.stack([u, v], axis=-1), valid


@dataclass
class Obstacle:
    """A box standing in a lane at arc length `s` (metres along the road) and lateral `offset`."""

    s: float
    offset: float
    width: float = 1.8
    height: float = 1.5
    length: float = 4.0
    color: tuple[int, int, int] = (200, 30, 30)


@dataclass
class DrivingWorld:
    """A road, the ego's motion along it over time, and obstacles. See the module docstring."""

    road_s: np.ndarray  # (K,) arc length samples of the centre line of the ego lane
    road_xy: np.ndarray  # (K, 2) world positions
    road_yaw: np.ndarray  # (K,) heading
    times: np.ndarray  # (M,) time grid
    ego_s: np.ndarray  # (M,) arc length of the ego at each time
    ego_v: np.ndarray  # (M,) speed
    ego_a: np.ndarray  # (M,) tangential acceleration
    lateral_offset: float = 0.0
    obstacles: list[Obstacle] = field(default_factory=list)
    trees: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (n, 3): s, offset, size
    zones: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (n, 2): start s, limit (m/s); sorted
    sky: tuple[int, int, int] = (150, 190, 235)
    grass: tuple[int, int, int] = (70, 130, 60)
    asphalt: tuple[int, int, int] = (95, 95, 100)

    # ------------------------------------------------------------------ sampling
    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        t_start: float = -4.0,
        t_end: float = 5.0,
        obstacle_probability: float = 0.3,
        speed_profile: str = "random",
    ) -> DrivingWorld:
        """Draw a random world covering times [t_start, t_end] (seconds).

        `speed_profile`: "random" (default: constant random acceleration, a stop before an obstacle) or
        "zones" (speed set by tinted speed-limit zones and obstacles, see the module docstring).
        """
        if speed_profile not in SPEED_PROFILES:
            raise UserError(f"speed_profile must be one of {list(SPEED_PROFILES)}, got {speed_profile!r}")
        dt = 0.05
        times = np.arange(t_start, t_end + 1e-9, dt)
        if speed_profile == "zones":
            return cls._random_zones(rng, times, dt, obstacle_probability)
        v_now = rng.uniform(2.0, 14.0)
        a_past = rng.uniform(-1.0, 1.0)
        a_future = rng.uniform(-0.6, 0.8)
        speed = np.where(times <= 0, v_now + a_past * times, v_now + a_future * times)
        speed = np.clip(speed, 0.0, 22.0)
        obstacles: list[Obstacle] = []
        stop_s = None
        if rng.random() < obstacle_probability:
            # Obstacle ahead in the ego lane: brake at a constant rate to stop 6 m before it.
            gap = rng.uniform(max(8.0, 0.8 * v_now * 2.0), max(12.0, v_now * 4.5))
            decel = v_now**2 / (2 * max(gap - 6.0, 1.0))
            future = np.clip(v_now - decel * np.clip(times, 0, None), 0.0, None)
            speed = np.where(times <= 0, speed, future)
            stop_s = gap
        accel = np.gradient(speed, dt)
        # Arc length with s(0) = 0.
        s = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * dt)])
        s -= np.interp(0.0, times, s)
        if stop_s is not None:
            obstacles.append(Obstacle(s=stop_s + EGO_LENGTH / 2 + 2.0, offset=0.0))
        return cls._with_road(rng, times, s, speed, accel, obstacles)

    @classmethod
    def _random_zones(cls, rng: np.random.Generator, times: np.ndarray, dt: float,
                      obstacle_probability: float) -> DrivingWorld:
        """speed_profile="zones": integrate the ego's speed through tinted speed-limit zones (arc length
        measured from the ego at `times[0]`, shifted to s(0) = 0 at the end)."""
        limits = np.array(sorted(SPEED_ZONE_LIMITS))
        reach = 22.0 * (times[-1] - times[0]) + 130.0  # farthest arc length the ego or its camera can reach
        starts, zone_limits, edge = [-200.0], [float(rng.choice(limits))], float(rng.uniform(30.0, 60.0))
        while edge < reach:  # every boundary changes the limit
            starts.append(edge)
            zone_limits.append(float(rng.choice(limits[limits != zone_limits[-1]])))
            edge += float(rng.uniform(20.0, 45.0))
        zones = np.stack([starts, zone_limits], axis=-1)  # (n, 2)
        v = float(np.clip(zone_limits[0] + rng.uniform(-3.0, 3.0), 1.0, 14.0))
        stop_s = None
        if rng.random() < obstacle_probability:  # far enough to stop at the planned deceleration
            stop_s = v**2 / (2 * ZONE_PLAN_DECEL) + float(rng.uniform(10.0, 60.0))
        s_now, speed, arc = 0.0, np.empty(len(times)), np.empty(len(times))
        for i in range(len(times)):
            speed[i], arc[i] = v, s_now
            k = int(np.searchsorted(zones[:, 0], s_now, side="right")) - 1
            a = ZONE_GAIN * (zones[k, 1] - v)  # track the current zone's limit
            ahead = zones[k + 1:]
            targets = [(start - s_now, limit) for start, limit in ahead[ahead[:, 0] < s_now + 80.0]]
            if stop_s is not None:
                targets.append((stop_s - s_now, 0.0))
            for dist, limit in targets:
                # Once the constant deceleration that reaches `limit` exactly at `dist` is ZONE_PLAN_DECEL, follow it.
                need = (limit**2 - v**2) / (2 * max(dist, 0.05))
                if limit < v and need <= -ZONE_PLAN_DECEL:
                    a = min(a, need)
            if stop_s is not None and stop_s - s_now < 1.0 and v < 0.5:
                a = -ZONE_DECEL  # stopped before the obstacle: stay
            a = float(np.clip(a, -ZONE_DECEL, ZONE_ACCEL))
            v_next = max(v + a * dt, 0.0)
            s_now += 0.5 * (v + v_next) * dt
            v = v_next
        shift = float(np.interp(0.0, times, arc))
        obstacles = [] if stop_s is None else [Obstacle(s=stop_s - shift + EGO_LENGTH / 2 + 2.0, offset=0.0)]
        zones[:, 0] -= shift
        return cls._with_road(rng, times, arc - shift, speed, np.gradient(speed, dt), obstacles, zones)

    @classmethod
    def _with_road(cls, rng: np.random.Generator, times: np.ndarray, s: np.ndarray, speed: np.ndarray,
                   accel: np.ndarray, obstacles: list[Obstacle], zones: np.ndarray | None = None) -> DrivingWorld:
        """Draw the road (and trees, colours) around the ego's arc-length profile `s` over `times`."""
        # Road: piecewise-constant curvature over arc length, covering everything the camera can see.
        s_lo, s_hi = s[0] - 20.0, s[-1] + 120.0
        road_s = np.arange(s_lo, s_hi, 0.5)
        curvature = np.zeros_like(road_s)
        edge = s_lo
        # A curve may start at any point: before the present (visible in the past states) or ahead.
        while edge < s_hi:
            length = rng.uniform(15.0, 70.0)
            kind = rng.random()
            k = 0.0 if kind < 0.4 else rng.uniform(0.01, 0.04) * (1 if kind < 0.7 else -1)
            curvature[(road_s >= edge) & (road_s < edge + length)] = k
            edge += length
        yaw = np.concatenate([[0.0], np.cumsum(0.5 * (curvature[1:] + curvature[:-1]) * 0.5)])
        xy = np.zeros((len(road_s), 2))
        xy[1:, 0] = np.cumsum(0.5 * (np.cos(yaw[1:]) + np.cos(yaw[:-1])) * 0.5)
        xy[1:, 1] = np.cumsum(0.5 * (np.sin(yaw[1:]) + np.sin(yaw[:-1])) * 0.5)
        # Put the road's s = 0 point at the world origin with an arbitrary world heading.
        yaw0 = np.interp(0.0, road_s, yaw)
        xy0 = np.array([np.interp(0.0, road_s, xy[:, 0]), np.interp(0.0, road_s, xy[:, 1])])
        heading = rng.uniform(-math.pi, math.pi)
        rot = _rot(heading - yaw0)
        xy = (xy - xy0) @ rot.T
        yaw = yaw - yaw0 + heading

        n_trees = int(rng.integers(4, 14))
        trees = np.stack(
            [
                rng.uniform(s[0], s_hi, n_trees),
                rng.choice([-1.0, 1.0], n_trees) * rng.uniform(LANE_WIDTH * 1.5 + 2, 20.0, n_trees),
                rng.uniform(2.0, 6.0, n_trees),
            ],
            axis=-1,
        )
        jitter = rng.uniform(0.85, 1.15)
        return cls(
            road_s=road_s,
            road_xy=xy,
            road_yaw=yaw,
            times=times,
            ego_s=s,
            ego_v=speed,
            ego_a=accel,
            lateral_offset=float(rng.uniform(-0.3, 0.3)),
            obstacles=obstacles,
            trees=trees,
            sky=_tint((150, 190, 235), jitter),
            grass=_tint((70, 130, 60), jitter),
            asphalt=_tint((95, 95, 100), jitter),
            zones=np.zeros((0, 2)) if zones is None else zones,
        )

    # ------------------------------------------------------------------ geometry
    def _road_at(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(s, dtype=np.float64)
        x = np.interp(s, self.road_s, self.road_xy[:, 0])
        y = np.interp(s, self.road_s, self.road_xy[:, 1])
        return np.stack([x, y], axis=-1), np.interp(s, self.road_s, self.road_yaw)

    def lane_point(self, s, offset: float | np.ndarray = 0.0) -> np.ndarray:
        """World position at arc length `s`, `offset` metres to the left of the ego lane's centre."""
        xy, yaw = self._road_at(s)
        normal = np.stack([-np.sin(yaw), np.cos(yaw)], axis=-1)
        return xy + np.asarray(offset)[..., None] * normal

    def curvature_at(self, s) -> np.ndarray:
        """Road curvature (1/m) at arc length `s`."""
        return np.gradient(self.road_yaw, self.road_s)[np.clip(np.searchsorted(self.road_s, s), 0, len(self.road_s) - 1)]

    def ego_pose(self, t) -> tuple[np.ndarray, np.ndarray]:
        """World position (.., 2) and heading (..) of the ego at time(s) `t`."""
        s = np.interp(t, self.times, self.ego_s)
        pos = self.lane_point(s, self.lateral_offset)
        _, yaw = self._road_at(s)
        return pos, yaw

    def ego_matrix(self, t: float) -> np.ndarray:
        """4x4 world pose of the ego at time `t` (as CARLA's `ego_matrix`)."""
        pos, yaw = self.ego_pose(t)
        mat = np.eye(4)
        mat[:2, :2] = _rot(float(yaw))
        mat[:2, 3] = pos
        return mat

    def to_ego_frame(self, points_world: np.ndarray, t0: float) -> np.ndarray:
        """World points (.., 2) -> the ego frame at time t0."""
        pos, yaw = self.ego_pose(t0)
        return (points_world - pos) @ _rot(float(yaw))

    def ego_states(self, times: np.ndarray, t0: float) -> np.ndarray:
        """Ego states (n, 6) = pos x,y; vel x,y; accel x,y at `times`, in the ego frame at time t0."""
        times = np.asarray(times, dtype=np.float64)
        pos, yaw = self.ego_pose(times)
        _, yaw0 = self.ego_pose(t0)
        rel = yaw - yaw0
        v = np.interp(times, self.times, self.ego_v)
        a = np.interp(times, self.times, self.ego_a)
        kappa = self.curvature_at(np.interp(times, self.times, self.ego_s))
        tangent = np.stack([np.cos(rel), np.sin(rel)], axis=-1)
        normal = np.stack([-np.sin(rel), np.cos(rel)], axis=-1)
        vel = v[:, None] * tangent
        acc = a[:, None] * tangent + (v**2 * kappa)[:, None] * normal
        return np.concatenate([self.to_ego_frame(pos, t0), vel, acc], axis=-1)

    def past_states(self, t0: float = 0.0, num: int = 16, hz: float = 4.0) -> np.ndarray:
        """(num, 6) states over (t0 - num/hz, t0], oldest first; the last one is the present."""
        times = t0 - np.arange(num - 1, -1, -1) / hz
        return self.ego_states(times, t0)

    def future_waypoints(self, t0: float = 0.0, num: int = 20, hz: float = 4.0) -> np.ndarray:
        """(num, 2) ego-frame positions over (t0, t0 + num/hz]."""
        times = t0 + np.arange(1, num + 1) / hz
        pos, _ = self.ego_pose(times)
        return self.to_ego_frame(pos, t0)

    def intent(self, t0: float = 0.0, horizon_s: float = 5.0, threshold_rad: float = 0.25) -> int:
        """Waymo intent from the heading change over the next `horizon_s` along the road ahead.

        The route (what a navigation system would know) is used rather than the driven distance, so a
        car that brakes before a junction still "intends" the turn.
        """
        s0 = float(np.interp(t0, self.times, self.ego_s))
        v0 = float(np.interp(t0, self.times, self.ego_v))
        ahead = s0 + max(v0 * horizon_s, 15.0)
        change = float(np.interp(ahead, self.road_s, self.road_yaw) - np.interp(s0, self.road_s, self.road_yaw))
        if change > threshold_rad:
            return INTENT_GO_LEFT
        if change < -threshold_rad:
            return INTENT_GO_RIGHT
        return INTENT_GO_STRAIGHT

    def route_ahead(self, t0: float = 0.0, count: int = 40, spacing: float = 1.0) -> np.ndarray:
        """(count, 2) ego-frame points on the lane centre ahead of the ego, `spacing` metres apart."""
        s0 = float(np.interp(t0, self.times, self.ego_s))
        pts = self.lane_point(s0 + spacing * np.arange(count), 0.0)
        return self.to_ego_frame(pts, t0)

    def speed(self, t0: float = 0.0) -> float:
        """Ego speed (m/s) at time t0."""
        return float(np.interp(t0, self.times, self.ego_v))

    def speed_limit_at(self, s: float) -> float | None:
        """The speed-limit zone's limit (m/s) at arc length `s`; None without zones."""
        if not len(self.zones):
            return None
        k = max(int(np.searchsorted(self.zones[:, 0], s, side="right")) - 1, 0)
        return float(self.zones[k, 1])

    # ------------------------------------------------------------------ rendering
    def render(self, t0: float = 0.0, camera: PinholeCamera | None = None, supersample: int = 2) -> Image.Image:
        """Render the front camera at time t0 as an RGB PIL image."""
        camera = camera or PinholeCamera()
        big = PinholeCamera(
            camera.width * supersample,
            camera.height * supersample,
            camera.horizontal_fov_deg,
            camera.mount_x,
            camera.mount_z,
            camera.yaw_deg,
        )
        img = Image.new("RGB", (big.width, big.height), self.sky)
        draw = ImageDraw.Draw(img)
        horizon = big.height / 2
        draw.rectangle([0, horizon, big.width, big.height], fill=self.grass)

        s0 = float(np.interp(t0, self.times, self.ego_s))
        s_line = s0 + np.arange(0.0, 110.0, 1.0)
        s_line = s_line[s_line < self.road_s[-1]]

        def ground_at(arc: np.ndarray, offset: float) -> np.ndarray:
            pts = self.to_ego_frame(self.lane_point(arc, offset), t0)
            return np.concatenate([pts, np.zeros((len(pts), 1))], axis=-1)

        def ground(offset: float) -> np.ndarray:
            return ground_at(s_line, offset)

        def polyline(points: np.ndarray) -> list[tuple[float, float]]:
            uv, ok = big.project(points)
            return [tuple(p) for p in uv[ok]]

        left_edge = polyline(ground(1.5 * LANE_WIDTH))  # oncoming lane on the left
        right_edge = polyline(ground(-0.5 * LANE_WIDTH))
        if len(left_edge) >= 2 and len(right_edge) >= 2:
            draw.polygon(left_edge + right_edge[::-1], fill=self.asphalt)
        if len(self.zones) and len(s_line) >= 2:  # speed zones: each stretch of road tinted by its limit
            jitter = self.asphalt[0] / 95.0
            cuts = self.zones[(self.zones[:, 0] > s_line[0]) & (self.zones[:, 0] < s_line[-1]), 0]
            bounds = np.concatenate([[s_line[0]], cuts, [s_line[-1]]])
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                piece = np.concatenate([[lo], s_line[(s_line > lo) & (s_line < hi)], [hi]])
                colour = _tint(SPEED_ZONE_LIMITS[self.speed_limit_at(0.5 * (lo + hi))], jitter)
                left, right = (polyline(ground_at(piece, off)) for off in (1.5 * LANE_WIDTH, -0.5 * LANE_WIDTH))
                if len(left) >= 2 and len(right) >= 2:
                    draw.polygon(left + right[::-1], fill=colour)
        line_w = max(1, supersample)
        for offset, dashed in ((0.5 * LANE_WIDTH, True), (1.5 * LANE_WIDTH - 0.2, False), (-0.5 * LANE_WIDTH + 0.2, False)):
            pts = polyline(ground(offset))
            for i in range(len(pts) - 1):
                if dashed and (i // 3) % 2:
                    continue
                draw.line([pts[i], pts[i + 1]], fill=(235, 235, 235), width=line_w)

        # Upright objects, far to near so that near ones are drawn on top.
        items = [(ob.s, ob.offset, ob.width, ob.height, ob.color) for ob in self.obstacles]
        items += [(tr[0], tr[1], tr[2] * 0.4, tr[2], (30, 90, 35)) for tr in self.trees]
        items.sort(key=lambda it: -(it[0] - s0))
        for s, offset, width, height, color in items:
            if not 1.0 < s - s0 < 110.0:
                continue
            base = self.to_ego_frame(self.lane_point(np.array([s]), offset), t0)[0]
            _, yaw = self._road_at(s)
            _, ego_yaw = self.ego_pose(t0)
            lateral = np.array([-math.sin(yaw - ego_yaw), math.cos(yaw - ego_yaw)]) * width / 2
            corners = np.array(
                [
                    [*(base + lateral), 0.0],
                    [*(base - lateral), 0.0],
                    [*(base - lateral), height],
                    [*(base + lateral), height],
                ]
            )
            uv, ok = big.project(corners)
            if ok.all():
                draw.polygon([tuple(p) for p in uv], fill=color)
        if supersample > 1:
            img = img.resize((camera.width, camera.height), Image.BILINEAR)
        return img


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _tint(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * factor))) for c in color)


@dataclass
class WaypointSample:
    """One WOD-E2E-style sample drawn from a `DrivingWorld` at t = 0."""

    frame_name: str
    images: dict[str, Image.Image]  # camera name -> image
    cameras: dict[str, PinholeCamera]
    past_states: np.ndarray  # (16, 6)
    future_waypoints: np.ndarray  # (20, 2)
    intent: int
    world: DrivingWorld

    def to_example(self) -> dict:
        """A row for `datasets.Dataset` (first camera as `image`)."""
        first = next(iter(self.images))
        return {
            "frame_name": self.frame_name,
            "image": self.images[first],
            "past_states": self.past_states.astype(np.float32),
            "future_waypoints": self.future_waypoints.astype(np.float32),
            "intent": int(self.intent),
        }


CAMERA_YAWS = {"FRONT": 0.0, "FRONT_LEFT": 45.0, "FRONT_RIGHT": -45.0}


def sample_waypoint_scene(
    seed: int,
    width: int = 192,
    height: int = 128,
    camera_names: tuple[str, ...] = ("FRONT",),
    obstacle_probability: float = 0.3,
) -> WaypointSample:
    """Draw one world from `seed` and return the t = 0 sample (images for the named cameras)."""
    if any(name not in CAMERA_YAWS for name in camera_names):
        raise UserError(f"camera_names must be among {sorted(CAMERA_YAWS)}, got {list(camera_names)}")
    rng = np.random.default_rng(seed)
    world = DrivingWorld.random(rng, obstacle_probability=obstacle_probability)
    cameras = {name: PinholeCamera(width, height, yaw_deg=CAMERA_YAWS[name], name=name) for name in camera_names}
    images = {name: world.render(0.0, camera) for name, camera in cameras.items()}
    return WaypointSample(
        frame_name=f"synthetic-{seed:08d}",
        images=images,
        cameras=cameras,
        past_states=world.past_states(0.0),
        future_waypoints=world.future_waypoints(0.0),
        intent=world.intent(0.0),
        world=world,
    )


def generate_waypoint_dataset(
    num_samples: int,
    seed: int = 0,
    width: int = 192,
    height: int = 128,
    camera_names: tuple[str, ...] = ("FRONT",),
    obstacle_probability: float = 0.3,
    progress: bool = True,
):
    """A `datasets.Dataset` of synthetic waypoint samples.

    Columns: `frame_name` (str), `image` (Image: the first camera), `images` (list of Images, one per
    camera, only when several cameras are asked for), `past_states` (16x6 float32),
    `future_waypoints` (20x2 float32), `intent` (int, Waymo enum). Sample i uses seed `seed * 1_000_003 + i`,
    so two datasets with different seeds do not share scenes.
    """
    import datasets
    from tqdm.auto import tqdm

    features = {
        "frame_name": datasets.Value("string"),
        "image": datasets.Image(),
        "past_states": datasets.Array2D((16, 6), "float32"),
        "future_waypoints": datasets.Array2D((20, 2), "float32"),
        "intent": datasets.Value("int64"),
    }
    multi = len(camera_names) > 1
    if multi:
        features["images"] = datasets.Sequence(datasets.Image())

    def rows():
        for i in tqdm(range(num_samples), desc="synthetic scenes", disable=not progress):
            sample = sample_waypoint_scene(
                seed * 1_000_003 + i, width, height, camera_names, obstacle_probability=obstacle_probability
            )
            row = sample.to_example()
            if multi:
                row["images"] = [sample.images[name] for name in camera_names]
            yield row

    return datasets.Dataset.from_generator(rows, features=datasets.Features(features), cache_dir=None)


__all__ = [
    "DrivingWorld",
    "Obstacle",
    "PinholeCamera",
    "WaypointSample",
    "CAMERA_YAWS",
    "INTENT_NAMES",
    "SPEED_PROFILES",
    "SPEED_ZONE_LIMITS",
    "generate_waypoint_dataset",
    "sample_waypoint_scene",
]
