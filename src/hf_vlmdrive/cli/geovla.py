"""`hf-vlmdrive train geovla` and `hf-vlmdrive data lerobot-stats`: GeoVLA training and LeRobot statistics."""

from __future__ import annotations

import json

from ..arguments import ArgumentParser


def _train(argv: list[str]) -> int:
    from ..trainers.geovla_recipe import main

    return main(argv)


def _stats(argv: list[str]) -> int:
    from ..data.lerobot import LeRobotDataset, compute_stats, save_stats

    parser = ArgumentParser(prog="hf-vlmdrive data lerobot-stats",
                                     description="Compute meta/stats.json of a LeRobot v2.1 / v3.0 dataset.")
    parser.add_argument("--root", required=True, help="dataset directory (with meta/info.json)")
    parser.add_argument("--output", default=None, help="where to write (default: <root>/meta/stats.json)")
    parser.add_argument("--image_samples", type=int, default=256, help="frames sampled for camera statistics")
    args = parser.parse_args(argv)
    dataset = LeRobotDataset(args.root, action_horizon=1, read_stats=False)
    stats = compute_stats(dataset, image_samples=args.image_samples)
    out = args.output or f"{args.root}/meta/stats.json"
    save_stats(stats, out)
    summary = {k: {"mean": v["mean"], "std": v["std"]} for k, v in stats.items() if k in ("observation.state", "action")}
    print(json.dumps({"written": out, "frames": len(dataset), "episodes": dataset.num_episodes, **summary}))
    return 0


def register(registry) -> None:
    """Add the GeoVLA commands."""
    registry.add(("train", "geovla"), _train, "train GeoVLA on LeRobot data (YAML --config + overrides)")
    registry.add(("data", "lerobot-stats"), _stats, "compute meta/stats.json of a LeRobot dataset")


__all__ = ["register"]
