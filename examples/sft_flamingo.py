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

from hf_vlmdrive.trainers.flamingo_recipe import main, parse_flamingo_args, train_flamingo


def demo(output_dir: str) -> None:
    """Synthetic scenes + tiny Flamingo -> caption SFT -> held-out caption metrics vs. a constant caption."""
    import torch

    from hf_vlmdrive.demos.flamingo import run_flamingo_demo

    torch.set_num_threads(1)
    results = run_flamingo_demo(output_dir)
    if not results:  # a process other than the main one of `accelerate launch ... --demo`: it only trained
        return
    print(results["tables"])
    t = results["timings"]
    print(f"\ntimings (s): data+model {t['data_and_model']:.0f}, train {t['train']:.0f}, generate {t['generate']:.0f}, "
          f"metrics {t['metrics']:.0f}")
    print(f"figure: {results['figure']}\nmodel + card: {Path(output_dir) / 'flamingo-tiny'} (README.md)")


def _with_synthetic_data(argv: list[str]) -> int:
    """`--synthetic_data DIR`: write 16 synthetic scenes to DIR (the main process, once; the other processes wait),
    then train as `hf-vlmdrive sft flamingo`."""
    import json

    from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene
    from hf_vlmdrive.distributed import is_main_process, prepare_once

    i = argv.index("--synthetic_data")
    folder = Path(argv[i + 1])
    script_args, training_args = parse_flamingo_args(argv[:i] + argv[i + 2 :])
    with prepare_once(training_args, "writing synthetic road scenes"):
        if not (folder / "roadscene_sft.jsonl").is_file():  # the writer's last file: the folder is complete
            paths = write_synthetic_roadscene(folder, num_samples=16, image_size=32)
            print({k: str(v) for k, v in paths.items()})
    trainer = train_flamingo(script_args, training_args)
    if is_main_process(training_args):
        print(json.dumps(trainer.sft_metrics, indent=2))
    return 0


def run(argv: list[str]) -> int:
    """`--demo [--output_dir DIR]` runs the quick path; anything else is `hf-vlmdrive sft flamingo`."""
    if "--demo" in argv:
        i = argv.index("--output_dir") if "--output_dir" in argv else -1
        demo(argv[i + 1] if i >= 0 else "demo_output/flamingo")
        return 0
    if "--synthetic_data" in argv:
        return _with_synthetic_data(argv)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
