"""Train the geometry-injected VLA (GeoVLA, SPEC 1.5) on LIBERO in LeRobot format.

Usage (offline demo on a synthetic LeRobot v3.0 dataset, CPU, one process):

    accelerate launch --num_processes 1 examples/train_libero.py --config examples/configs/libero_tiny.yaml

Real run (8 GPUs, DeepSpeed ZeRO-2, the four LIBERO suites under /data/libero):

    accelerate launch --config_file examples/configs/accelerate_zero2.yaml examples/train_libero.py \
        --config examples/configs/libero_tiny.yaml --dataset_root /data/libero --mixture libero_all \
        --vlm_name_or_path Qwen/Qwen2.5-VL-3B-Instruct --geometry_name_or_path facebook/dinov2-giant \
        --model_config.dit_num_layers 16 --model_config.dit_hidden_size 1024 --model_config.dit_num_heads 16 \
        --max_steps 80000 --save_steps 10000

Every `--flag` of `GeoVLAScriptArguments` / `GeoVLATrainingArguments` can be set in the YAML file or on
the command line (the command line wins); every `GeoVLAConfig` field goes under `model_config`
(`--model_config.<field> VALUE`). Checkpoints (`checkpoint-N/`) hold the weights, config.json,
norm_stats.json and the processor; `loss_curve.json` in the output directory holds (step, loss) pairs.
"""

from __future__ import annotations

import logging
import sys

from hf_vlmdrive.cli.parsing import parse_args
from hf_vlmdrive.trainers.geovla_config import GeoVLAScriptArguments, GeoVLATrainingArguments
from hf_vlmdrive.trainers.geovla_recipe import train_geovla


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    script_args, training_args = parse_args((GeoVLAScriptArguments, GeoVLATrainingArguments), argv)
    trainer = train_geovla(script_args, training_args)
    if trainer.is_world_process_zero():
        losses = [f"{h['step']}:{h['loss']:.4f}" for h in trainer.state.log_history if "loss" in h]
        print("loss curve (step:loss):", " ".join(losses))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
