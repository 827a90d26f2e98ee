"""Epoch-2 training step time of GeoVLA with a warm geometry feature cache vs. without, in the same run.

Both runs train the same tiny GeoVLA (Qwen2.5-VL tiny + a DINOv2 geometry encoder sized by the flags) for
two epochs over the same pre-collated batches (data loading excluded). Epoch 1 fills the cache; epoch 2
is timed. Prints the median step time of each, the ratio `cached/uncached` (< 1 = the cache helps; target
<= 0.5) and its inverse, plus the cache's hit rate.

    PYTHONPATH=src python benchmarks/bench_geometry_cache.py                       # ~1 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_geometry_cache.py --geometry_hidden 384 --geometry_layers 12 --image_size 224
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hf_vlmdrive.data.lerobot import LeRobotDataset, make_synthetic_libero
from hf_vlmdrive.features.geometry_cache import GeometryFeatureCache
from hf_vlmdrive.models.geovla import GeoVLAConfig, GeoVLAForActionPrediction
from hf_vlmdrive.testing.tiny_qwen import (
    build_tiny_qwen_processor,
    build_tiny_qwen_tokenizer,
    tiny_qwen2_5_vl_config,
)
from hf_vlmdrive.trainers.geovla_collator import GeoVLACollator


def build(config, stats, cache: GeometryFeatureCache | None):
    torch.manual_seed(0)
    model = GeoVLAForActionPrediction(config)
    model.set_norm_stats(stats)
    model.attach_geometry_cache(cache)
    model.train()
    # foreach=True: the multi-tensor AdamW that Trainer's `adamw_torch` uses on a GPU (on CPU torch defaults to
    # the per-tensor loop, whose Python overhead would otherwise dominate a tiny model's step).
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=True)
    return model, opt


def step(model, opt, batch) -> float:
    t = time.perf_counter()
    model(**batch).loss.backward()
    opt.step()
    opt.zero_grad()
    return time.perf_counter() - t


def run_both(config, stats, batches, cache: GeometryFeatureCache) -> tuple[list[float], list[float]]:
    """Epoch 1 for both models (fills the cache), then epoch 2 with their steps interleaved, so that a
    change of machine load during the run hits both equally."""
    plain, cached = build(config, stats, None), build(config, stats, cache)
    for batch in batches:
        step(*plain, batch)
        step(*cached, batch)
    hits_before, lookups_before = cache.hits_memory + cache.hits_disk, cache.lookups
    times_plain, times_cached = [], []
    for batch in batches:
        times_plain.append(step(*plain, batch))
        times_cached.append(step(*cached, batch))
    hits = cache.hits_memory + cache.hits_disk - hits_before
    print(f"epoch-2 cache hit rate: {hits / (cache.lookups - lookups_before):.1%}")
    return times_plain, times_cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--image_size", type=int, default=112, help="geometry input side (multiple of 14)")
    parser.add_argument("--geometry_hidden", type=int, default=128)
    parser.add_argument("--geometry_layers", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(2)
    tok = build_tiny_qwen_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        ds = LeRobotDataset(make_synthetic_libero(Path(tmp) / "ds", num_episodes=args.episodes,
                                                  episode_length=args.length, image_size=32, image_storage="image"))
        collator = GeoVLACollator(build_tiny_qwen_processor(tok), geometry_image_size=args.image_size)
        batches = [collator([ds[j] for j in range(i, min(i + args.batch_size, len(ds)))])
                   for i in range(0, len(ds), args.batch_size)]
        config = GeoVLAConfig(
            vlm_config=tiny_qwen2_5_vl_config(tok).to_dict(),
            geometry_config={"backbone_config": {"model_type": "dinov2", "image_size": args.image_size, "patch_size": 14,
                                                 "hidden_size": args.geometry_hidden,
                                                 "num_hidden_layers": args.geometry_layers,
                                                 "num_attention_heads": 4, "intermediate_size": 4 * args.geometry_hidden},
                             "num_views": len(ds.camera_keys), "num_layers": 2, "num_heads": 4, "output_size": 128},
            num_geometry_tokens=8, dit_num_layers=2, dit_hidden_size=32, dit_num_heads=2,
        )
        print(f"{len(batches)} steps/epoch, batch {args.batch_size}, {len(ds.camera_keys)} views of "
              f"{args.image_size}px, geometry DINOv2 {args.geometry_layers}x{args.geometry_hidden}")
        cache = GeometryFeatureCache(memory_budget_mb=256, log_every=0)
        plain, cached = run_both(config, ds.stats, batches, cache)
    a, b = statistics.median(plain), statistics.median(cached)
    print(f"epoch-2 median step time without cache: {a * 1000:8.1f} ms")
    print(f"epoch-2 median step time, warm cache:   {b * 1000:8.1f} ms   ({cache.format_stats()})")
    print(f"speed-up (uncached / cached): {a / b:.2f}x   ratio cached/uncached = {b / a:.2f}")


if __name__ == "__main__":
    main()
