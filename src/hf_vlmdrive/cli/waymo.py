"""`hf-vlmdrive predict waypoint` (WOD-E2E challenge submission) and `hf-vlmdrive cache-features`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arguments import parse_args
from ..errors import UserError


@dataclass
class WaypointPredictArguments:
    """Arguments of `hf-vlmdrive predict waypoint`."""

    model: str = field(default="", metadata={"help": "Directory or Hub id of a trained waypoint_vlm model."})
    data: str = field(default="", metadata={"help": "WOD-E2E TFRecord file(s) / glob (e.g. test.tfrecord*), or any waypoint data spec."})
    submission: str | None = field(default=None, metadata={"help": "Write an E2EDChallengeSubmission binary proto here."})
    output_json: str | None = field(default=None, metadata={"help": "Also write {frame_name: 20x2 waypoints} as JSON."})
    batch_size: int = field(default=32)
    image_width: int = field(default=192, metadata={"help": "Only for 'synthetic:N' data."})
    image_height: int = field(default=128, metadata={"help": "Only for 'synthetic:N' data."})
    account_name: str = field(default="", metadata={"help": "Submission: the email registered at waymo.com/open."})
    method_name: str = field(default="hf_vlmdrive-waypoint", metadata={"help": "Submission: unique_method_name."})
    authors: list[str] = field(default_factory=list)
    affiliation: str = field(default="")
    description: str = field(default="Frozen vision encoder + MLP waypoint head (hf_vlmdrive).")
    method_link: str = field(default="")
    public_model_names: list[str] = field(default_factory=list, metadata={"help": "Open-source models used."})
    allow_partial: bool = field(
        default=False,
        metadata={"help": "Write the submission even when records of --data were skipped (damaged / unreadable)."},
    )


def _camera_names(model) -> tuple[str, ...]:
    names = getattr(model.config, "camera_names", None)
    if names:
        return tuple(names)
    return ("FRONT",) if model.config.num_cameras == 1 else ("FRONT_LEFT", "FRONT", "FRONT_RIGHT")


def run_predict(argv: list[str]) -> int:
    """Predict 20-point trajectories for every frame and write the challenge submission."""
    import json

    from transformers import AutoModel

    from ..data.waymo_e2e import format_num_parameters, write_submission
    from ..data.waypoint import load_waypoint_dataset
    from ..hub import check_model_source
    from ..trainers.waypoint_recipe import load_processor, predict_waypoints

    (args,) = parse_args((WaypointPredictArguments,), argv, prog="hf-vlmdrive predict waypoint")
    if not args.model or not args.data:
        raise UserError("--model and --data are required")
    if not args.submission and not args.output_json:
        raise UserError("give --submission out.binproto and/or --output_json")
    model = AutoModel.from_pretrained(check_model_source(args.model, "--model", families=("waypoint_vlm",),
                                                         command="`hf-vlmdrive predict waypoint`"))
    processor = load_processor(args.model, model.config)
    from ..data.waymo_e2e import ReadStats

    stats = ReadStats()
    dataset = load_waypoint_dataset(args.data, args.image_width, args.image_height, camera_names=_camera_names(model),
                                    stats=stats)
    print(f"{args.data}: {stats.summary()}")
    if args.submission and stats.skipped:
        if not args.allow_partial:
            raise UserError(
                f"{stats.skipped} record(s) of {args.data} could not be read, so the submission would miss those "
                f"frames ({stats.summary()}); repair or re-download the file(s), or pass --allow_partial to write "
                "it without them"
            )
        print(f"warning: --allow_partial: the submission misses {stats.skipped} damaged record(s) (a truncated "
              "file may hold more frames past the damage)")
    preds = predict_waypoints(model, dataset, processor, batch_size=args.batch_size)
    names = list(dataset["frame_name"])
    if args.submission:
        n = write_submission(
            args.submission,
            names,
            preds,
            account_name=args.account_name,
            method_name=args.method_name,
            authors=list(args.authors),
            affiliation=args.affiliation,
            description=args.description,
            method_link=args.method_link,
            public_model_names=list(args.public_model_names),
            num_model_parameters=format_num_parameters(model.num_parameters()),
        )
        print(f"wrote {n} trajectories to {args.submission} (E2EDChallengeSubmission)")
    if args.output_json:
        with open(args.output_json, "w") as fh:
            json.dump({name: p.tolist() for name, p in zip(names, preds)}, fh)
        print(f"wrote {args.output_json}")
    return 0


def register(registry) -> None:
    """Add the WOD-E2E commands."""
    registry.add(("predict", "waypoint"), run_predict, "predict WOD-E2E trajectories; --submission writes the challenge proto")
