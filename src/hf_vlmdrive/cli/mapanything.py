"""`hf-vlmdrive convert mapanything`: Meta's released MapAnything (config.json + model.safetensors) -> a
transformers directory (`AutoModel` gives `MapAnythingModel`, `AutoImageProcessor` its image processor)."""

from __future__ import annotations

import argparse
import json

from ..arguments import ArgumentParser

_LICENSE_NOTE = (
    "Weights: facebook/map-anything is CC-BY-NC-4.0 (non-commercial); facebook/map-anything-apache (same "
    "architecture, fewer training datasets) is Apache-2.0."
)


def build_convert_parser(prog: str = "hf-vlmdrive convert mapanything") -> argparse.ArgumentParser:
    """The converter's options."""
    parser = ArgumentParser(
        prog=prog,
        description="Convert a released MapAnything V1.1 (a folder holding config.json + model.safetensors as "
                    "facebook/map-anything ships them, or a Hub id) into a save_pretrained directory of its feature "
                    "trunk. Every key of the file is accounted for (trunk, or a known unused head / geometric-input "
                    "encoder). " + _LICENSE_NOTE,
    )
    parser.add_argument("src", help="folder in the released layout (config.json + model.safetensors) or a Hub id")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--feature-mode", default="mapanything", choices=("mapanything", "qwenmapanythingpi"),
                        help="mapanything: MapAnything's own forward (ImageNet-normalised pixels, fusion LayerNorm, "
                             "CLS / scale tokens); qwenmapanythingpi: what starVLA's QwenMapAnythingPI took")
    parser.add_argument("--encoder-width", type=int, default=None,
                        help="width of a reduced-size encoder (config.json names only the size, e.g. giant = 1536)")
    parser.add_argument("--encoder-num-heads", type=int, default=None,
                        help="attention heads of a reduced-size encoder (giant: 24)")
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="the saved image processor's resize target, multiples of 14 (default: 518 518 in "
                             "mapanything mode, 224 224 in qwenmapanythingpi mode)")
    parser.add_argument("--revision", default=None, help="Hub revision (a Hub id only)")
    return parser


def run_convert(argv: list[str]) -> int:
    """Convert and print the key accounting as JSON."""
    from ..errors import UserError
    from ..hub import check_model_source
    from ..models.mapanything.convert_mapanything import convert_mapanything

    args = build_convert_parser().parse_args(argv)
    for flag, value in (("--encoder-width", args.encoder_width), ("--encoder-num-heads", args.encoder_num_heads)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be a positive integer, got {value}")
    if args.image_size is not None and any(s < 14 or s % 14 for s in args.image_size):
        raise UserError(f"--image-size must be two positive multiples of 14, got {args.image_size}")
    src = check_model_source(args.src, "SRC", needs=("model.safetensors",))
    report = convert_mapanything(
        src, args.output, feature_mode=args.feature_mode, encoder_width=args.encoder_width,
        encoder_num_heads=args.encoder_num_heads, revision=args.revision,
        image_size=tuple(args.image_size) if args.image_size else None,
    )
    print(json.dumps({"output": args.output, "feature_mode": args.feature_mode, **report.to_dict()}, indent=2))
    return 0


def register(registry) -> None:
    """Add `convert mapanything`."""
    registry.add(("convert", "mapanything"), run_convert,
                 "convert Meta's released MapAnything (config.json + model.safetensors) into a transformers directory")


__all__ = ["build_convert_parser", "register", "run_convert"]
