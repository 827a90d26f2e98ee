"""`hf-vlmdrive serve`: serve a trained GeoVLA checkpoint to openpi / envelope websocket clients.

    hf-vlmdrive serve --model runs/geovla/checkpoint-80000 --host 127.0.0.1 --port 10093 [--api-key KEY]

Logs where it listens; never reads stdin; SIGINT / SIGTERM stop it cleanly (exit code 0). See docs/serving.md.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket

from ..arguments import ArgumentParser
from ..errors import UserError

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The `serve` argument parser."""
    p = ArgumentParser(prog="hf-vlmdrive serve", description=__doc__.split("\n\n")[0],
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


def check_port_free(host: str, port: int) -> None:
    """Bind `host:port` once (as the server will, with SO_REUSEADDR) and release it; a `UserError` when another
    process holds the port, so the answer comes before the model loads."""
    if port == 0:
        return
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: not a TCP port (1-65535, or 0 to pick a free one)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UserError(f"--host {host}: cannot resolve it ({err}); use an address of this machine, e.g. 127.0.0.1") from err
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is already in use (another server?); pick another --port, "
                                "or --port 0 for a free one") from err
            raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err


def run(argv: list[str]) -> int:
    """Check the arguments, the port and the checkpoint; load the policy; serve until SIGINT / SIGTERM."""
    args = build_parser().parse_args(argv)
    from ..serving.policy import KeyMap, check_policy_dir, load_policy
    from ..serving.server import PolicyServer

    check_policy_dir(args.model)
    key_map = KeyMap.from_any(args.key_map)  # parsed once, before the port check and the model load
    check_port_free(args.host, args.port)
    api_key = args.api_key or os.environ.get("HF_VLMDRIVE_API_KEY") or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        logger.warning("serving on %s without --api-key: anyone who can reach this port can query the model",
                       args.host)
    policy = load_policy(args.model, key_map=key_map, device=args.device, num_steps=args.num_steps,
                         dtype=args.dtype, seed=args.seed, noise=args.noise)
    server = PolicyServer(policy, host=args.host, port=args.port, api_key=api_key,
                          max_message_bytes=int(args.max_message_mb * 2**20),
                          idle_timeout=args.idle_timeout or None, max_connections=args.max_connections)
    try:
        server.serve_forever(install_signal_handlers=True)
    except OSError as err:  # the port was taken while the model loaded
        if err.errno != errno.EADDRINUSE:
            raise
        raise UserError(f"port {args.port} on {args.host} is already in use (taken while the model loaded); "
                        "pick another --port, or --port 0 for a free one") from err
    logger.info("policy server stopped")
    return 0


def register(registry) -> None:
    """Add `hf-vlmdrive serve`."""
    registry.add(("serve",), run, "serve a GeoVLA checkpoint over websockets (openpi-compatible)")


__all__ = ["build_parser", "check_port_free", "register", "run"]
