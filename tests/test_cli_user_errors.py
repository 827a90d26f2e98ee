"""Every command answers a user mistake in at most two lines with exit code 2, naming the bad thing and what to
do, before it loads a model: run as a user runs it, `hf-vlmdrive ...` in a subprocess (one test per command).

The model directories here hold only what the checks read (config.json, norm_stats.json): a check that loaded
the model first would fail on them, so the tests also show the answer comes before any loading.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def model_dir(root: Path, name: str, model_type: str, norm_stats: bool = False) -> Path:
    """A directory holding a config.json of `model_type` (and an empty norm_stats.json if asked)."""
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
    if norm_stats:
        (path / "norm_stats.json").write_text("{}", encoding="utf-8")
    return path


def run_cli(*argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    env.pop("HF_VLMDRIVE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "hf_vlmdrive.cli", *map(str, argv)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)


def assert_user_error(argv: list, *expected: str) -> str:
    """Exit code 2, at most two stderr lines (the error and the --debug / --help hint), no traceback, and the
    error line naming each of `expected`; returns the error line."""
    result = run_cli(*argv)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    command = " ".join(str(a) for a in argv[:2])
    assert result.returncode == 2, f"{command}: exit {result.returncode}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert 1 <= len(lines) <= 2, f"{command}: {len(lines)} lines:\n" + "\n".join(lines[:12])
    assert ": error: " in lines[0], lines
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_errors")
    return {
        "root": root,
        "robovlm": model_dir(root, "robovlm", "robovlm"),
        "geovla": model_dir(root, "geovla", "geovla", norm_stats=True),
        "geovla_nostats": model_dir(root, "geovla_nostats", "geovla"),
        "smolvlm": model_dir(root, "smolvlm", "smolvlm"),
    }


def test_serve(dirs):
    root = dirs["root"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert_user_error(["serve", "--model", dirs["geovla"], "--port", port], f"port {port}", "already in use",
                          "--port")
    assert_user_error(["serve", "--model", root / "geovlaa"], "no such directory", "GeoVLA checkpoint")
    assert_user_error(["serve", "--model", dirs["geovla_nostats"]], "no norm_stats.json")
    assert_user_error(["serve", "--model", dirs["robovlm"]], "holds a RoboVLM", "needs GeoVLA")
    assert_user_error(["serve", "--model", dirs["geovla"], "--key-map", "{oops"], "key map", "not JSON")
    assert_user_error(["serve", "--model", dirs["geovla"], "--port", "70000"], "not a TCP port")
    assert_user_error(["serve"], "required: --model")


def test_generate(dirs):
    root = dirs["root"]
    assert_user_error(["generate", "--model", dirs["robovlm"], "--input", root / "in.jsonl", "--output",
                       root / "out.jsonl"], "holds a RoboVLM", "image-text-to-text")
    assert_user_error(["generate", "--model", dirs["smolvlm"], "--input", root / "missing.jsonl", "--output",
                       root / "out.jsonl"], "missing.jsonl does not exist")
    assert_user_error(["generate", "--model", root / "nowhere", "--input", root / "in.jsonl", "--output",
                       root / "out.jsonl"], "--model", "no such directory")


def test_eval(dirs):
    root = dirs["root"]
    assert_user_error(["eval", "waypoint", "--model", dirs["robovlm"]], "holds a RoboVLM", "needs waypoint")
    assert_user_error(["eval", "simlingo", "--model_name_or_path", dirs["geovla"], "--data_dir", root],
                      "holds a GeoVLA", "needs SimLingo")
    assert_user_error(["eval", "libero", "--model", dirs["robovlm"]], "holds a RoboVLM", "GeoVLA")
    assert_user_error(["eval", "libero", "--policy", "zero", "--num-workers", "0"], "--num-workers", ">= 1")
    assert_user_error(["eval", "libero", "--num-workers", "2"], "exactly one of --model")
    assert_user_error(["eval", "captions", "--predictions", root / "p.jsonl", "--references", root / "r.json"],
                      "does not exist")
    assert_user_error(["eval", "bvpi", "--predictions", root / "p.jsonl"], "required: --references")


def test_predict(dirs):
    assert_user_error(["predict", "waypoint", "--model", dirs["geovla"], "--data", dirs["root"], "--output_json",
                       dirs["root"] / "p.json"], "holds a GeoVLA", "needs waypoint")


def test_analyze(dirs):
    root = dirs["root"]
    assert_user_error(["analyze", "checkpoint", root / "missing.pt"], "missing.pt does not exist")
    assert_user_error(["analyze", "extract", "--model", dirs["geovla"], "--data", root, "--sample",
                       root / "s.json", "--output", root / "x"], "holds a GeoVLA", "needs RoboVLM")
    assert_user_error(["analyze", "compare", root / "a.npy", root / "b.npy"], "required: --output_dir")


def test_convert(dirs):
    root = dirs["root"]
    assert_user_error(["convert", "robovlms", root / "missing.ckpt", "--output_dir", root / "out"],
                      "missing.ckpt does not exist")
    assert_user_error(["convert", "open-flamingo", "--checkpoint", root / "missing.pt"], "required")
    assert_user_error(["convert", "mapanything", root / "missing", "--output", root / "ma"], "no such directory")
    assert_user_error(["convert", "mapanything", root, "--output", root / "ma"], "holds no model.safetensors")
    assert_user_error(["convert", "mapanything", root, "--output", root / "ma", "--encoder-width", "0"],
                      "--encoder-width must be a positive integer")


def test_push(dirs):
    assert_user_error(["push", dirs["root"] / "missing", "--repo-id", "me/model", "--dry-run"], "no such directory")


def test_train(dirs):
    root = dirs["root"]
    bad = root / "bad.yaml"
    bad.write_text("output_dir: [unclosed\n", encoding="utf-8")
    assert_user_error(["train", "waypoint", "--config", bad], "not valid YAML", "line 2")
    assert_user_error(["train", "waypoint", "--output_dir", root / "w", "--pooling", "mean"],
                      "--pooling is a WaypointVLMConfig field", "--model_config.pooling")
    assert_user_error(["train", "waypoint", "--output_dir", root / "w", "--model_name_or_path", dirs["robovlm"]],
                      "holds a RoboVLM", "needs waypoint")
    assert_user_error(["train", "geovla", "--dataset_root", root / "no_data", "--output_dir", root / "g",
                       "--vlm_name_or_path", "tiny-random", "--geometry_name_or_path", "tiny-random"],
                      "no_data")
    assert_user_error(["train", "robovlm", "--output_dir", root / "r", "--max_stepz", "1"], "max_stepz")


def test_sft(dirs):
    root = dirs["root"]
    data = root / "sft.jsonl"
    data.write_text("", encoding="utf-8")
    assert_user_error(["sft", "flamingo", "--model_name_or_path", dirs["robovlm"], "--train_file", data,
                       "--output_dir", root / "f"], "holds a RoboVLM", "needs Flamingo")
    assert_user_error(["sft", "roadscene", "--model_name_or_path", dirs["robovlm"], "--train_file", data,
                       "--output_dir", root / "s", "--use_cpu", "true", "--bf16", "false"],
                      "holds a RoboVLM", "image-text-to-text")


def test_data(dirs):
    root = dirs["root"]
    assert_user_error(["data", "lerobot-stats", "--root", root / "missing"], "does not exist")
    assert_user_error(["data", "libero-demos", "--tasks", "x", "--out", root / "d"], "--tasks", "'x'")


def test_sweep(dirs):
    root = dirs["root"]
    assert_user_error(["sweep", root / "missing.yaml", "--vary", "seed=1,2"], "missing.yaml", "does not exist")
    config = root / "sweep_base.yaml"
    config.write_text("seed: 0\n", encoding="utf-8")
    assert_user_error(["sweep", config], "nothing to sweep", "--vary KEY=A,B")
    assert_user_error(["sweep", config, "--vary", "seed"], "--vary expects KEY=VALUE")
    assert_user_error(["sweep", config, "--vary", "seed=1,2", "--family", "flamingo"], "--family", "'flamingo'")
    assert_user_error(["sweep", config, "--vary", "seed=1,2", "--reference", "seed=3", "--output-dir", root / "sw"],
                      "--reference", "'seed=3'", "seed=1")


def test_estimate(dirs):
    root = dirs["root"]
    assert_user_error(["estimate", "geovla_pool"], "'geovla_pool'", "geovla_libero_pool")
    assert_user_error(["estimate", root / "missing.yaml"], "missing.yaml", "does not exist")
    edited = root / "geovla_libero_pool.yaml"
    edited.write_text("dataset_root: d\nvlm_name_or_path: Qwen/Qwen2.5-VL-7B-Instruct\n", encoding="utf-8")
    assert_user_error(["estimate", edited], "vlm_name_or_path", "Qwen2.5-VL-7B-Instruct", "model directory")
    assert_user_error(["estimate", "geovla_libero_pool", "--zero", "5"], "--zero", "5")
    assert_user_error(["estimate", "geovla_libero_pool", "--num-gpus", "0"], "--num-gpus")


def test_every_command_group_has_a_test_here():
    from hf_vlmdrive.cli import build_registry

    groups = {path[0] for path in build_registry().commands}
    tested = {name[len("test_"):].replace("_", "-") for name in globals() if name.startswith("test_")}
    untested = groups - tested - {"cache-features"}  # cache-features: covered by test_feature_cache's CLI test
    assert not untested, f"command groups without a user-error test here: {sorted(untested)}"
