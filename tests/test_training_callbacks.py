"""The logging callbacks: per-module gradient norms, peak memory and geometry-cache counters reach the reporting
callbacks and the log history."""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_vlmdrive.features.geometry_cache import GeometryFeatureCache
from hf_vlmdrive.trainers.callbacks import (
    GeometryCacheCallback,
    ModuleGradNormCallback,
    PeakMemoryCallback,
    add_logging_callbacks,
)


class TwoParts(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def forward(self, x, y):
        loss = ((self.head(torch.relu(self.encoder(self.frozen(x)))) - y) ** 2).mean()
        return {"loss": loss}


class Dataset(torch.utils.data.Dataset):
    def __init__(self, n=16):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


class Reporter(TrainerCallback):
    """Stands where tensorboard / wandb stand: after the logging callbacks, receiving each record."""

    def __init__(self):
        self.records = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.records.append(dict(logs))


class GradCapture(TrainerCallback):
    def __init__(self):
        self.norms = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.norms.append({name: math.sqrt(sum(float(p.grad.pow(2).sum()) for p in getattr(model, name).parameters()))
                           for name in ("encoder", "head")})


def test_callbacks_reach_the_reporter_and_the_history(tmp_path):
    torch.manual_seed(0)
    model = TwoParts()
    cache = GeometryFeatureCache(memory_budget_mb=1, log_every=0)
    cache.put("a", torch.zeros(8))
    assert cache.get("a") is not None and cache.get("b") is None  # one hit, one miss
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=4, max_steps=4, logging_steps=2,
                             learning_rate=0.1, max_grad_norm=0.0, report_to="none", use_cpu=True,
                             save_strategy="no", disable_tqdm=True)
    reporter, capture = Reporter(), GradCapture()
    trainer = Trainer(model=model, args=args, train_dataset=Dataset(), callbacks=[reporter, capture])
    grads = ModuleGradNormCallback({"encoder": "encoder.", "head": ("head.",), "frozen": "frozen."})
    add_logging_callbacks(trainer, grads, PeakMemoryCallback(), GeometryCacheCallback(lambda: cache))
    trainer.train()
    train_records = [r for r in reporter.records if "loss" in r]
    assert len(train_records) == 2
    for k, record in enumerate(train_records):
        for name in ("encoder", "head"):  # the norms of the logged step (steps 2 and 4), as Trainer's grad_norm
            assert math.isclose(record[f"grad_norm/{name}"], capture.norms[2 * k + 1][name], rel_tol=1e-6)
        assert record["grad_norm/encoder"] != record["grad_norm/head"]
        assert record["grad_norm/frozen"] == 0.0  # frozen: no gradient flows
        assert record["memory/peak_rss_mb"] > 10
        assert record["geometry_cache/hit_rate"] == 0.5 and record["geometry_cache/entries"] == 1
    history = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["grad_norm/head"] for h in history] == [r["grad_norm/head"] for r in train_records]
    assert "geometry_cache/misses" in history[-1]
