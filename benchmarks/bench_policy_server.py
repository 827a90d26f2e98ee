"""Latency the websocket policy server ADDS to an inference, on loopback, through the real openpi client.

The same LIBERO observation (two 224x224x3 uint8 images, float64 (8,) state, prompt; ~0.3 MB packed) is
answered alternately (order flipped every iteration, so drift cancels) by

- the in-process call `ModelPolicy.infer(obs)` (baseline), and
- `openpi_client.websocket_client_policy.WebsocketClientPolicy.infer(obs)` -> `PolicyServer` on 127.0.0.1,

and the per-iteration difference (remote - in-process) is the added time: msgpack encode + decode on both
sides, two loopback websocket frames, the hop to the server's worker thread. A second run serves a
model-free policy (precomputed actions) to show the transport alone. No assertions; prints p50 / p99.

    PYTHONPATH=src HF_HUB_OFFLINE=1 no_proxy=127.0.0.1 python benchmarks/bench_policy_server.py  # ~30 s, tiny model
    ... python benchmarks/bench_policy_server.py --model runs/geovla/checkpoint-80000 --device cuda --iters 100
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import numpy as np


def libero_obs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8),
        "prompt": "put the bowl on the plate",
    }


class ConstantPolicy:
    """Transport-only baseline: returns precomputed actions."""

    metadata = {"model_type": "constant"}

    def __init__(self, actions):
        self.actions = actions

    def infer(self, obs):
        return {"actions": self.actions}

    def reset(self):
        pass


def measure(policy, obs, iters: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """(in-process ms, remote ms) per iteration, alternating which goes first."""
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    from hf_vlmdrive.serving.server import PolicyServer

    local = policy.new_session() if hasattr(policy, "new_session") else policy
    with PolicyServer(policy, port=0) as server:
        client = WebsocketClientPolicy(host="127.0.0.1", port=server.port)

        def direct():
            t = time.perf_counter()
            local.infer(obs)
            return (time.perf_counter() - t) * 1e3

        def remote():
            t = time.perf_counter()
            client.infer(obs)
            return (time.perf_counter() - t) * 1e3

        for _ in range(warmup):
            direct(), remote()
        d, r = [], []
        for i in range(iters):
            if i % 2:
                d.append(direct())
                r.append(remote())
            else:
                r.append(remote())
                d.append(direct())
    return np.array(d), np.array(r)


def report(name: str, d: np.ndarray, r: np.ndarray) -> None:
    added = r - d
    p = lambda x, q: float(np.percentile(x, q))  # noqa: E731
    print(f"{name}: in-process p50 {p(d, 50):7.2f} ms | remote p50 {p(r, 50):7.2f} ms | "
          f"ADDED p50 {p(added, 50):6.2f} ms, p99 {p(added, 99):6.2f} ms (n={len(d)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="GeoVLA checkpoint dir (default: a tiny random one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("no_proxy", "127.0.0.1,localhost")
    logging.disable(logging.INFO)
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from hf_vlmdrive.serving import msgpack_numpy
    from hf_vlmdrive.serving.policy import load_policy
    from hf_vlmdrive.testing.tiny_geovla import save_tiny_geovla

    model_dir = args.model or save_tiny_geovla(tempfile.mkdtemp() + "/tiny_geovla")
    policy = load_policy(model_dir, device=args.device, noise="fixed")
    obs = libero_obs()
    print(f"observation: {len(msgpack_numpy.packb(obs)):,} bytes packed; model {policy.metadata['model_type']} "
          f"({'tiny random' if args.model is None else model_dir}) on {args.device}")
    report("GeoVLA  ", *measure(policy, obs, args.iters, args.warmup))
    report("constant", *measure(ConstantPolicy(np.zeros((8, 7), np.float32)), obs, args.iters, args.warmup))


if __name__ == "__main__":
    main()
