"""The SimLingo-base recipe shared by `examples/train_simlingo.py` and `hf-vlmdrive train|eval simlingo`:
(synthetic) CARLA-layout data -> model -> `SimLingoTrainer` -> held-out ADE/FDE vs baselines + a plot.
Entry point: `train_simlingo(script_args, training_args) -> SimLingoTrainer`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..distributed import (
    atomic_directory,
    broadcast_from_main,
    is_main_process,
    prepare_once,
    seed_everything_for_init,
)
from ..errors import UserError
from ..hub import check_model_source
from ..interrupt import train_interruptibly
from ..metrics.trajectory.trajectory import (
    constant_velocity_baseline,
    straight_route_baseline,
    trajectory_metrics,
)
from .simlingo_config import SimLingoEvalArguments, SimLingoScriptArguments
from .simlingo_trainer import SimLingoTrainer

logger = logging.getLogger(__name__)
SPEED_WPS_HZ = 4.0  # one speed waypoint per saved CARLA frame


READER_ARGS = ("skip_first_frames", "require_full_future", "route_filter", "route_resampling")


def _dataset(root, cameras, num_frames, width, height, route_as, route_image_size, num_wps, num_route, args=None,
             shift_augmentation_prob=0.0, seed=0):
    from ..data.carla import CarlaRouteDataset

    return CarlaRouteDataset(
        root,
        num_frames=num_frames,
        cameras=tuple(c.strip() for c in cameras.split(",") if c.strip()),
        image_size=(width, height),
        num_speed_wps=num_wps,
        num_route_points=num_route,
        route_image_size=(route_image_size, route_image_size) if route_as == "image" else None,
        shift_augmentation_prob=shift_augmentation_prob if cameras.strip() == "rgb" else 0.0,
        seed=seed,
        **{k: getattr(args, k) for k in READER_ARGS if hasattr(args, k)},
    )


# The recipe's defaults for a random CLIP tower (model_config.vision_config overrides any of them).
RANDOM_TOWER = {"model_type": "clip_vision_model", "hidden_size": 64, "num_hidden_layers": 2, "image_size": 32,
                "patch_size": 4}


def build_model(args: SimLingoScriptArguments, num_cameras: int):
    """The SimLingo model the recipe trains: around a LLaVA-NeXT tower (`vision_model_name_or_path`), or a
    small random CLIP tower (`model_config.vision_config`, defaults `RANDOM_TOWER`)."""
    from ..models.simlingo import SimLingoConfig, SimLingoForWaypointPrediction, lm_preset

    kwargs = dict(args.model_config)
    kwargs["num_cameras"] = num_cameras
    text_overrides = kwargs.pop("text_config", None) or {}
    if args.vision_model_name_or_path:
        if "vision_config" in kwargs:
            raise UserError("model_config.vision_config describes a random tower; it cannot be combined with "
                             f"vision_model_name_or_path={args.vision_model_name_or_path!r}")
        return SimLingoForWaypointPrediction.from_backbone(args.vision_model_name_or_path, lm_size=args.lm_size,
                                                           text_config_overrides=text_overrides, **kwargs)
    vision = {**RANDOM_TOWER, **(kwargs.pop("vision_config", None) or {})}
    vision.setdefault("intermediate_size", 2 * vision["hidden_size"])
    vision.setdefault("num_attention_heads", max(1, vision["hidden_size"] // 32))
    return SimLingoForWaypointPrediction(SimLingoConfig(vision_config=vision,
                                                        text_config=lm_preset(args.lm_size, **text_overrides),
                                                        **kwargs))


def evaluate_and_report(model, dataset, output_dir: str | Path | None, batch_size: int = 16, num_plot: int = 6) -> dict:
    """Predict on `dataset`, compute metrics vs baselines, write metrics.json + predictions.png, print a table."""
    preds = predict_simlingo(model, dataset, batch_size=batch_size)
    metrics = simlingo_metrics(preds)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        from ..visualization import plot_simlingo_predictions

        metrics["plot"] = str(plot_simlingo_predictions(preds, out / "predictions.png", num=num_plot, dataset=dataset,
                                                        waypoint_hz=SPEED_WPS_HZ))
    print(format_metrics(metrics))
    return metrics


# ---------------------------------------------------------------------- evaluation
MODEL_INPUTS = ("pixel_values", "speed", "target_point", "target_point_next", "route_coords", "route_image",
                "intrinsics", "extrinsics")


@torch.no_grad()
def predict_simlingo(model, dataset, batch_size: int = 8, progress: bool = True) -> dict[str, np.ndarray]:
    """Run the model over a [`CarlaRouteDataset`]; returns stacked numpy arrays: `speed_wps`, `route`,
    `speed_wps_labels`, `speed_wps_mask`, `route_labels`, `route_mask`, `speed`, `target_point`."""
    from tqdm.auto import tqdm

    from ..data.collators import SimLingoCollator

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=SimLingoCollator())
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, list] = {k: [] for k in ("speed_wps", "route", "speed_wps_labels", "speed_wps_mask",
                                            "route_labels", "route_mask", "speed", "target_point")}
    for batch in tqdm(loader, desc="SimLingo eval", disable=not progress):
        inputs = {k: batch[k].to(device) for k in MODEL_INPUTS if k in batch}
        pred = model(**inputs)
        out["speed_wps"].append(pred.speed_wps.float().cpu().numpy())
        out["route"].append(pred.route.float().cpu().numpy())
        for key in ("speed_wps_labels", "speed_wps_mask", "route_labels", "route_mask", "speed", "target_point"):
            out[key].append(batch[key].numpy())
    model.train(was_training)
    return {k: np.concatenate(v) for k, v in out.items()}


def simlingo_metrics(predictions: dict[str, np.ndarray], route_spacing: float = 1.0) -> dict:
    """ADE/FDE of speed waypoints and route, for the model and the baselines.

    Speed waypoints: 4 Hz points (10 = 2.5 s), ADE/FDE overall and at 1 s / 2.5 s, L2 at 1 / 2 s in both
    conventions; baseline = constant velocity along the ego's heading at the current speed. Route: 20
    points `route_spacing` m apart (spatial, no time), ADE (mean point L2) / FDE (last point); baseline =
    a straight line ahead. Masked points (missing future frames) are left out; samples without a valid
    point are left out of the averages.
    """
    speed = predictions["speed"][:, 0]
    n = len(speed)
    wps_mask = predictions["speed_wps_mask"].astype(bool)
    keep = wps_mask.any(axis=1)
    num_wps = predictions["speed_wps"].shape[1]
    states = np.zeros((n, 1, 4))
    states[:, 0, 2] = speed  # ego frame: moving along +x at the current speed
    cv = constant_velocity_baseline(states, num_points=num_wps, frequency_hz=SPEED_WPS_HZ)
    horizons = tuple(h for h in (1.0, num_wps / SPEED_WPS_HZ) if round(h * SPEED_WPS_HZ) <= num_wps)
    l2 = tuple(h for h in (1.0, 2.0) if round(h * SPEED_WPS_HZ) <= num_wps)

    def wps(pred):
        return trajectory_metrics(pred[keep], predictions["speed_wps_labels"][keep], masks=wps_mask[keep],
                                  frequency_hz=SPEED_WPS_HZ, horizons_s=horizons, l2_horizons_s=l2)

    route_mask = predictions["route_mask"].astype(bool)
    rkeep = route_mask.any(axis=1)
    num_route = predictions["route"].shape[1]

    def route(pred):
        res = trajectory_metrics(pred[rkeep], predictions["route_labels"][rkeep], masks=route_mask[rkeep],
                                 frequency_hz=1.0, horizons_s=(), l2_horizons_s=())
        res["protocol"] = f"L2 metres over {num_route} route points {route_spacing:g} m apart (spatial)"
        return res

    baseline_route = straight_route_baseline(n, num_route, route_spacing)
    result = {
        "speed_wps": {"model": wps(predictions["speed_wps"]), "constant_velocity": wps(cv)},
        "route": {"model": route(predictions["route"]), "straight_line": route(baseline_route)},
        "num_samples": int(n),
        "protocol": (
            f"held-out CARLA-layout frames (n={n}); speed waypoints {num_wps} points at 4 Hz vs constant "
            f"velocity; route {num_route} points {route_spacing:g} m apart vs straight line; masked points left out"
        ),
    }
    return result


def format_metrics(metrics: dict) -> str:
    """A small text table of model vs baseline ADE/FDE."""
    lines = [metrics["protocol"], f"{'output':<10} {'predictor':<18} {'ADE':>7} {'FDE':>7}"]
    for output, rows in (("speed_wps", metrics["speed_wps"]), ("route", metrics["route"])):
        for name, res in rows.items():
            lines.append(f"{output:<10} {name:<18} {res['ade']:7.3f} {res['fde']:7.3f}")
    return "\n".join(lines)


def train_simlingo(script_args: SimLingoScriptArguments, training_args) -> SimLingoTrainer:
    """Write synthetic routes if no data is given, train with `SimLingoTrainer`, save model + processor,
    evaluate held-out. Returns the trainer; the held-out metrics are `trainer.heldout_metrics` (also
    `<output_dir>/metrics.json`)."""
    from ..data.collators import SimLingoCollator

    out = Path(training_args.output_dir)
    train_dir, eval_dir = script_args.train_data_dir, script_args.eval_data_dir
    camera_dirs = [c.strip() for c in script_args.cameras.split(",") if c.strip()]
    names = {"rgb": "FRONT", "rgb_left": "FRONT_LEFT", "rgb_right": "FRONT_RIGHT"}
    synth_cams = tuple(names[c] for c in camera_dirs if c in names)
    size = dict(width=2 * script_args.image_width, height=2 * script_args.image_height, camera_names=synth_cams,
                speed_profile=script_args.synthetic_speed_profile)
    # Under N processes the main process writes the synthetic routes, the others wait and read the same ones (each
    # folder appears whole: written under a temporary name, then renamed), so every rank has the same frames.
    with prepare_once(training_args, "writing synthetic CARLA routes"):
        if train_dir is None:
            train_dir = str(out / "data" / "train")
            _write_routes(train_dir, script_args.synthetic_train_routes, training_args.seed, script_args, size)
        if eval_dir is None:
            eval_dir = str(out / "data" / "heldout")
            _write_routes(eval_dir, script_args.synthetic_eval_routes, training_args.seed + 7919, script_args, size)
    seed_everything_for_init(training_args)  # --seed fixes the initial weights (the same on every rank)
    model = build_model(script_args, num_cameras=len(camera_dirs))
    cfg = model.config
    make = lambda root, shift=0.0: _dataset(  # noqa: E731
        root, script_args.cameras, cfg.num_frames, script_args.image_width, script_args.image_height, cfg.route_as,
        script_args.route_image_size, cfg.num_speed_wps, cfg.num_route_points, script_args, shift,
        training_args.seed)
    train_ds, eval_ds = make(train_dir, script_args.shift_augmentation_prob), make(eval_dir)
    processor = build_processor(cfg, script_args.image_width, script_args.image_height, script_args.route_image_size)
    for split, ds, root in (("train", train_ds, train_dir), ("held-out", eval_ds, eval_dir)):
        logger.info("%s data %s: read %d frame(s), skipped %s", split, root, len(ds), dict(ds.skipped) or 0)
    logger.info("SimLingo: %d training frames, %d held-out frames; %.1f M parameters", len(train_ds), len(eval_ds),
                sum(p.numel() for p in model.parameters()) / 1e6)
    trainer = SimLingoTrainer(model=model, args=training_args, train_dataset=train_ds, data_collator=SimLingoCollator(),
                              processing_class=processor)
    result = train_interruptibly(trainer, training_args.resume_from_checkpoint)
    trainer.save_model(str(out))
    metrics = None
    if is_main_process(training_args):  # held-out evaluation, metrics.json, plot, processor and card: written once
        processor.save_pretrained(str(out))
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        metrics = evaluate_and_report(model, eval_ds, out, script_args.eval_batch_size, script_args.num_plot_samples)
        metrics["train"] = {"train_loss": result.training_loss, "logged_losses": losses,
                            "train_frames": len(train_ds), "train_skipped": dict(train_ds.skipped)}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        _write_card(out, model, metrics, script_args, train_dir, eval_dir, len(train_ds), len(eval_ds))
    # The other ranks wait here for the main process's evaluation and return its metrics too.
    trainer.heldout_metrics = broadcast_from_main(training_args, metrics)
    return trainer


def _write_routes(root: str, num_routes: int, seed: int, script_args, size: dict) -> None:
    """Synthetic CARLA routes in `root`, unless a finished folder is there already (an earlier run, or the main
    process of this one)."""
    from ..data.synthetic.carla import write_carla_dataset

    if Path(root).is_dir():
        return
    with atomic_directory(root) as tmp:
        write_carla_dataset(tmp, num_routes, seed=seed, frames_per_route=script_args.synthetic_frames_per_route,
                            **size)


def _write_card(out: Path, model, metrics: dict, script_args, train_dir, eval_dir, n_train: int, n_eval: int) -> None:
    """README.md model card: held-out speed-waypoint / route ADE and FDE vs. constant velocity / straight line."""
    from ..model_card import display_name, write_model_card

    flat, baselines = {}, {"baseline (constant velocity / straight line)": {}}
    for output, baseline in (("speed_wps", "constant_velocity"), ("route", "straight_line")):
        for key in ("ade", "fde"):
            flat[f"{output}_{key}"] = metrics[output]["model"][key]
            baselines["baseline (constant velocity / straight line)"][f"{output}_{key}"] = metrics[output][baseline][key]
    synthetic = script_args.train_data_dir is None
    write_model_card(
        out, model, family="simlingo", metrics=flat, baselines=baselines,
        protocol=f"{metrics['protocol']}; metres",
        train_data=f"{'synthetic CARLA-layout routes' if synthetic else display_name(train_dir)} ({n_train} frames)",
        eval_data=f"{'synthetic held-out CARLA-layout routes' if script_args.eval_data_dir is None else display_name(eval_dir)} "
                  f"({n_eval} frames)",
        base_model=script_args.vision_model_name_or_path,
        datasets=["synthetic-carla-layout"] if synthetic else [display_name(train_dir)],
    )


def build_processor(config, image_width: int, image_height: int, route_image_size: int):
    """The [`SimLingoProcessor`] matching the recipe's reader settings (saved beside the weights)."""
    from ..models.simlingo.processing_simlingo import SimLingoProcessor

    return SimLingoProcessor(image_size=[image_width, image_height], route_as=config.route_as,
                             route_image_size=[route_image_size, route_image_size])


def run_eval(args: SimLingoEvalArguments) -> dict:
    """Evaluate a trained checkpoint on CARLA route folders."""
    from ..models.simlingo import SimLingoForWaypointPrediction

    model = SimLingoForWaypointPrediction.from_pretrained(check_model_source(
        args.model_name_or_path, "--model_name_or_path", families=("simlingo",), command="`hf-vlmdrive eval simlingo`"))
    cfg = model.config
    ds = _dataset(args.data_dir, args.cameras, cfg.num_frames, args.image_width, args.image_height, cfg.route_as,
                  args.route_image_size, cfg.num_speed_wps, cfg.num_route_points, args)
    return evaluate_and_report(model, ds, args.output_dir, args.batch_size, args.num_plot_samples)


__all__ = [
    "SimLingoEvalArguments",
    "SimLingoScriptArguments",
    "build_model",
    "build_processor",
    "predict_simlingo",
    "simlingo_metrics",
    "train_simlingo",
    "evaluate_and_report",
    "format_metrics",
    "run_eval",
]
