"""User mistakes through the command line: one or two lines naming what was wrong, exit code 2, no traceback
(`--debug` shows it); no silent partial results; Ctrl-C during training saves and says how to resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from hf_vlmdrive.data.synthetic.waymo import write_synthetic_e2ed

ROOT = Path(__file__).resolve().parents[1]
TINY_TOWER = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, image_size=32, patch_size=8)


def tiny_cfg(tmp_path: Path, **overrides) -> Path:
    cfg = dict(model_config=dict(vision_config=TINY_TOWER, head_hidden_sizes=[32], past_state_scale=10.0,
                                 waypoint_scale=10.0),
               train_data="synthetic:32", eval_data=None, image_width=48, image_height=32,
               output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, max_steps=2, save_strategy="no",
               report_to="none", disable_tqdm=True)
    cfg.update(overrides)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def user_error(capsys, cli, *argv) -> str:
    """Run the CLI in-process; assert exit code 2 and a short message without a traceback; return it."""
    code = cli(*argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("hf-vlmdrive ") and ": error: " in line]
    assert len(starts) == 1, lines[-5:]
    tail = lines[starts[0]:]
    assert len(tail) <= 2, tail  # the message and, at most, the --debug hint
    return tail[0]


def test_bad_path_and_debug_traceback(tmp_path, capsys, cli):
    line = user_error(capsys, cli, "train", "waypoint", "--config", tmp_path / "missing.yaml")
    assert "missing.yaml does not exist" in line
    from hf_vlmdrive.errors import UserError

    with pytest.raises(UserError):  # --debug: the error propagates with its traceback
        cli("train", "waypoint", "--config", tmp_path / "missing.yaml", "--debug")


def test_model_argument_neither_directory_nor_hub_id(tmp_path, capsys, cli, monkeypatch):
    line = user_error(capsys, cli, "eval", "waypoint", "--model", tmp_path / "no" / "such" / "dir")
    assert "no such directory" in line and "Repo id" not in line
    (tmp_path / "empty").mkdir()
    assert "holds no config.json" in user_error(capsys, cli, "eval", "waypoint", "--model", tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = user_error(capsys, cli, "eval", "waypoint", "--model", "some-org/some-model")
    assert "Hub is unreachable" in line and "local directory" in line


@pytest.mark.parametrize("key, value, expected", [
    ("num_train_epochs", [1, 2], "expected float"),
    ("save_strategy", False, "quote it"),
    ("camera_names", "FRONT", "expected list of str"),
    ("image_width", "wide", "expected int"),
])
def test_yaml_values_are_type_checked_before_anything_runs(tmp_path, capsys, cli, key, value, expected):
    line = user_error(capsys, cli, "train", "waypoint", "--config", tiny_cfg(tmp_path, **{key: value}))
    assert key in line and repr(value) in line and expected in line
    assert not (tmp_path / "run").exists()  # nothing ran


def test_unknown_yaml_key_and_model_config_field(tmp_path, capsys, cli):
    line = user_error(capsys, cli, "train", "waypoint", "--config", tiny_cfg(tmp_path, learning_rat=0.1))
    assert "'learning_rat'" in line and "did you mean 'learning_rate'" in line
    line = user_error(capsys, cli, "train", "waypoint", "--config", tiny_cfg(tmp_path), "--model_config.poling", "x")
    assert "poling" in line and "WaypointVLMConfig" in line
    line = user_error(capsys, cli, "train", "waypoint", "--config", tiny_cfg(tmp_path, eval_strategy="weekly"))
    assert "weekly" in line


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from hf_vlmdrive.cli import main

    root = tmp_path_factory.mktemp("cli_model")
    assert main(["train", "waypoint", "--config", str(tiny_cfg(root))]) == 0
    return root / "run"


def test_partial_submission_is_refused_unless_allowed(tmp_path, capsys, cli, tiny_model_dir):
    data = tmp_path / "wod"
    write_synthetic_e2ed(data, 6, seed=2, split="test", width=48, height=32, camera_names=("FRONT",), progress=False)
    shard = next(data.glob("test.tfrecord*"))
    raw = shard.read_bytes()
    shard.write_bytes(raw[: int(len(raw) * 0.6)])  # a truncated download
    out = tmp_path / "sub.binproto"
    line = user_error(capsys, cli, "predict", "waypoint", "--model", tiny_model_dir, "--data", shard,
                      "--submission", out)
    assert "could not be read" in line and "--allow_partial" in line and not out.exists()
    assert cli("predict", "waypoint", "--model", tiny_model_dir, "--data", shard, "--submission", out,
               "--allow_partial") == 0
    stdout = capsys.readouterr().out
    assert "skipped" in stdout and "misses" in stdout and out.is_file()
    import re

    from hf_vlmdrive.data.waymo_e2e import read_submission

    written = len(read_submission(out).predictions)
    skipped = int(re.search(r"read \d+ frame\(s\), skipped (\d+)", stdout).group(1))
    assert 0 < written < 6 and skipped >= 1 and f"misses {skipped} damaged record(s)" in stdout


def test_no_usable_frame_is_an_error_naming_the_camera(tmp_path, capsys, cli, tiny_model_dir):
    from hf_vlmdrive.data.waymo_e2e import load_e2ed_dataset
    from hf_vlmdrive.errors import UserError

    data = tmp_path / "wod"
    write_synthetic_e2ed(data, 4, seed=0, split="validation", width=48, height=32, camera_names=("FRONT",),
                         progress=False)
    with pytest.raises(UserError, match=r"every frame lacks camera\(s\) \['FRONT_LEFT', 'FRONT', 'FRONT_RIGHT'\]"):
        load_e2ed_dataset(str(data / "validation.tfrecord*"), camera_names=("FRONT_LEFT", "FRONT", "FRONT_RIGHT"))
    assert cli("eval", "waypoint", "--model", tiny_model_dir, "--data", data / "validation.tfrecord-00000-of-00001") == 0
    assert "read 4 frame(s), skipped 0" in capsys.readouterr().out  # the summary line


def test_lerobot_camera_not_in_info_json_warns_once_and_a_requested_one_raises(tmp_path, caplog):
    from hf_vlmdrive.data.lerobot import LeRobotDataset, make_synthetic_libero
    from hf_vlmdrive.errors import UserError

    root = tmp_path / "ds"
    make_synthetic_libero(root, num_episodes=1, episode_length=4, image_size=16, image_storage="video")
    info = json.loads((root / "meta" / "info.json").read_text())
    del info["features"]["observation.images.wrist_image"]
    (root / "meta" / "info.json").write_text(json.dumps(info))
    with caplog.at_level("WARNING", logger="hf_vlmdrive.data.lerobot.dataset"):
        ds = LeRobotDataset(root, action_horizon=2)
        LeRobotDataset(root, action_horizon=2)
    assert ds.camera_keys == ["observation.images.image"]
    warned = [r for r in caplog.records if "observation.images.wrist_image" in r.getMessage()]
    assert len(warned) == 1 and "not features of meta/info.json" in warned[0].getMessage()
    with pytest.raises(UserError, match="wrist_image.*has video files on disk"):
        LeRobotDataset(root, action_horizon=2, camera_keys=["observation.images.wrist_image"])


def test_sft_prompt_longer_than_max_length_is_refused_or_skipped(tmp_path, capsys, cli):
    from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene
    from hf_vlmdrive.testing.tiny_smolvlm import build_tiny_smolvlm

    paths = write_synthetic_roadscene(tmp_path / "data", num_samples=3, image_size=32)
    build_tiny_smolvlm(tmp_path / "model")
    common = ["sft", "roadscene", "--model", tmp_path / "model", "--train_file", paths["bvpi_sft"],
              "--load_in_4bit", "false", "--max_length", "8", "--max_steps", "1", "--report_to", "none",
              "--use_cpu", "true", "--save_strategy", "no"]
    line = user_error(capsys, cli, *common, "--output_dir", tmp_path / "a")
    assert "example" in line and "max_length=8" in line and "--skip_long_examples" in line
    # Every example is too long: skipping them all leaves nothing, which is an error too.
    line = user_error(capsys, cli, *common, "--output_dir", tmp_path / "b", "--skip_long_examples", "true")
    assert "no example" in line and "3" in line


def test_interrupted_training_saves_and_prints_the_resume_command(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=100000, logging_steps=1, train_data="synthetic:64")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hf_vlmdrive.cli", "train", "waypoint", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    out_lines, err_lines = [], []
    readers = [threading.Thread(target=lambda s=s, d=d: d.extend(iter(s.readline, "")), daemon=True)
               for s, d in ((proc.stdout, out_lines), (proc.stderr, err_lines))]
    for r in readers:
        r.start()
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and sum("'loss'" in line for line in out_lines) < 3:
            time.sleep(0.2)  # training is under way once the Trainer has logged a few losses
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    for r in readers:
        r.join(timeout=10)
    err = "".join(err_lines)
    assert proc.returncode == 130, err[-2000:]
    assert "KeyboardInterrupt" not in err and "Traceback" not in err
    checkpoints = sorted((tmp_path / "run").glob("checkpoint-*"))
    assert checkpoints, err[-2000:]
    assert f"saved {checkpoints[-1]}" in err
    assert "resume with: hf-vlmdrive train waypoint --config" in err and "--resume_from_checkpoint last" in err
    step = int(checkpoints[-1].name.split("-")[1])
    again = subprocess.run([sys.executable, "-m", "hf_vlmdrive.cli", "train", "waypoint", "--config", str(cfg),
                            "--max_steps", str(step + 2), "--resume_from_checkpoint", "last"],
                           capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr[-2000:]
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text()) if (
        tmp_path / "run" / "trainer_state.json").is_file() else None
    assert state is None or state["global_step"] == step + 2
    shutil.rmtree(tmp_path / "run", ignore_errors=True)


NOISE = ("bitsandbytes", "kernels-community")  # transformers >= 5.25 -> peft -> bitsandbytes -> kernels (see hf_vlmdrive.log)


def test_no_bitsandbytes_noise_on_a_training_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "hf_vlmdrive.cli", "train", "waypoint", "--config",
                          str(tiny_cfg(tmp_path, max_steps=1))], capture_output=True, text=True, env=env,
                         timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not any(word in run.stderr for word in NOISE), run.stderr[-2000:]
