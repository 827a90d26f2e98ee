"""SFT SmolVLM2 on road-scene captions or BVPI navigation answers with TRL (QLoRA by default).

    accelerate launch examples/sft_roadscene.py --config examples/configs/roadscene_sft.yaml \\
        --model_name_or_path HuggingFaceTB/SmolVLM2-2.2B-Instruct --train_file data/bvpi_sft.jsonl

Offline demo on synthetic scenes and a tiny model (a minute on CPU):

    python examples/sft_roadscene.py --demo --output_dir demo_output/roadscene

Same as `hf-vlmdrive sft roadscene ...`; `--load_in_4bit false` trains plain LoRA, `--resume_from_checkpoint
true` continues from the newest checkpoint in output_dir.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trl import SFTConfig

from hf_vlmdrive.cli.parsing import parse_args
from hf_vlmdrive.trainers.roadscene_config import RoadSceneSFTArguments
from hf_vlmdrive.trainers.roadscene_recipe import train_roadscene


def demo(output_dir: str) -> None:
    """Synthetic data + tiny SmolVLM2 -> 20 LoRA steps -> generation -> BVPI metrics."""
    from hf_vlmdrive.data.roadscene import load_bvpi_annotations
    from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene
    from hf_vlmdrive.generation import generate_predictions
    from hf_vlmdrive.metrics.bvpi.bvpi import bvpi_metrics
    from hf_vlmdrive.testing.tiny_smolvlm import build_tiny_smolvlm

    out = Path(output_dir)
    paths = write_synthetic_roadscene(out / "data", num_samples=16, image_size=32)
    build_tiny_smolvlm(out / "tiny-smolvlm2")
    args = RoadSceneSFTArguments(
        model_name_or_path=str(out / "tiny-smolvlm2"), train_file=str(paths["bvpi_sft"]), load_in_4bit=False
    )
    config = SFTConfig(
        output_dir=str(out / "sft"), max_steps=20, per_device_train_batch_size=4, learning_rate=5e-3,
        logging_steps=5, save_steps=10, report_to=[], gradient_checkpointing=False, use_cpu=True,
    )
    print(json.dumps(train_roadscene(args, config).sft_metrics, indent=2))
    preds = out / "bvpi_preds.jsonl"
    generate_predictions(str(out / "sft"), paths["bvpi_sft"], preds, num_beams=3, max_new_tokens=64)
    refs, _ = load_bvpi_annotations(paths["annotations_json"])
    by_stem = {Path(json.loads(line)["image"]).stem: json.loads(line)["prediction"] for line in preds.open()}
    result = bvpi_metrics([by_stem.get(Path(r["image"]).stem, "") for r in refs], refs, tables=True)
    print(result["tables"])


def main(argv: list[str]) -> int:
    """Parse `RoadSceneSFTArguments` + `SFTConfig` and train (or run the offline demo)."""
    if "--demo" in argv:
        i = argv.index("--output_dir") if "--output_dir" in argv else -1
        demo(argv[i + 1] if i >= 0 else "demo_output/roadscene")
        return 0
    script_args, sft_config = parse_args([RoadSceneSFTArguments, SFTConfig], argv, prog="sft_roadscene.py")
    print(json.dumps(train_roadscene(script_args, sft_config).sft_metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
