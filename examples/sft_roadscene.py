"""SFT SmolVLM2 on road-scene captions or BVPI navigation answers with TRL (QLoRA by default).

    accelerate launch examples/sft_roadscene.py --config examples/configs/roadscene_sft.yaml \\
        --model_name_or_path HuggingFaceTB/SmolVLM2-2.2B-Instruct --train_file data/bvpi_sft.jsonl

Offline demo on synthetic scenes and a tiny model (a few minutes on 2 CPU cores): trains on BVPI answers and
captions, then reports held-out BVPI accuracy against the per-field majority answer and caption metrics against
a constant caption, writes `roadscene_predictions.png` and the model card (see docs/roadscene.md):

    python examples/sft_roadscene.py --demo --output_dir demo_output/roadscene

Same as `hf-vlmdrive sft roadscene ...`; `--load_in_4bit false` trains plain LoRA, `--resume_from_checkpoint
true` continues from the newest checkpoint in output_dir.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hf_vlmdrive  # noqa: F401  (first: it drops an import-time warning of transformers' peft / bitsandbytes import)

# isort: split
from trl import SFTConfig

from hf_vlmdrive.arguments import parse_args
from hf_vlmdrive.distributed import is_main_process
from hf_vlmdrive.log import quiet_trl_renames
from hf_vlmdrive.trainers.roadscene_config import RoadSceneSFTArguments
from hf_vlmdrive.trainers.roadscene_recipe import train_roadscene


def demo(output_dir: str) -> None:
    """Synthetic scenes + tiny SmolVLM2 -> SFT on BVPI + captions -> held-out metrics vs. baselines, figure, card."""
    from hf_vlmdrive.demos.roadscene import run_roadscene_demo

    results = run_roadscene_demo(output_dir)
    if not is_main_process():  # under `accelerate launch`: the main process prints
        return
    print(results["tables"])
    t = results["timings"]
    print(f"\ntimings (s): data+model {t['data_and_model']:.0f}, train {t['train']:.0f}, generate {t['generate']:.0f}, "
          f"metrics {t['metrics']:.0f}")
    print(f"figure: {results['figure']}\nmodel + card: {Path(output_dir) / 'roadscene-tiny'} (README.md)")


def main(argv: list[str]) -> int:
    """Parse `RoadSceneSFTArguments` + `SFTConfig` and train (or run the offline demo)."""
    if "--demo" in argv:
        i = argv.index("--output_dir") if "--output_dir" in argv else -1
        demo(argv[i + 1] if i >= 0 else "demo_output/roadscene")
        return 0
    with quiet_trl_renames():  # transformers 5.25 warns about TRL's own defaults (see hf_vlmdrive.log)
        script_args, sft_config = parse_args([RoadSceneSFTArguments, SFTConfig], argv, prog="sft_roadscene.py")
        metrics = train_roadscene(script_args, sft_config).sft_metrics
        if is_main_process(sft_config):
            print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
