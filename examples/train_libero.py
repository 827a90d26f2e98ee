"""Train the geometry-injected VLA (GeoVLA, SPEC 1.5) on LIBERO in LeRobot format.

Quick path (offline, CPU, about 3.5 minutes on 2 cores): train a tiny GeoVLA on synthetic pick-and-place
episodes and compare its held-out action chunks with the mean-chunk and last-action baselines (table,
figure `geovla_action_chunks.png`, model card in `<output_dir>/geovla-tiny/README.md`):

    python examples/train_libero.py --demo --output_dir demo_output/geovla [--max_steps 2000] [--seed 0]

Usage (offline training run on a synthetic LeRobot v3.0 dataset, CPU, one process):

    accelerate launch --num_processes 1 examples/train_libero.py --config examples/configs/libero_tiny.yaml

Real run (8 GPUs, DeepSpeed ZeRO-2, the four LIBERO suites under /data/libero):

    accelerate launch --config_file examples/configs/accelerate_zero2.yaml examples/train_libero.py \
        --config examples/configs/libero_tiny.yaml --dataset_root /data/libero --mixture libero_all \
        --vlm_name_or_path Qwen/Qwen2.5-VL-3B-Instruct --geometry_name_or_path facebook/map-anything \
        --model_config.dit_num_layers 16 --model_config.dit_hidden_size 1024 --model_config.dit_num_heads 16 \
        --max_steps 80000 --save_steps 10000

(`facebook/map-anything` is CC-BY-NC-4.0; `facebook/map-anything-apache`, the same architecture, is Apache-2.0.)

Every `--flag` of `GeoVLAScriptArguments` / `GeoVLATrainingArguments` can be set in the YAML file or on
the command line (the command line wins); every `GeoVLAConfig` field goes under `model_config`
(`--model_config.<field> VALUE`). Checkpoints (`checkpoint-N/`) hold the weights, config.json,
norm_stats.json and the processor; `loss_curve.json` in the output directory holds (step, loss) pairs.
"""

from __future__ import annotations

import sys

from hf_vlmdrive.arguments import parse_args
from hf_vlmdrive.log import configure_logging
from hf_vlmdrive.trainers.geovla_config import GeoVLAScriptArguments, GeoVLATrainingArguments
from hf_vlmdrive.trainers.geovla_recipe import train_geovla


def demo(argv: list[str]) -> int:
    """Synthetic pick-and-place data + tiny GeoVLA -> held-out action chunks vs. two baselines, figure, card."""
    import argparse

    from hf_vlmdrive.demos.geovla import GeoVLADemoConfig, run_geovla_demo

    parser = argparse.ArgumentParser(prog="train_libero.py --demo")
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--output_dir", default="demo_output/geovla")
    parser.add_argument("--max_steps", type=int, default=GeoVLADemoConfig.max_steps)
    parser.add_argument("--seed", type=int, default=GeoVLADemoConfig.seed)
    args = parser.parse_args(argv)
    results = run_geovla_demo(args.output_dir, GeoVLADemoConfig(max_steps=args.max_steps, seed=args.seed))
    if not results:  # a process other than the main one of `accelerate launch ... --demo`: it only trained
        return 0
    print(f"\nHeld-out action chunks, dataset units, lower is better ({results['protocol']}):\n")
    print(results["tables"])
    t = results["timings"]
    print(f"\ntimings (s): data {t['data']:.0f}, train {t['train']:.0f}, evaluate {t['evaluate']:.0f}")
    print(f"figure: {results['figure']}\nmodel + card: {args.output_dir}/geovla-tiny (README.md)")
    return 0


def main(argv: list[str]) -> int:
    if "--demo" in argv:
        return demo(argv)
    configure_logging()
    script_args, training_args = parse_args((GeoVLAScriptArguments, GeoVLATrainingArguments), argv)
    trainer = train_geovla(script_args, training_args)
    if trainer.is_world_process_zero():
        losses = [f"{h['step']}:{h['loss']:.4f}" for h in trainer.state.log_history if "loss" in h]
        print("loss curve (step:loss):", " ".join(losses))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
