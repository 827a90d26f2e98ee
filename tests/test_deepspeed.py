"""DeepSpeed ZeRO through accelerate with the shipped config files (examples/configs/accelerate_zero2.yaml +
deepspeed_zero2.json), in 2 real CPU processes (`DS_ACCELERATOR=cpu`, gloo), and the launcher's gradient
accumulation flag.

- ZeRO-2 with gradient accumulation 4 x batch 1 per process gives the same weights, after the first update and after
  the second, as 1 process with batch 8 and no accumulation (SGD, no clipping: any scaling error shows); so does
  DDP with the same layout; resuming the ZeRO checkpoint of step 1 ends on the same weights; the saved directory
  loads with `from_pretrained`.
- ZeRO-3 (accelerate_zero3.yaml: parameters sharded): the waypoint model and GeoVLA (tiny backbones written under it)
  train from the same initial weights as 1 process, resume their checkpoint, and save a directory that loads.
- SimLingo's OneCycleLR (a torch scheduler that reads the optimizer's `defaults`) runs under ZeRO-2 with the same
  learning rates as in one process.
- `accelerate launch --gradient_accumulation_steps N` (which never reaches the Trainer) stops before any work
  with a message naming the script's flag.

The DeepSpeed tests are skipped where deepspeed is not installed (it is the `deepspeed` extra, not in the dev lock);
install it with `pip install -e ".[deepspeed]"` (needs g++ / ninja for the op it compiles on first use).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

from hf_vlmdrive.arguments import parse_args
from hf_vlmdrive.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
ZERO2 = ROOT / "examples" / "configs" / "accelerate_zero2.yaml"

needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="deepspeed is not installed (pip install -e '.[deepspeed]'); the ZeRO tests need it",
)

# Eight samples: one step of 2 processes x 1 per device x 4 accumulation steps, or 1 process x 8, sees all of them
# (in any order), so the steps of every layout have the same batch. SGD without clipping keeps the gradient's scale;
# no dropout (each rank would draw its own masks, as each micro-batch does: a different but equally valid run).
TINY = dict(
    model_config=dict(vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
                      pooling="attention", head_hidden_sizes=[32], past_state_scale=10.0, waypoint_scale=10.0,
                      head_dropout=0.0),
    train_data="synthetic:8", image_width=48, image_height=32, use_feature_cache=False, optim="sgd",
    learning_rate=1e-3, lr_scheduler_type="constant", max_grad_norm=0.0, max_steps=2, save_strategy="steps",
    save_steps=1, logging_steps=1, report_to="none", disable_tqdm=True, seed=0,
)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def _max_diff(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert set(wa) == set(wb)
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def _losses(run: Path, step: int) -> list[float]:
    history = json.loads((run / f"checkpoint-{step}" / "trainer_state.json").read_text())["log_history"]
    return [h["loss"] for h in history if "loss" in h]


@needs_deepspeed
@pytest.mark.slow
def test_zero2_matches_one_process_with_accumulation_and_resumes(tmp_path, cli):
    from transformers import AutoModel

    import hf_vlmdrive  # noqa: F401 - registers the Auto classes
    from hf_vlmdrive.testing.distributed import launch_cpu

    cfg = _config(tmp_path)
    one = tmp_path / "one"  # the reference: 1 process, batch 8, no accumulation
    assert cli("train", "waypoint", "--config", cfg, "--output_dir", one, "--per_device_train_batch_size", 8,
               "--use_cpu", "true") == 0
    layout = ["--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "4"]
    zero = tmp_path / "zero2"
    launch_cpu(["train", "waypoint", "--config", str(cfg), "--output_dir", str(zero), *layout, "--ddp_backend", "gloo"],
               num_processes=2, deepspeed_config=str(ZERO2), cwd=ROOT)
    assert (zero / "checkpoint-1" / "global_step1").is_dir(), "not a DeepSpeed checkpoint"
    # The first update and the second: ZeRO-2 with accumulation == 1 process without it (float32 rounding only).
    assert _max_diff(one / "checkpoint-1", one) > 1e-4, "the updates must move the weights for the test to mean anything"
    assert _max_diff(zero / "checkpoint-1", one / "checkpoint-1") < 1e-6
    assert _max_diff(zero, one) < 1e-6
    assert _losses(zero, 2) == pytest.approx(_losses(one, 2), rel=1e-5)

    # Resume from the ZeRO checkpoint of step 1 in a fresh output_dir: the same step-2 weights.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(zero / "checkpoint-1", resumed / "checkpoint-1")
    launch_cpu(["train", "waypoint", "--config", str(cfg), "--output_dir", str(resumed), *layout, "--ddp_backend",
                "gloo", "--resume_from_checkpoint", "last"], num_processes=2, deepspeed_config=str(ZERO2), cwd=ROOT)
    assert _max_diff(resumed, zero) < 1e-6

    model = AutoModel.from_pretrained(zero)
    assert type(model).__name__ == "WaypointVLMModel"


@pytest.mark.slow
def test_ddp_accumulation_matches_one_process(tmp_path, cli):
    from hf_vlmdrive.testing.distributed import launch_cpu

    cfg = _config(tmp_path)
    one = tmp_path / "one"
    assert cli("train", "waypoint", "--config", cfg, "--output_dir", one, "--per_device_train_batch_size", 8,
               "--use_cpu", "true", "--max_steps", 1) == 0
    ddp = tmp_path / "ddp"
    launch_cpu(["train", "waypoint", "--config", str(cfg), "--output_dir", str(ddp), "--max_steps", "1",
                "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "4"], num_processes=2, cwd=ROOT)
    assert _max_diff(ddp, one) < 1e-6


ZERO3 = ROOT / "examples" / "configs" / "accelerate_zero3.yaml"


@needs_deepspeed
@pytest.mark.slow
def test_waypoint_zero3_matches_one_process_resumes_and_loads(tmp_path, cli):
    """ZeRO-3 (parameters sharded) trains the waypoint model from the same initial weights as 1 process (the recipe
    builds it outside `zero.Init`, DeepSpeed shards it), so with the same global batch the weights agree after each
    update; the checkpoint of step 1 resumes to the same step-2 weights; the card's held-out evaluation runs (every
    rank takes part in its forward passes); the gathered save loads with `from_pretrained`."""
    from transformers import AutoModel

    import hf_vlmdrive  # noqa: F401 - registers the Auto classes
    from hf_vlmdrive.testing.distributed import launch_cpu

    cfg = _config(tmp_path)
    one = tmp_path / "one"
    assert cli("train", "waypoint", "--config", cfg, "--output_dir", one, "--per_device_train_batch_size", 8,
               "--use_cpu", "true") == 0
    layout = ["--per_device_train_batch_size", "4", "--ddp_backend", "gloo"]
    zero = tmp_path / "zero3"
    launch_cpu(["train", "waypoint", "--config", str(cfg), "--output_dir", str(zero), *layout, "--eval_data",
                "synthetic:4:1"], num_processes=2, deepspeed_config=str(ZERO3), cwd=ROOT)
    assert (zero / "checkpoint-1" / "global_step1").is_dir(), "not a DeepSpeed checkpoint"
    assert _max_diff(one / "checkpoint-1", one) > 1e-4, "the updates must move the weights for the test to mean anything"
    assert _max_diff(zero / "checkpoint-1", one / "checkpoint-1") < 1e-6
    assert _max_diff(zero, one) < 1e-6
    assert _losses(zero, 2) == pytest.approx(_losses(one, 2), rel=1e-5)
    assert json.loads((zero / "eval_results.json").read_text())["num_samples"] == 4

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(zero / "checkpoint-1", resumed / "checkpoint-1")
    launch_cpu(["train", "waypoint", "--config", str(cfg), "--output_dir", str(resumed), *layout,
                "--resume_from_checkpoint", "last"], num_processes=2, deepspeed_config=str(ZERO3), cwd=ROOT)
    assert _max_diff(resumed, zero) < 1e-6

    model = AutoModel.from_pretrained(zero)
    assert type(model).__name__ == "WaypointVLMModel"


@needs_deepspeed
@pytest.mark.slow
def test_geovla_zero3_matches_one_process_resumes_and_loads(tmp_path, cli):
    """GeoVLA under ZeRO-3: the tiny backbones are written and the model (meta-device build of the new modules) is
    built as in 1 process, then sharded; without dropout the losses follow 1 process with the same global batch; the
    checkpoint of step 1 resumes to the same step-2 loss; the gathered save loads with `from_pretrained`."""
    from transformers import AutoModel

    import hf_vlmdrive  # noqa: F401 - registers the Auto classes
    from hf_vlmdrive.testing.distributed import launch_cpu

    zero, resumed, one = tmp_path / "zero3", tmp_path / "resumed", tmp_path / "one"
    common = ["train", "geovla", "--config", str(ROOT / "examples/configs/libero_tiny.yaml"), "--dataset_root",
              str(tmp_path / "data"), "--max_steps", "2", "--warmup_steps", "0", "--learning_rate", "1e-3",
              "--vlm_learning_rate", "1e-3", "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
              "--eval_strategy", "no", "--disable_tqdm", "true", "--report_to", "none", "--seed", "0",
              "--model_config.dit_dropout", "0"]
    two = ["--per_device_train_batch_size", "2", "--ddp_backend", "gloo"]
    launch_cpu([*common, *two, "--output_dir", str(zero)], num_processes=2, deepspeed_config=str(ZERO3), cwd=ROOT)
    assert (zero / "checkpoint-1" / "global_step1").is_dir(), "not a DeepSpeed checkpoint"
    built = ["--vlm_name_or_path", str(zero / "backbones" / "tiny-qwen2.5-vl"),
             "--geometry_name_or_path", str(zero / "backbones" / "tiny-dinov2")]
    assert cli(*common, *built, "--per_device_train_batch_size", 4, "--output_dir", one, "--use_cpu", "true") == 0
    assert len(_losses(zero, 2)) == 2
    assert _losses(zero, 2) == pytest.approx(_losses(one, 2), rel=1e-4)

    resumed.mkdir()
    shutil.copytree(zero / "checkpoint-1", resumed / "checkpoint-1")
    launch_cpu([*common, *two, *built, "--output_dir", str(resumed), "--resume_from_checkpoint", "last"],
               num_processes=2, deepspeed_config=str(ZERO3), cwd=ROOT)
    assert _losses(resumed, 2)[1] == pytest.approx(_losses(zero, 2)[1], rel=1e-5)

    model = AutoModel.from_pretrained(zero)
    assert type(model).__name__ == "GeoVLAForActionPrediction"


SIMLINGO = ["train", "simlingo", "--synthetic_train_routes", "2", "--synthetic_eval_routes", "1",
            "--synthetic_frames_per_route", "6", "--image_width", "32", "--image_height", "16",
            "--model_config.vision_config.image_size", "16", "--model_config.vision_config.hidden_size", "32",
            "--num_plot_samples", "1", "--skip_first_frames", "0", "--require_full_future", "false",
            "--max_steps", "3", "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "3",
            "--report_to", "none", "--disable_tqdm", "true", "--seed", "0"]


@needs_deepspeed
@pytest.mark.slow
def test_simlingo_one_cycle_schedule_under_zero2(tmp_path, cli):
    from hf_vlmdrive.testing.distributed import launch_cpu

    one = tmp_path / "one"
    assert cli(*SIMLINGO, "--output_dir", one, "--per_device_train_batch_size", 4, "--use_cpu", "true") == 0
    data = ["--train_data_dir", str(one / "data" / "train"), "--eval_data_dir", str(one / "data" / "heldout")]
    zero = tmp_path / "zero2"
    launch_cpu([*SIMLINGO, *data, "--output_dir", str(zero), "--per_device_train_batch_size", "2", "--ddp_backend",
                "gloo"], num_processes=2, deepspeed_config=str(ZERO2), cwd=ROOT)

    def rates(run):
        history = json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
        return [h["learning_rate"] for h in history if "loss" in h]

    assert len(rates(zero)) == 3 and rates(zero) == pytest.approx(rates(one), rel=1e-6)
    assert (zero / "metrics.json").is_file()


# ------------------------------------------------------------------ the launcher's gradient accumulation flag
def _training_args(tmp_path, *extra):
    from transformers import TrainingArguments

    from hf_vlmdrive.trainers.waypoint_config import WaypointScriptArguments

    return parse_args((WaypointScriptArguments, TrainingArguments),
                      ["--config", str(_config(tmp_path)), "--output_dir", str(tmp_path / "o"), *extra])


def test_launcher_gradient_accumulation_under_deepspeed_stops_early(tmp_path, monkeypatch):
    # `accelerate launch --config_file <deepspeed> --gradient_accumulation_steps 4 ...` exports this variable.
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
    with pytest.raises(UserError) as err:
        _training_args(tmp_path)
    message = str(err.value)
    assert "--gradient_accumulation_steps 4" in message and "gradient_accumulation_steps is 1" in message
    assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS=4" in message and "drop it from `accelerate launch`" in message
    _, args = _training_args(tmp_path, "--gradient_accumulation_steps", "4")  # the two agree: DeepSpeed's too
    assert args.gradient_accumulation_steps == 4


@pytest.mark.parametrize("launcher", [
    ["/usr/bin/python3", "/venv/bin/accelerate", "launch", "--num_processes", "1", "--gradient_accumulation_steps",
     "4", "train.py", "--config", "c.yaml"],
    ["/usr/bin/python3", "-m", "accelerate.commands.launch", "--multi_gpu", "--gradient_accumulation_steps=4", "-m",
     "hf_vlmdrive.cli", "train", "waypoint"],
])
def test_launcher_gradient_accumulation_without_deepspeed_is_not_ignored(tmp_path, launcher):
    """Without DeepSpeed accelerate drops the flag silently; the check reads the launcher's command line."""
    from hf_vlmdrive.distributed import (
        check_launcher_gradient_accumulation,
        launcher_gradient_accumulation_steps,
    )

    _, args = _training_args(tmp_path)
    assert launcher_gradient_accumulation_steps(launcher)[0] == 4
    with pytest.raises(UserError, match=r"on the `accelerate launch` command line.*--gradient_accumulation_steps 4"):
        check_launcher_gradient_accumulation(args, parent_cmdline=launcher)
    # The script's own flag (after the script) is not the launcher's; no launcher at all: nothing to check.
    script_flag = ["/venv/bin/accelerate", "launch", "train.py", "--gradient_accumulation_steps", "4"]
    for line in (script_flag, ["/bin/bash"], []):
        assert launcher_gradient_accumulation_steps(line) is None
        check_launcher_gradient_accumulation(args, parent_cmdline=line)
