"""LeRobot reader throughput vs decoding the same mp4 frames directly with PyAV (the reader's overhead).

Writes a synthetic LeRobot v3.0 dataset (mp4, H.264 when available), then measures in the same run:
  baseline   PyAV: open each mp4 and decode every frame to RGB (the codec's own cost);
  reader     LeRobotDataset[i] for every frame in order (frames + state + action chunk + language);
  shuffled   LeRobotDataset[i] in random order (seek per access; what a shuffled DataLoader does).
Prints frames/s and the ratio reader / baseline (1.0 = no overhead over the codec).

    PYTHONPATH=src python benchmarks/bench_lerobot_reader.py                  # ~20 s
    PYTHONPATH=src python benchmarks/bench_lerobot_reader.py --episodes 20 --length 100 --image_size 224
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from hf_vlmdrive.data.lerobot import LeRobotDataset, make_synthetic_libero


def decode_all(paths: list[Path]) -> int:
    n = 0
    for path in paths:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frame.to_ndarray(format="rgb24")
                n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--shuffled_samples", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_libero(Path(tmp) / "ds", num_episodes=args.episodes, episode_length=args.length,
                                     image_size=args.image_size, image_storage="video", episodes_per_file=4)
        ds = LeRobotDataset(root, action_horizon=8)
        cams = ds.camera_keys
        videos = sorted(root.glob("videos/**/*.mp4"))
        print(f"dataset: {len(ds)} frames x {len(cams)} cameras, {len(videos)} mp4 files, "
              f"codec {ds.features[cams[0]]['info']['video.codec']}, {args.image_size}px")

        decode_all(videos)  # warm-up (library loading, page cache), untimed
        base = 0.0
        for _ in range(2):  # best of two
            t = time.perf_counter()
            decoded = decode_all(videos)
            base = max(base, decoded / (time.perf_counter() - t))

        t = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        reader = len(ds) * len(cams) / (time.perf_counter() - t)

        ds2 = LeRobotDataset(root, action_horizon=8)
        order = np.random.default_rng(0).permutation(len(ds2))[: args.shuffled_samples]
        t = time.perf_counter()
        for i in order:
            ds2[int(i)]
        shuffled = len(order) * len(cams) / (time.perf_counter() - t)

    print(f"PyAV decode (baseline):   {base:8.1f} frames/s")
    print(f"reader, sequential:       {reader:8.1f} frames/s   ratio reader/baseline = {reader / base:.2f}")
    print(f"reader, shuffled access:  {shuffled:8.1f} frames/s   ratio shuffled/baseline = {shuffled / base:.2f}")


if __name__ == "__main__":
    main()
