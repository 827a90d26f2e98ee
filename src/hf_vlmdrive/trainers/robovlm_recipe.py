"""The RoboVLM recipe shared by `examples/train_robovlm.py` and `hf-vlmdrive train robovlm`:
episodes (HDF5 / LeRobot / synthetic) -> windows of `window_size` frames -> `Trainer` -> held-out action error vs a
constant baseline -> model + processor + model card. Entry point: `train_robovlm(script_args, training_args)`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.collators import RoboVLMCollator
from ..data.episodes_hdf5 import EpisodeSource, RoboVLMWindowDataset, open_episodes
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
from .robovlm_config import RoboVLMScriptArguments

logger = logging.getLogger(__name__)


# The recipe's tiny random Kosmos-2 when no backbone is given (model_config.backbone_config overrides it).
def _tiny_backbone(image_size: int) -> dict:
    from ..testing.tiny_kosmos2 import tiny_kosmos2_config

    return tiny_kosmos2_config(hidden_size=64, image_size=image_size, patch_size=8, latent_queries=8)


def _random_backbone_config(args: RoboVLMScriptArguments, kwargs: dict) -> dict:
    backbone = _tiny_backbone(args.synthetic_image_size)
    for key, value in (kwargs.pop("backbone_config", None) or {}).items():
        backbone[key] = {**backbone[key], **value} if isinstance(value, dict) and isinstance(backbone.get(key), dict) \
            else value
    return backbone


def check_model_config(args: RoboVLMScriptArguments) -> None:
    """Validate `model_config` before any data is written (errors name the field); the backbone's own config is
    only known after loading it, so with `backbone_name_or_path` the tiny default stands in for it here."""
    from ..models.robovlm import RoboVLMConfig

    kwargs = dict(args.model_config)
    if args.backbone_name_or_path and "backbone_config" in kwargs:
        raise UserError("model_config.backbone_config describes a random backbone; it cannot be combined with "
                        f"backbone_name_or_path={args.backbone_name_or_path!r}")
    RoboVLMConfig(backbone_config=_random_backbone_config(args, kwargs), **kwargs)


def build_model_and_processor(args: RoboVLMScriptArguments, action_dim: int):
    """The policy and its processor: around `backbone_name_or_path`, or a tiny random Kosmos-2."""
    from ..models.robovlm import RoboVLMConfig, RoboVLMForActionPrediction
    from ..models.robovlm.processing_robovlm import RoboVLMProcessor

    kwargs = dict(args.model_config)
    kwargs["action_dim"] = action_dim
    if args.backbone_name_or_path:
        if "backbone_config" in kwargs:
            raise UserError("model_config.backbone_config describes a random backbone; it cannot be combined with "
                            f"backbone_name_or_path={args.backbone_name_or_path!r}")
        source = check_model_source(args.backbone_name_or_path, "--backbone_name_or_path")
        model = RoboVLMForActionPrediction.from_backbone(source, **kwargs)
        processor = RoboVLMProcessor.from_backbone(source, prompt_template=args.prompt_template)
        return model, processor
    from ..testing.tiny_kosmos2 import build_tiny_robovlm_processor

    backbone = _random_backbone_config(args, kwargs)
    model = RoboVLMForActionPrediction(RoboVLMConfig(backbone_config=backbone, **kwargs))
    processor = build_tiny_robovlm_processor(backbone["vision_config"]["image_size"], args.prompt_template)
    return model, processor


@torch.no_grad()
def predict_windows(model, dataset: RoboVLMWindowDataset, collator: RoboVLMCollator, batch_size: int = 16,
                    progress: bool = True) -> dict[str, np.ndarray]:
    """Actions of the model over every window: `pred`, `target` (M, A) for the masked-in steps, and `task` (M,)."""
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=lambda x: x)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds, targets, tasks = [], [], []
    for items in tqdm(loader, desc="RoboVLM eval", disable=not progress):
        batch = collator(items)
        out = model(**{k: v.to(device) for k, v in batch.items() if k not in ("actions", "action_mask")})
        mask = batch["action_mask"].numpy()
        preds.append(out.actions.float().cpu().numpy()[mask])
        targets.append(batch["actions"].numpy()[mask])
        tasks += [it["task"] for it, m in zip(items, mask) for _ in range(int(m.sum()))]
    model.train(was_training)
    return {"pred": np.concatenate(preds), "target": np.concatenate(targets), "task": np.asarray(tasks)}


def action_metrics(pred: dict[str, np.ndarray], baseline_action: np.ndarray, names: list[str] | None = None) -> dict:
    """MSE / MAE per action value, for the model and for a constant action (the training mean)."""
    names = names or [f"a{i}" for i in range(pred["target"].shape[-1])]
    out: dict[str, Any] = {}
    for who, values in (("model", pred["pred"]), ("train_mean_baseline", np.broadcast_to(baseline_action,
                                                                                          pred["target"].shape))):
        err = values - pred["target"]
        out[who] = {"mse": float((err ** 2).mean()), "mae": float(np.abs(err).mean()),
                    **{f"mse_{n}": float((err[:, i] ** 2).mean()) for i, n in enumerate(names)}}
    out["num_steps"] = int(len(pred["target"]))
    out["protocol"] = (f"held-out windows, every frame's action (chunk steps inside the episode), n={len(pred['target'])}; "
                       "baseline: the mean training action")
    return out


@torch.no_grad()
def predict_episode(model, source: EpisodeSource, collator: RoboVLMCollator, episode: int,
                    window_size: int, chunk_size: int = 1) -> dict[str, Any]:
    """Per-frame actions of the model over one whole episode: windows of `window_size` frames starting at 0,
    W, 2W, ... and a last one ending at the episode's end (each frame predicted by the first window that holds
    it, so with the history the evaluation windows give). Returns `pred`, `target` (T, A) (chunk step 0),
    `task` and `episode_id`."""
    ds = RoboVLMWindowDataset(source, window_size, chunk_size, stride=1)
    n = source.infos[episode].length
    starts = sorted(set(list(range(0, max(1, n - window_size + 1), window_size)) + [max(0, n - window_size)]))
    items = [ds[k] for k, (i, s) in enumerate(ds.index) if i == episode and s in starts]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batch = collator(items)
    out = model(**{k: v.to(device) for k, v in batch.items() if k not in ("actions", "action_mask")})
    model.train(was_training)
    actions = out.actions.float().cpu().numpy()[:, :, 0]  # (windows, L, A)
    pred = np.full((n, actions.shape[-1]), np.nan, dtype=np.float32)
    for item, acts in zip(items, actions):
        for j, a in enumerate(acts):
            t = item["start"] + j
            if t < n and np.isnan(pred[t, 0]):
                pred[t] = a
    return {"pred": pred, "target": source.load(episode).actions[:, :pred.shape[-1]].astype(np.float32),
            "task": items[0]["task"], "episode_id": items[0]["episode_id"]}


def format_action_metrics(metrics: dict, names: list[str] | None = None) -> str:
    """A small text table: held-out action MSE / MAE of the model and of the training-mean action."""
    names = names or []
    lines = [metrics["protocol"], f"{'predictor':<34} {'MSE':>8} {'MAE':>8}" + "".join(f" {'MSE ' + n:>16}" for n in names)]
    for who, label in (("model", "model"), ("train_mean_baseline", "baseline: training-mean action")):
        row = metrics[who]
        lines.append(f"{label:<34} {row['mse']:8.4f} {row['mae']:8.4f}"
                     + "".join(f" {row['mse_' + n]:16.4f}" for n in names))
    return "\n".join(lines)


def _source(path: str | None, fallback: Path, seed: int, num: int, image_size: int, camera_key: str | None):
    """The episodes at `path`, or synthetic ones written to `fallback` (unless a finished folder is there: written
    under a temporary name and renamed, so another rank or a later run never opens a half-written HDF5 file)."""
    from ..data.synthetic.mobile_robot import write_mobile_robot_hdf5

    if path is None:
        if not fallback.is_dir():
            with atomic_directory(fallback) as tmp:
                write_mobile_robot_hdf5(tmp, num_episodes=num, seed=seed, image_size=image_size)
        path = str(fallback)
    return open_episodes(path, camera_key=camera_key)


def train_robovlm(script_args: RoboVLMScriptArguments, training_args):
    """Write synthetic episodes if no data is given, train, save model + processor + card, evaluate held-out.
    Returns the trainer; the held-out metrics are `trainer.heldout_metrics` (also `<output_dir>/metrics.json`)."""
    from transformers import Trainer

    check_model_config(script_args)
    out = Path(training_args.output_dir)
    # Under N processes the main process writes the synthetic episodes first; the others wait, then read them.
    with prepare_once(training_args, "writing synthetic episodes"):
        train_src = _source(script_args.data_dir, out / "data" / "train", training_args.seed,
                            script_args.synthetic_episodes, script_args.synthetic_image_size, script_args.camera_key)
        eval_src = _source(script_args.eval_data_dir, out / "data" / "heldout", training_args.seed + 7919,
                           script_args.synthetic_eval_episodes, script_args.synthetic_image_size,
                           script_args.camera_key)
    action_dim = int(train_src.load(0).actions.shape[-1])
    seed_everything_for_init(training_args)  # --seed fixes the initial weights (the same on every rank)
    model, processor = build_model_and_processor(script_args, action_dim)
    cfg = model.config
    _set_find_unused_parameters(training_args, model)
    train_ds = RoboVLMWindowDataset(train_src, cfg.window_size, cfg.action_chunk_size, script_args.window_stride)
    eval_ds = RoboVLMWindowDataset(eval_src, cfg.window_size, cfg.action_chunk_size, cfg.window_size)
    collator = RoboVLMCollator(processor)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("RoboVLM: %d training windows from %d episodes (%s), %d held-out windows; %.2f M parameters, "
                "%.2f M trainable", len(train_ds), len(train_src), train_src.format, len(eval_ds),
                model.num_parameters() / 1e6, trainable / 1e6)
    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds, data_collator=collator,
                      processing_class=processor)
    result = train_interruptibly(trainer, training_args.resume_from_checkpoint)
    trainer.save_model(str(out))
    metrics = None
    if is_main_process(training_args):  # held-out evaluation, metrics.json, figure, processor and card: written once
        processor.save_pretrained(str(out))
        metrics = _evaluate_and_report(model, collator, trainer, result, train_src, eval_src, train_ds, eval_ds,
                                       script_args, action_dim, out)
    # The other ranks wait here for the main process's evaluation and return its metrics too.
    trainer.heldout_metrics = broadcast_from_main(training_args, metrics)
    return trainer


def _set_find_unused_parameters(training_args, model) -> None:
    """With the LSTM or MLP head every trainable parameter (backbone or LoRA, action token, head) takes part in every
    step, so DDP need not search the graph for unused ones (Trainer's default for a PreTrainedModel does). Kept at
    Trainer's default: the GPT head (its token embedding is unused: it is fed embeddings) and a backbone whose
    trainable LM head is not tied to the embeddings (the policy reads hidden states, not logits). An explicit
    `--ddp_find_unused_parameters` is kept."""
    if training_args.ddp_find_unused_parameters is not None or model.config.head_type not in ("lstm", "mlp"):
        return
    # named_parameters lists a tied LM head once, under the embedding's name.
    if any(p.requires_grad and "lm_head" in n for n, p in model.named_parameters()):
        return
    training_args.ddp_find_unused_parameters = False


def _evaluate_and_report(model, collator, trainer, result, train_src, eval_src, train_ds, eval_ds, script_args,
                         action_dim: int, out: Path) -> dict:
    """Held-out action error vs the training-mean action, the per-episode figure, metrics.json and the card."""
    from ..visualization import plot_episode_actions

    cfg = model.config
    train_actions = np.concatenate([train_src.load(i).actions for i in range(len(train_src))])
    preds = predict_windows(model, eval_ds, collator, script_args.eval_batch_size)
    names = ["linear_x", "angular_z"] if action_dim == 2 else None
    metrics = action_metrics(preds, train_actions.mean(axis=0), names)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics["train"] = {"train_loss": result.training_loss, "logged_losses": losses, "train_windows": len(train_ds),
                        "global_step": trainer.state.global_step}
    shown = _one_episode_per_task(eval_src, 2)
    episodes = [predict_episode(model, eval_src, collator, i, cfg.window_size, cfg.action_chunk_size) for i in shown]
    units = ["m/s", "rad/s"] if names == ["linear_x", "angular_z"] else None
    if cfg.use_gripper and names is None:
        names = [f"a{i}" for i in range(action_dim - 1)] + ["gripper"]
    metrics["plot"] = str(plot_episode_actions(episodes, train_actions.mean(axis=0), out / "episode_actions.png",
                                               names, units))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(format_action_metrics(metrics, names if names and len(names) == action_dim else None))
    _write_card(out, model, metrics, script_args, train_src, eval_src)
    logger.info("held-out action MSE %.5f (train-mean baseline %.5f)", metrics["model"]["mse"],
                metrics["train_mean_baseline"]["mse"])
    return metrics


def _one_episode_per_task(source: EpisodeSource, num: int) -> list[int]:
    """Up to `num` episode indices, the first of each task first (then the next episodes)."""
    picks, seen = [], set()
    for i, info in enumerate(source.infos):
        task = info.task
        if task not in seen:
            seen.add(task)
            picks.append(i)
        if len(picks) == num:
            return picks
    return (picks + [i for i in range(len(source)) if i not in picks])[:num]


def _write_card(out: Path, model, metrics: dict, args: RoboVLMScriptArguments, train_src, eval_src) -> None:
    from ..model_card import display_name, write_model_card

    synthetic = args.data_dir is None
    write_model_card(
        out, model, family="robovlm",
        metrics={"action_mse": metrics["model"]["mse"], "action_mae": metrics["model"]["mae"]},
        baselines={"constant action (training mean)": {"action_mse": metrics["train_mean_baseline"]["mse"],
                                                       "action_mae": metrics["train_mean_baseline"]["mae"]}},
        protocol=metrics["protocol"],
        train_data=(f"{'synthetic mobile-robot episodes' if synthetic else display_name(train_src.root)} "
                    f"({len(train_src)} episodes, {train_src.format})"),
        eval_data=(f"{'synthetic held-out mobile-robot episodes' if args.eval_data_dir is None else display_name(eval_src.root)} "
                   f"({len(eval_src)} episodes)"),
        base_model=args.backbone_name_or_path,
        datasets=["synthetic-mobile-robot"] if synthetic else [display_name(train_src.root)],
    )


def main(argv: list[str] | None = None):
    """`hf-vlmdrive train robovlm`: parse (YAML `--config` + flags) and run."""
    from ..arguments import parse_args
    from .robovlm_config import RoboVLMTrainingArguments

    script_args, training_args = parse_args([RoboVLMScriptArguments, RoboVLMTrainingArguments], argv,
                                            prog="hf-vlmdrive train robovlm")
    return train_robovlm(script_args, training_args)


__all__ = ["action_metrics", "build_model_and_processor",
           "format_action_metrics", "main", "predict_episode", "predict_windows",
           "train_robovlm"]
