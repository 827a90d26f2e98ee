"""A waypoint training step at the reference tower's size: warm feature cache vs recomputing the tower.

The model is `WaypointVLMModel(WaypointVLMConfig())`, i.e. the seed's system: HuggingFaceTB/SmolVLM-Base's SigLIP
tower (27 layers x 1152, 384 px, patch 14: 412,987,248 parameters, random weights, which cost the same compute as
pretrained ones), frozen, mean pooling, and the seed's MLP head (926,248 trainable). One training step is
forward + loss + backward + AdamW step:

- recompute: the step runs the frozen tower on the batch's preprocessed images (no gradient through it), as a run
  without the cache does every step;
- warm cache: the pooled features of the same images are read from a `FeatureCache` on disk (filled beforehand,
  untimed) and the step trains the head only, as every epoch after the first does with the cache.

Image decoding and preprocessing are left out of both (they would only add to the recompute side). The two modes
alternate for `--rounds`; medians are compared. Goal: >= 100x. Timings are printed, never asserted.

    PYTHONPATH=src python benchmarks/bench_waypoint_reference_cache.py       # ~2-3 min on 2 shared cores (batch 4)
    PYTHONPATH=src python benchmarks/bench_waypoint_reference_cache.py --batch_size 16 --rounds 2

Measured 2026-12-07 on 2 shared CPU cores, batch 4, 1 recompute step, 5 cached steps: 126.7 s vs 77.5 ms per
step, 1,634x.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from hf_vlmdrive.features.cache import FeatureCache  # noqa: E402
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--recompute_steps", type=int, default=1, help="timed recompute steps per round")
    parser.add_argument("--cached_steps", type=int, default=20, help="timed warm-cache steps per round")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)

    model = WaypointVLMModel(WaypointVLMConfig())  # the reference: SmolVLM-Base's tower + the seed's head
    tower = sum(p.numel() for p in model.vision_model.parameters())
    head = sum(p.numel() for p in model.parameters() if p.requires_grad)
    size = model.config.vision_config.image_size
    print(f"tower {tower:,} parameters (frozen, {model.config.vision_config.num_hidden_layers} layers x "
          f"{model.config.vision_config.hidden_size}, {size} px), head {head:,} trainable, batch {args.batch_size}")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    b = args.batch_size
    pixels = torch.randn(b, 3, size, size)
    past, intent, labels = torch.randn(b, 16, 6), torch.randint(1, 4, (b,)), torch.randn(b, 20, 2)
    digests = [hashlib.sha256(pixels[i].numpy().tobytes()).hexdigest() for i in range(b)]

    def step(**inputs) -> None:
        out = model(past_states=past, intent=intent, labels=labels, **inputs)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with tempfile.TemporaryDirectory(prefix="bench_waypoint_ref_") as tmp:
        cache = FeatureCache({"bench": "waypoint_reference"}, cache_dir=tmp)
        with torch.no_grad():  # fill (untimed): what the first epoch / `hf-vlmdrive cache-features` does
            for d, f in zip(digests, model.cacheable_image_features(pixels), strict=True):
                cache.put(d, f)
        model.train()
        # warm-up of the head path (the tower's step is long enough that its one-off costs do not matter)
        step(image_features=torch.stack([cache.get(d) for d in digests]))
        recompute, cached = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            for _ in range(args.recompute_steps):
                step(pixel_values=pixels)
            recompute.append((time.perf_counter() - t) / args.recompute_steps)
            t = time.perf_counter()
            for _ in range(args.cached_steps):
                step(image_features=torch.stack([cache.get(d) for d in digests]))
            cached.append((time.perf_counter() - t) / args.cached_steps)
    r, c = statistics.median(recompute), statistics.median(cached)
    print(f"recompute the tower: {r * 1000:,.1f} ms per step ({args.recompute_steps} steps x {args.rounds} rounds)")
    print(f"warm feature cache : {c * 1000:,.2f} ms per step ({args.cached_steps} steps x {args.rounds} rounds)")
    print(f"ratio: {r / c:,.0f}x faster from the warm cache (goal >= 100x)")


if __name__ == "__main__":
    main()
