"""Forward time per view of MapAnything's feature trunk (V1.1 size by default) at 224 px, for 1, 2 and 3 views.

The trunk is built with random weights (the timing does not depend on them) and run under `torch.no_grad()`, as
GeoVLA runs its frozen geometry encoder. Prints the median forward time per call and per view for each view count,
and each per-view time as a ratio to the 1-view run of the same process (> 1: the global attention blocks grow
with V * 257 tokens). `--small` times a 384-wide trunk of the same depth instead.

    PYTHONPATH=src python benchmarks/bench_mapanything_trunk.py                 # V1.1, ~2 min on 2 cores, 4.6 GB
    PYTHONPATH=src python benchmarks/bench_mapanything_trunk.py --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hf_vlmdrive.models.mapanything import MapAnythingConfig, MapAnythingModel
from hf_vlmdrive.models.mapanything.configuration_mapanything import swiglu_fused_hidden_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--feature_mode", choices=("mapanything", "qwenmapanythingpi"), default="mapanything")
    parser.add_argument("--small", action="store_true", help="width 384 (6 heads) instead of V1.1's 1536")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kwargs = {"feature_mode": args.feature_mode}
    if args.small:
        hidden = swiglu_fused_hidden_size(384, 4.0)
        kwargs.update(hidden_size=384, num_attention_heads=6, intermediate_size=hidden, info_sharing_hidden_size=384,
                      info_sharing_num_heads=6, info_sharing_intermediate_size=hidden)
    config = MapAnythingConfig(**kwargs)
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = MapAnythingModel(config)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.02 if p.ndim > 1 else 0.1) + (1.0 if "norm" in name else 0))
    model = model.to(getattr(torch, args.dtype)).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"MapAnything trunk: {params:,} parameters ({args.dtype}, built in {time.perf_counter() - t0:.1f} s), "
          f"{args.image_size} px, batch {args.batch_size}, {args.threads} threads, {args.feature_mode} mode")
    per_view = {}
    for v in args.views:
        x = torch.randn(args.batch_size, v, 3, args.image_size, args.image_size, dtype=getattr(torch, args.dtype))
        times = []
        with torch.no_grad():
            model(x)  # warm-up
            for _ in range(args.repeats):
                t = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t)
        med = statistics.median(times)
        per_view[v] = med / (v * args.batch_size)
        tokens = v * config.tokens_per_view(args.image_size, args.image_size)
        print(f"V={v}: {med * 1000:9.1f} ms per forward, {per_view[v] * 1000:8.1f} ms per view "
              f"({tokens} output tokens x {config.output_size})")
    base = per_view[args.views[0]]
    for v in args.views:
        print(f"per-view time V={v} / V={args.views[0]}: {per_view[v] / base:.2f}")


if __name__ == "__main__":
    main()
