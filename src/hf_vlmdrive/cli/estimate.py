"""`hf-vlmdrive estimate CONFIG`: the memory plan of a training run, built on the meta device (no weights, no GPU).

CONFIG is a reference name (`geovla_libero_pool`; `--list` shows them), its recipe YAML
(`examples/configs/reference/geovla_libero_pool.yaml`), or a model directory with a config.json (a saved model,
as the recipes write it). See `hf_vlmdrive.estimate` for the accounting.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError, UserFileNotFoundError

CACHE_KINDS = {"waypoint_vlm": "waypoint", "geovla": "geometry"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit code 2, through the CLI's user-error path
        raise UserError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hf-vlmdrive estimate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="a reference name, its YAML, or a model directory (config.json)")
    p.add_argument("--zero", type=int, default=0, choices=[0, 1, 2, 3],
                   help="ZeRO stage: 0 = no DeepSpeed (accelerate_single / accelerate_multigpu.yaml), 2 = "
                        "accelerate_zero2.yaml + deepspeed_zero2.json, 3 = accelerate_zero3.yaml + "
                        "deepspeed_zero3.json (default 0); the output ends with the launch command")
    p.add_argument("--num-gpus", type=int, default=1, help="GPUs (processes) the ZeRO stage shards over (default 1)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="weights' dtype; auto = what the recipes run: bf16 under DeepSpeed, fp32 otherwise")
    p.add_argument("--batch-size", type=int, default=None, help="per-GPU batch: the cached features one step reads")
    p.add_argument("--num-frames", type=int, default=None,
                   help="dataset frames for the cache estimate (default: the seed's dataset, where known)")
    p.add_argument("--num-views", type=int, default=None, help="GeoVLA cameras per frame (default: 2, LIBERO's)")
    p.add_argument("--list", action="store_true", help="list the reference configurations and exit")
    return p


def _resolve(arg: str):
    """(title, model on meta, reference or None, config)."""
    from ..reference import REFERENCES, build_reference, get_reference

    if arg in REFERENCES:
        ref = get_reference(arg)
        return ref, build_reference(arg)
    path = Path(arg)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserFileNotFoundError(f"config file {path} does not exist")
        if path.stem not in REFERENCES:
            raise UserError(f"{path} is not a reference configuration (estimate reads one of {sorted(REFERENCES)}, "
                            "its YAML under examples/configs/reference/, or a model directory with a config.json)")
        ref = get_reference(path.stem)
        _check_yaml_matches(path, ref)
        return ref, build_reference(ref.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} holds no config.json: give a saved model directory or a reference name")
        return None, _build_from_directory(path)
    if path.exists():
        raise UserError(f"{path} is neither a reference YAML nor a model directory")
    raise UserError(f"{arg!r} is not a reference name, a YAML file or a model directory; the references are "
                    f"{sorted(REFERENCES)}")


def _check_yaml_matches(path: Path, ref) -> None:
    """A reference YAML edited away from its reference would be estimated wrongly: refuse it, naming the field."""
    from ..arguments import load_yaml_config

    values = load_yaml_config(path)
    for key, hub_id in ref.backbones.items():
        if values.get(key) != hub_id:
            raise UserError(f"{path}: {key} is {values.get(key)!r}, but the reference {ref.name!r} is built from "
                            f"{hub_id!r}; estimate a model directory for other backbones")
    for key, value in ref.recipe.items():
        if key in values and values[key] != value:
            raise UserError(f"{path}: {key} is {values[key]!r}, the reference {ref.name!r} has {value!r}; "
                            "estimate a saved model directory for other settings")
    for key, value in (values.get("model_config") or {}).items():
        if ref.model_config.get(key) != value:
            raise UserError(f"{path}: model_config.{key} is {value!r}, the reference {ref.name!r} has "
                            f"{ref.model_config.get(key)!r}; estimate a saved model directory for other settings")


def _build_from_directory(path: Path):
    import torch
    from transformers import AutoConfig, AutoModel

    import hf_vlmdrive  # noqa: F401  (registers the families)

    config = AutoConfig.from_pretrained(str(path))
    with torch.device("meta"):
        return AutoModel.from_config(config)


def run(argv: list[str]) -> int:
    from ..estimate import cache_lines, format_plan, memory_plan

    args = _parser().parse_args(argv)
    if args.list:
        from ..reference import REFERENCES

        for ref in REFERENCES.values():
            print(f"{ref.name:<26} {ref.description}")
        return 0
    if not args.config:
        raise UserError("give a reference name, its YAML or a model directory (`hf-vlmdrive estimate --list`)")
    for name in ("num_gpus", "batch_size", "num_frames", "num_views"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    ref, model = _resolve(args.config)
    config = model.config if not hasattr(model, "peft_config") else model.base_model.model.config
    quantized = bool(ref is not None and ref.recipe.get("load_in_4bit"))
    plan = memory_plan(model, zero=args.zero, num_gpus=args.num_gpus, dtype=args.dtype, quantized_4bit=quantized)
    kind = ref.cache if ref is not None else CACHE_KINDS.get(config.model_type)
    views = args.num_views or (ref.num_views if ref is not None else 2)
    frames = args.num_frames or (ref.dataset_frames if ref is not None else None)
    plan.cache_lines = cache_lines(kind, config, views, frames)
    if kind is not None and args.batch_size:
        from ..estimate import geometry_cache_bytes_per_frame, waypoint_cache_bytes_per_frame

        per = (waypoint_cache_bytes_per_frame(config)[0] if kind == "waypoint"
               else geometry_cache_bytes_per_frame(config, views)[0])
        plan.cache_lines.append(f"  one step reads {args.batch_size} x {per:,} B = {args.batch_size * per:,} B of "
                                "cached features per GPU (activations for that batch are not estimated)")
    from ..estimate import launch_command

    yaml = f"examples/configs/reference/{ref.name}.yaml" if ref is not None else None
    plan.launch = launch_command(args.zero, args.num_gpus, ref.command if ref is not None else None, yaml)
    title = f"{ref.name}: {ref.description}" if ref is not None else f"{args.config} ({config.model_type})"
    print(format_plan(plan, title))
    return 0


def register(registry) -> None:
    """Add `estimate`."""
    registry.add(("estimate",), run, "memory plan of a training run (meta device): parameters, weights, gradients, "
                                     "AdamW states under ZeRO, feature caches")


__all__ = ["register", "run"]
