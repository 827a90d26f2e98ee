"""The GeoVLA recipe: LeRobot data -> model from backbones + `GeoVLAProcessor` -> `GeoVLATrainer`.

Used by `examples/train_libero.py` and `hf-vlmdrive train geovla`; both parse
(`GeoVLAScriptArguments`, `GeoVLATrainingArguments`) from a YAML `--config` plus command-line overrides.
Entry point: `train_geovla(script_args, training_args) -> GeoVLATrainer`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..data.collators import GeoVLACollator
from ..data.lerobot import LeRobotDataset, LeRobotMixture, load_mixture, make_synthetic_libero
from ..distributed import (
    atomic_directory,
    build_outside_zero3_init,
    is_main_process,
    prepare_once,
    seed_everything_for_init,
)
from ..errors import UserError
from ..features.geometry_cache import GeometryFeatureCache
from ..hub import check_model_source
from ..interrupt import train_interruptibly
from .callbacks import (
    ModuleGradNormCallback,
    PeakMemoryCallback,
    add_logging_callbacks,
)
from .geovla_config import GeoVLAScriptArguments, GeoVLATrainingArguments
from .geovla_trainer import MODULE_GROUPS, GeoVLATrainer

logger = logging.getLogger(__name__)
TINY = "tiny-random"


def _tiny_backbones(directory: Path, num_views: int) -> tuple[str, str]:
    """Build (once) a tiny random Qwen2.5-VL and DINOv2 under `directory` for offline demos (each written in one
    move, so a folder with a config.json is complete; their weights come from a fixed seed, 0)."""
    from ..testing.tiny_qwen import save_tiny_dinov2, save_tiny_qwen2_5_vl

    vlm, geo = directory / "tiny-qwen2.5-vl", directory / "tiny-dinov2"
    if not (vlm / "config.json").is_file():
        with atomic_directory(vlm) as tmp:
            save_tiny_qwen2_5_vl(tmp, hidden_size=32, num_layers=4)
    if not (geo / "config.json").is_file():
        with atomic_directory(geo) as tmp:
            save_tiny_dinov2(tmp, image_size=28, hidden_size=32)
    return str(vlm), str(geo)


def build_dataset(args: GeoVLAScriptArguments) -> LeRobotDataset | LeRobotMixture:
    """Open the LeRobot dataset or mixture (writing the synthetic one first when asked, in one move: a folder
    with `meta/info.json` is a whole dataset; under N processes call it inside `prepare_once`)."""
    root = Path(args.dataset_root)
    if args.make_synthetic_dataset and not (root / "meta" / "info.json").is_file() and args.mixture is None:
        logger.info("writing a synthetic LIBERO-like LeRobot v3.0 dataset at %s", root)
        with atomic_directory(root) as tmp:
            make_synthetic_libero(tmp, num_episodes=args.synthetic_episodes,
                                  episode_length=args.synthetic_episode_length,
                                  image_storage=args.synthetic_image_storage)
    kwargs = {"action_horizon": args.action_chunk_size, "camera_keys": args.camera_keys}
    if args.mixture:
        return load_mixture(args.mixture, root, **kwargs)
    return LeRobotDataset(root, **kwargs)


def dataset_stats(dataset: LeRobotDataset | LeRobotMixture) -> dict:
    """Statistics for the model: the dataset's `meta/stats.json`, or recomputed over a mixture's frames."""
    if isinstance(dataset, LeRobotDataset):
        return dataset.stats
    if len(dataset.datasets) == 1:
        return dataset.datasets[0].stats
    from ..data.lerobot.stats import _vector_stats

    return {"observation.state": _vector_stats(dataset.states), "action": _vector_stats(dataset.actions)}


def train_geovla(script_args: GeoVLAScriptArguments, training_args: GeoVLATrainingArguments) -> GeoVLATrainer:
    """Build everything and train; returns the trainer (its `state.log_history` holds the loss curve).

    Under N processes (`accelerate launch`, `torchrun`): the main process writes the synthetic dataset and the
    tiny backbones while the others wait (`prepare_once`), every rank seeds before building the model (same
    initial weights, fixed by `--seed`), Trainer shards the batches, and only the main process writes files
    (model, processor, norm_stats.json, loss_curve.json, card). Flow-matching noise: see `GeoVLATrainer`.
    """
    from transformers import AutoProcessor

    from ..models.geovla import GeoVLAForActionPrediction
    from ..models.geovla.processing_geovla import GeoVLAProcessor

    if training_args.image_augmentation and training_args.geometry_cache_mb > 0:
        raise UserError(
            "geometry_cache_mb > 0 with image_augmentation=True: the geometry cache needs deterministic "
            "preprocessing; turn one of them off"
        )
    vlm, geometry = script_args.vlm_name_or_path, script_args.geometry_name_or_path
    for value, flag in ((vlm, "--vlm_name_or_path"), (geometry, "--geometry_name_or_path")):
        if value != TINY:
            check_model_source(value, flag)
    # The tiny backbones and the model's own init / meta-device materialisation need whole tensors: under ZeRO-3 they
    # are built as in one process and DeepSpeed shards the model when training starts.
    with build_outside_zero3_init(training_args):
        with prepare_once(training_args, "GeoVLA: synthetic dataset and tiny backbones"):
            dataset = build_dataset(script_args)
            num_views = len(dataset.camera_keys)
            if TINY in (vlm, geometry):
                tiny_vlm, tiny_geo = _tiny_backbones(Path(training_args.output_dir) / "backbones", num_views)
                vlm = tiny_vlm if vlm == TINY else vlm
                geometry = tiny_geo if geometry == TINY else geometry
        seed_everything_for_init(training_args)  # after the preparation: its RNG use must not move the initial weights
        first = dataset.datasets[0] if isinstance(dataset, LeRobotMixture) else dataset
        config_kwargs = dict(script_args.model_config)
        geometry_kwargs = {"num_views": num_views, **config_kwargs.pop("geometry_config", {})}
        model = GeoVLAForActionPrediction.from_backbones(
            vlm=vlm,
            geometry=geometry,
            geometry_kwargs=geometry_kwargs,
            action_dim=first.actions.shape[1],
            state_dim=first.states.shape[1],
            **config_kwargs,
        )
    model.set_norm_stats(dataset_stats(dataset), source=str(script_args.dataset_root))
    if training_args.geometry_cache_mb > 0:
        model.attach_geometry_cache(GeometryFeatureCache(training_args.geometry_cache_mb, training_args.geometry_cache_dir,
                                                         augmentation=training_args.image_augmentation,
                                                         disk_budget_mb=training_args.geometry_cache_disk_mb))
    processor = GeoVLAProcessor.from_vlm_processor(AutoProcessor.from_pretrained(vlm),
                                                   geometry_image_size=model.config.geometry_image_size,
                                                   geometry_image_mean=model.config.geometry_image_mean,
                                                   geometry_image_std=model.config.geometry_image_std)
    collator = GeoVLACollator(processor, cache_keys=model.geometry_cache is not None)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("GeoVLA: %d frames, %d cameras, %.2fM / %.2fM parameters trainable", len(dataset), num_views,
                trainable / 1e6, total / 1e6)
    trainer = GeoVLATrainer(model=model, args=training_args, train_dataset=dataset, data_collator=collator,
                            processing_class=processor)
    # The seed's signals, in every log record (console, tensorboard / wandb with --report_to, log_history):
    # gradient norm per module (grad_norm/vlm, /action_head, /compressor), peak memory; GeoVLATrainer adds the
    # geometry-cache counters itself.
    add_logging_callbacks(trainer, ModuleGradNormCallback(dict(MODULE_GROUPS)), PeakMemoryCallback())
    try:
        train_interruptibly(trainer, training_args.resume_from_checkpoint)
    finally:
        if model.geometry_cache is not None:  # frees its RAM and removes a temporary spill folder
            logger.info("geometry cache: %s", model.geometry_cache.format_stats())
            model.geometry_cache.close()
    trainer.save_model()  # Trainer writes from the main process only
    trainer.save_state()  # trainer_state.json beside the model: the whole log history (`hf-vlmdrive sweep` reads it)
    if is_main_process(training_args):
        losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
        Path(training_args.output_dir, "loss_curve.json").write_text(json.dumps(losses), encoding="utf-8")
        from ..model_card import display_name, train_loss_metrics, write_model_card

        write_model_card(training_args.output_dir, model, family="geovla",
                         metrics=train_loss_metrics(trainer.state.log_history),
                         protocol="flow-matching velocity MSE on normalised actions, training data: first logged "
                                  "step and mean of the last 10 logged steps; no held-out evaluation",
                         train_data=f"{display_name(script_args.dataset_root)} ({len(dataset)} frames)",
                         base_model=[b for b in (script_args.vlm_name_or_path, script_args.geometry_name_or_path)
                                     if b != TINY],
                         datasets=[display_name(script_args.dataset_root)])
    return trainer


def main(argv: list[str] | None = None) -> int:
    """Parse `--config file.yaml` + overrides and train."""
    from ..arguments import parse_args

    script_args, training_args = parse_args((GeoVLAScriptArguments, GeoVLATrainingArguments), argv)
    train_geovla(script_args, training_args)
    return 0


__all__ = ["build_dataset", "dataset_stats", "main", "train_geovla"]
