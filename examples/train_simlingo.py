"""Train SimLingo-base (vision tower + small Llama + driving adaptor) on CARLA-layout routes.

Without `--train_data_dir` the script writes synthetic CARLA routes (procedural scenes in the PDM-Lite
layout) under `<output_dir>/data/`, trains, and reports held-out ADE/FDE of the speed waypoints and the
route against a constant-velocity / straight-line baseline, plus `<output_dir>/predictions.png`.

Usage:

    accelerate launch examples/train_simlingo.py --config examples/configs/simlingo_synthetic.yaml
    python examples/train_simlingo.py --config examples/configs/simlingo_synthetic.yaml --max_steps 50
    # the reference setup (LLaVA-NeXT tower, "tiny" Llama, bf16, real PDM-Lite data):
    accelerate launch examples/train_simlingo.py --config examples/configs/simlingo_llava_next_tiny.yaml \
        --train_data_dir /data/simlingo/train --eval_data_dir /data/simlingo/val

The same recipe is `hf-vlmdrive train simlingo --config ...`.
"""

from __future__ import annotations

import sys

from hf_vlmdrive.arguments import parse_args
from hf_vlmdrive.trainers.simlingo_config import SimLingoScriptArguments, SimLingoTrainingArguments
from hf_vlmdrive.trainers.simlingo_recipe import train_simlingo


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments (YAML `--config` + flags) and run the recipe; returns the held-out metrics."""
    script_args, training_args = parse_args(
        [SimLingoScriptArguments, SimLingoTrainingArguments], sys.argv[1:] if argv is None else argv
    )
    return train_simlingo(script_args, training_args).heldout_metrics


if __name__ == "__main__":
    main()
