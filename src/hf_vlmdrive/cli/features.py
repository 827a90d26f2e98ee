"""`hf-vlmdrive cache-features`: fill the frozen-feature cache ahead of training.

Takes the same arguments (and the same `--config` YAML) as `hf-vlmdrive train waypoint`, builds the model
the same way (same seed, so a tower built from a config gets the same weights) and encodes every train and
eval image that the cache lacks, with a progress bar. A later `train waypoint` with the same model,
preprocessing and cache directory then reads every image's features from the cache:

    hf-vlmdrive cache-features --config examples/configs/waypoint_tiny.yaml
    hf-vlmdrive train waypoint --config examples/configs/waypoint_tiny.yaml
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..arguments import parse_args
from ..errors import UserError


@dataclass
class CacheFeaturesArguments:
    """Arguments of `hf-vlmdrive cache-features` besides the model / data / training ones."""

    batch_size: int = field(default=32, metadata={"help": "Images per tower forward pass."})
    device: str | None = field(default=None, metadata={"help": "Encode on this device (default: the training device)."})


def run_cache_features(argv: list[str]) -> int:
    """Encode every image of --train_data / --eval_data into the feature cache; prints the counts as JSON."""
    from transformers import TrainingArguments, set_seed

    from ..data.waypoint import load_waypoint_dataset
    from ..features.waypoint_cache import fill_waypoint_cache, waypoint_feature_cache
    from ..trainers.waypoint_config import WaypointScriptArguments
    from ..trainers.waypoint_recipe import build_waypoint_model

    data_args, training_args, args = parse_args(
        (WaypointScriptArguments, TrainingArguments, CacheFeaturesArguments),
        argv,
        prog="hf-vlmdrive cache-features",
    )
    cameras = tuple(data_args.camera_names)
    set_seed(training_args.seed)  # as train_waypoint does, so that both build the same tower
    model, processor = build_waypoint_model(data_args, num_cameras=len(cameras))
    if not model.vision_is_frozen:
        raise UserError(
            "hf-vlmdrive cache-features: this model's vision tower is trainable (LoRA or model_config.freeze_vision false); "
            "its outputs change while training, so there is nothing to cache"
        )
    model.to(args.device or training_args.device)
    cache = waypoint_feature_cache(model, processor, data_args.feature_cache_dir, data_args.feature_cache_dtype)
    print(f"feature cache: {cache.root} ({model.feature_cache_kind} per image)")
    load = dict(image_width=data_args.image_width, image_height=data_args.image_height, camera_names=cameras)
    report = {"cache_dir": str(cache.root)}
    for split, spec in (("train", data_args.train_data), ("eval", data_args.eval_data)):
        if not spec:
            continue
        dataset = load_waypoint_dataset(spec, **load)
        report[split] = fill_waypoint_cache(
            model, dataset, processor, cache, batch_size=args.batch_size, desc=f"caching tower features ({split})"
        )
    print(json.dumps(report, indent=2))
    return 0


def register(registry) -> None:
    """Add `cache-features`."""
    registry.add(("cache-features",), run_cache_features, "fill the frozen-feature cache ahead of training")
