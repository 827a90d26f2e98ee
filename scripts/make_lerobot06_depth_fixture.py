"""Write the LeRobot 0.6 depth fixture with lerobot's own API, and the items lerobot's reader returns for it.

Runs in a separate Python 3.12 venv with lerobot 0.6.1 (lerobot pins its own torch, so it is no dependency of
hf_vlmdrive):

    /root/.pyenv/versions/3.12.1/bin/python3.12 -m venv /tmp/lerobot06
    /tmp/lerobot06/bin/pip install 'lerobot[dataset]==0.6.1'
    HF_HUB_OFFLINE=1 /tmp/lerobot06/bin/python scripts/make_lerobot06_depth_fixture.py

It writes, under `tests/fixtures/lerobot06_depth/`:

- `dataset/`: a LeRobot v3.0 dataset written by `lerobot.datasets.LeRobotDataset.create` / `add_frame` /
  `save_episode` / `finalize`: two episodes (6 and 5 frames, two tasks) at 10 fps, an RGB camera
  `observation.images.rgb` (64x64, lerobot's default RGB encoder, AV1), a depth camera
  `observation.images.depth` (64x64x1, `info.is_depth_map: true`, lerobot's default depth encoder: 12-bit
  log quantisation in HEVC gray12le), `observation.state` (4), `action` (3), `observation.environment_state`
  (2), `next.reward` (1) and `next.done` (1);
- `lerobot_items.npz`: what lerobot's `LeRobotDataset` returns for a few items, key `"<item>/<feature>"`
  (depth in millimetres, lerobot's default `depth_output_unit`, and once in metres), the same items read
  with `delta_timestamps` (`"delta/<item>/<feature>"`), the depth written (`"written_depth_mm"`), and
  `"versions"` (a JSON string: python, lerobot, torch, av, numpy, the video backend).

The test `tests/test_lerobot_depth.py` reads the dataset with hf_vlmdrive's reader and compares.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "lerobot06_depth"
FPS = 10
SIZE = 64
LENGTHS = (6, 5)
TASKS = ("pick up the red block", "push the cup to the left")
ITEMS = (0, 1, 5, 6, 10)  # first / second / last frame of episode 0, first / last of episode 1
VIDEO_BACKEND = "pyav"  # lerobot decodes depth with PyAV whatever the backend; RGB too, for a fixed reference
DELTA_TIMESTAMPS = {
    "observation.images.rgb": [-0.2, 0.0],
    "observation.images.depth": [-0.1, 0.0],
    "observation.state": [-0.2, -0.1, 0.0],
    "action": [0.0, 0.1, 0.2, 0.3],
}


def _frames(episode: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB (N, H, W, 3) uint8 and depth (N, H, W, 1) uint16 millimetres: a sloped floor and a moving box."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.zeros((length, SIZE, SIZE, 3), np.uint8)
    depth = np.zeros((length, SIZE, SIZE, 1), np.uint16)
    for i in range(length):
        x = 8 + 7 * i + 3 * episode
        rgb[i] = (30 + 20 * i, 90 + 40 * episode, 160)
        rgb[i, 20:36, x : x + 12] = (240, 200, 40)
        floor = 400.0 + 40.0 * yy + 5.0 * xx + 30.0 * i  # 400 .. ~3300 mm
        floor[20:36, x : x + 12] = 250.0 + 10.0 * i  # the box, closer
        floor[0:2, 0:2] = 0.0  # invalid pixels (0 mm): lerobot clamps them to depth_min
        floor[-2:, -2:] = 12000.0  # beyond depth_max (10 m): clamped too
        depth[i, ..., 0] = np.rint(floor).astype(np.uint16)
    return rgb, depth


def _numpy(value):
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def main() -> int:
    import av
    import lerobot
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    root = OUT / "dataset"
    features = {
        "observation.images.rgb": {"dtype": "video", "shape": (SIZE, SIZE, 3), "names": ["height", "width", "channels"]},
        "observation.images.depth": {
            "dtype": "video", "shape": (SIZE, SIZE, 1), "names": ["height", "width", "channels"],
            "info": {"is_depth_map": True},
        },
        "observation.state": {"dtype": "float32", "shape": (4,), "names": [f"joint_{i}" for i in range(4)]},
        "observation.environment_state": {"dtype": "float32", "shape": (2,), "names": ["box_x", "box_y"]},
        "action": {"dtype": "float32", "shape": (3,), "names": ["dx", "dy", "grip"]},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
    }
    dataset = LeRobotDataset.create(
        repo_id="hf_vlmdrive/lerobot06_depth", fps=FPS, features=features, root=root, robot_type="toy",
        use_videos=True, video_backend=VIDEO_BACKEND,
    )
    rng = np.random.default_rng(0)
    written_depth = []
    for episode, length in enumerate(LENGTHS):
        rgb, depth = _frames(episode, length)
        written_depth.append(depth)
        for i in range(length):
            dataset.add_frame({
                "observation.images.rgb": rgb[i],
                "observation.images.depth": depth[i],
                "observation.state": rng.normal(size=4).astype(np.float32),
                "observation.environment_state": np.array([8 + 7 * i + 3 * episode, 28], np.float32),
                "action": rng.normal(size=3).astype(np.float32),
                "next.reward": np.array([float(i == length - 1)], np.float32),
                "next.done": np.array([i == length - 1]),
                "task": TASKS[episode],
            })
        dataset.save_episode()
    dataset.finalize()

    arrays: dict[str, np.ndarray] = {"written_depth_mm": np.concatenate(written_depth)}
    reader = LeRobotDataset("hf_vlmdrive/lerobot06_depth", root=root, video_backend=VIDEO_BACKEND)
    for i in ITEMS:
        for key, value in reader[i].items():
            if key == "task":
                arrays[f"{i}/task"] = np.array(value)
            else:
                arrays[f"{i}/{key}"] = _numpy(value)
    metres = LeRobotDataset("hf_vlmdrive/lerobot06_depth", root=root, video_backend=VIDEO_BACKEND,
                            depth_output_unit="m")
    arrays["m/0/observation.images.depth"] = _numpy(metres[0]["observation.images.depth"])
    delta = LeRobotDataset("hf_vlmdrive/lerobot06_depth", root=root, video_backend=VIDEO_BACKEND,
                           delta_timestamps=DELTA_TIMESTAMPS)
    for i in ITEMS:
        for key, value in delta[i].items():
            if key != "task":
                arrays[f"delta/{i}/{key}"] = _numpy(value)
    versions = {
        "python": platform.python_version(), "lerobot": lerobot.__version__, "torch": torch.__version__,
        "av": av.__version__, "numpy": np.__version__, "video_backend": VIDEO_BACKEND,
        "delta_timestamps": DELTA_TIMESTAMPS,
    }
    arrays["versions"] = np.array(json.dumps(versions))
    np.savez_compressed(OUT / "lerobot_items.npz", **arrays)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1024:.0f} KiB): {versions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
