"""The SimLingo-base recipe shared by `examples/train_simlingo.py` and `hf-vlmdrive train|eval simlingo`:
(synthetic) CARLA-layout data -> model -> `SimLingoTrainer` -> held-out ADE/FDE vs baselines + a plot."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class SimLingoScriptArguments:
    """Data and model arguments of the SimLingo-base recipe (training hyper-parameters are in
    [`SimLingoTrainingArguments`])."""

    train_data_dir: str | None = field(
        default=None, metadata={"help": "Root of CARLA route folders for training; synthetic routes if unset."}
    )
    eval_data_dir: str | None = field(
        default=None, metadata={"help": "Root of held-out CARLA route folders; synthetic routes if unset."}
    )
    synthetic_train_routes: int = field(default=24, metadata={"help": "Synthetic training routes to write."})
    synthetic_eval_routes: int = field(default=6, metadata={"help": "Synthetic held-out routes to write."})
    synthetic_frames_per_route: int = field(default=24, metadata={"help": "Frames (4 Hz) per synthetic route."})
    image_width: int = field(default=128, metadata={"help": "Width the jpgs are resized to when read."})
    image_height: int = field(default=64, metadata={"help": "Height the jpgs are resized to when read."})
    cameras: str = field(default="rgb", metadata={"help": "Comma-separated camera folders (rgb,rgb_left,rgb_right)."})
    num_frames: int = field(default=1, metadata={"help": "Frames T per sample."})
    vision_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "LLaVA-NeXT Hub id / dir whose vision tower to use (e.g. "
                          "llava-hf/llava-v1.6-mistral-7b-hf); a small random CLIP tower if unset."},
    )
    vision_hidden_size: int = field(default=64, metadata={"help": "Random tower: width."})
    vision_layers: int = field(default=2, metadata={"help": "Random tower: layers."})
    vision_image_size: int = field(default=32, metadata={"help": "Random tower: tile size (px)."})
    vision_patch_size: int = field(default=4, metadata={"help": "Random tower: patch size (px)."})
    lm_size: str = field(default="micro", metadata={"help": "Llama preset: tiny (reference, ~50M), small, micro."})
    route_as: str = field(default="target_point", metadata={"help": "target_point | coords | image."})
    route_image_size: int = field(default=64, metadata={"help": "Side of the BEV route image (route_as=image)."})
    speed_wps_mode: str = field(default="2d", metadata={"help": "2d | 1d."})
    freeze_vision: bool = field(default=False, metadata={"help": "Freeze the vision tower."})
    eval_batch_size: int = field(default=16, metadata={"help": "Batch size of the held-out evaluation."})
    num_plot_samples: int = field(default=6, metadata={"help": "Samples drawn in predictions.png."})


@dataclass
class SimLingoEvalArguments:
    """Arguments of `hf-vlmdrive eval simlingo`."""

    model_name_or_path: str = field(metadata={"help": "A trained SimLingo checkpoint (dir or Hub id)."})
    data_dir: str = field(metadata={"help": "Root of CARLA route folders to evaluate on."})
    output_dir: str | None = field(default=None, metadata={"help": "Where metrics.json / predictions.png go."})
    image_width: int = field(default=128, metadata={"help": "Width the jpgs are resized to when read."})
    image_height: int = field(default=64, metadata={"help": "Height the jpgs are resized to when read."})
    cameras: str = field(default="rgb", metadata={"help": "Comma-separated camera folders."})
    route_image_size: int = field(default=64, metadata={"help": "Side of the BEV route image (route_as=image)."})
    batch_size: int = field(default=16, metadata={"help": "Evaluation batch size."})
    num_plot_samples: int = field(default=6, metadata={"help": "Samples drawn in predictions.png."})


def _dataset(root, cameras, num_frames, width, height, route_as, route_image_size, num_wps, num_route):
    from ..data.carla import CarlaRouteDataset

    return CarlaRouteDataset(
        root,
        num_frames=num_frames,
        cameras=tuple(c.strip() for c in cameras.split(",") if c.strip()),
        image_size=(width, height),
        num_speed_wps=num_wps,
        num_route_points=num_route,
        route_image_size=(route_image_size, route_image_size) if route_as == "image" else None,
    )


def build_model(args: SimLingoScriptArguments, num_cameras: int):
    """The SimLingo model the recipe trains: around a LLaVA-NeXT tower, or a small random CLIP tower."""
    from ..models.simlingo import SimLingoConfig, SimLingoForWaypointPrediction, lm_preset

    common = dict(num_cameras=num_cameras, num_frames=args.num_frames, route_as=args.route_as,
                  speed_wps_mode=args.speed_wps_mode, freeze_vision=args.freeze_vision)
    if args.vision_model_name_or_path:
        return SimLingoForWaypointPrediction.from_llava_next(args.vision_model_name_or_path, lm_size=args.lm_size,
                                                             **common)
    heads = max(1, args.vision_hidden_size // 32)
    vision = {"model_type": "clip_vision_model", "hidden_size": args.vision_hidden_size,
              "intermediate_size": 2 * args.vision_hidden_size, "num_hidden_layers": args.vision_layers,
              "num_attention_heads": heads, "image_size": args.vision_image_size, "patch_size": args.vision_patch_size}
    return SimLingoForWaypointPrediction(SimLingoConfig(vision_config=vision, text_config=lm_preset(args.lm_size),
                                                        **common))


def evaluate_and_report(model, dataset, output_dir: str | Path | None, batch_size: int = 16, num_plot: int = 6) -> dict:
    """Predict on `dataset`, compute metrics vs baselines, write metrics.json + predictions.png, print a table."""
    from .simlingo_trainer import plot_simlingo_predictions, predict_simlingo, simlingo_metrics

    preds = predict_simlingo(model, dataset, batch_size=batch_size)
    metrics = simlingo_metrics(preds)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        metrics["plot"] = str(plot_simlingo_predictions(preds, out / "predictions.png", num=num_plot))
    print(format_metrics(metrics))
    return metrics


def format_metrics(metrics: dict) -> str:
    """A small text table of model vs baseline ADE/FDE."""
    lines = [metrics["protocol"], f"{'output':<10} {'predictor':<18} {'ADE':>7} {'FDE':>7}"]
    for output, rows in (("speed_wps", metrics["speed_wps"]), ("route", metrics["route"])):
        for name, res in rows.items():
            lines.append(f"{output:<10} {name:<18} {res['ade']:7.3f} {res['fde']:7.3f}")
    return "\n".join(lines)


def run_train(script_args: SimLingoScriptArguments, training_args) -> dict:
    """Write synthetic routes if no data is given, train with `SimLingoTrainer`, save, evaluate held-out."""
    from ..data.carla import SimLingoCollator
    from ..data.synthetic.carla import write_carla_dataset
    from .simlingo_trainer import SimLingoTrainer

    out = Path(training_args.output_dir)
    train_dir, eval_dir = script_args.train_data_dir, script_args.eval_data_dir
    camera_dirs = [c.strip() for c in script_args.cameras.split(",") if c.strip()]
    names = {"rgb": "FRONT", "rgb_left": "FRONT_LEFT", "rgb_right": "FRONT_RIGHT"}
    synth_cams = tuple(names[c] for c in camera_dirs if c in names)
    size = dict(width=2 * script_args.image_width, height=2 * script_args.image_height, camera_names=synth_cams)
    if train_dir is None:
        train_dir = str(out / "data" / "train")
        if not Path(train_dir).is_dir():
            write_carla_dataset(train_dir, script_args.synthetic_train_routes, seed=training_args.seed,
                                frames_per_route=script_args.synthetic_frames_per_route, **size)
    if eval_dir is None:
        eval_dir = str(out / "data" / "heldout")
        if not Path(eval_dir).is_dir():
            write_carla_dataset(eval_dir, script_args.synthetic_eval_routes, seed=training_args.seed + 7919,
                                frames_per_route=script_args.synthetic_frames_per_route, **size)
    model = build_model(script_args, num_cameras=len(camera_dirs))
    cfg = model.config
    make = lambda root: _dataset(root, script_args.cameras, script_args.num_frames, script_args.image_width,  # noqa: E731
                                 script_args.image_height, cfg.route_as, script_args.route_image_size,
                                 cfg.num_speed_wps, cfg.num_route_points)
    train_ds, eval_ds = make(train_dir), make(eval_dir)
    logger.info("SimLingo: %d training frames, %d held-out frames; %.1f M parameters", len(train_ds), len(eval_ds),
                sum(p.numel() for p in model.parameters()) / 1e6)
    trainer = SimLingoTrainer(model=model, args=training_args, train_dataset=train_ds, data_collator=SimLingoCollator())
    result = trainer.train()
    trainer.save_model(str(out))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = evaluate_and_report(model, eval_ds, out, script_args.eval_batch_size, script_args.num_plot_samples)
    metrics["train"] = {"train_loss": result.training_loss, "logged_losses": losses,
                        "train_frames": len(train_ds), "train_skipped": dict(train_ds.skipped)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def run_eval(args: SimLingoEvalArguments) -> dict:
    """Evaluate a trained checkpoint on CARLA route folders."""
    from ..models.simlingo import SimLingoForWaypointPrediction

    model = SimLingoForWaypointPrediction.from_pretrained(args.model_name_or_path)
    cfg = model.config
    ds = _dataset(args.data_dir, args.cameras, cfg.num_frames, args.image_width, args.image_height, cfg.route_as,
                  args.route_image_size, cfg.num_speed_wps, cfg.num_route_points)
    return evaluate_and_report(model, ds, args.output_dir, args.batch_size, args.num_plot_samples)


__all__ = [
    "SimLingoEvalArguments",
    "SimLingoScriptArguments",
    "build_model",
    "evaluate_and_report",
    "format_metrics",
    "run_eval",
    "run_train",
]
