"""`hf-vlmdrive train waypoint` and `hf-vlmdrive eval waypoint`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..arguments import parse_args
from ..errors import UserError


@dataclass
class WaypointEvalArguments:
    """Arguments of `hf-vlmdrive eval waypoint`."""

    model: str = field(default="", metadata={"help": "Directory or Hub id of a trained waypoint_vlm model."})
    data: str = field(default="synthetic:200:1", metadata={"help": "'synthetic:N[:SEED]' or a saved dataset dir."})
    image_width: int = field(default=192)
    image_height: int = field(default=128)
    batch_size: int = field(default=32)
    output_json: str | None = field(default=None, metadata={"help": "Write the metrics here as JSON."})
    plot: str | None = field(default=None, metadata={"help": "Write a PNG of a few predictions here."})


def run_train(argv: list[str]) -> int:
    """Train a waypoint model (arguments: WaypointScriptArguments with `model_config`, TrainingArguments)."""
    from transformers import TrainingArguments

    from ..trainers.waypoint_config import WaypointScriptArguments
    from ..trainers.waypoint_recipe import train_waypoint

    script_args, training_args = parse_args(
        (WaypointScriptArguments, TrainingArguments), argv, prog="hf-vlmdrive train waypoint"
    )
    from ..distributed import is_main_process

    train_waypoint(script_args, training_args)
    if is_main_process(training_args):
        print(f"saved model and image processor to {training_args.output_dir}")
    return 0


def run_eval(argv: list[str]) -> int:
    """Evaluate a waypoint model against the constant-velocity baseline; prints a metrics table."""
    from transformers import AutoModel

    from ..data.waypoint import load_waypoint_dataset
    from ..hub import check_model_source
    from ..trainers.waypoint_recipe import (
        evaluate_waypoint,
        format_metrics_table,
        load_processor,
        save_eval_results,
    )

    (args,) = parse_args((WaypointEvalArguments,), argv, prog="hf-vlmdrive eval waypoint")
    if not args.model:
        raise UserError("--model is required (a trained waypoint_vlm directory or Hub id)")
    model = AutoModel.from_pretrained(check_model_source(args.model, "--model", families=("waypoint_vlm",),
                                                         command="`hf-vlmdrive eval waypoint`"))
    processor = load_processor(args.model, model.config)
    cameras = ("FRONT",) if model.config.num_cameras == 1 else ("FRONT_LEFT", "FRONT", "FRONT_RIGHT")
    from ..data.waymo_e2e import ReadStats

    stats = ReadStats()
    dataset = load_waypoint_dataset(args.data, args.image_width, args.image_height, camera_names=cameras, stats=stats)
    print(f"{args.data}: {stats.summary()}")
    results = evaluate_waypoint(model, dataset, processor, batch_size=args.batch_size)
    print(format_metrics_table(results))
    if args.output_json:
        save_eval_results(results, args.output_json)
    if args.plot:
        import numpy as np

        from ..metrics.trajectory.trajectory import constant_velocity_baseline
        from ..visualization import plot_waypoint_predictions

        rows = dataset.select(range(min(4, len(dataset))))
        images = rows["image"] if "image" in rows.column_names else [imgs[0] for imgs in rows["images"]]
        camera = None
        if args.data.startswith("synthetic:"):
            from ..data.synthetic.driving import PinholeCamera

            camera = PinholeCamera(args.image_width, args.image_height)
        plot_waypoint_predictions(
            images,
            results["predictions"][: len(rows)],
            np.asarray(rows["future_waypoints"]),
            Path(args.plot),
            baselines=constant_velocity_baseline(np.asarray(rows["past_states"])),
            camera=camera,
        )
        print(f"wrote {args.plot}")
    return 0


def register(registry) -> None:
    """Add the waypoint commands."""
    registry.add(("train", "waypoint"), run_train, "train a frozen-VLM waypoint predictor (Trainer)")
    registry.add(("eval", "waypoint"), run_eval, "evaluate a waypoint model vs. constant velocity")
