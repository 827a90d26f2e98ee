"""`hf-vlmdrive analyze <what>`: dataset-stats, sample, checkpoint, extract, compare (JSON on stdout / to a file)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..arguments import ArgumentParser


def _emit(result: dict, output_json: str | None, summary: dict | None = None) -> None:
    text = json.dumps(result, indent=1)
    if output_json:
        Path(output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(output_json).write_text(text, encoding="utf-8")
        print(json.dumps({"written": output_json, **(summary or {})}))
    else:
        sys.stdout.write(text + "\n")


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return ArgumentParser(prog=f"hf-vlmdrive analyze {prog}", description=description)


def _dataset_stats(argv: list[str]) -> int:
    from ..analysis.dataset_stats import dataset_stats

    p = _parser("dataset-stats", "Episodes, frames, size on disk, episode lengths, tasks, per-episode file size.")
    p.add_argument("path", help="folder of HDF5 episode files or a LeRobot dataset directory")
    p.add_argument("--camera_key", default=None)
    p.add_argument("--output-json", "--output_json", dest="output_json", default=None)
    a = p.parse_args(argv)
    result = dataset_stats(a.path, camera_key=a.camera_key)
    _emit(result, a.output_json, {"episodes": result["episodes"], "frames": result["frames"]})
    return 0


def _fractions(text: str) -> list[float]:
    from ..errors import UserError

    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--fractions must be comma-separated numbers such as 0,0.25,0.5,0.75,1, got {text!r}") from None
    return [v / 100.0 if v > 1 else v for v in values]  # 25 (percent) or 0.25


def _sample(argv: list[str]) -> int:
    from ..analysis.sampling import save_sample, stratified_sample

    p = _parser("sample", "Stratified sample: N episodes per task, frames at progress fractions, deterministic.")
    p.add_argument("path", help="folder of HDF5 episode files or a LeRobot dataset directory")
    p.add_argument("--episodes_per_task", "--per_task", dest="episodes_per_task", type=int, default=10)
    p.add_argument("--fractions", type=_fractions, default=[0.0, 0.25, 0.5, 0.75, 1.0],
                   help="progress fractions (0-1 or percent), default 0,25,50,75,100")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help="sample list JSON to write")
    a = p.parse_args(argv)
    records = stratified_sample(a.path, a.episodes_per_task, a.fractions, a.seed)
    save_sample(records, a.output, source=a.path, seed=a.seed)
    tasks = sorted({r["task"] for r in records})
    print(json.dumps({"written": a.output, "samples": len(records), "episodes": len({r["episode_index"] for r in records}),
                      "tasks": tasks}))
    return 0


def _checkpoint(argv: list[str]) -> int:
    from ..analysis.checkpoint import inspect_checkpoint

    p = _parser("checkpoint", "Inspect a checkpoint safely (weights_only=True): Lightning .ckpt, nested dicts, "
                              "DeepSpeed dirs, safetensors.")
    p.add_argument("path")
    p.add_argument("--output-json", "--output_json", dest="output_json", default=None)
    p.add_argument("--no-keys", dest="keys", action="store_false", help="leave the per-key list out")
    a = p.parse_args(argv)
    result = inspect_checkpoint(a.path)
    if not a.keys:
        result["state_dict"].pop("keys", None)
    sd = result["state_dict"]
    _emit(result, a.output_json, {"format": result["format"], "num_tensors": sd["num_tensors"],
                                   "num_elements": sd["num_elements"]})
    return 0


def _extract(argv: list[str]) -> int:
    from ..analysis.hooks import DEFAULT_HOOK, extract_context_vectors, save_vectors
    from ..analysis.sampling import load_sample
    from ..hub import check_model_source

    p = _parser("extract", "Context vectors through forward hooks over a sample, saved as .npy + metadata JSON.")
    p.add_argument("--model", required=True, help="a saved RoboVLM directory (save_pretrained / output_dir)")
    p.add_argument("--data", required=True, help="the episodes the sample was drawn from")
    p.add_argument("--sample", required=True, help="sample JSON from `analyze sample`")
    p.add_argument("--hook", action="append", default=None,
                   help=f"module to hook, `name[:input|:output]` (repeatable; default {DEFAULT_HOOK})")
    p.add_argument("--output", required=True, help="output prefix: <output>.npy and <output>.json "
                                                   "(with several hooks: <output>.<hook>.npy)")
    p.add_argument("--batch_size", type=int, default=16)
    a = p.parse_args(argv)
    from transformers import AutoModel, AutoProcessor

    import hf_vlmdrive  # noqa: F401  (Auto registrations)

    source = check_model_source(a.model, "--model", families=("robovlm",), command="`hf-vlmdrive analyze extract`")
    model = AutoModel.from_pretrained(source)
    processor = AutoProcessor.from_pretrained(source)
    records = load_sample(a.sample)
    hooks = a.hook or [DEFAULT_HOOK]
    vectors = extract_context_vectors(model, processor, a.data, records, hooks, batch_size=a.batch_size)
    written = {}
    for h, arr in vectors.items():
        prefix = a.output if len(hooks) == 1 else f"{a.output}.{h.replace(':', '_')}"
        npy, meta = save_vectors(arr, records, prefix, model_name=a.model, hook=h)
        written[h] = {"npy": str(npy), "metadata": str(meta), "shape": list(arr.shape)}
    print(json.dumps({"written": written}))
    return 0


def _compare(argv: list[str]) -> int:
    from ..analysis.compare import compare_files

    p = _parser("compare", "Compare two context-vector sets: statistics, probe, figures, markdown report.")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--output_dir", "--output-dir", dest="output_dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-figures", dest="figures", action="store_false")
    a = p.parse_args(argv)
    result = compare_files(a.a, a.b, a.output_dir, seed=a.seed, figures=a.figures)
    print(json.dumps({"written": str(Path(a.output_dir) / "comparison.json"), "report": result["report"],
                      "paired_cosine": result.get("paired_cosine"), "ks_test": result["ks_test"],
                      "probe_A": result["A"].get("linear_probe", {}).get("accuracy"),
                      "probe_B": result["B"].get("linear_probe", {}).get("accuracy")}))
    return 0


def register(registry) -> None:
    """Add the `analyze` commands."""
    registry.add(("analyze", "dataset-stats"), _dataset_stats, "statistics of an episode dataset (JSON)")
    registry.add(("analyze", "sample"), _sample, "stratified sample of episodes / frames (JSON sample list)")
    registry.add(("analyze", "checkpoint"), _checkpoint, "inspect a checkpoint safely (weights_only=True) (JSON)")
    registry.add(("analyze", "extract"), _extract, "context vectors via forward hooks (.npy + metadata JSON)")
    registry.add(("analyze", "compare"), _compare, "compare two context-vector sets (JSON, PNG figures, report)")


__all__ = ["register"]
