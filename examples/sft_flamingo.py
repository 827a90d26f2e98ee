"""SFT a Flamingo model (Perceiver resampler + gated cross-attention) on road-scene captions or BVPI answers.

    accelerate launch examples/sft_flamingo.py --config examples/configs/flamingo_tiny.yaml \\
        --model_name_or_path converted/openflamingo-3b --train_file data/bvpi_sft.jsonl

Offline, with a tiny random model and synthetic scenes written first:

    python examples/sft_flamingo.py --config examples/configs/flamingo_tiny.yaml --synthetic_data data/ \\
        --train_file data/bvpi_sft.jsonl

Offline quick path that learns (about 2 minutes on 2 CPU cores): synthetic road scenes, a tiny Flamingo whose
tiny random LM trains with the resampler and gated cross-attention, then held-out caption metrics against a
constant caption, `flamingo_predictions.png` and the model card (see docs/flamingo.md):

    python examples/sft_flamingo.py --demo --output_dir demo_output/flamingo

Same as `hf-vlmdrive sft flamingo ...`; `--resume_from_checkpoint true` continues from the newest checkpoint
in output_dir (Ctrl-C saves one). The output directory holds the model, processor, generation config
(`<|endofchunk|>` ends answers), `loss_curve.json` and the model card (README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hf_vlmdrive.trainers.flamingo_recipe import main


def demo(output_dir: str) -> None:
    """Synthetic scenes + tiny Flamingo -> caption SFT -> held-out caption metrics vs. a constant caption."""
    import torch

    from hf_vlmdrive.demos.flamingo import run_flamingo_demo

    torch.set_num_threads(1)
    results = run_flamingo_demo(output_dir)
    print(results["tables"])
    t = results["timings"]
    print(f"\ntimings (s): data+model {t['data_and_model']:.0f}, train {t['train']:.0f}, generate {t['generate']:.0f}, "
          f"metrics {t['metrics']:.0f}")
    print(f"figure: {results['figure']}\nmodel + card: {Path(output_dir) / 'flamingo-tiny'} (README.md)")


def _write_synthetic(argv: list[str]) -> list[str]:
    if "--synthetic_data" not in argv:
        return argv
    i = argv.index("--synthetic_data")
    from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene

    paths = write_synthetic_roadscene(argv[i + 1], num_samples=16, image_size=32)
    print({k: str(v) for k, v in paths.items()})
    return argv[:i] + argv[i + 2 :]


def run(argv: list[str]) -> int:
    """`--demo [--output_dir DIR]` runs the quick path; anything else is `hf-vlmdrive sft flamingo`."""
    if "--demo" in argv:
        i = argv.index("--output_dir") if "--output_dir" in argv else -1
        demo(argv[i + 1] if i >= 0 else "demo_output/flamingo")
        return 0
    return main(_write_synthetic(argv))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
