"""The logging callbacks: per-module gradient norms, peak memory and geometry-cache counters reach the reporting
callbacks and the log history, and through a real GeoVLA training the trackers' own files (tensorboard, wandb)."""

from __future__ import annotations

import glob
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
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

ROOT = Path(__file__).resolve().parents[1]
# What GeoVLA's callbacks add to every training record (on CPU: peak RSS), beside Trainer's loss and grad_norm.
SIGNALS = ("grad_norm/vlm", "grad_norm/action_head", "grad_norm/compressor", "memory/peak_rss_mb",
           "geometry_cache/hit_rate", "geometry_cache/entries", "geometry_cache/memory_mb", "geometry_cache/disk_mb",
           "geometry_cache/misses")


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


def _tiny_geovla_argv(tmp_path, report_to: str) -> list[str]:
    """`hf-vlmdrive train geovla` on the tiny config: 3 steps inside one epoch (8 frames, batch 2), logged each."""
    return ["train", "geovla", "--config", str(ROOT / "examples/configs/libero_tiny.yaml"),
            "--dataset_root", str(tmp_path / "data"), "--synthetic_episodes", "1", "--synthetic_episode_length", "8",
            "--synthetic_image_storage", "image", "--output_dir", str(tmp_path / "run"), "--max_steps", "3",
            "--logging_steps", "1", "--save_strategy", "no", "--per_device_train_batch_size", "2",
            "--use_cpu", "true", "--disable_tqdm", "true", "--report_to", report_to]


def _training_records(run: Path) -> list[dict]:
    """The training records of the run's trainer_state.json (one per logged step), each with the seed's signals."""
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    records = [h for h in history if "loss" in h]
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        assert set(SIGNALS) <= set(record), sorted(record)
    return records


def test_tensorboard_receives_the_signals_of_a_geovla_training(tmp_path, cli, monkeypatch):
    """Every value of every training record, read back from the event files with tensorboard's own reader:
    tag `train/<key>`, one scalar per logged step, equal to trainer_state.json's log_history in float32."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # transformers 5 has no --logging_dir: the event files go to $TENSORBOARD_LOGGING_DIR, else <output_dir>/runs/<time>
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    assert cli(*_tiny_geovla_argv(tmp_path, "tensorboard")) == 0
    records = _training_records(tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    keys = set(records[0]) - {"step", "epoch"}  # epoch: the closing summary record logs it once more
    assert {"loss", "grad_norm", *SIGNALS} <= keys
    assert {f"train/{key}" for key in keys} <= tags
    for key in keys:
        logged = [(event.step, event.value) for event in events.Scalars(f"train/{key}")]
        assert logged == [(r["step"], float(np.float32(r[key]))) for r in records], key


def _wandb_records(path: Path):
    """The records of a run's `.wandb` transaction log, decoded with wandb's own protobuf `Record`. wandb (0.31)
    ships no Python reader of that file and an offline run writes no files/wandb-summary.json, so the framing is
    read here: a 7-byte file header (`:W&B`, magic, version), then LevelDB's log format: 32 KiB blocks of chunks,
    each with a 7-byte header (CRC-32, length, type 1 = whole record, 2 / 3 / 4 = first / middle / last part)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    block, pos, parts = 32768, 7, []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        parts.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def test_wandb_offline_receives_the_signals_of_a_geovla_training(tmp_path):
    """`--report_to wandb` with WANDB_MODE=offline (no network, no account): the offline run's history holds every
    value of every training record under `train/<key>` at `train/global_step`, equal to trainer_state.json.

    The lock has no wandb, so this is skipped in `make test`; run it in a venv with wandb installed."""
    pytest.importorskip("wandb")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    env.pop("WANDB_DISABLED", None)  # conftest sets it for the other tests
    proc = subprocess.run([sys.executable, "-m", "hf_vlmdrive.cli", *_tiny_geovla_argv(tmp_path, "wandb")], env=env,
                          capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _training_records(tmp_path / "run")
    (log,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
               for r in _wandb_records(Path(log)) if r.WhichOneof("record_type") == "history"]
    history = [h for h in history if "train/loss" in h]
    assert [h["train/global_step"] for h in history] == [1, 2, 3]
    keys = set(records[0]) - {"step"}
    assert {"loss", "grad_norm", *SIGNALS} <= keys
    for h, record in zip(history, records):
        assert {f"train/{key}": h.get(f"train/{key}") for key in keys} == {f"train/{key}": record[key] for key in keys}
