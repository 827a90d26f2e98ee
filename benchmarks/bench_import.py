"""Cost of `import hf_vlmdrive`, against the floor of importing torch and transformers.

Each variant runs in a fresh interpreter (`sys.executable -c ...`), which times its own statement with
`time.perf_counter()` (interpreter start-up excluded) and prints it; the wall time of the whole process is
recorded too. The variants alternate for `--rounds` rounds, so a change of machine load hits all of them,
and the medians are compared with the baseline:

- baseline:  `import torch; import transformers` (transformers' top level is lazy: no model code);
- import:    `import hf_vlmdrive` (registers every family with AutoConfig / AutoModel, no modeling code);
- import+model: `import hf_vlmdrive`, then a tiny WaypointVLMModel built through `AutoModel.from_config`
  (imports that family's modeling code on first use).

    PYTHONPATH=src python benchmarks/bench_import.py               # ~1 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_import.py --rounds 9

No assertions: it prints the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TIMED = """
import time
_t = time.perf_counter()
{body}
print("ELAPSED", time.perf_counter() - _t)
"""

VARIANTS = {
    "baseline": "import torch\nimport transformers",
    "import": "import hf_vlmdrive",
    "import+model": """
import hf_vlmdrive
from transformers import AutoModel
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig
config = WaypointVLMConfig(
    vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, image_size=32, patch_size=8),
    head_hidden_sizes=[32, 32],
)
model = AutoModel.from_config(config)
assert type(model).__name__ == "WaypointVLMModel", type(model)
""",
}


def run_once(body: str) -> tuple[float, float]:
    """(seconds the statement took inside the child, wall seconds of the child process)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", TIMED.format(body=body)], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ELAPSED "))
    return float(line.split()[1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="fresh processes per variant (default 5)")
    args = parser.parse_args()

    inner: dict[str, list[float]] = {name: [] for name in VARIANTS}
    walls: dict[str, list[float]] = {name: [] for name in VARIANTS}
    run_once(VARIANTS["baseline"])  # warm the OS file cache; not counted
    for r in range(args.rounds):
        for name, body in VARIANTS.items():
            t, wall = run_once(body)
            inner[name].append(t)
            walls[name].append(wall)
        print(f"round {r + 1}/{args.rounds}: " + "  ".join(f"{n} {inner[n][-1]:.2f}s" for n in VARIANTS), flush=True)

    base, base_wall = statistics.median(inner["baseline"]), statistics.median(walls["baseline"])
    print(f"\nmedians over {args.rounds} rounds (statement time in the child; whole process wall time)")
    print(f"{'variant':<14}{'median s':>10}{'x baseline':>12}{'wall s':>9}{'x baseline':>12}{'extra s':>9}")
    for name in VARIANTS:
        t, wall = statistics.median(inner[name]), statistics.median(walls[name])
        print(f"{name:<14}{t:>10.2f}{t / base:>12.2f}{wall:>9.2f}{wall / base_wall:>12.2f}{t - base:>9.2f}")


if __name__ == "__main__":
    main()
