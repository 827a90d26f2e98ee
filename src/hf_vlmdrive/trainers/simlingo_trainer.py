"""`Trainer` for SimLingo-base: AdamW parameter groups + OneCycleLR (SPEC 1.2), and the evaluation against
a constant-velocity baseline.

`Trainer` stays the loop; only `create_optimizer` / `create_scheduler` are overridden:

- four AdamW groups: {vision tower, rest} x {decay, no decay}; the tower's groups use
  `vision_learning_rate`, the others `learning_rate`; weight decay (0.1) only on weight matrices, not on
  norms, biases, embeddings (camera / temporal / position / patch) or learnable queries;
- OneCycleLR over the run's optimiser steps, `pct_start` (5 %) warm-up, stepped by Trainer each step.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import Trainer

from ..metrics.trajectory.trajectory import constant_velocity_baseline, trajectory_metrics

SPEED_WPS_HZ = 4.0  # one speed waypoint per saved CARLA frame
NO_DECAY_MARKERS = ("norm", "bias", "embedding", "queries", "class_embedding")


def simlingo_parameter_groups(
    model: nn.Module, learning_rate: float, vision_learning_rate: float | None = None, weight_decay: float = 0.1
) -> list[dict]:
    """AdamW parameter groups of SimLingo-base (trainable parameters only; empty groups dropped).

    Each group carries a `name` ("vision_decay", "vision_no_decay", "decay", "no_decay") so that tests and
    logs can find it.
    """
    vision_lr = learning_rate if vision_learning_rate is None else vision_learning_rate
    groups: dict[str, dict] = {
        "vision_decay": {"params": [], "lr": vision_lr, "weight_decay": weight_decay},
        "vision_no_decay": {"params": [], "lr": vision_lr, "weight_decay": 0.0},
        "decay": {"params": [], "lr": learning_rate, "weight_decay": weight_decay},
        "no_decay": {"params": [], "lr": learning_rate, "weight_decay": 0.0},
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        vision = name.startswith("vision_model.") or ".vision_model." in name
        no_decay = param.ndim < 2 or any(marker in name.lower() for marker in NO_DECAY_MARKERS)
        key = ("vision_" if vision else "") + ("no_decay" if no_decay else "decay")
        groups[key]["params"].append(param)
    return [{"name": k, **g} for k, g in groups.items() if g["params"]]


class SimLingoTrainer(Trainer):
    """`Trainer` with SimLingo's AdamW parameter groups and per-step OneCycleLR (see the module docstring).

    Use with [`SimLingoTrainingArguments`]; with plain `TrainingArguments` the vision tower shares
    `learning_rate` and the warm-up is 5 %.
    """

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            args = self.args
            opt_model = self.model if model is None else model
            groups = simlingo_parameter_groups(
                opt_model, args.learning_rate, getattr(args, "vision_learning_rate", None), args.weight_decay
            )
            self.optimizer = torch.optim.AdamW(
                groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon
            )
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            optimizer = self.optimizer if optimizer is None else optimizer
            args = self.args
            total = max(int(num_training_steps), 4)
            # OneCycleLR needs at least two warm-up steps (it divides by pct_start * total - 1); very short
            # runs get a slightly longer warm-up than the configured fraction.
            pct_start = max(getattr(args, "pct_start", 0.05), 2.0 / total)
            self.lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in optimizer.param_groups],
                total_steps=total,
                pct_start=pct_start,
                div_factor=getattr(args, "div_factor", 25.0),
                final_div_factor=getattr(args, "final_div_factor", 1e4),
                cycle_momentum=getattr(args, "cycle_momentum", False),
                anneal_strategy="cos",
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler


# ---------------------------------------------------------------------- evaluation
MODEL_INPUTS = ("pixel_values", "speed", "target_point", "route_coords", "route_image", "intrinsics", "extrinsics")


@torch.no_grad()
def predict_simlingo(model, dataset, batch_size: int = 8, progress: bool = True) -> dict[str, np.ndarray]:
    """Run the model over a [`CarlaRouteDataset`]; returns stacked numpy arrays: `speed_wps`, `route`,
    `speed_wps_labels`, `speed_wps_mask`, `route_labels`, `route_mask`, `speed`, `target_point`."""
    from tqdm.auto import tqdm

    from ..data.carla import SimLingoCollator

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


def straight_route_baseline(num_samples: int, num_points: int = 20, spacing: float = 1.0) -> np.ndarray:
    """The route a lane-keeping-straight car would follow: points `spacing` m apart straight ahead."""
    line = np.stack([spacing * np.arange(num_points), np.zeros(num_points)], axis=-1)
    return np.broadcast_to(line, (num_samples, num_points, 2)).copy()


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


def plot_simlingo_predictions(predictions: dict[str, np.ndarray], path: str | Path, num: int = 6,
                              route_spacing: float = 1.0) -> Path:
    """Save a figure of `num` samples: ground truth vs predicted route and speed waypoints (bird's eye,
    x forward up, y left to the left) plus the constant-velocity baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(num, len(predictions["speed"]))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.0 * rows), squeeze=False)
    for i in range(rows * cols):
        ax = axes[i // cols][i % cols]
        if i >= n:
            ax.axis("off")
            continue
        m = predictions["speed_wps_mask"][i].astype(bool)
        gt_r, pr_r = predictions["route_labels"][i], predictions["route"][i]
        gt_w, pr_w = predictions["speed_wps_labels"][i][m], predictions["speed_wps"][i]
        v = predictions["speed"][i, 0]
        cv = np.stack([v * np.arange(1, len(pr_w) + 1) / SPEED_WPS_HZ, np.zeros(len(pr_w))], -1)
        ax.plot(-gt_r[:, 1], gt_r[:, 0], "-", color="0.6", lw=3, label="route (gt)")
        ax.plot(-pr_r[:, 1], pr_r[:, 0], "-", color="tab:blue", label="route (pred)")
        ax.plot(-gt_w[:, 1], gt_w[:, 0], "o", color="k", ms=4, label="speed wps (gt)")
        ax.plot(-pr_w[:, 1], pr_w[:, 0], "x", color="tab:red", label="speed wps (pred)")
        ax.plot(-cv[:, 1], cv[:, 0], ".", color="tab:green", ms=3, label="const. velocity")
        ax.set_title(f"sample {i}, v={v:.1f} m/s", fontsize=8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = [
    "SimLingoTrainer",
    "plot_simlingo_predictions",
    "predict_simlingo",
    "simlingo_metrics",
    "simlingo_parameter_groups",
    "straight_route_baseline",
]
