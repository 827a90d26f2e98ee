"""Training-step time of SimLingo-base (LM preset "tiny" by default) vs a plain Llama of the same size.

Both run forward + backward + AdamW step on CPU with the same batch and sequence length (vision tokens +
speed + route + 30 queries). The vision tower's own forward/backward is timed separately, so the
overhead of the adaptors and heads is `(simlingo - tower) / llama - 1`. On a shared 2-core machine the
ratio moves by about +-15 % with the order of the interleaved calls (the plain Llama runs first here, the
conservative order); use `--steps 10` or more for a steadier figure.

    PYTHONPATH=src python benchmarks/bench_simlingo_step.py                 # ~1 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_simlingo_step.py --batch 8 --image-size 336 --patch-size 14 \
        --vision-layers 24 --vision-hidden 1024 --steps 10                   # the reference tower
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaModel

from hf_vlmdrive.models.simlingo import SimLingoConfig, SimLingoForWaypointPrediction, lm_preset


def timed(fns: dict, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved round-robin so that load from other
    processes on a shared machine hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main() -> None:
    """Parse flags, time the three steps, print the ratios."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lm-size", default="tiny")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--image-size", type=int, default=112, help="tower tile size (px)")
    p.add_argument("--patch-size", type=int, default=14)
    p.add_argument("--vision-hidden", type=int, default=256)
    p.add_argument("--vision-layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    vision = {"model_type": "clip_vision_model", "hidden_size": args.vision_hidden,
              "intermediate_size": 4 * args.vision_hidden, "num_hidden_layers": args.vision_layers,
              "num_attention_heads": max(1, args.vision_hidden // 64), "image_size": args.image_size,
              "patch_size": args.patch_size}
    config = SimLingoConfig(vision_config=vision, text_config=lm_preset(args.lm_size))
    model = SimLingoForWaypointPrediction(config).train()
    b = args.batch
    s = args.image_size
    batch = {
        "pixel_values": torch.randint(0, 256, (b, 1, 1, 3, s, 2 * s), dtype=torch.uint8),
        "speed": torch.rand(b, 1) * 10,
        "target_point": torch.randn(b, 2) * 10,
        "speed_wps_labels": torch.randn(b, 10, 2),
        "route_labels": torch.randn(b, 20, 2),
    }
    seq = config.tokens_per_image + 1 + 1 + config.num_route_points + config.num_speed_wps
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def simlingo_step():
        opt.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        opt.step()

    llama = LlamaModel(config.text_config).train()
    llama.embed_tokens = None
    llama_opt = torch.optim.AdamW(llama.parameters(), lr=1e-5)
    embeds = torch.randn(b, seq, config.hidden_size)

    def llama_step():
        llama_opt.zero_grad(set_to_none=True)
        llama(inputs_embeds=embeds, use_cache=False).last_hidden_state.pow(2).mean().backward()
        llama_opt.step()

    tower = model.vision_model
    tiles = torch.randn(b * config.tile_grid[0] * config.tile_grid[1], 3, s, s)

    def tower_step():
        tower.zero_grad(set_to_none=True)
        tower(pixel_values=tiles, output_hidden_states=True).hidden_states[-2].pow(2).mean().backward()

    t = timed({"llama": llama_step, "simlingo": simlingo_step, "tower": tower_step}, args.steps, args.warmup)
    t_sim, t_llama, t_tower = t["simlingo"], t["llama"], t["tower"]
    n_lm = sum(p.numel() for p in llama.parameters()) / 1e6
    n_all = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"LM preset {args.lm_size!r} ({n_lm:.1f} M params), SimLingo total {n_all:.1f} M; batch {b}, "
          f"sequence {seq} tokens ({config.tokens_per_image} vision), {args.threads} threads, CPU")
    print(f"simlingo train step : {t_sim * 1e3:8.1f} ms")
    print(f"plain llama step    : {t_llama * 1e3:8.1f} ms")
    print(f"vision tower fwd+bwd: {t_tower * 1e3:8.1f} ms")
    print(f"ratio simlingo / llama                        : {t_sim / t_llama:.2f}")
    print(f"ratio (simlingo - tower) / llama (adaptor cost): {(t_sim - t_tower) / t_llama:.2f}")


if __name__ == "__main__":
    main()
