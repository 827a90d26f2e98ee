"""What every quick-path demo shares: its thread count, the prediction files it reads back, the caption scores
against a constant caption, the side-by-side tables, and the tail that saves `results.json`.

A demo module (`demos/<family>.py`) holds its config dataclass, its data and model set-up and its baselines;
everything after "the model has predicted" that is the same across families lives here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

CAPTION_ROWS = ("Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
CONSTANT = "constant caption"


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch intra-op threads, then restore the previous count.

    The quick-path demos train with one thread: on shared 2-core machines two were measured far slower.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def loss_curve(log_history: Sequence[dict[str, Any]]) -> list[tuple[int, float]]:
    """(step, loss) of every training log record of a Trainer's `state.log_history`."""
    return [(h["step"], h["loss"]) for h in log_history if "loss" in h]


def read_predictions(path: str | Path, ids: Sequence[str]) -> list[str]:
    """The `prediction` of each id in a predictions JSONL file (`generate_predictions`' output), "" if absent."""
    by_id = {}
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            by_id[record["id"]] = record["prediction"]
    return [by_id.get(i, "") for i in ids]


def caption_scores(predictions: Sequence[str], references: Sequence[Sequence[str]], constant: str,
                   enabled: bool = True) -> dict[str, Any]:
    """COCO caption metrics of the model and of the constant-caption baseline.

    Returns {"model", "baseline"} or {"skipped": why} (no Java, or `enabled=False`): the rest of a demo's
    results stand without them.
    """
    if not enabled:
        return {"skipped": "caption_metrics=False"}
    from ..errors import UserError
    from ..metrics.caption.caption import caption_metrics

    try:
        return {"model": caption_metrics(list(predictions), list(references)),
                "baseline": caption_metrics([constant] * len(references), list(references))}
    except (UserError, OSError) as err:  # no Java
        return {"skipped": str(err)}


def side_by_side(model: dict, baseline: dict, rows: Sequence[str], baseline_name: str, pct: bool = False) -> str:
    """Markdown table: each metric row of the model, the baseline and the margin (percent points if `pct`)."""
    lines = [f"| metric | model | {baseline_name} | margin |", "|---|---:|---:|---:|"]
    for key in rows:
        if key not in model or key not in baseline:
            continue
        m, b = model[key], baseline[key]
        if m != m or b != b:  # NaN: no support on this split
            lines.append(f"| {key} | n/a | n/a | |")
        elif pct:
            lines.append(f"| {key} | {100 * m:.1f} | {100 * b:.1f} | {100 * (m - b):+.1f} |")
        else:
            lines.append(f"| {key} | {m:.3f} | {b:.3f} | {m - b:+.3f} |")
    return "\n".join(lines)


def caption_table(captions: dict[str, Any]) -> str:
    """Markdown: caption metrics of the model vs. the constant caption with the protocol line, or why skipped."""
    if "model" not in captions:
        return f"Captions: not evaluated ({captions.get('skipped')})."
    return "\n".join([
        f"Captions on {captions['model']['num_samples']} held-out scenes (baseline = {CONSTANT}: "
        f"\"{captions['constant_caption']}\"):", "",
        side_by_side(captions["model"], captions["baseline"], CAPTION_ROWS, CONSTANT), "",
        f"Protocol: {captions['model']['protocol']}."])


def finish_demo(out: Path, results: dict[str, Any], tables: str, **fields: Any) -> dict[str, Any]:
    """The tail of every demo: add `fields` (train, timings, config, figure, ...) to the results, write
    `out/results.json`, and return the results with their markdown `tables` (kept out of the JSON file)."""
    results.update(fields)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    results["tables"] = tables
    return results


__all__ = ["CAPTION_ROWS", "CONSTANT", "caption_scores", "caption_table", "finish_demo", "loss_curve",
           "read_predictions", "side_by_side", "torch_threads"]
