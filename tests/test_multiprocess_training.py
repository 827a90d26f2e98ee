"""Waypoint, SimLingo, RoboVLM and road-scene SFT (CLI and `--demo` path) in 2 real processes (gloo on CPU, through
`accelerate launch`), each from a fresh directory, against the same run in 1 process with the same global batch:

- parity: the logged loss and gradient norm of every step (and waypoint's sharded eval_loss) of 2 processes x B
  equal those of 1 process x 2B (same seed: the same initial weights and the same 2B samples per step, so each rank
  read its own half); the models have no dropout, so only float rounding differs;
- every file (data, tiny model, weights, processor, card, metrics, figures) is written by one rank only (per-rank
  checkpoint files `rng_state_<rank>.pth` aside);
- resume: a second run that resumes from the 2-process run's step-2 checkpoint logs the same steps 3-4 and saves
  the same weights as the uninterrupted 4-step run.

Each test starts 2 processes once (about 15-20 s of start-up): a driver runs the uninterrupted run and the resumed
one in the same processes, one after the other.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_vlmdrive.testing.distributed import files_written_by_several_ranks, launch_cpu

pytestmark = pytest.mark.slow  # each test: one 2-process launch plus the 1-process reference run

# Runs a list of steps in every launched process: ["cli", argv] is `hf-vlmdrive <argv> --use_cpu true`,
# ["roadscene_demo", output_dir, RoadSceneDemoConfig kwargs] the road-scene quick path.
DRIVER = """
import json, os, sys
from pathlib import Path

from hf_vlmdrive.cli import main

for kind, *rest in json.loads(open(sys.argv[1]).read()):
    if kind == "cli":
        code = main(rest[0] + ["--use_cpu", "true"])
        assert code == 0, (rest[0], code)
    else:
        from hf_vlmdrive.demos.roadscene import RoadSceneDemoConfig, run_roadscene_demo

        results = run_roadscene_demo(rest[0], RoadSceneDemoConfig(**rest[1]))
        # Each rank's curve to its own file beside the plan: two ranks printing to one shared pipe can interleave
        # (a rank's buffer is flushed at exit in chunks), which once lost a line.
        curve = Path(sys.argv[1]).with_name(f"demo_loss_curve_rank{os.environ['RANK']}.json")
        curve.write_text(json.dumps(results["train"]["loss_curve"]))
"""

PER_RANK_FILES = ("rng_state_",)  # Trainer saves each rank's RNG state in a checkpoint
COMMON = ["--seed", "0", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true",
          "--save_strategy", "steps", "--save_steps", "2", "--dataloader_num_workers", "0"]


def launch_two(root: Path, plan: list, env: dict | None = None):
    """Run `plan` (see DRIVER) in 2 processes, recording which rank writes which file under `root` (a fresh
    folder; the driver and the plan lie beside it)."""
    root.mkdir(parents=True)
    driver = root.parent / "driver.py"
    driver.write_text(DRIVER)
    plan_file = root.parent / "plan.json"
    plan_file.write_text(json.dumps(plan))
    return launch_cpu([str(plan_file)], script=str(driver), env=env, trace_writes_under=root, timeout=600)


def history(checkpoint: Path) -> dict[int, dict]:
    """{step: merged log record} from a checkpoint's trainer_state.json (training and eval records of a step)."""
    out: dict[int, dict] = {}
    for record in json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]:
        out.setdefault(record["step"], {}).update(record)
    return out


def assert_same_steps(two: dict, one: dict, steps, keys=("loss", "grad_norm"), rel=1e-5):
    for step in steps:
        for key in keys:
            if key in one.get(step, {}):
                assert two[step][key] == pytest.approx(one[step][key], rel=rel), (step, key, two, one)


def assert_resumed_equals_uninterrupted(run: Path, resumed: Path, weights: str = "model.safetensors"):
    a, b = history(run / "checkpoint-4"), history(resumed / "checkpoint-4")
    for step in (3, 4):
        assert b[step]["loss"] == a[step]["loss"] and b[step]["grad_norm"] == a[step]["grad_norm"], (step, a, b)
    wa, wb = load_file(run / weights), load_file(resumed / weights)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=0, msg=name)


def assert_files_written_once(proc, *must_exist: Path, only_main_under: tuple[Path, ...] = ()):
    """No file written by two ranks; each of `must_exist` written by rank 0; everything under `only_main_under`
    (prepared data: written under a temporary name, then renamed) written by rank 0 alone."""
    assert files_written_by_several_ranks(proc, ignore=PER_RANK_FILES) == {}
    assert proc.writes, "the write trace recorded nothing"
    for path in must_exist:
        ranks = proc.writes.get(str(path.resolve()))
        assert ranks == [0], (path, ranks)
    for folder in only_main_under:
        under = {p: r for p, r in proc.writes.items() if p.startswith(str(folder.resolve()))}
        assert under and all(r == [0] for r in under.values()), (folder, under)


# ------------------------------------------------------------------------------------------------ waypoint
WAYPOINT_TOWER = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, image_size=32, patch_size=8)


def waypoint_argv(out: Path, batch: int, *extra: str) -> list[str]:
    return ["train", "waypoint", "--output_dir", str(out), "--train_data", "synthetic:32", "--eval_data",
            "synthetic:8:1", "--image_width", "48", "--image_height", "32",
            "--model_config", json.dumps(dict(vision_config=WAYPOINT_TOWER, pooling="attention",
                                              head_hidden_sizes=[64, 64], head_dropout=0.0)),
            "--per_device_train_batch_size", str(batch), "--per_device_eval_batch_size", "4",
            "--learning_rate", "3e-3", "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "2",
            *COMMON, *extra]


def test_waypoint_two_processes(tmp_path, cli):
    one, run, resumed = tmp_path / "one", tmp_path / "two" / "run", tmp_path / "two" / "resumed"
    proc = launch_two(tmp_path / "two", [
        ["cli", waypoint_argv(run, 4)],
        ["cli", waypoint_argv(resumed, 4, "--resume_from_checkpoint", str(run / "checkpoint-2"))],
    ], env={"HF_VLMDRIVE_FEATURE_CACHE": str(tmp_path / "two" / "features")})
    assert cli(*waypoint_argv(one, 8), "--use_cpu", "true") == 0

    two_log, one_log = history(run / "checkpoint-4"), history(one / "checkpoint-4")
    assert_same_steps(two_log, one_log, range(1, 5), keys=("loss", "grad_norm", "eval_loss"))
    assert "eval_loss" in two_log[2] and "eval_loss" in two_log[4]
    assert "find_unused_parameters=True was specified" not in proc.stdout  # frozen tower: the recipe says False
    assert_files_written_once(proc, run / "model.safetensors", run / "processor_config.json", run / "README.md",
                              run / "eval_results.json")
    assert any("/features/" in p for p in proc.writes), "the feature cache was not filled under the traced folder"
    assert_resumed_equals_uninterrupted(run, resumed)


# ------------------------------------------------------------------------------------------------ SimLingo
def simlingo_argv(out: Path, batch: int, *extra: str) -> list[str]:
    # 2 routes x 31 frames: the released sampling rule keeps 8 frames per route = 16 frames; one epoch of a global
    # batch of 4 is 4 steps, in 1 process and in 2 (num_train_epochs, as the shipped YAML trains).
    return ["train", "simlingo", "--output_dir", str(out), "--synthetic_train_routes", "2", "--synthetic_eval_routes",
            "1", "--synthetic_frames_per_route", "31", "--image_width", "32", "--image_height", "16",
            "--model_config.vision_config.image_size", "16", "--model_config.vision_config.hidden_size", "32",
            "--num_train_epochs", "1", "--per_device_train_batch_size", str(batch), "--learning_rate", "1e-3",
            "--num_plot_samples", "1", *COMMON, *extra]


def test_simlingo_two_processes(tmp_path, cli):
    one, run, resumed = tmp_path / "one", tmp_path / "two" / "run", tmp_path / "two" / "resumed"
    proc = launch_two(tmp_path / "two", [
        ["cli", simlingo_argv(run, 2)],
        ["cli", simlingo_argv(resumed, 2, "--resume_from_checkpoint", str(run / "checkpoint-2"))],
    ])
    assert cli(*simlingo_argv(one, 4), "--use_cpu", "true") == 0

    two_log, one_log = history(run / "checkpoint-4"), history(one / "checkpoint-4")
    assert max(two_log) == max(one_log) == 4  # the same schedule: every rank read the same 16 frames
    assert_same_steps(two_log, one_log, range(1, 5))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["train_frames"] == 16 and metrics["num_samples"] > 0
    assert_files_written_once(proc, run / "model.safetensors", run / "preprocessor_config.json", run / "README.md",
                              run / "metrics.json", run / "predictions.png", run / "data" / "train",
                              only_main_under=(run / "data", resumed / "data"))
    assert not any(".tmp-" in p.name for p in (run / "data").iterdir())
    assert_resumed_equals_uninterrupted(run, resumed)


# ------------------------------------------------------------------------------------------------ RoboVLM
ROBOVLM_MODEL = json.dumps({"head_hidden_size": 32, "head_num_layers": 2, "head_mlp_sizes": [32], "window_size": 4,
                            "backbone_config": {"text_config": {"embed_dim": 32, "ffn_dim": 64},
                                                "vision_config": {"hidden_size": 32, "intermediate_size": 64}}})


def robovlm_argv(out: Path, batch: int, *extra: str) -> list[str]:
    return ["train", "robovlm", "--output_dir", str(out), "--synthetic_episodes", "2", "--synthetic_eval_episodes",
            "2", "--per_device_train_batch_size", str(batch), "--max_steps", "4", "--learning_rate", "1e-3",
            "--model_config", ROBOVLM_MODEL, *COMMON, *extra]


def test_robovlm_two_processes(tmp_path, cli):
    one, run, resumed = tmp_path / "one", tmp_path / "two" / "run", tmp_path / "two" / "resumed"
    proc = launch_two(tmp_path / "two", [
        ["cli", robovlm_argv(run, 2)],
        ["cli", robovlm_argv(resumed, 2, "--resume_from_checkpoint", str(run / "checkpoint-2"))],
    ])
    assert cli(*robovlm_argv(one, 4), "--use_cpu", "true") == 0

    assert_same_steps(history(run / "checkpoint-4"), history(one / "checkpoint-4"), range(1, 5))
    assert "find_unused_parameters=True was specified" not in proc.stdout  # LSTM head: the recipe says False
    # One evaluation, by the main process: the same held-out figures as the 1-process run's.
    two_metrics = json.loads((run / "metrics.json").read_text())
    one_metrics = json.loads((one / "metrics.json").read_text())
    assert two_metrics["model"]["mse"] == pytest.approx(one_metrics["model"]["mse"], rel=1e-3)
    assert_files_written_once(proc, run / "model.safetensors", run / "README.md", run / "metrics.json",
                              run / "episode_actions.png", run / "data" / "train",
                              only_main_under=(run / "data", resumed / "data"))
    assert_resumed_equals_uninterrupted(run, resumed)


# ------------------------------------------------------------------------------------------------ road-scene SFT
def test_roadscene_sft_and_demo_two_processes(tmp_path, cli):
    from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene
    from hf_vlmdrive.demos.roadscene import RoadSceneDemoConfig, run_roadscene_demo
    from hf_vlmdrive.testing.tiny_smolvlm import build_tiny_smolvlm

    data = write_synthetic_roadscene(tmp_path / "data", num_samples=16, image_size=32)
    build_tiny_smolvlm(tmp_path / "tiny-smolvlm2")

    def argv(out: Path, batch: int, *extra: str) -> list[str]:  # LoRA (new adapters: seeded), no LoRA dropout
        return ["sft", "roadscene", "--model", str(tmp_path / "tiny-smolvlm2"), "--train_file", str(data["bvpi_sft"]),
                "--output_dir", str(out), "--max_steps", "4", "--per_device_train_batch_size", str(batch),
                "--load_in_4bit", "false", "--lora_dropout", "0", "--learning_rate", "1e-3",
                "--gradient_checkpointing", "false", *COMMON, *extra]

    demo = dict(num_train=16, num_eval=2, image_size=32, hidden_size=32, vocab_size=400, max_steps=4,
                caption_metrics=False)
    one, run, resumed = tmp_path / "one", tmp_path / "two" / "run", tmp_path / "two" / "resumed"
    proc = launch_two(tmp_path / "two", [
        ["cli", argv(run, 2)],
        ["cli", argv(resumed, 2, "--resume_from_checkpoint", str(run / "checkpoint-2"))],
        ["roadscene_demo", str(tmp_path / "two" / "demo"), {**demo, "batch_size": 2}],
    ])
    # The reference: 1 process, 2 x 2 by gradient accumulation: bit for bit what 2 x 2 processes give. (1 x 4 gives
    # the same losses to 1e-7, but grad norms 6e-4 apart: the batch pads to another length, so TRL's loss path
    # rounds differently.)
    assert cli(*argv(one, 2, "--gradient_accumulation_steps", "2"), "--use_cpu", "true") == 0
    one_demo = run_roadscene_demo(tmp_path / "one_demo", RoadSceneDemoConfig(**demo, batch_size=4))

    assert_same_steps(history(run / "checkpoint-4"), history(one / "checkpoint-4"), range(1, 5))
    assert_resumed_equals_uninterrupted(run, resumed, weights="adapter_model.safetensors")
    # The quick path: its data and tiny model written once (then read by both ranks), one evaluation, the same
    # loss curve as in 1 process on both ranks (every rank returns the main process's results).
    curves = [json.loads((tmp_path / f"demo_loss_curve_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert curves[0] == curves[1]
    for (step2, loss2), (step1, loss1) in zip(curves[0], one_demo["train"]["loss_curve"], strict=True):
        assert step2 == step1 and loss2 == pytest.approx(loss1, rel=1e-4, abs=1e-4)
    demo_dir = tmp_path / "two" / "demo"
    assert_files_written_once(proc, run / "adapter_model.safetensors", run / "README.md",
                              run / "processor_config.json", demo_dir / "tiny-smolvlm2" / "model.safetensors",
                              demo_dir / "data" / "train" / "roadscene_sft.jsonl", demo_dir / "results.json",
                              demo_dir / "roadscene_predictions.png", demo_dir / "roadscene-tiny" / "README.md",
                              only_main_under=(demo_dir / "data", demo_dir / "tiny-smolvlm2"))
