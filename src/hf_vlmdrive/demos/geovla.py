"""The GeoVLA quick path that learns: synthetic pick-and-place LeRobot data -> tiny GeoVLA (starVLA layer-wise
flow-matching head) -> held-out action chunks against two trivial baselines -> a figure and a model card.

    python examples/train_libero.py --demo --output_dir demo_output/geovla

Steps (`run_geovla_demo`):
1. `data.synthetic.libero.make_reaching_libero` writes a training set and a held-out set (another seed) as
   LeRobot v3.0 datasets. Every action chunk is a function of the state and the task (see that module).
2. `train_geovla` (the same recipe as `hf-vlmdrive train geovla`) trains a tiny GeoVLA built from tiny random
   Qwen2.5-VL / DINOv2 backbones (`tiny-random`), with the sizes of `testing.tiny_geovla`.
3. `predict_action` (`num_inference_steps` Euler steps from seeded noise) on every held-out frame that has a
   previous frame, compared in dataset units (MSE and MAE over the chunk's non-padded steps, all 7 action
   dimensions, gripper included) with two baselines named in the output:
   - *mean action chunk (train set)*: the per-step mean of every training chunk (padded steps left out);
   - *last action*: the previous frame's action repeated over the chunk.
4. `geovla_action_chunks.png` (predicted / true / baseline chunks per dimension), `results.json`, and the
   model card (README.md of the model directory) with the side-by-side table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import finish_demo, loss_curve, torch_threads

logger = logging.getLogger(__name__)

MEAN_CHUNK = "mean action chunk (train set)"
LAST_ACTION = "last action (previous frame, repeated)"


@dataclass
class GeoVLADemoConfig:
    """Size of the demo run (the defaults took 3.4 minutes on the shared 2-core machine, one torch thread).

    Args:
        num_train_episodes (`int`, defaults to 48): training episodes (12 per task).
        num_eval_episodes (`int`, defaults to 12): held-out episodes (seed `seed + 1`: other start poses).
        episode_length (`int`, defaults to 32): frames per episode.
        image_size (`int`, defaults to 32): camera frames in pixels.
        max_steps (`int`, defaults to 2000): optimiser steps (about 9 per second with one thread here).
        batch_size (`int`, defaults to 16): per-device train batch size.
        learning_rate (`float`, defaults to 1e-3): base / VLM learning rate.
        action_head_learning_rate (`float`, defaults to 2e-3): learning rate of the DiT action head.
        num_inference_steps (`int`, defaults to 4): Euler steps of `predict_action`.
        seed (`int`, defaults to 0): data, model, training and sampling-noise seed.
        num_threads (`int`, defaults to 1): torch CPU threads during the run (restored afterwards; on a shared
            2-core machine two threads made tiny-model steps up to 20x slower).
    """

    num_train_episodes: int = 48
    num_eval_episodes: int = 12
    episode_length: int = 32
    image_size: int = 32
    max_steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 1e-3
    action_head_learning_rate: float = 2e-3
    num_inference_steps: int = 4
    seed: int = 0
    num_threads: int = 1


def mean_action_chunk(dataset) -> np.ndarray:
    """(T, A) per-step mean of every chunk of `dataset` (a `LeRobotDataset`), padded steps left out."""
    total, count = None, None
    for row in range(len(dataset)):
        actions, is_pad = dataset.action_chunk(row)
        actions, valid = np.asarray(actions, np.float64), ~np.asarray(is_pad, bool)
        total = np.zeros_like(actions) if total is None else total
        count = np.zeros(len(actions)) if count is None else count
        total[valid] += actions[valid]
        count[valid] += 1
    return (total / np.maximum(count, 1)[:, None]).astype(np.float32)


def chunk_errors(pred: np.ndarray, true: np.ndarray, is_pad: np.ndarray) -> dict[str, float]:
    """MSE / MAE over non-padded steps, all dimensions and arm / gripper separately (dataset units).

    `pred`, `true`: (N, T, A); `is_pad`: (N, T). The last dimension is the gripper.
    """
    valid = ~np.asarray(is_pad, bool)
    err = (np.asarray(pred, np.float64) - np.asarray(true, np.float64))[valid]  # (M, A)
    return {"mse": float((err ** 2).mean()), "mae": float(np.abs(err).mean()),
            "mse_arm": float((err[:, :-1] ** 2).mean()), "mse_gripper": float((err[:, -1] ** 2).mean()),
            "mae_gripper": float(np.abs(err[:, -1]).mean())}


def format_demo_table(results: dict) -> str:
    """Markdown: the model against both baselines (lower is better), with the ratio baseline / model."""
    m = results["model"]
    lines = [f"| metric (lower is better; Nx = baseline / model) | model | {MEAN_CHUNK} | {LAST_ACTION} |", "|---|---:|---:|---:|"]
    for key in ("mse", "mae", "mse_arm", "mse_gripper"):
        cells = [f"{m[key]:.4f}"]
        for name in (MEAN_CHUNK, LAST_ACTION):
            b = results["baselines"][name][key]
            cells.append(f"{b:.4f} ({b / max(m[key], 1e-12):.1f}x)")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_geovla_demo(output_dir: str | Path, config: GeoVLADemoConfig | None = None) -> dict:
    """Run the whole demo in `output_dir` (see the module docstring); returns the results dict.

    The results hold `model` and `baselines` ({name: errors}, see `chunk_errors`), `num_eval_frames`,
    `train` (loss curve), `timings` (seconds per stage), `figure`, `config` and `tables`.

    Under N processes (`accelerate launch ... train_libero.py --demo`) the main process writes the data while the
    others wait, every rank trains its shard, and the main process alone evaluates and writes the figure, the
    card and results.json; the other ranks return an empty dict.
    """
    cfg = config or GeoVLADemoConfig()
    with torch_threads(cfg.num_threads):
        return _run(Path(output_dir), cfg)


def _run(out: Path, cfg: GeoVLADemoConfig) -> dict:
    import shutil

    import torch
    from tqdm.auto import tqdm

    from ..data.collators import GeoVLACollator
    from ..data.lerobot import LeRobotDataset
    from ..data.synthetic.libero import ACTION_NAMES, make_reaching_libero
    from ..distributed import is_main_process, prepare_once
    from ..model_card import write_model_card
    from ..testing.tiny_geovla import ACTION_CHUNK_SIZE
    from ..trainers.geovla_config import GeoVLAScriptArguments, GeoVLATrainingArguments
    from ..trainers.geovla_recipe import train_geovla
    from ..visualization import plot_action_chunks

    timings: dict[str, float] = {}
    model_dir = out / "geovla-tiny"
    training_args = GeoVLATrainingArguments(
        output_dir=str(model_dir), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, vlm_learning_rate=cfg.learning_rate,
        action_head_learning_rate=cfg.action_head_learning_rate, compressor_learning_rate=cfg.action_head_learning_rate,
        lr_scheduler_type="cosine", warmup_steps=max(1, cfg.max_steps // 20), weight_decay=0.0,
        logging_steps=max(1, cfg.max_steps // 30), save_strategy="no", report_to=[], use_cpu=True, seed=cfg.seed,
        dataloader_num_workers=0, geometry_cache_mb=64)
    t = time.perf_counter()
    roots = {"train": out / "data" / "train", "heldout": out / "data" / "heldout"}
    with prepare_once(training_args, "GeoVLA demo: synthetic episodes"):
        if training_args.local_process_index == 0:  # fresh data each run; the other ranks wait, then read it
            for split, seed, n in (("train", cfg.seed, cfg.num_train_episodes),
                                   ("heldout", cfg.seed + 1, cfg.num_eval_episodes)):
                if roots[split].exists():
                    shutil.rmtree(roots[split])
                make_reaching_libero(roots[split], num_episodes=n, episode_length=cfg.episode_length,
                                     image_size=cfg.image_size, seed=seed, image_storage="image")
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    script_args = GeoVLAScriptArguments(
        dataset_root=str(roots["train"]), vlm_name_or_path="tiny-random", geometry_name_or_path="tiny-random",
        model_config={"geometry_config": {"num_layers": 1, "num_heads": 2, "output_size": 48},
                      "compressor_type": "pool", "num_geometry_tokens": 4, "dit_num_layers": 2, "dit_hidden_size": 32,
                      "dit_num_heads": 2, "action_chunk_size": ACTION_CHUNK_SIZE,
                      "num_inference_steps": cfg.num_inference_steps})
    trainer = train_geovla(script_args, training_args)
    timings["train"] = time.perf_counter() - t
    if not is_main_process(training_args):
        return {}
    losses = loss_curve(trainer.state.log_history)

    t = time.perf_counter()
    model = trainer.model.eval()
    collator = GeoVLACollator(trainer.processing_class)
    train_ds = LeRobotDataset(roots["train"], action_horizon=ACTION_CHUNK_SIZE)
    eval_ds = LeRobotDataset(roots["heldout"], action_horizon=ACTION_CHUNK_SIZE)
    mean_chunk = mean_action_chunk(train_ds)
    rows = [r for r in range(len(eval_ds)) if int(eval_ds._columns["frame_index"][r]) > 0]  # the last action needs a previous frame
    generator = torch.Generator().manual_seed(cfg.seed)
    preds, trues, pads, lasts, frames = [], [], [], [], []
    with torch.no_grad():
        for start in tqdm(range(0, len(rows), 32), desc="predict held-out chunks", leave=False):
            samples = [eval_ds[r] for r in rows[start:start + 32]]
            batch = collator(samples)
            for k in ("actions", "action_is_pad"):
                batch.pop(k)
            preds.append(model.predict_action(**batch, num_steps=cfg.num_inference_steps, generator=generator).float().numpy())
            trues += [s["actions"] for s in samples]
            pads += [s["action_is_pad"] for s in samples]
            lasts += [eval_ds.actions[r - 1] for r in rows[start:start + 32]]
            frames += [(int(s["episode_index"]), int(s["frame_index"])) for s in samples]
    pred, true, pad = np.concatenate(preds), np.stack(trues).astype(np.float32), np.stack(pads)
    last = np.repeat(np.stack(lasts)[:, None], true.shape[1], axis=1)
    results: dict[str, Any] = {
        "model": chunk_errors(pred, true, pad),
        "baselines": {MEAN_CHUNK: chunk_errors(np.broadcast_to(mean_chunk, true.shape), true, pad),
                      LAST_ACTION: chunk_errors(last, true, pad)},
        "num_eval_frames": len(rows), "num_eval_episodes": cfg.num_eval_episodes,
    }
    timings["evaluate"] = time.perf_counter() - t

    # the figure: a frame whose chunk holds the gripper switch, and one that slows down into its target
    grip = true[..., -1]
    switch = [i for i in range(len(rows)) if grip[i, 0] < 0 < grip[i, -1] and not pad[i].any()]
    moving = [i for i in range(len(rows)) if grip[i, 0] > 0 and np.abs(true[i, 0, :-1]).max() > 0.5
              and not pad[i].any()]
    shown = (switch[:1] or [0]) + (moving[:1] or [len(rows) // 2])
    figure = plot_action_chunks(
        true[shown], pred[shown], out / "geovla_action_chunks.png", action_names=ACTION_NAMES,
        baselines={MEAN_CHUNK: np.broadcast_to(mean_chunk, true[shown].shape), LAST_ACTION: last[shown]},
        titles=[f"held-out episode {frames[i][0]}, frame {frames[i][1]}" for i in shown])
    tables = format_demo_table(results)
    protocol = (f"{len(rows)} held-out frames ({cfg.num_eval_episodes} synthetic episodes, seed {cfg.seed + 1}; "
                f"frame 0 of each left out); action chunks of {ACTION_CHUNK_SIZE} steps from predict_action with "
                f"{cfg.num_inference_steps} Euler steps and seeded noise (seed {cfg.seed}); MSE / MAE in dataset "
                "units over the non-padded steps of all 7 action dimensions (gripper included)")
    write_model_card(
        model_dir, model, family="geovla", metrics={k: results["model"][k] for k in ("mse", "mae")},
        baselines={name: {k: v[k] for k in ("mse", "mae")} for name, v in results["baselines"].items()},
        protocol=protocol, metrics_table=f"{tables}\n\nProtocol: {protocol}.",
        train_data=f"synthetic pick-and-place LeRobot dataset ({cfg.num_train_episodes} episodes, {len(train_ds)} frames)",
        eval_data=f"{cfg.num_eval_episodes} held-out synthetic episodes (seed {cfg.seed + 1})",
        datasets=["synthetic-libero-reaching"],
        limitations="A tiny model trained on synthetic data to show the training path works; it is not a robot policy.")
    return finish_demo(out, results, tables, train={"loss_curve": losses, "num_train_frames": len(train_ds)},
                       timings=timings, config=asdict(cfg), figure=str(figure), protocol=protocol)


__all__ = ["LAST_ACTION", "MEAN_CHUNK", "GeoVLADemoConfig", "chunk_errors", "format_demo_table", "mean_action_chunk",
           "run_geovla_demo"]
