"""`hf-vlmdrive serve`: serve a trained GeoVLA checkpoint to openpi / envelope websocket clients.

    hf-vlmdrive serve --model runs/geovla/checkpoint-80000 --host 127.0.0.1 --port 10093 [--api-key KEY]

Logs where it listens; never reads stdin; SIGINT / SIGTERM stop it cleanly (exit code 0). See docs/serving.md.
"""

from __future__ import annotations

import argparse
import logging
import os

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The `serve` argument parser."""
    p = argparse.ArgumentParser(prog="hf-vlmdrive serve", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory (config.json, weights, norm_stats.json, processor)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind; 0.0.0.0 exposes the model to the network (use --api-key then)")
    p.add_argument("--port", type=int, default=10093, help="TCP port (0: pick a free one, logged)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Api-Key KEY' (default: $HF_VLMDRIVE_API_KEY when set)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="parameter dtype")
    p.add_argument("--num-steps", type=int, default=None, help="Euler steps (default: the checkpoint's)")
    p.add_argument("--key-map", default=None,
                   help='JSON observation layout, e.g. \'{"images": ["cam0", "cam1"], "state": "state", '
                        '"prompt": "task", "image_shape": null}\' (default: openpi LIBERO)')
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--noise", default="episode", choices=["episode", "fixed", "random"], help="noise determinism")
    p.add_argument("--max-message-mb", type=float, default=16.0, help="largest accepted request")
    p.add_argument("--idle-timeout", type=float, default=600.0, help="close connections idle this long (s; 0: never)")
    p.add_argument("--max-connections", type=int, default=32, help="connections open at once")
    return p


def run(argv: list[str]) -> int:
    """Load the policy, serve until SIGINT / SIGTERM."""
    args = build_parser().parse_args(argv)
    from ..serving.policy import load_policy
    from ..serving.server import PolicyServer

    api_key = args.api_key or os.environ.get("HF_VLMDRIVE_API_KEY") or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        logger.warning("serving on %s without --api-key: anyone who can reach this port can query the model",
                       args.host)
    policy = load_policy(args.model, key_map=args.key_map, device=args.device, num_steps=args.num_steps,
                         dtype=args.dtype, seed=args.seed, noise=args.noise)
    server = PolicyServer(policy, host=args.host, port=args.port, api_key=api_key,
                          max_message_bytes=int(args.max_message_mb * 2**20),
                          idle_timeout=args.idle_timeout or None, max_connections=args.max_connections)
    server.serve_forever(install_signal_handlers=True)
    logger.info("policy server stopped")
    return 0


def register(registry) -> None:
    """Add `hf-vlmdrive serve`."""
    registry.add(("serve",), run, "serve a GeoVLA checkpoint over websockets (openpi-compatible)")


__all__ = ["build_parser", "register", "run"]
