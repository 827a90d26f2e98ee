"""Compute LeRobot `meta/stats.json` (and GeoVLA's `norm_stats.json`) for a LeRobot v2.1 / v3.0 dataset.

Usage:
    python scripts/compute_norm_stats.py --root /data/libero/libero_object
    python scripts/compute_norm_stats.py --root /data/libero --mixture libero_all --norm_stats_out norm_stats.json

With `--mixture`, state/action statistics are computed over the frames of every member (un-weighted) and
written as `norm_stats.json` for `GeoVLAForActionPrediction.set_norm_stats`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hf_vlmdrive.data.lerobot import LeRobotDataset, compute_stats, load_mixture, save_stats
from hf_vlmdrive.data.lerobot.stats import _vector_stats


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--root", required=True, help="a dataset directory, or the parent of a mixture's members")
    parser.add_argument("--mixture", default=None, help="'libero_all' or comma-separated sub-directories")
    parser.add_argument("--image_samples", type=int, default=256, help="frames sampled for camera statistics")
    parser.add_argument("--norm_stats_out", default=None, help="also write state/action stats here (norm_stats.json)")
    args = parser.parse_args(argv)
    if args.mixture:
        mixture = load_mixture(args.mixture, args.root, action_horizon=1, read_stats=False)
        stats = {"observation.state": _vector_stats(mixture.states), "action": _vector_stats(mixture.actions)}
    else:
        dataset = LeRobotDataset(args.root, action_horizon=1, read_stats=False)
        stats = compute_stats(dataset, image_samples=args.image_samples)
        save_stats(stats, Path(args.root) / "meta" / "stats.json")
        print(f"wrote {Path(args.root) / 'meta' / 'stats.json'} ({len(dataset)} frames, {dataset.num_episodes} episodes)")
    if args.norm_stats_out:
        keep = {k: stats[k] for k in ("observation.state", "action")}
        Path(args.norm_stats_out).write_text(json.dumps(keep, indent=2), encoding="utf-8")
        print(f"wrote {args.norm_stats_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
