"""`hf-vlmdrive generate`: batched beam-search generation over a JSON/JSONL input, resumable."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..arguments import parse_args
from ..hub import check_model_source, generates_text


@dataclass
class GenerateArguments:
    """Arguments of `hf-vlmdrive generate` (flags also accept dashes: `--num-beams`)."""

    model: str = field(metadata={"help": "Model directory / Hub id, or a LoRA adapter directory."})
    input: str = field(metadata={"help": "Captions JSON/JSONL, BVPI SFT JSONL or annotations file."})
    output: str = field(metadata={"help": "Predictions JSONL (appended to; ids already there are skipped)."})
    num_beams: int = field(default=3, metadata={"help": "Beam width."})
    max_new_tokens: int = field(default=128, metadata={"help": "Generated tokens per sample."})
    batch_size: int = field(default=4, metadata={"help": "Samples per generate() call."})
    task: str = field(default="auto", metadata={"help": "auto, sft, caption or bvpi (how to read --input)."})
    image_root: str | None = field(default=None, metadata={"help": "Folder image paths are relative to."})
    prompt: str | None = field(default=None, metadata={"help": "User prompt override."})


def _dash_to_underscore(argv: list[str]) -> list[str]:
    return ["--" + a[2:].replace("-", "_") if a.startswith("--") else a for a in argv]


def run(argv: list[str]) -> int:
    """Generate predictions; prints the counts as JSON."""
    from ..generation import generate_predictions

    (args,) = parse_args([GenerateArguments], _dash_to_underscore(argv), prog="hf-vlmdrive generate")
    counts = generate_predictions(
        check_model_source(args.model, "--model", families=generates_text, command="`hf-vlmdrive generate`",
                           wanted="an image-text-to-text model (SmolVLM2 / Idefics3 from `sft roadscene`, Flamingo "
                                  "from `sft flamingo`, or any AutoModelForImageTextToText checkpoint)"),
        args.input, args.output, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, task=args.task, image_root=args.image_root, prompt=args.prompt,
    )
    print(json.dumps(counts))
    return 0


def register(registry) -> None:
    """Add `generate`."""
    registry.add(("generate",), run, "batched, resumable caption/BVPI generation to a predictions JSONL")


__all__ = ["GenerateArguments", "register", "run"]
