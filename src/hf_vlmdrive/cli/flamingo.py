"""`hf-vlmdrive convert open-flamingo` (OpenFlamingo checkpoint -> transformers directory) and
`hf-vlmdrive sft flamingo` (Flamingo SFT on road-scene captions / BVPI, SPEC 1.3)."""

from __future__ import annotations

import argparse
import json

from ..arguments import ArgumentParser


def build_convert_parser(prog: str = "hf-vlmdrive convert open-flamingo") -> argparse.ArgumentParser:
    """The converter's options (also those of scripts/convert_open_flamingo.py)."""
    parser = ArgumentParser(
        prog=prog, description="Convert an OpenFlamingo 2.0.1 checkpoint into a save_pretrained directory "
                               "(FlamingoForConditionalGeneration + FlamingoProcessor + generation config).")
    parser.add_argument("--checkpoint", required=True,
                        help="released checkpoint.pt, or a training checkpoint (model_state_dict, DDP module. prefixes)")
    parser.add_argument("--vision-encoder", required=True, help="open_clip model name, e.g. ViT-L-14")
    parser.add_argument("--vision-pretrained", default=None,
                        help="open_clip pretrained tag (e.g. openai) or a local open_clip weights file")
    parser.add_argument("--open-clip-config", default=None,
                        help="JSON file of a custom open_clip model config, registered first (its name = file stem)")
    parser.add_argument("--lang-encoder", required=True, help="Hub id or directory of the causal LM")
    parser.add_argument("--tokenizer", required=True, help="Hub id or directory of the LM's base tokenizer")
    parser.add_argument("--cross-attn-every-n-layers", type=int, default=1,
                        help="a gated block before decoder layer i iff (i+1) %% n == 0 (OpenFlamingo-3B: 1)")
    parser.add_argument("--output", required=True, help="output directory")
    return parser


def run_convert(argv: list[str]) -> int:
    """Convert and print the report (missing / unexpected keys) as JSON."""
    from ..hub import check_model_source
    from ..models.flamingo.convert_open_flamingo import convert_open_flamingo

    args = build_convert_parser().parse_args(argv)
    report = convert_open_flamingo(
        checkpoint=args.checkpoint, vision_encoder=args.vision_encoder, vision_pretrained=args.vision_pretrained,
        lang_encoder=check_model_source(args.lang_encoder, "--lang-encoder"),
        tokenizer=check_model_source(args.tokenizer, "--tokenizer", needs=("tokenizer_config.json", "tokenizer.json")),
        cross_attn_every_n_layers=args.cross_attn_every_n_layers, output=args.output,
        open_clip_config=args.open_clip_config,
    )
    print(json.dumps({"output": args.output, **report.to_dict()}, indent=2))
    return 0


def run_sft(argv: list[str]) -> int:
    """Parse `FlamingoSFTArguments` + `FlamingoTrainingArguments` (YAML `--config` + flags) and train."""
    from ..trainers.flamingo_recipe import main

    return main(argv)


def register(registry) -> None:
    """Add `convert open-flamingo` and `sft flamingo`."""
    registry.add(("convert", "open-flamingo"), run_convert,
                 "convert an OpenFlamingo checkpoint.pt into a transformers Flamingo directory")
    registry.add(("sft", "flamingo"), run_sft, "SFT a Flamingo model (resampler + gated cross-attention) on road scenes")


__all__ = ["build_convert_parser", "register", "run_convert", "run_sft"]
