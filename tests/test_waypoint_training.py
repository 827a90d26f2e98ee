"""Training the waypoint model with Trainer, the CLI, resuming, and the example script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoImageProcessor, AutoModel, TrainerCallback, TrainingArguments

from hf_vlmdrive.arguments import parse_args
from hf_vlmdrive.data.collators import WaypointCollator
from hf_vlmdrive.data.waypoint import load_waypoint_dataset
from hf_vlmdrive.trainers.waypoint_config import WaypointScriptArguments
from hf_vlmdrive.trainers.waypoint_recipe import build_waypoint_model, train_waypoint

ROOT = Path(__file__).resolve().parents[1]
TINY_TOWER = json.dumps(dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8))


def tiny_yaml(tmp_path: Path, **overrides) -> Path:
    cfg = dict(
        model_config=dict(vision_config=json.loads(TINY_TOWER), pooling="attention", head_hidden_sizes=[64, 64],
                          past_state_scale=10.0, waypoint_scale=10.0),
        train_data="synthetic:64", eval_data="synthetic:16:1", image_width=48,
        image_height=32, output_dir=str(tmp_path / "run"), per_device_train_batch_size=16,
        per_device_eval_batch_size=16, learning_rate=3e-3, max_steps=40, logging_steps=5,
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True, seed=0,
    )
    cfg.update(overrides)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_trainer_lowers_loss_and_only_the_head_changes(tmp_path):
    script_args, training_args = parse_args(
        (WaypointScriptArguments, TrainingArguments), ["--config", str(tiny_yaml(tmp_path))]
    )
    class Snapshot(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}

    snapshot = Snapshot()
    trainer = train_waypoint(script_args, training_args, callbacks=[snapshot])
    initial = snapshot.initial
    final = trainer.model.state_dict()
    vision = [k for k in final if k.startswith("vision_model.")]
    head = [k for k in final if k.startswith("head.")]
    assert vision and head
    assert all(torch.equal(initial[k], final[k]) for k in vision), "frozen tower changed"
    assert sum(not torch.equal(initial[k], final[k]) for k in head) == len(head), "head did not train"
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) >= 6
    assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2])
    # The saved directory loads with the Auto classes.
    out = Path(training_args.output_dir)
    assert type(AutoModel.from_pretrained(out)).__name__ == "WaypointVLMModel"
    assert AutoImageProcessor.from_pretrained(out).size == {"height": 32, "width": 32}


def test_cli_train_then_eval_with_plot(tmp_path, cli):
    cfg = tiny_yaml(tmp_path, max_steps=6)
    assert cli("train", "waypoint", "--config", cfg, "--learning_rate", "1e-3") == 0
    model_dir = tmp_path / "run"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "processor_config.json").is_file()
    out_json, plot = tmp_path / "metrics.json", tmp_path / "pred.png"
    assert cli("eval", "waypoint", "--model", model_dir, "--data", "synthetic:8:2", "--image_width", "48",
               "--image_height", "32", "--output_json", out_json, "--plot", plot) == 0
    metrics = json.loads(out_json.read_text())
    assert metrics["num_samples"] == 8
    assert metrics["model"]["ade"] > 0 and metrics["constant_velocity"]["ade"] > 0
    assert plot.stat().st_size > 10_000


@pytest.mark.parametrize("extra", [[], ["--model_config.lora.r", "8"]], ids=["feature-cache", "lora"])
def test_resume_from_last_checkpoint(tmp_path, cli, extra):
    cfg = tiny_yaml(tmp_path, max_steps=4, save_strategy="steps", save_steps=2, logging_steps=1)
    assert cli("train", "waypoint", "--config", cfg, *extra) == 0
    run = tmp_path / "run"
    assert (run / "checkpoint-4").is_dir()
    # A longer run with the same output dir continues from step 4 rather than starting over.
    assert cli("train", "waypoint", "--config", cfg, *extra, "--max_steps", "6", "--resume_from_checkpoint", "last") == 0
    state = json.loads((run / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 1-4 restored from checkpoint-4, then 5 and 6


def test_config_errors_are_clear(tmp_path, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    assert cli("train", "waypoint", "--config", bad) == 2  # a user error: one line, exit code 2
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_waypoint_dataset(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="synthetic:N"):
        load_waypoint_dataset("synthetic:many")
    with pytest.raises(ValueError, match="exactly one of"):
        build_waypoint_model(WaypointScriptArguments())  # names no model source
    with pytest.raises(ValueError, match="--vision_config must be a JSON object"):
        build_waypoint_model(WaypointScriptArguments(model_config={"vision_config": "{not json"}))
    assert cli("train", "waypoint", "--config", tiny_yaml(tmp_path), "--model_config.poling", "mean") == 2
    # A model config field given as a plain flag says where it goes.
    assert cli("train", "waypoint", "--config", tiny_yaml(tmp_path), "--pooling", "mean") == 2


def test_collator_keys_and_shapes():
    from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig
    from hf_vlmdrive.models.waypoint_vlm.image_processing import build_image_processor

    processor = build_image_processor(WaypointVLMConfig(vision_config=json.loads(TINY_TOWER)))
    ds = load_waypoint_dataset("synthetic:3", 48, 32, camera_names=("FRONT_LEFT", "FRONT"), progress=False)
    batch = WaypointCollator(processor, multi_camera=True)([ds[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 2, 3, 32, 32)
    assert batch["past_states"].shape == (3, 16, 6) and batch["past_states"].dtype == torch.float32
    assert batch["intent"].dtype == torch.long and batch["labels"].shape == (3, 20, 2)


def test_console_script_and_example_script(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "hf_vlmdrive.cli", "--help"], capture_output=True, text=True,
                         env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0 and "train waypoint" in out.stdout and "eval waypoint" in out.stdout
    cfg = tiny_yaml(tmp_path, max_steps=2)
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "train_waypoint.py"), "--config", str(cfg)],
                         capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-2000:]
    # No import-time noise from transformers' peft -> bitsandbytes -> kernels chain (hf_vlmdrive.log), in a script
    # that sets up no logging (Python's last-resort handler prints warnings) as on the command line.
    for stderr in (out.stderr, run.stderr):
        assert "bitsandbytes" not in stderr and "kernels-community" not in stderr, stderr[-2000:]
    assert (tmp_path / "run" / "config.json").is_file()
    unknown = subprocess.run([sys.executable, "-m", "hf_vlmdrive.cli", "fly", "plane"], capture_output=True,
                             text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert unknown.returncode == 2 and "unknown command" in unknown.stderr


def test_gradient_accumulation_gives_the_full_batch_update(tmp_path):
    # The waypoint loss is a mean over the batch: Trainer must not rescale it by the accumulation steps (it did
    # while the model's `**kwargs` made it assume a sum over num_items_in_batch: loss x4, grad_norm x4).
    runs = {}
    for name, batch, accumulation in (("full", 8, 1), ("accumulated", 2, 4)):
        cfg = tiny_yaml(tmp_path, output_dir=str(tmp_path / name), per_device_train_batch_size=batch,
                        gradient_accumulation_steps=accumulation, max_steps=1, logging_steps=1, max_grad_norm=1e9,
                        eval_data=None, use_cpu=True,
                        model_config=dict(vision_config=json.loads(TINY_TOWER), pooling="attention",
                                          head_hidden_sizes=[64, 64], head_dropout=0.0,  # same draws either way
                                          past_state_scale=10.0, waypoint_scale=10.0))
        script_args, training_args = parse_args((WaypointScriptArguments, TrainingArguments), ["--config", str(cfg)])
        trainer = train_waypoint(script_args, training_args)
        assert trainer.model_accepts_loss_kwargs is False
        runs[name] = (trainer.state.log_history[0], trainer.model.state_dict())
    (full_log, full_state), (acc_log, acc_state) = runs["full"], runs["accumulated"]
    assert acc_log["loss"] == pytest.approx(full_log["loss"], rel=1e-5)
    assert acc_log["grad_norm"] == pytest.approx(full_log["grad_norm"], rel=1e-4)
    for key, value in full_state.items():
        torch.testing.assert_close(acc_state[key], value, rtol=1e-5, atol=1e-6, msg=key)
