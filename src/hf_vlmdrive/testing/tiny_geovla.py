"""A tiny, randomly initialised GeoVLA checkpoint directory, built locally in about a second (no Hub access).

`save_tiny_geovla(path)` writes what a trained GeoVLA run leaves behind, at toy size:

```
path/
  config.json, model.safetensors      GeoVLAForActionPrediction (tiny Qwen2.5-VL 32-d x 2 layers, 1-layer
                                      DINOv2 at 28 px, 2 views, pool compressor, 2-layer DiT, chunk 8 x 7)
  norm_stats.json                     {"observation.state": 8 values, "action": 7 values}
                                      (mean / std / q01 / q99 / min / max)
  processor_config.json, tokenizer*   GeoVLAProcessor (geometry_image_size = 28, the tiny DINOv2's size)
```

`AutoModel.from_pretrained(path)` and `AutoProcessor.from_pretrained(path)` load it (after `import
hf_vlmdrive`). It has the LIBERO layout: 2 cameras (agentview + wrist), an 8-d state (eef pos 3 +
axis-angle 3 + gripper 2) and 7-d actions (6 arm deltas + gripper), chunks of 8 steps, 2 Euler steps at
inference. The AdaLN-Zero layers of the DiT, which start at exactly zero (so a fresh model's actions would
not depend on its inputs), are perturbed so that the predicted actions depend on images, prompt and state.
The weights are random: the actions mean nothing, but they are deterministic for a given `seed` and noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

STATE_DIM = 8
ACTION_DIM = 7
ACTION_CHUNK_SIZE = 8
NUM_VIEWS = 2
GEOMETRY_IMAGE_SIZE = 28


def tiny_geovla_norm_stats(seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Plausible LIBERO-like statistics for `observation.state` (8) and `action` (7), deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    stats = {}
    for key, width in (("observation.state", STATE_DIM), ("action", ACTION_DIM)):
        mean = rng.normal(0.0, 0.3, width)
        std = rng.uniform(0.05, 0.5, width)
        stats[key] = {
            "mean": mean.tolist(), "std": std.tolist(),
            "q01": (mean - 2.3 * std).tolist(), "q99": (mean + 2.3 * std).tolist(),
            "min": (mean - 3 * std).tolist(), "max": (mean + 3 * std).tolist(),
        }
    return stats


def build_tiny_geovla(seed: int = 0, num_inference_steps: int = 2):
    """A tiny `GeoVLAForActionPrediction` (eval mode, statistics set, AdaLN-Zero perturbed) and its processor."""
    import torch

    from ..models.geovla.modeling_geovla import GeoVLAForActionPrediction
    from ..models.geovla.processing_geovla import GeoVLAProcessor
    from .tiny_models import tiny_geovla_config, tiny_geovla_geometry_config
    from .tiny_qwen import build_tiny_qwen_processor, build_tiny_qwen_tokenizer, tiny_dinov2_config

    tokenizer = build_tiny_qwen_tokenizer()
    geometry = tiny_geovla_geometry_config(backbone_config=tiny_dinov2_config(image_size=GEOMETRY_IMAGE_SIZE).to_dict(),
                                           num_views=NUM_VIEWS)
    config = tiny_geovla_config(
        tokenizer, geometry_config=geometry.to_dict(), num_inference_steps=num_inference_steps,
        action_dim=ACTION_DIM, action_chunk_size=ACTION_CHUNK_SIZE, state_dim=STATE_DIM,
    )
    torch.manual_seed(seed)
    model = GeoVLAForActionPrediction(config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # AdaLN-Zero: every DiT branch and the output start at exactly zero
        for p in model.action_head.parameters():
            if p.ndim == 2 and p.count_nonzero() == 0:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    model.set_norm_stats(tiny_geovla_norm_stats(seed), source="tiny_geovla")
    model.eval()
    processor = GeoVLAProcessor.from_vlm_processor(build_tiny_qwen_processor(tokenizer),
                                                   geometry_image_size=GEOMETRY_IMAGE_SIZE)
    return model, processor


def save_tiny_geovla(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny GeoVLA checkpoint directory (model, `norm_stats.json`, `GeoVLAProcessor`) to `path`.

    Args:
        path: directory to create (parents included); existing files of the same names are overwritten.
        seed: seeds the weights and the statistics; the same seed gives the same checkpoint.

    Returns:
        `Path(path)`, loadable with `AutoModel.from_pretrained` + `AutoProcessor.from_pretrained`.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model, processor = build_tiny_geovla(seed)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    if not (path / "norm_stats.json").is_file():  # save_pretrained writes it; keep the contract explicit
        (path / "norm_stats.json").write_text(json.dumps(tiny_geovla_norm_stats(seed), indent=2), encoding="utf-8")
    return path


__all__ = [
    "ACTION_CHUNK_SIZE", "ACTION_DIM", "GEOMETRY_IMAGE_SIZE", "NUM_VIEWS", "STATE_DIM", "build_tiny_geovla",
    "save_tiny_geovla", "tiny_geovla_norm_stats",
]
