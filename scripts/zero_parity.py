"""Measure every training entry point under 1 process, DDP (2 CPU processes, gloo) and DeepSpeed ZeRO-2 / ZeRO-3
(2 CPU processes, `DS_ACCELERATOR=cpu`), on tiny configs: the table of docs/scaling.md.

    python scripts/zero_parity.py --work /tmp/zero_parity                       # every recipe, 1 proc / DDP / ZeRO-2
    python scripts/zero_parity.py --work /tmp/zp --recipes waypoint,simlingo --modes single,zero2,zero2_resume,zero3

Needs deepspeed in the interpreter that runs it (`pip install -e ".[deepspeed]"`); g++ / ninja for the first run.
Each run trains 4 optimiser steps with the same global batch (1 process x 2B, 2 processes x B) and saves a
checkpoint at step 2; `zero2_resume` / `zero3_resume` resume the ZeRO-2 / ZeRO-3 run's checkpoint-2 in a fresh output_dir
and train to step 4.
Printed per recipe and mode: exit status, the logged loss of steps 1-4 (from checkpoint-4/trainer_state.json), the
largest weight difference of the saved model to the reference (the 1-process run; for zeroN_resume the ZeRO-N run),
and whether the saved directory loads with `from_pretrained`. Data, tiny backbones and tiny models are prepared
once, by the 1-process run or up front, so the multi-process runs only read them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "examples" / "configs"
MODES = ("single", "ddp", "zero2", "zero2_resume", "zero3", "zero3_resume")
STEPS, SAVE_AT = 4, 2

WAYPOINT_YAML = """model_config:
  vision_config: {model_type: siglip_vision_model, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
                  num_attention_heads: 2, image_size: 32, patch_size: 8}
  pooling: attention
  head_hidden_sizes: [64]
  head_dropout: 0.0
train_data: "synthetic:64"
image_width: 48
image_height: 32
use_feature_cache: false
learning_rate: 1.0e-3
"""


def recipe_argv(name: str, work: Path, batch: int) -> list[str]:
    """CLI words of a tiny run of `name` with per-device batch `batch`; data from `work/<name>/` (see `prepare`)."""
    root = work / name
    single_out = root / "single"
    if name == "waypoint":
        return ["train", "waypoint", "--config", str(root / "waypoint.yaml"), "--per_device_train_batch_size", str(batch)]
    if name == "simlingo":
        data = ["--train_data_dir", str(single_out / "data" / "train"), "--eval_data_dir",
                str(single_out / "data" / "heldout")] if (single_out / "data" / "heldout").is_dir() else []
        return ["train", "simlingo", *data, "--synthetic_train_routes", "2", "--synthetic_eval_routes", "1",
                "--synthetic_frames_per_route", "6", "--image_width", "32", "--image_height", "16",
                "--model_config.vision_config.image_size", "16", "--model_config.vision_config.hidden_size", "32",
                "--per_device_train_batch_size", str(batch), "--num_plot_samples", "1", "--skip_first_frames", "0",
                "--require_full_future", "false", "--learning_rate", "1e-3"]
    if name == "robovlm":
        data = ["--data_dir", str(single_out / "data" / "train"), "--eval_data_dir",
                str(single_out / "data" / "heldout")] if (single_out / "data" / "heldout").exists() else []
        cfg = {"head_hidden_size": 32, "head_num_layers": 2, "head_mlp_sizes": [32], "window_size": 3,
               "backbone_config": {"text_config": {"embed_dim": 32, "ffn_dim": 64},
                                   "vision_config": {"hidden_size": 32, "intermediate_size": 64}}}
        return ["train", "robovlm", *data, "--synthetic_episodes", "6", "--synthetic_eval_episodes", "2",
                "--model_config", json.dumps(cfg), "--per_device_train_batch_size", str(batch),
                "--learning_rate", "1e-3"]
    if name == "geovla":
        backbones = single_out / "backbones"
        nets = ["--vlm_name_or_path", str(backbones / "tiny-qwen2.5-vl"), "--geometry_name_or_path",
                str(backbones / "tiny-dinov2")] if (backbones / "tiny-dinov2" / "config.json").is_file() else []
        return ["train", "geovla", "--config", str(CONFIGS / "libero_tiny.yaml"), "--dataset_root", str(root / "data"),
                *nets, "--per_device_train_batch_size", str(batch), "--warmup_steps", "1", "--eval_strategy", "no"]
    if name in ("roadscene", "flamingo"):
        return ["sft", name, "--model", str(root / "model"), "--train_file", str(root / "data" / "bvpi_sft.jsonl"),
                "--per_device_train_batch_size", str(batch), "--learning_rate", "1e-3", "--bf16", "false",
                "--warmup_steps", "1", *(["--load_in_4bit", "false"] if name == "roadscene" else [])]
    raise SystemExit(f"unknown recipe {name!r}")


def prepare(name: str, work: Path) -> None:
    """Write what the recipe's multi-process runs must find in place (the rest is written by the 1-process run)."""
    root = work / name
    root.mkdir(parents=True, exist_ok=True)
    if name == "waypoint":
        (root / "waypoint.yaml").write_text(WAYPOINT_YAML)
    elif name in ("roadscene", "flamingo") and not (root / "model" / "config.json").is_file():
        from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene

        paths = write_synthetic_roadscene(root / "data", num_samples=8, image_size=32)
        assert Path(paths["bvpi_sft"]) == root / "data" / "bvpi_sft.jsonl", paths
        if name == "roadscene":
            from hf_vlmdrive.testing.tiny_smolvlm import build_tiny_smolvlm

            build_tiny_smolvlm(root / "model")
        else:
            from hf_vlmdrive.testing.tiny_flamingo import build_tiny_flamingo

            build_tiny_flamingo(root / "model", gate_value=0.3)


COMMON = ["--max_steps", str(STEPS), "--save_strategy", "steps", "--save_steps", str(SAVE_AT), "--logging_steps", "1",
          "--report_to", "none", "--disable_tqdm", "true", "--seed", "0"]


def run_mode(name: str, mode: str, work: Path, batch: int) -> dict:
    from hf_vlmdrive.testing.distributed import launch_cpu

    out = work / name / mode
    argv = [*recipe_argv(name, work, batch if mode != "single" else 2 * batch), *COMMON, "--output_dir", str(out)]
    if mode.endswith("_resume"):
        source = work / name / mode.removesuffix("_resume") / f"checkpoint-{SAVE_AT}"
        if not source.is_dir():
            return {"ok": False, "error": f"no {source}"}
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        shutil.copytree(source, out / source.name)
        argv += ["--resume_from_checkpoint", "last"]
    else:
        shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    if mode == "single":
        env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
        proc = subprocess.run([sys.executable, "-m", "hf_vlmdrive.cli", *argv, "--use_cpu", "true"], cwd=REPO,
                              env={**__import__("os").environ, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=900)
    elif mode == "ddp":
        proc = launch_cpu(argv, num_processes=2, cwd=REPO, check=False, timeout=900)
    else:
        stage = "zero3" if mode.startswith("zero3") else "zero2"
        proc = launch_cpu([*argv, "--ddp_backend", "gloo"], num_processes=2, cwd=REPO, check=False, timeout=900,
                          deepspeed_config=str(CONFIGS / f"accelerate_{stage}.yaml"))
    result = {"ok": proc.returncode == 0, "seconds": round(time.perf_counter() - start, 1)}
    (work / name / f"{mode}.log").write_text(proc.stdout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stdout.splitlines() if "Error" in ln or "error:" in ln]
        result["error"] = (lines[-1] if lines else proc.stdout[-400:]).strip()[:400]
        return result
    state = out / f"checkpoint-{STEPS}" / "trainer_state.json"
    if state.is_file():
        history = json.loads(state.read_text())["log_history"]
        result["loss"] = [h["loss"] for h in history if "loss" in h]
        result["grad_norm"] = [h.get("grad_norm") for h in history if "loss" in h]
    result["loads"] = loads_with_from_pretrained(out)
    return result


def weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def max_weight_diff(a: Path, b: Path) -> float | None:
    """Largest difference over the tensors both saved (a DeepSpeed save also writes a tied `lm_head.weight`)."""
    wa, wb = weights(a), weights(b)
    common = [k for k in wa if k in wb and wa[k].numel()]
    if not common:
        return None
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in common)


def loads_with_from_pretrained(out: Path) -> bool | str:
    from transformers import AutoModel, AutoModelForImageTextToText

    import hf_vlmdrive  # noqa: F401 - registers the library's Auto classes

    try:
        if (out / "adapter_config.json").is_file():  # a LoRA adapter (road-scene SFT): loads onto its base model
            AutoModelForImageTextToText.from_pretrained(out)
        else:
            AutoModel.from_pretrained(out)
        return True
    except Exception as err:  # noqa: BLE001 - reported in the table
        return f"{type(err).__name__}: {str(err)[:160]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="scratch folder (one subfolder per recipe)")
    parser.add_argument("--recipes", default="waypoint,simlingo,robovlm,geovla,roadscene,flamingo")
    parser.add_argument("--modes", default="single,ddp,zero2,zero2_resume")
    parser.add_argument("--batch", type=int, default=2, help="per-process batch of the 2-process runs")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    results = work / "results.json"
    table = json.loads(results.read_text()) if results.is_file() else {}  # runs of earlier calls are kept
    for name in args.recipes.split(","):
        prepare(name, work)
        table.setdefault(name, {})
        for mode in args.modes.split(","):
            assert mode in MODES, mode
            res = run_mode(name, mode, work, args.batch)
            ref = work / name / (mode.removesuffix("_resume") if mode.endswith("_resume") else "single")
            if res.get("ok") and mode != "single" and ref.is_dir():
                res["max_weight_diff_vs_" + ref.name] = max_weight_diff(work / name / mode, ref)
            table[name][mode] = res
            print(json.dumps({"recipe": name, "mode": mode, **res}), flush=True)
            results.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
