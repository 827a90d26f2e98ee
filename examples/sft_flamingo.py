"""SFT a Flamingo model (Perceiver resampler + gated cross-attention) on road-scene captions or BVPI answers.

    accelerate launch examples/sft_flamingo.py --config examples/configs/flamingo_tiny.yaml \\
        --model_name_or_path converted/openflamingo-3b --train_file data/bvpi_sft.jsonl

Offline, with a tiny random model and synthetic scenes written first:

    python examples/sft_flamingo.py --config examples/configs/flamingo_tiny.yaml --synthetic_data data/ \\
        --train_file data/bvpi_sft.jsonl

Same as `hf-vlmdrive sft flamingo ...`; `--resume_from_checkpoint true` continues from the newest checkpoint
in output_dir (Ctrl-C saves one). The output directory holds the model, processor, generation config
(`<|endofchunk|>` ends answers), `loss_curve.json` and the model card (README.md).
"""

from __future__ import annotations

import sys

from hf_vlmdrive.trainers.flamingo_recipe import main


def _write_synthetic(argv: list[str]) -> list[str]:
    if "--synthetic_data" not in argv:
        return argv
    i = argv.index("--synthetic_data")
    from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene

    paths = write_synthetic_roadscene(argv[i + 1], num_samples=16, image_size=32)
    print({k: str(v) for k, v in paths.items()})
    return argv[:i] + argv[i + 2 :]


if __name__ == "__main__":
    sys.exit(main(_write_synthetic(sys.argv[1:])))
