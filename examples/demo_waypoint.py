"""`make demo`: the waypoint predictor end to end on the embedded synthetic driving scenes, on CPU.

    python examples/demo_waypoint.py --output_dir demo_output

1. generates procedural driving scenes (train and held-out seeds) and writes them as WOD-E2E TFRecord
   files (`E2EDFrame` protos with JPEG images, calibrations and rater-scored trajectories),
2. reads them back through the real WOD-E2E reader and trains a tiny frozen-tower waypoint model with
   `transformers.Trainer`; the tower runs once per image (its outputs go to the on-disk feature cache
   under `<output_dir>/feature_cache`), every later epoch trains the head from the cache,
3. evaluates it against constant-velocity extrapolation on the held-out scenes (ADE/FDE and the Rater
   Feedback Score) and prints the table, and writes a challenge submission (`E2EDChallengeSubmission`),
4. saves a model directory that loads with `AutoModel.from_pretrained` (checked), with its image
   processor and a model card, and renders predicted vs. true trajectories into a PNG.
Exits with status 1 if the model does not beat the constant-velocity baseline on ADE.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# First: importing hf_vlmdrive drops an import-time warning that transformers' import of peft / bitsandbytes logs.
import hf_vlmdrive  # noqa: E402, F401  (also registers the Auto classes)

# isort: split
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoProcessor, TrainingArguments  # noqa: E402

from hf_vlmdrive.arguments import parse_args  # noqa: E402
from hf_vlmdrive.data.synthetic.driving import PinholeCamera  # noqa: E402
from hf_vlmdrive.data.synthetic.waymo import write_synthetic_e2ed  # noqa: E402
from hf_vlmdrive.data.waymo_e2e import format_num_parameters, write_submission  # noqa: E402
from hf_vlmdrive.data.waypoint import load_waypoint_dataset  # noqa: E402
from hf_vlmdrive.metrics.trajectory.trajectory import constant_velocity_baseline  # noqa: E402
from hf_vlmdrive.model_card import render_waypoint_card  # noqa: E402
from hf_vlmdrive.trainers.waypoint_config import WaypointScriptArguments  # noqa: E402
from hf_vlmdrive.trainers.waypoint_recipe import (  # noqa: E402
    evaluate_waypoint,
    format_metrics_table,
    save_eval_results,
    train_waypoint,
)
from hf_vlmdrive.visualization import plot_waypoint_predictions  # noqa: E402

CONFIG = Path(__file__).parent / "configs" / "waypoint_tiny.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--train_samples", type=int, default=4000)
    parser.add_argument("--eval_samples", type=int, default=400)
    parser.add_argument("--epochs", type=float, default=12)
    args = parser.parse_args()
    out = Path(args.output_dir)
    model_dir = out / "waypoint-tiny"
    start = time.time()

    data_args, training_args = parse_args(
        (WaypointScriptArguments, TrainingArguments),
        [
            "--config", str(CONFIG),
            "--output_dir", str(model_dir),
            "--train_data", str(out / "wod_e2e" / "training.tfrecord*"),
            "--eval_data", str(out / "wod_e2e" / "validation.tfrecord*"),
            "--num_train_epochs", str(args.epochs),
            "--save_strategy", "no",
            "--eval_strategy", "no",
            "--logging_steps", "50",
            "--feature_cache_dir", str(out / "feature_cache"),
        ],
    )
    shape = dict(width=data_args.image_width, height=data_args.image_height, camera_names=tuple(data_args.camera_names))
    print(f"[0/4] writing {args.train_samples} + {args.eval_samples} synthetic scenes as WOD-E2E TFRecords")
    write_synthetic_e2ed(out / "wod_e2e", args.train_samples, seed=0, split="training", num_shards=4, **shape)
    write_synthetic_e2ed(out / "wod_e2e", args.eval_samples, seed=1, split="validation", **shape)
    train_spec, eval_spec = data_args.train_data, data_args.eval_data
    print(f"[1/4] training a tiny waypoint model on {args.train_samples} synthetic scenes ({args.epochs:g} epochs)")
    trainer = train_waypoint(data_args, training_args)
    train_time = time.time() - start
    collate = trainer.data_collator
    print(f"      feature cache {collate.feature_cache.root if collate.feature_cache else 'off'}: "
          f"{collate.cache_batches} training batches read from the cache, {collate.pixel_batches} ran the tower")

    print("[2/4] evaluating on held-out scenes vs. constant velocity")
    model = AutoModel.from_pretrained(model_dir)  # the saved directory, as a user would load it
    processor = AutoProcessor.from_pretrained(model_dir)
    eval_ds = load_waypoint_dataset(
        eval_spec, data_args.image_width, data_args.image_height, camera_names=tuple(data_args.camera_names)
    )
    results = evaluate_waypoint(model, eval_ds, processor)
    # The reloaded model must predict exactly what the trained one does.
    batch = trainer.data_collator([eval_ds[i] for i in range(4)])
    batch.pop("labels")
    trainer.model.eval()
    with torch.no_grad():
        same = torch.equal(trainer.model(**batch).waypoints, model(**batch).waypoints)
    if not same:
        print("error: the reloaded model's predictions differ from the trained model's", file=sys.stderr)
        return 1
    table = format_metrics_table(results)
    save_eval_results(results, out / "metrics.json")
    n_sub = write_submission(
        out / "submission.binproto", list(eval_ds["frame_name"]), results["predictions"],
        method_name="hf_vlmdrive-demo", num_model_parameters=format_num_parameters(model.num_parameters()),
    )

    print("[3/4] rendering predictions and the model card")
    rows = eval_ds.select(range(4))
    past = np.asarray(rows["past_states"])
    plot_path = plot_waypoint_predictions(
        rows["image"],
        results["predictions"][:4],
        np.asarray(rows["future_waypoints"]),
        out / "predictions.png",
        baselines=constant_velocity_baseline(past),
        camera=PinholeCamera(data_args.image_width, data_args.image_height),
        titles=[f"scene {name}" for name in rows["frame_name"]],
    )
    card = render_waypoint_card(
        model,
        table,
        train_data=f"{args.train_samples} procedural synthetic scenes written as WOD-E2E TFRecords (`{train_spec}`)",
        eval_data=f"{args.eval_samples} held-out procedural scenes, WOD-E2E TFRecords (`{eval_spec}`)",
        repo_or_dir=str(model_dir),
        metrics=results["model"],
    )
    card.save(model_dir / "README.md")

    ade, base = results["model"]["ade"], results["constant_velocity"]["ade"]
    print("[4/4] results\n")
    print(table)
    print(
        f"\nmodel ADE {ade:.3f} m vs. constant velocity {base:.3f} m ({base / ade:.2f}x lower error); "
        f"FDE {results['model']['fde']:.3f} vs. {results['constant_velocity']['fde']:.3f} m"
    )
    print(f"model: {model_dir} (AutoModel.from_pretrained round trip checked), card: {model_dir / 'README.md'}")
    print(f"RFS {results['model']['rfs']:.3f} vs. constant velocity {results['constant_velocity']['rfs']:.3f}")
    print(f"submission: {out / 'submission.binproto'} ({n_sub} frames)")
    print(f"figure: {plot_path}; metrics: {out / 'metrics.json'}; training took {train_time:.0f} s")
    if not ade < base:
        print("error: the model does not beat the constant-velocity baseline on ADE", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
