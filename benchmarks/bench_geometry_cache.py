"""Epoch-2 training step time of GeoVLA with a warm geometry feature cache vs. without, in the same run.

Both runs train the same tiny GeoVLA (Qwen2.5-VL tiny + a geometry encoder sized by the flags: MapAnything's trunk
by default, `--reference` for V1.1's 1,136 M parameters, or `--geometry standin` for the DINOv2 stand-in) for
two epochs over the same pre-collated batches (data loading excluded: the collator also computes the cache
keys, as it does in the DataLoader workers when training). Epoch 1 fills the cache; epoch 2 is timed. A third
model gets the geometry features precomputed (`geometry_features=`), which is the floor any cache can reach:
the same step without the geometry encoder and without any lookup. Prints the median step time of each
(wall clock and process CPU time, which is steadier on a shared machine), the ratio `cached/uncached`
(< 1 = the cache helps; target <= 0.5) and its inverse, the floor's ratio, and the cache's hit rate.

    PYTHONPATH=src python benchmarks/bench_geometry_cache.py                       # ~1 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_geometry_cache.py --reference --image_size 224 --episodes 1 --length 4 \
        --batch_size 2 --rounds 1                                                   # V1.1 size, ~10 min, 6 GB RAM
    PYTHONPATH=src python benchmarks/bench_geometry_cache.py --geometry standin --geometry_hidden 384 \
        --geometry_layers 12 --image_size 224
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import hf_vlmdrive.models.geovla.modeling_geovla as modeling_geovla
from hf_vlmdrive.data.collators import GeoVLACollator
from hf_vlmdrive.data.lerobot import LeRobotDataset, make_synthetic_libero
from hf_vlmdrive.features.geometry_cache import GeometryFeatureCache
from hf_vlmdrive.models.geovla import GeoVLAConfig, GeoVLAForActionPrediction
from hf_vlmdrive.models.mapanything.configuration_mapanything import swiglu_fused_hidden_size
from hf_vlmdrive.testing.tiny_qwen import (
    build_tiny_qwen_processor,
    build_tiny_qwen_tokenizer,
    tiny_qwen2_5_vl_config,
)


def build(config, stats, cache: GeometryFeatureCache | None):
    torch.manual_seed(0)
    model = GeoVLAForActionPrediction(config)
    model.set_norm_stats(stats)
    model.attach_geometry_cache(cache)
    model.train()
    # fused=True: the optimizer GeoVLATrainer builds by default (Trainer's `optim` default is `adamw_torch_fused`
    # with torch >= 2.8, on CPU as on GPU); the per-tensor loop's Python overhead would dominate a tiny step.
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    return model, opt


def step(model, opt, batch) -> tuple[float, float]:
    """(wall, process CPU) seconds of one optimisation step."""
    t, c = time.perf_counter(), time.process_time()
    model(**batch).loss.backward()
    opt.step()
    opt.zero_grad()
    return time.perf_counter() - t, time.process_time() - c


def run_all(config, stats, batches, cache: GeometryFeatureCache, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Epoch 1 for the three models (fills the cache), then `rounds` more epochs with their steps interleaved
    in a rotating order, so that a change of machine load during the run hits all of them equally."""
    models = {"uncached": build(config, stats, None)}
    # The frozen geometry encoder is identical in the three models: one copy in RAM (V1.1 is 4.5 GB in fp32).
    shared = models["uncached"][0].geometry_encoder
    original = modeling_geovla.build_geometry_encoder
    modeling_geovla.build_geometry_encoder = lambda _config: shared
    try:
        models["cached"], models["floor"] = build(config, stats, cache), build(config, stats, None)
    finally:
        modeling_geovla.build_geometry_encoder = original
    with torch.no_grad():
        features = [models["floor"][0].encode_geometry(b["geometry_pixel_values"]) for b in batches]
    floor_batches = [{**{k: v for k, v in b.items() if k not in ("geometry_pixel_values", "geometry_cache_keys")},
                      "geometry_features": f} for b, f in zip(batches, features)]
    inputs = {"uncached": batches, "cached": batches, "floor": floor_batches}
    for i in range(len(batches)):
        for name, (model, opt) in models.items():
            step(model, opt, inputs[name][i])
    hits_before, lookups_before = cache.hits_memory + cache.hits_disk, cache.lookups
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    names = list(models)
    for r in range(rounds):
        for i in range(len(batches)):
            k = (r * len(batches) + i) % len(names)  # rotate the order: a model's position in the sequence
            for name in names[k:] + names[:k]:      # was measured to change its step time by up to 1.5x
                times[name].append(step(*models[name], inputs[name][i]))
    hits = cache.hits_memory + cache.hits_disk - hits_before
    print(f"epoch-2 cache hit rate: {hits / (cache.lookups - lookups_before):.1%}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--image_size", type=int, default=112, help="geometry input side (multiple of 14)")
    parser.add_argument("--geometry", choices=("mapanything", "standin"), default="mapanything")
    parser.add_argument("--reference", action="store_true",
                        help="MapAnything V1.1's size (width 1536, 24 + 16 blocks); else the flags below")
    parser.add_argument("--geometry_hidden", type=int, default=128, help="encoder (and AAT) width")
    parser.add_argument("--geometry_layers", type=int, default=4,
                        help="encoder blocks (MapAnything: as many AAT blocks again)")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs after the one that fills the cache")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tok = build_tiny_qwen_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        ds = LeRobotDataset(make_synthetic_libero(Path(tmp) / "ds", num_episodes=args.episodes,
                                                  episode_length=args.length, image_size=32, image_storage="image"))
        collator = GeoVLACollator(build_tiny_qwen_processor(tok), geometry_image_size=args.image_size, cache_keys=True)
        batches = [collator([ds[j] for j in range(i, min(i + args.batch_size, len(ds)))])
                   for i in range(0, len(ds), args.batch_size)]
        if args.geometry == "standin":
            geometry = {"model_type": "geovla_geometry",
                        "backbone_config": {"model_type": "dinov2", "image_size": args.image_size, "patch_size": 14,
                                            "hidden_size": args.geometry_hidden,
                                            "num_hidden_layers": args.geometry_layers, "num_attention_heads": 4,
                                            "intermediate_size": 4 * args.geometry_hidden},
                        "num_views": len(ds.camera_keys), "num_layers": 2, "num_heads": 4, "output_size": 128}
        elif args.reference:
            geometry = {"model_type": "mapanything"}  # V1.1
        else:
            w, n = args.geometry_hidden, args.geometry_layers
            hidden = swiglu_fused_hidden_size(w, 4.0)
            geometry = {"model_type": "mapanything", "hidden_size": w, "num_attention_heads": 4, "num_hidden_layers": n,
                        "intermediate_size": hidden, "info_sharing_hidden_size": w, "info_sharing_num_heads": 4,
                        "info_sharing_num_layers": n, "info_sharing_intermediate_size": hidden,
                        "intermediate_layer_indices": [n - 1]}
        config = GeoVLAConfig(
            vlm_config=tiny_qwen2_5_vl_config(tok).to_dict(), geometry_config=geometry,
            geometry_image_size=args.image_size,
            num_geometry_tokens=8, dit_num_layers=2, dit_hidden_size=32, dit_num_heads=2,
        )
        g = config.geometry_config
        size = (f"MapAnything {g.num_hidden_layers}+{g.info_sharing_num_layers} blocks x {g.hidden_size}"
                if config.geometry_is_mapanything else f"DINOv2 stand-in {args.geometry_layers}x{args.geometry_hidden}")
        print(f"{len(batches)} steps/epoch, batch {args.batch_size}, {len(ds.camera_keys)} views of "
              f"{args.image_size}px, geometry {size}")
        cache = GeometryFeatureCache(memory_budget_mb=256, log_every=0)
        times = run_all(config, ds.stats, batches, cache, args.rounds)
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    a, b, f = wall["uncached"], wall["cached"], wall["floor"]
    print(f"epoch-2 median step time without cache: {a * 1000:8.1f} ms wall, {cpu['uncached'] * 1000:8.1f} ms CPU")
    print(f"epoch-2 median step time, warm cache:   {b * 1000:8.1f} ms wall, {cpu['cached'] * 1000:8.1f} ms CPU   "
          f"({cache.format_stats()})")
    print(f"epoch-2 median step time, precomputed:  {f * 1000:8.1f} ms wall, {cpu['floor'] * 1000:8.1f} ms CPU   "
          "(the floor: no geometry encoder, no lookup)")
    print(f"speed-up (uncached / cached): {a / b:.2f}x   ratio cached/uncached = {b / a:.2f}   "
          f"(CPU time: {cpu['cached'] / cpu['uncached']:.2f})")
    print(f"ratio floor/uncached = {f / a:.2f}   (CPU time: {cpu['floor'] / cpu['uncached']:.2f}): the geometry encoder "
          f"is {1 - f / a:.0%} of an uncached step at these settings")


if __name__ == "__main__":
    main()
