"""Head-training throughput of the waypoint predictor from a warm feature cache vs. recomputing the tower.

Both modes run the real recipe (`train_waypoint`: `Trainer`, WOD-E2E TFRecords with JPEG images, the
model's image processor) on the same data with a frozen SigLIP-shaped tower (default 6 layers, width 384,
224 px, 196 patch tokens; randomly initialised, which costs the same compute as pretrained weights):

- recompute: `use_feature_cache=False`, every step decodes, preprocesses and runs the tower;
- warm cache: `use_feature_cache=True` after the cache was filled (the fill is timed and reported
  separately); every step reads features from disk and trains the head only.

Training samples/s comes from Trainer's own `train_samples_per_second`. The two modes alternate for
`--rounds` rounds (so a change of machine load hits both), and the medians are compared. Target: >= 20x.

    PYTHONPATH=src python benchmarks/bench_feature_cache.py                     # ~3 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_feature_cache.py --layers 4 --width 256 --pooling attention
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

from hf_vlmdrive.data.synthetic.waymo import write_synthetic_e2ed  # noqa: E402
from hf_vlmdrive.trainers.waypoint_config import WaypointScriptArguments  # noqa: E402
from hf_vlmdrive.trainers.waypoint_recipe import train_waypoint  # noqa: E402


def run(mode: str, args, data: str, cache_dir: str, out: Path, steps: int) -> float:
    """One training run; returns Trainer's train_samples_per_second."""
    tower = dict(model_type="siglip_vision_model", hidden_size=args.width, intermediate_size=4 * args.width,
                 num_hidden_layers=args.layers, num_attention_heads=args.width // 64, image_size=args.image_size,
                 patch_size=16)
    script_args = WaypointScriptArguments(
        model_config={"vision_config": tower, "pooling": args.pooling, "head_hidden_sizes": [512, 512]},
        train_data=data, eval_data=None, image_width=args.image_width, image_height=args.image_height,
        use_feature_cache=mode != "recompute", feature_cache_dir=cache_dir)
    training_args = TrainingArguments(
        output_dir=str(out / mode), max_steps=steps, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size, learning_rate=1e-4, save_strategy="no", eval_strategy="no",
        report_to="none", disable_tqdm=True, logging_steps=10_000, seed=0, use_cpu=True,
    )
    trainer = train_waypoint(script_args, training_args)
    speed = next(h["train_samples_per_second"] for h in reversed(trainer.state.log_history) if "train_samples_per_second" in h)
    if mode != "recompute":
        assert trainer.data_collator.pixel_batches == 0, "the warm-cache run recomputed some batches"
    return float(speed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256, help="training scenes")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--image_width", type=int, default=384, help="JPEG width in the TFRecords")
    parser.add_argument("--image_height", type=int, default=256)
    parser.add_argument("--pooling", default="mean", choices=["mean", "attention"])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--recompute_steps", type=int, default=6)
    parser.add_argument("--cached_steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(os.cpu_count() or 1)

    with tempfile.TemporaryDirectory(prefix="bench_feature_cache_") as tmp:
        tmp = Path(tmp)
        write_synthetic_e2ed(tmp / "data", args.samples, seed=0, split="training", width=args.image_width,
                             height=args.image_height, camera_names=("FRONT",), progress=False)
        data, cache_dir = str(tmp / "data" / "training.tfrecord*"), str(tmp / "cache")

        start = time.perf_counter()
        run("fill", args, data, cache_dir, tmp, steps=1)  # fills the cache for every image (+ one step)
        fill_s = time.perf_counter() - start
        recompute, cached = [], []
        for _ in range(args.rounds):
            recompute.append(run("recompute", args, data, cache_dir, tmp, args.recompute_steps))
            cached.append(run("cached", args, data, cache_dir, tmp, args.cached_steps))
        cache_mb = sum(f.stat().st_size for f in (tmp / "cache").rglob("*.safetensors")) / 2**20

    slow, fast = statistics.median(recompute), statistics.median(cached)
    tokens = (args.image_size // 16) ** 2
    print(f"tower: siglip {args.layers} layers x {args.width} wide, {args.image_size} px ({tokens} tokens), "
          f"pooling {args.pooling}; head 512-512; batch {args.batch_size}; {args.samples} JPEG scenes in TFRecords")
    print(f"cache fill (first pass + 1 step): {fill_s:.1f} s for {args.samples} images, {cache_mb:.1f} MB on disk")
    print(f"recompute tower : {slow:9.1f} samples/s  (rounds: {', '.join(f'{x:.1f}' for x in recompute)})")
    print(f"warm cache      : {fast:9.1f} samples/s  (rounds: {', '.join(f'{x:.1f}' for x in cached)})")
    print(f"speed-up warm cache / recompute: {fast / slow:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
