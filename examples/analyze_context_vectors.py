"""The whole "is the VLM context clear?" study, offline, on synthetic mobile-robot episodes.

1. writes synthetic episodes ("horizontal left" / "horizontal right", 18 frames, HDF5) for training and held out;
2. trains two tiny RoboVLM policies from the same tiny random Kosmos-2: A with the backbone frozen (the VLM's
   context as it is, only the action token and the LSTM head learn) and B with the backbone fine-tuned (RoboVLMs'
   full fine-tuning);
3. draws a stratified sample of the held-out episodes (N per task, frames at 0/25/50/75/100 % progress);
4. extracts the context vectors of both policies at the policy head's input (forward hooks);
5. compares them (statistics, linear probe, silhouette, figures) and writes a markdown report.

Usage:

    python examples/analyze_context_vectors.py --output_dir runs/context_study
    python examples/analyze_context_vectors.py --output_dir runs/context_study --max_steps 600 --per_task 10

Outputs under `output_dir`: `policy_frozen/`, `policy_finetuned/` (models, cards), `sample.json`,
`vectors/{frozen,finetuned}.npy|json`, `comparison/` (comparison.json, report.md, PNG figures), `study.json`.
Each step is also a command: `hf-vlmdrive train robovlm`, `hf-vlmdrive analyze sample | extract | compare`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def run_study(output_dir: str | Path, max_steps: int = 300, per_task: int = 10, train_episodes: int = 40,
              heldout_episodes: int = 24, seed: int = 0, embeddings=("tsne", "umap")) -> dict:
    """Run steps 1-5; returns the study summary (also `<output_dir>/study.json`)."""
    from transformers import AutoModel, AutoProcessor

    import hf_vlmdrive  # noqa: F401
    from hf_vlmdrive.analysis.compare import compare_files
    from hf_vlmdrive.analysis.dataset_stats import dataset_stats
    from hf_vlmdrive.analysis.hooks import DEFAULT_HOOK, extract_context_vectors, save_vectors
    from hf_vlmdrive.analysis.sampling import save_sample, stratified_sample
    from hf_vlmdrive.arguments import parse_args
    from hf_vlmdrive.data.synthetic.mobile_robot import write_mobile_robot_hdf5
    from hf_vlmdrive.trainers.robovlm_config import RoboVLMScriptArguments, RoboVLMTrainingArguments
    from hf_vlmdrive.trainers.robovlm_recipe import train_robovlm

    out = Path(output_dir)
    t0 = time.time()
    train_dir, heldout_dir = out / "data" / "train", out / "data" / "heldout"
    if not train_dir.is_dir():
        write_mobile_robot_hdf5(train_dir, train_episodes, seed=seed)
    if not heldout_dir.is_dir():
        write_mobile_robot_hdf5(heldout_dir, heldout_episodes, seed=seed + 7919)
    summary: dict = {"data": {"train": dataset_stats(train_dir), "heldout": dataset_stats(heldout_dir)}}
    for split in summary["data"].values():
        split["episode_file_bytes"].pop("per_episode")

    model_config = {"head_hidden_size": 64, "head_num_layers": 2, "head_mlp_sizes": [64, 32], "window_size": 4,
                    "action_low": [-0.5, -1.0], "action_high": [0.5, 1.0]}
    policies = {}
    for name, frozen in (("frozen", True), ("finetuned", False)):
        run_dir = out / f"policy_{name}"
        argv = ["--output_dir", str(run_dir), "--data_dir", str(train_dir), "--eval_data_dir", str(heldout_dir),
                "--model_config", json.dumps({**model_config, "freeze_backbone": frozen}),
                "--max_steps", str(max_steps), "--per_device_train_batch_size", "8", "--learning_rate", "1e-3",
                "--logging_steps", "25", "--save_strategy", "no", "--report_to", "none", "--seed", str(seed),
                "--disable_tqdm", "true"]
        script_args, training_args = parse_args([RoboVLMScriptArguments, RoboVLMTrainingArguments], argv)
        trainer = train_robovlm(script_args, training_args)
        policies[name] = run_dir
        summary[f"policy_{name}"] = {"heldout_action_mse": trainer.heldout_metrics["model"]["mse"],
                                     "train_mean_baseline_mse": trainer.heldout_metrics["train_mean_baseline"]["mse"],
                                     "backbone": "frozen" if frozen else "fine-tuned"}

    records = stratified_sample(heldout_dir, episodes_per_task=per_task, seed=seed)
    save_sample(records, out / "sample.json", source=str(heldout_dir), seed=seed)
    files = {}
    for name, run_dir in policies.items():
        model = AutoModel.from_pretrained(run_dir)
        processor = AutoProcessor.from_pretrained(run_dir)
        vecs = extract_context_vectors(model, processor, heldout_dir, records, [DEFAULT_HOOK])[DEFAULT_HOOK]
        files[name], _ = save_vectors(vecs, records, out / "vectors" / name, model_name=f"policy_{name}",
                                      hook=DEFAULT_HOOK)
    result = compare_files(files["frozen"], files["finetuned"], out / "comparison", seed=seed, embeddings=embeddings)
    keys = ("paired_cosine", "centroid_cosine", "mean_feature_correlation", "histogram_kl", "wasserstein", "ks_test")
    summary["comparison"] = {k: result.get(k) for k in keys}
    summary["separability"] = {name: {"linear_probe_accuracy": result[s]["linear_probe"]["accuracy"],
                                      "silhouette": result[s]["silhouette"],
                                      "task_geometry": result[s]["task_geometry"],
                                      "progress_probe_r2": result[s].get("progress_probe", {}).get("r2"),
                                      "dead_neurons": result[s]["dead_neurons"],
                                      "constant_neurons": result[s]["constant_neurons"]}
                               for s, name in (("A", "frozen"), ("B", "finetuned"))}
    summary["sample"] = {"records": len(records), "episodes_per_task": per_task, "fractions": [0, 0.25, 0.5, 0.75, 1]}
    summary["report"] = result["report"]
    summary["figures"] = result["figures"]
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "study.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output_dir", default="runs/context_study")
    p.add_argument("--max_steps", type=int, default=300)
    p.add_argument("--per_task", type=int, default=10)
    p.add_argument("--train_episodes", type=int, default=40)
    p.add_argument("--heldout_episodes", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    from hf_vlmdrive.log import configure_logging

    configure_logging()
    summary = run_study(a.output_dir, a.max_steps, a.per_task, a.train_episodes, a.heldout_episodes, a.seed)
    print(json.dumps({k: summary[k] for k in ("policy_frozen", "policy_finetuned", "comparison", "separability",
                                              "report", "seconds")}, indent=1))
    return summary


if __name__ == "__main__":
    main()
