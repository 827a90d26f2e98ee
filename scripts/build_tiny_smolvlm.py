"""Build a tiny SmolVLM2-shaped model + processor (locally trained tokenizer) for offline runs.

    python scripts/build_tiny_smolvlm.py --output_dir tiny-smolvlm2

The directory loads with `AutoProcessor` / `AutoModelForImageTextToText` like a Hub SmolVLM2 checkpoint.
"""

from __future__ import annotations

import argparse

from hf_vlmdrive.testing.tiny_smolvlm import build_tiny_smolvlm


def main() -> None:
    """Parse flags and write the model directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--hidden_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model, processor = build_tiny_smolvlm(
        args.output_dir, image_size=args.image_size, hidden_size=args.hidden_size, seed=args.seed
    )
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {type(model).__name__} ({n:,} parameters) + {type(processor).__name__} to {args.output_dir}")


if __name__ == "__main__":
    main()
