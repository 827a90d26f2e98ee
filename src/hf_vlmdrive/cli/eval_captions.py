"""`hf-vlmdrive eval captions` and `hf-vlmdrive eval bvpi`: score a predictions JSONL against references.

Predictions are `{"id", "image"?, "prediction"}` lines (what `hf-vlmdrive generate` writes). They are
matched to references by id, else by image path / file name / stem. A reference without a prediction is
scored with an empty prediction (a miss) and counted in `num_missing_predictions`.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arguments import parse_args
from ..errors import UserError, UserFileNotFoundError

logger = logging.getLogger(__name__)


STRICT_HELP = ("Refuse (exit code 2) a malformed prediction line, a skipped reference row or a reference without a "
               "prediction, instead of skipping / scoring it as an empty prediction.")


@dataclass
class EvalCaptionsArguments:
    """Arguments of `hf-vlmdrive eval captions` (dashes or underscores in flags)."""

    predictions: str = field(metadata={"help": "Predictions JSONL ({id, image, prediction})."})
    references: str = field(metadata={"help": "Reference captions JSON/JSONL ({image, caption(s)})."})
    spice: bool = field(default=True, metadata={"help": "Compute SPICE (needs the CoreNLP jars; see docs)."})
    clip_model: str | None = field(default=None, metadata={"help": "open_clip model name or CLIPModel dir."})
    clip_pretrained: str | None = field(default=None, metadata={"help": "open_clip pretrained tag."})
    clip_scale: float = field(default=100.0, metadata={"help": "100 (torchmetrics) or 2.5 (Hessel et al.)."})
    image_root: str | None = field(default=None, metadata={"help": "Folder reference images are relative to."})
    output: str | None = field(default=None, metadata={"help": "Also write the JSON result here."})
    strict: bool = field(default=False, metadata={"help": STRICT_HELP})


@dataclass
class EvalBvpiArguments:
    """Arguments of `hf-vlmdrive eval bvpi`."""

    predictions: str = field(metadata={"help": "Predictions JSONL ({id, image, prediction})."})
    references: str = field(metadata={"help": "BVPI annotations (CSV / JSON / JSONL)."})
    output: str | None = field(default=None, metadata={"help": "Also write the JSON result here."})
    strict: bool = field(default=False, metadata={"help": STRICT_HELP})


def _keys(record_id: Any, image: Any) -> list[str]:
    keys = [str(record_id)] if record_id is not None else []
    if image:
        path = Path(str(image))
        keys += [str(image), path.name, path.stem]
    return keys


def load_predictions(path: str | Path) -> tuple[dict[str, str], list[str]]:
    """Predictions JSONL -> ({key: prediction} for every id / image key, one message per malformed line).

    A malformed line (not JSON, e.g. torn by an interrupted run, or without a `prediction` string) is skipped;
    the caller reports the count (and refuses them under `--strict`).
    """
    path = Path(path)
    if not path.is_file():
        raise UserFileNotFoundError(f"predictions file {path} does not exist")
    out: dict[str, str] = {}
    bad: list[str] = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            text = rec.get("prediction", rec.get("caption"))
            if not isinstance(text, str):
                raise UserError("no 'prediction' string")
        except (json.JSONDecodeError, ValueError, AttributeError) as err:
            bad.append(f"line {i}: {err}")
            continue
        for key in _keys(rec.get("id"), rec.get("image")):
            out.setdefault(key, text)
    return out, bad


def _account(command: str, args, bad_lines: list[str], report, missing: int, num_refs: int) -> dict[str, int]:
    """Say once what was left out of the scores (stderr, one line), refuse it under --strict; the counts."""
    problems = []
    if bad_lines:
        problems.append(f"{len(bad_lines)} malformed line(s) in {args.predictions} skipped ({bad_lines[0]}"
                        + (", ..." if len(bad_lines) > 1 else "") + ")")
    if missing:
        problems.append(f"{missing} of {num_refs} reference(s) have no prediction and were scored as empty predictions")
    if args.strict and (problems or report.num_skipped):  # the loader has already logged the skipped rows
        skipped = [f"{report.num_skipped} invalid reference row(s) in {args.references}"] if report.num_skipped else []
        raise UserError("; ".join(problems + skipped) + " (--strict)")
    if problems:
        print(f"{command}: " + "; ".join(problems) + "; --strict refuses this", file=sys.stderr)
    return {"num_malformed_prediction_lines": len(bad_lines), "num_skipped_references": report.num_skipped,
            "num_missing_predictions": missing}


def _match(preds: dict[str, str], record_id: Any, image: Any) -> str | None:
    for key in _keys(record_id, image):
        if key in preds:
            return preds[key]
    return None


def _dump(result: dict[str, Any], output: str | None) -> None:
    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    text = json.dumps({k: clean(v) for k, v in result.items()}, indent=2)
    print(text)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text + "\n", encoding="utf-8")


def run_captions(argv: list[str]) -> int:
    """Caption metrics (+ CLIPScore with `--clip-model`), printed as the reference-style JSON."""
    from ..data.roadscene import load_captions
    from ..metrics.caption.caption import caption_metrics

    argv = ["--" + a[2:].replace("-", "_") if a.startswith("--") else a for a in argv]
    (args,) = parse_args([EvalCaptionsArguments], argv, prog="hf-vlmdrive eval captions")
    refs, report = load_captions(args.references)
    if not refs:
        raise UserError(f"no valid references in {args.references}: {report.summary()}")
    preds, bad_lines = load_predictions(args.predictions)
    predictions, references, images, missing = [], [], [], 0
    for ref in refs:
        pred = _match(preds, ref["id"], ref["image"])
        if pred is None:
            missing += 1
            pred = ""
        predictions.append(pred)
        references.append(ref["captions"])
        images.append(ref["image"])
    counts = _account("hf-vlmdrive eval captions", args, bad_lines, report, missing, len(refs))
    result = caption_metrics(predictions, references, spice=args.spice)
    if args.clip_model:
        from ..metrics.clipscore.clipscore import clip_score

        root = Path(args.image_root) if args.image_root else Path(args.references).parent
        paths = [p if Path(p).is_absolute() else str(root / p) for p in images]
        clip = clip_score(predictions, paths, args.clip_model, pretrained=args.clip_pretrained, scale=args.clip_scale)
        result["CLIPScore"] = clip["clipscore"]
        result["CLIPScore_convention"] = clip["clipscore_convention"]
    result.update(counts)
    _dump(result, args.output)
    return 0


def run_bvpi(argv: list[str]) -> int:
    """BVPI metrics printed as the SPEC 1.3 tables, then as JSON."""
    from ..data.roadscene import load_bvpi_annotations
    from ..metrics.bvpi.bvpi import bvpi_metrics

    argv = ["--" + a[2:].replace("-", "_") if a.startswith("--") else a for a in argv]
    (args,) = parse_args([EvalBvpiArguments], argv, prog="hf-vlmdrive eval bvpi")
    refs, report = load_bvpi_annotations(args.references)
    if not refs:
        raise UserError(f"no valid annotations in {args.references}: {report.summary()}")
    preds, bad_lines = load_predictions(args.predictions)
    predictions, missing = [], 0
    for ref in refs:
        pred = _match(preds, None, ref["image"])
        if pred is None:
            missing += 1
        predictions.append(pred if pred is not None else "")
    counts = _account("hf-vlmdrive eval bvpi", args, bad_lines, report, missing, len(refs))
    result = bvpi_metrics(predictions, refs, tables=True)
    print(result.pop("tables"))
    result.update(counts)
    _dump(result, args.output)
    return 0


def register(registry) -> None:
    """Add `eval captions` and `eval bvpi`."""
    registry.add(("eval", "captions"), run_captions, "COCO caption metrics (+SPICE, CLIPScore) of a predictions JSONL")
    registry.add(("eval", "bvpi"), run_bvpi, "BVPI presence / accuracy / per-object recall-precision tables")


__all__ = ["EvalBvpiArguments", "EvalCaptionsArguments", "load_predictions", "register", "run_bvpi", "run_captions"]
