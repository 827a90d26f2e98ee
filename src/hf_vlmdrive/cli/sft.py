"""`hf-vlmdrive sft roadscene`: SmolVLM2 / Idefics3 SFT with TRL (LoRA, QLoRA by default)."""

from __future__ import annotations

import json

from ..arguments import parse_args


def run_roadscene(argv: list[str]) -> int:
    """Parse `RoadSceneSFTArguments` + TRL `SFTConfig` (YAML `--config` + flags) and train."""
    from trl import SFTConfig

    from ..log import quiet_trl_renames
    from ..trainers.roadscene_config import RoadSceneSFTArguments
    from ..trainers.roadscene_recipe import train_roadscene

    # `--model` is accepted as a short alias of `--model_name_or_path`.
    argv = ["--model_name_or_path" if a == "--model" else a for a in argv]
    with quiet_trl_renames():
        script_args, sft_config = parse_args([RoadSceneSFTArguments, SFTConfig], argv, prog="hf-vlmdrive sft roadscene")
        metrics = train_roadscene(script_args, sft_config).sft_metrics
    from ..distributed import is_main_process

    if is_main_process(sft_config):
        print(json.dumps(metrics, indent=2))
    return 0


def register(registry) -> None:
    """Add `sft roadscene`."""
    registry.add(("sft", "roadscene"), run_roadscene, "SFT a SmolVLM2/Idefics3 model on road-scene captions or BVPI")


__all__ = ["register", "run_roadscene"]
