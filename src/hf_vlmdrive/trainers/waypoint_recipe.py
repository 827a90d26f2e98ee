"""Training and evaluation recipe of the frozen-VLM waypoint predictor, on `transformers.Trainer`.

The Trainer is used as it is: the model returns its regression loss, `WaypointCollator` builds the
batches with the model's `WaypointVLMProcessor`, and `compute_metrics` reports the trajectory metrics.
Entry points: `train_waypoint(script_args, training_args) -> Trainer`, `evaluate_waypoint`,
`predict_waypoints`, used by `examples/train_waypoint.py`, `hf-vlmdrive train waypoint` and
`hf-vlmdrive eval waypoint`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoProcessor, Trainer, TrainingArguments

from ..data.collators import WaypointCollator
from ..data.waypoint import load_waypoint_dataset
from ..distributed import (
    barrier,
    build_outside_zero3_init,
    is_main_process,
    prepare_once,
    seed_everything_for_init,
)
from ..errors import UserError
from ..features.waypoint_cache import fill_waypoint_cache, waypoint_feature_cache, with_undecoded_images
from ..hub import check_model_source
from ..interrupt import train_interruptibly
from ..metrics.trajectory.trajectory import constant_velocity_baseline, trajectory_metrics
from ..model_card import _vision_state
from ..models.common.lora_config import normalize_lora_config
from ..models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel
from ..models.waypoint_vlm.processing_waypoint_vlm import WaypointVLMProcessor, build_image_processor
from .waypoint_config import WaypointScriptArguments

logger = logging.getLogger(__name__)


def _vision_config_dict(value) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise UserError(f"--vision_config must be a JSON object, got {value!r}: {err}") from err
    if not isinstance(parsed, dict):
        raise UserError(f"--vision_config must be a JSON object, got {value!r}")
    return parsed


def _tower_state(model) -> str:
    """'frozen', 'trainable', or 'frozen + LoRA r=16 on [...] (N parameters)' for the log line."""
    if model.has_vision_lora:
        lora = model.config.lora
        n_lora = sum(p.numel() for n, p in model.vision_model.named_parameters() if p.requires_grad and "lora_" in n)
        return f"frozen + LoRA r={lora['r']} alpha={lora['lora_alpha']} on {lora['target_modules']} ({n_lora} LoRA parameters)"
    return "frozen" if model.vision_is_frozen else "trainable"


def _model_config(script_args: WaypointScriptArguments, num_cameras: int) -> tuple[dict, dict | None]:
    """(config kwargs, LoRA settings) from `model_config`; LoRA rank 0 means none."""
    kwargs = dict(script_args.model_config)
    if "vision_config" in kwargs:
        kwargs["vision_config"] = _vision_config_dict(kwargs["vision_config"])
    lora = kwargs.pop("lora", None)
    if isinstance(lora, dict) and not lora.get("r"):  # no rank, or rank 0: no LoRA
        extra = sorted(k for k, v in lora.items() if k not in ("r", "lora_dropout") and v is not None)
        if extra:
            raise UserError(f"model_config.lora {extra} need a LoRA rank: set model_config.lora.r > 0 "
                             "(e.g. --model_config.lora.r 16)")
        lora = None
    elif lora == 0:
        lora = None
    kwargs["num_cameras"] = num_cameras
    return kwargs, lora


def load_processor(name_or_path: str, config: WaypointVLMConfig) -> WaypointVLMProcessor:
    """The model's `WaypointVLMProcessor` (AutoProcessor); a directory saved before processors existed gets one
    around its image processor (or a default one for the config)."""
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError, TypeError):
        processor = None
    if isinstance(processor, WaypointVLMProcessor):
        return processor
    try:
        image_processor = AutoImageProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError):
        image_processor = build_image_processor(config)
    return WaypointVLMProcessor(image_processor, num_cameras=config.num_cameras)


def build_waypoint_model(script_args: WaypointScriptArguments, num_cameras: int = 1):
    """Model and processor for the arguments (continue, from a backbone, or from `model_config.vision_config`).

    `model_config.lora` ({r: 16} or a rank) adds LoRA adapters to the vision tower on every route; with
    `model_name_or_path` of a stage-1 model (frozen tower + head) this is the reference's second stage. A model
    that already has adapters keeps them (and `lora` must then match them). Returns (model, WaypointVLMProcessor).
    """
    kwargs, lora = _model_config(script_args, num_cameras)
    sources = {"model_name_or_path": script_args.model_name_or_path, "backbone": script_args.backbone,
               "model_config.vision_config": kwargs.get("vision_config")}
    chosen = [n for n, v in sources.items() if v]
    if len(chosen) != 1:
        raise UserError(
            "give exactly one of --model_name_or_path (continue a waypoint model), --backbone (a pretrained "
            "VLM / vision model) or --model_config.vision_config (a tower built from a config); got "
            f"{chosen or 'none'}"
        )
    if script_args.model_name_or_path:
        model = WaypointVLMModel.from_pretrained(check_model_source(
            script_args.model_name_or_path, "--model_name_or_path", families=("waypoint_vlm",),
            command="`hf-vlmdrive train waypoint` (continuing a model)"))
        # A saved model keeps its config.json: model_config may restate it, but not change it.
        changed = sorted(k for k, v in kwargs.items() if k != "num_cameras" and getattr(model.config, k, v) != v)
        if changed:
            raise UserError(
                f"model_config {changed} differ from the saved model's config ({script_args.model_name_or_path}: "
                f"{ {k: getattr(model.config, k) for k in changed} }); a saved model keeps its config: drop them, "
                "or start from --backbone / --model_config.vision_config"
            )
        if model.config.num_cameras != num_cameras:
            raise UserError(
                f"model {script_args.model_name_or_path} takes {model.config.num_cameras} camera(s), the data "
                f"gives {num_cameras} (--camera_names)"
            )
        if lora is not None:
            _add_lora_to_loaded(model, lora, script_args.model_name_or_path)
        processor = load_processor(script_args.model_name_or_path, model.config)
    elif script_args.backbone:
        check_model_source(script_args.backbone, "--backbone")
        model = WaypointVLMModel.from_backbone(script_args.backbone, **kwargs, lora=lora)
        processor = WaypointVLMProcessor.from_config(model.config, source=script_args.backbone)
    else:
        config = WaypointVLMConfig(**kwargs, lora=lora)
        model = WaypointVLMModel(config)
        processor = WaypointVLMProcessor.from_config(config)
    return model, processor


def _add_lora_to_loaded(model, lora: dict, source: str) -> None:
    """Stage 2 on a loaded model: add the adapters, or check that the ones it has are those asked for."""
    if model.config.lora is None:
        model.enable_vision_lora(lora)
        return
    wanted = normalize_lora_config(lora, model.config.vision_config.model_type, field="model_config.lora")
    if wanted != model.config.lora:
        raise UserError(
            f"model {source} already has LoRA {model.config.lora}, not the requested {wanted}; drop model_config.lora "
            "to continue training its adapters, or merge them first (`merge_vision_lora()` + save_pretrained)"
        )


def make_compute_metrics():
    """`compute_metrics` for Trainer: trajectory metrics of the predicted vs. true waypoints."""

    def compute_metrics(eval_pred) -> dict[str, float]:
        preds = eval_pred.predictions
        preds = preds[0] if isinstance(preds, tuple) else preds
        out = trajectory_metrics(preds, eval_pred.label_ids)
        return {k: v for k, v in out.items() if isinstance(v, float)}

    return compute_metrics


def train_waypoint(script_args: WaypointScriptArguments, training_args: TrainingArguments,
                   callbacks: list | None = None) -> Trainer:
    """Train (or resume) a waypoint model with `Trainer`; saves model + processor to `output_dir`.

    `--resume_from_checkpoint last` resumes from the newest checkpoint in `output_dir`.
    With `data_args.use_feature_cache` and a frozen tower, the tower's outputs for every train / eval image
    are computed once into the on-disk feature cache (or found there from an earlier run or
    `hf-vlmdrive cache-features`), and training reads them instead of images.
    Returns the Trainer, so callers can evaluate or inspect it.
    """
    data_args = script_args
    cameras = tuple(data_args.camera_names)
    # A tower built from a config gets the same weights (and cache entries) every run, and on every rank.
    seed_everything_for_init(training_args)
    with build_outside_zero3_init(training_args):  # the model's own init needs whole tensors (ZeRO-3 shards later)
        model, processor = build_waypoint_model(script_args, num_cameras=len(cameras))
    load = dict(image_width=data_args.image_width, image_height=data_args.image_height, camera_names=cameras)
    from ..data.waymo_e2e import ReadStats

    train_stats, eval_stats = ReadStats(), ReadStats()
    train_ds = load_waypoint_dataset(data_args.train_data, **load, stats=train_stats)
    logger.info("train data %s: %s", data_args.train_data, train_stats.summary())
    eval_ds = load_waypoint_dataset(data_args.eval_data, **load, stats=eval_stats) if data_args.eval_data else None
    if eval_ds is not None:
        logger.info("eval data %s: %s", data_args.eval_data, eval_stats.summary())
    if training_args.remove_unused_columns:
        logger.info("setting remove_unused_columns=False: the collator needs the image columns")
        training_args.remove_unused_columns = False
    training_args.label_names = ["labels"]
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "waypoint model: %d trainable / %d total parameters, tower %s (%s)",
        n_train,
        model.num_parameters(),
        model.config.vision_config.model_type,
        _tower_state(model),
    )
    cache = None
    if data_args.use_feature_cache and not model.vision_is_frozen:
        logger.info(
            "feature cache disabled: the vision tower is trainable (LoRA or freeze_vision=False), so its "
            "outputs change every step; every step runs the tower"
        )
    elif data_args.use_feature_cache:
        model.to(training_args.device)  # encode on the training device
        cache = waypoint_feature_cache(model, processor, data_args.feature_cache_dir, data_args.feature_cache_dtype)
        logger.info("feature cache: %s (%s per image)", cache.root, model.feature_cache_kind)
        with prepare_once(training_args, "filling the feature cache"):  # the others find the entries in place
            for split, ds in (("train", train_ds), ("eval", eval_ds)):
                if ds is not None:
                    fill_waypoint_cache(
                        model, ds, processor, cache, batch_size=training_args.per_device_eval_batch_size,
                        progress=not training_args.disable_tqdm, desc=f"caching tower features ({split})",
                    )
        train_ds = with_undecoded_images(train_ds)
        eval_ds = with_undecoded_images(eval_ds) if eval_ds is not None else None
    collator = WaypointCollator(processor, multi_camera=len(cameras) > 1, feature_cache=cache)
    _set_find_unused_parameters(training_args, model)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator,
        compute_metrics=make_compute_metrics(),
        callbacks=callbacks,
    )
    train_interruptibly(trainer, training_args.resume_from_checkpoint)
    if cache is not None:
        logger.info(
            "feature cache: %d batches from cached features, %d from pixels (cache misses)",
            collator.cache_batches, collator.pixel_batches,
        )
    trainer.save_model(training_args.output_dir)
    held_out = None
    if eval_ds is not None and "future_waypoints" in eval_ds.column_names:
        # The card's held-out evaluation runs on the main process; under ZeRO-3 on every rank (each forward pass
        # gathers the sharded parameters from all of them), with the same rows, and only the main process writes.
        from transformers.integrations import is_deepspeed_zero3_enabled

        if is_main_process(training_args) or is_deepspeed_zero3_enabled():
            held_out = evaluate_waypoint(model, eval_ds, processor, batch_size=training_args.per_device_eval_batch_size,
                                         progress=not training_args.disable_tqdm, feature_cache=cache)
    if is_main_process(training_args):  # one writer per file
        processor.save_pretrained(training_args.output_dir)
        _write_card(trainer, model, data_args, held_out)
    barrier(training_args)  # every rank returns once the output folder is complete
    return trainer


def _set_find_unused_parameters(training_args, model) -> None:
    """With a frozen tower (no LoRA) the trainable parameters are the head and the attention pooling, and every step
    uses all of them: DDP need not search the graph for unused ones (Trainer's default for a PreTrainedModel does,
    and warns that it found none). A trainable or LoRA tower keeps Trainer's default: a tower's own pooling head
    (SigLIP's `head`) is trainable but unused there. An explicit `--ddp_find_unused_parameters` is kept."""
    if training_args.ddp_find_unused_parameters is None and model.vision_is_frozen:  # False with LoRA
        training_args.ddp_find_unused_parameters = False


def _write_card(trainer, model, data_args, results: dict | None) -> None:
    """README.md model card in output_dir: held-out metrics vs. constant velocity when there is eval data."""
    from ..model_card import display_name, train_loss_metrics, write_model_card

    card = dict(train_data=f"{display_name(data_args.train_data)} ({len(trainer.train_dataset)} samples)",
                base_model=model.config.backbone_name_or_path, datasets=[display_name(data_args.train_data)])
    if results is not None:  # the held-out evaluation of `train_waypoint`
        card.update(metrics={k: results["model"][k] for k in METRIC_ROWS if k in results["model"]},
                    protocol=f"{results['model']['protocol']}; {results['num_samples']} held-out samples",
                    metrics_table=format_metrics_table(results), eval_data=display_name(data_args.eval_data))
        save_eval_results(results, Path(trainer.args.output_dir) / "eval_results.json")
    else:
        card.update(metrics=train_loss_metrics(trainer.state.log_history),
                    protocol="training loss (the model's configured waypoint loss) on the training data; no "
                             "held-out evaluation was run (pass --eval_data)")
    write_model_card(trainer.args.output_dir, model, family="waypoint_vlm", vision_state=_vision_state(model.config),
                     **card)


@torch.no_grad()
def predict_waypoints(
    model, dataset, image_processor, batch_size: int = 32, progress: bool = True, feature_cache=None
) -> np.ndarray:
    """Predicted waypoints (N, 20, 2) for every row of `dataset`, in order.

    With a `feature_cache` (see `hf_vlmdrive.features.waypoint_cache`), cached images skip the tower.
    """
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    if feature_cache is not None:
        dataset = with_undecoded_images(dataset)
    collate = WaypointCollator(image_processor, multi_camera=model.config.num_cameras > 1, feature_cache=feature_cache)
    out = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="predict", disable=not progress):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = {k: v.to(device) for k, v in collate(rows).items() if k != "labels"}
        out.append(model(**batch).waypoints.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_waypoints, model.config.waypoint_dim))


def evaluate_waypoint(model, dataset, image_processor, batch_size: int = 32, progress: bool = True,
                      feature_cache=None) -> dict:
    """Trajectory metrics of the model and of the constant-velocity baseline on `dataset`.

    Returns {"model": {...}, "constant_velocity": {...}, "num_samples": N, "predictions": (N, 20, 2)}.
    """
    if "future_waypoints" not in dataset.column_names:
        raise UserError("evaluation needs ground-truth `future_waypoints` (a test split has none)")
    preds = predict_waypoints(model, dataset, image_processor, batch_size=batch_size, progress=progress,
                              feature_cache=feature_cache)
    gt = np.stack([np.asarray(x) for x in dataset["future_waypoints"]])
    past = np.stack([np.asarray(x) for x in dataset["past_states"]])
    cv = constant_velocity_baseline(past, num_points=gt.shape[1])
    results = {
        "model": trajectory_metrics(preds, gt),
        "constant_velocity": trajectory_metrics(cv, gt),
        "num_samples": int(len(gt)),
        "predictions": preds,
    }
    if "preference_scores" in dataset.column_names:  # WOD-E2E rater trajectories: Rater Feedback Score
        from ..metrics.rfs.rfs import rater_feedback_score

        raters = np.stack([np.asarray(x) for x in dataset["preference_trajectories"]])
        scores = np.stack([np.asarray(x) for x in dataset["preference_scores"]])
        for key, traj in (("model", preds), ("constant_velocity", cv)):
            rfs = rater_feedback_score(traj, raters, scores, past_states=past)
            results[key]["rfs"] = rfs["rfs"]
            results[key]["rfs_num_frames"] = rfs["num_frames"]
    return results


METRIC_ROWS = ("rfs", "ade", "fde", "ade@3s", "fde@3s", "ade@5s", "fde@5s", "l2@1s_stp3", "l2@2s_stp3", "l2@3s_stp3",
               "l2_avg_stp3", "l2@1s_uniad", "l2@2s_uniad", "l2@3s_uniad", "l2_avg_uniad",
               "l2@1s_stp3_2hz", "l2@2s_stp3_2hz", "l2@3s_stp3_2hz", "l2_avg_stp3_2hz",
               "l2@1s_uniad_2hz", "l2@2s_uniad_2hz", "l2@3s_uniad_2hz", "l2_avg_uniad_2hz")


def format_metrics_table(results: dict) -> str:
    """Markdown table: one row per metric, model vs. constant velocity, with the protocol underneath."""
    model, base = results["model"], results["constant_velocity"]
    lines = ["| metric | model | constant velocity |", "|---|---:|---:|"]
    for key in METRIC_ROWS:
        if key in model:
            if key == "rfs":
                label = "RFS (0-10, higher is better)"
            elif key.endswith("_2hz"):
                label = f"{key} (m, 2 Hz: comparable with papers)"
            else:
                label = f"{key} (m)"
            lines.append(f"| {label} | {model[key]:.3f} | {base[key]:.3f} |")
    lines.append("")
    lines.append(f"{results['num_samples']} held-out samples. {model['protocol']}.")
    return "\n".join(lines)


def save_eval_results(results: dict, path: str | Path) -> None:
    """Write the metrics (without predictions) as JSON."""
    payload = {k: v for k, v in results.items() if k != "predictions"}
    Path(path).write_text(json.dumps(payload, indent=2))


__all__ = [
    "WaypointScriptArguments",
    "load_processor",
    "build_waypoint_model",
    "evaluate_waypoint",
    "format_metrics_table",
    "make_compute_metrics",
    "predict_waypoints",
    "save_eval_results",
    "train_waypoint",
]
