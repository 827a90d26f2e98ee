"""BVPI navigation-cue metrics on parsed model outputs (SPEC 1.3)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from typing import Any

import datasets
import evaluate

from hf_vlmdrive.data.roadscene import (
    OBJECT_GROUPS,
    OBJECT_NAMES,
    OBJECT_POSITIONS,
    ROAD_POSITIONS,
    ROAD_VS_SIDEWALK,
    SIDEWALK_POSITIONS,
    YES_NO,
    normalize_bvpi_annotation,
    road_vs_sidewalk,
)

_DESCRIPTION = """
Model outputs (free text or JSON, possibly in code fences, with extra text, wrong case or missing fields)
are parsed into the BVPI schema by `parse_bvpi_output`; an output from which no field can be recovered is
unparseable: counted (`num_unparseable`) and scored as a miss everywhere.

- presence rate of the mandatory fields sidewalk_pos, road_pos, road_vs_sidewalk (share of outputs
  that state the field with a valid value);
- field accuracy: exact match with the reference for sidewalk_pos, road_pos, road_vs_sidewalk,
  object_present, object_present_outside (missing = wrong);
- per-object recall / precision for person, car, bicycle, obstacle, traffic_sign, traffic_light: an
  object counts as present when any position other than "not present" is given for it, on or outside the
  sidewalk (presence only, positions are not compared).
`road_vs_sidewalk` references are derived from the annotation when absent (see
`hf_vlmdrive.data.roadscene.road_vs_sidewalk`).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of str, raw model outputs.
    references: list of annotation dicts (or their JSON strings) following the BVPI schema.
Returns:
    dict: presence/<field>, accuracy/<field>, recall/<object>, precision/<object>, num_unparseable,
    num_samples (plus `tables`, the markdown tables, from `bvpi_metrics(..., tables=True)`).
Examples:
    >>> from hf_vlmdrive.metrics import load_metric
    >>> metric = load_metric("bvpi")  # doctest: +SKIP
    >>> metric.compute(predictions=['{"sidewalk_pos": "left"}'], references=[ann])  # doctest: +SKIP
"""

MANDATORY_FIELDS = ("sidewalk_pos", "road_pos", "road_vs_sidewalk")
ACCURACY_FIELDS = ("sidewalk_pos", "road_pos", "road_vs_sidewalk", "object_present", "object_present_outside")
EVAL_OBJECTS = ("person", "car", "bicycle", "obstacle", "traffic_sign", "traffic_light")
_FIELD_VALUES = {
    "sidewalk_pos": SIDEWALK_POSITIONS,
    "road_pos": ROAD_POSITIONS,
    "road_vs_sidewalk": ROAD_VS_SIDEWALK,
    "object_present": YES_NO,
    "object_present_outside": YES_NO,
}
_FIELD_ALIASES = {
    "sidewalk_pos": ("sidewalk_pos", "sidewalk_position", "sidewalk"),
    "road_pos": ("road_pos", "road_position", "road"),
    "road_vs_sidewalk": ("road_vs_sidewalk", "road_vs_sidewalk_pos", "road_relative_to_sidewalk"),
    "object_present": ("object_present", "objects_present", "object_on_sidewalk"),
    "object_present_outside": ("object_present_outside", "objects_present_outside", "object_outside"),
}
_SYNONYMS = {"none": "not present", "absent": "not present", "no road": "not present", "front": "Front",
             "centre": "Center", "middle": "Center", "true": "Yes", "false": "No", "same side": "Same"}


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(key).lower()).strip("_")


def _match_value(value: Any, allowed: Sequence[str]) -> str | None:
    """Map a free-form value onto `allowed` (case-insensitive; 'on the left' -> Left; synonyms)."""
    if isinstance(value, bool):
        value = "Yes" if value else "No"
    if not isinstance(value, str):
        return None
    text = " ".join(value.replace("_", " ").split()).lower().strip(" .,;:'\"")
    text = _SYNONYMS.get(text, text)
    for option in allowed:
        if option.lower() == text.lower():
            return option
    # Longest option mentioned as a whole word wins ("on the left side" -> Left, "not present" before "present").
    found = [o for o in sorted(allowed, key=len, reverse=True) if re.search(rf"\b{re.escape(o.lower())}\b", text)]
    return found[0] if found else None


def _extract_json(text: str) -> Any | None:
    """The first balanced `{...}` in `text` that parses as JSON (or a Python literal), else None."""
    text = re.sub(r"```(?:json|JSON)?", "", text)
    start = text.find("{")
    while start != -1:
        depth, in_str, esc = 0, None, False
        for end in range(start, len(text)):
            ch = text[end]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == in_str:
                    in_str = None
            elif ch in "\"'":
                in_str = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    chunk = text[start : end + 1]
                    for loader in (json.loads, ast.literal_eval):
                        try:
                            value = loader(chunk)
                        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                            continue
                        if isinstance(value, dict):
                            return value
                    break
        start = text.find("{", start + 1)
    return None


def _from_mapping(data: dict[str, Any]) -> dict[str, Any]:
    keys = {_norm_key(k): v for k, v in data.items()}
    out: dict[str, Any] = {}
    for field, aliases in _FIELD_ALIASES.items():
        for alias in aliases:
            if alias in keys:
                value = _match_value(keys[alias], _FIELD_VALUES[field])
                if value is not None:
                    out[field] = value
                break
    for group in OBJECT_GROUPS:
        objects = keys.get(group)
        if isinstance(objects, dict):
            parsed = {}
            for obj, pos in objects.items():
                name = _norm_key(obj)
                if name in OBJECT_NAMES:
                    positions = pos if isinstance(pos, list) else [pos]
                    matched = [p for p in (_match_value(x, OBJECT_POSITIONS) for x in positions) if p]
                    if matched:
                        parsed[name] = matched if len(matched) > 1 else matched[0]
            out[group] = parsed
    return out


_KV = re.compile(r"([A-Za-z][A-Za-z _\-]{1,40}?)[\"']?\s*[:=]\s*[\"']?([^\n,;{}\"']+)")


def _from_text(text: str) -> dict[str, Any]:
    """Free-text fallback: `key: value` pairs; object lines go to objects_on_sidewalk unless 'outside'."""
    out: dict[str, Any] = {}
    group = "objects_on_sidewalk"
    for line in text.splitlines():
        if "outside" in line.lower() and "sidewalk" in line.lower() and ":" in line and not _KV.search(line.split(":", 1)[1]):
            group = "objects_outside_sidewalk"
        for key, value in _KV.findall(line):
            k = _norm_key(key)
            for field, aliases in _FIELD_ALIASES.items():
                if k in aliases and field not in out:
                    matched = _match_value(value, _FIELD_VALUES[field])
                    if matched is not None:
                        out[field] = matched
            if k in OBJECT_NAMES:
                matched = _match_value(value, OBJECT_POSITIONS)
                if matched is not None:
                    out.setdefault(group, {})[k] = matched
    return out


def parse_bvpi_output(text: Any) -> dict[str, Any] | None:
    """Parse one model output into BVPI fields; None when nothing can be recovered (unparseable)."""
    if isinstance(text, dict):
        parsed = _from_mapping(text)
    elif not isinstance(text, str) or not text.strip():
        return None
    else:
        data = _extract_json(text)
        parsed = _from_mapping(data) if data is not None else {}
        if not any(f in parsed for f in _FIELD_ALIASES):
            for key, value in _from_text(text).items():
                parsed.setdefault(key, value)
    return parsed if parsed else None


def _present_objects(record: dict[str, Any]) -> set[str]:
    present = set()
    for group in OBJECT_GROUPS:
        for obj, pos in (record.get(group) or {}).items():
            positions = pos if isinstance(pos, list) else [pos]
            if any(p != "not present" for p in positions):
                present.add(obj)
    return present


def _reference(ref: Any, index: int) -> dict[str, Any]:
    if isinstance(ref, str):
        ref = json.loads(ref)
    if "image" not in ref:
        ref = {**ref, "image": f"<reference {index}>"}
    normalized, errors = normalize_bvpi_annotation(ref)
    if normalized is None:
        raise ValueError(f"reference {index} is not a valid BVPI annotation: {'; '.join(errors)}")
    normalized["road_vs_sidewalk"] = _match_value(ref.get("road_vs_sidewalk"), ROAD_VS_SIDEWALK) or road_vs_sidewalk(normalized)
    return normalized


def bvpi_metrics(predictions: Sequence[Any], references: Sequence[Any], tables: bool = False) -> dict[str, Any]:
    """Compute the metrics of `_DESCRIPTION`; `tables=True` adds the markdown tables under `tables`."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to evaluate")
    refs = [_reference(r, i) for i, r in enumerate(references)]
    parsed = [parse_bvpi_output(p) for p in predictions]
    n = len(refs)
    out: dict[str, Any] = {}
    for field in MANDATORY_FIELDS:
        out[f"presence/{field}"] = sum(1 for p in parsed if p and field in p) / n
    for field in ACCURACY_FIELDS:
        out[f"accuracy/{field}"] = sum(1 for p, r in zip(parsed, refs) if p and p.get(field) == r[field]) / n
    for obj in EVAL_OBJECTS:
        tp = fp = fn = 0
        for p, r in zip(parsed, refs):
            in_ref = obj in _present_objects(r)
            in_pred = obj in _present_objects(p or {})
            tp += in_ref and in_pred
            fp += in_pred and not in_ref
            fn += in_ref and not in_pred
        out[f"recall/{obj}"] = tp / (tp + fn) if tp + fn else float("nan")
        out[f"precision/{obj}"] = tp / (tp + fp) if tp + fp else float("nan")
        out[f"support/{obj}"] = tp + fn
    out["num_unparseable"] = sum(1 for p in parsed if p is None)
    out["num_samples"] = n
    out["protocol"] = (
        f"BVPI on {n} outputs: presence = field stated with a valid value; accuracy = exact match "
        "(missing/unparseable = wrong); object recall/precision on presence (any position != 'not present')"
    )
    if tables:
        out["tables"] = format_bvpi_tables(out)
    return out


def format_bvpi_tables(result: dict[str, Any]) -> str:
    """The three BVPI tables (mandatory-field presence, field accuracy, per-object recall/precision)."""

    def pct(v: float) -> str:
        return "n/a" if v != v else f"{100 * v:.1f}"

    lines = ["| Mandatory field | Presence rate (%) |", "|---|---|"]
    lines += [f"| {f} | {pct(result[f'presence/{f}'])} |" for f in MANDATORY_FIELDS]
    lines += ["", "| Field | Accuracy (%) |", "|---|---|"]
    lines += [f"| {f} | {pct(result[f'accuracy/{f}'])} |" for f in ACCURACY_FIELDS]
    lines += ["", "| Object | Recall (%) | Precision (%) | Support |", "|---|---|---|---|"]
    lines += [
        f"| {o} | {pct(result[f'recall/{o}'])} | {pct(result[f'precision/{o}'])} | {result[f'support/{o}']} |"
        for o in EVAL_OBJECTS
    ]
    lines += ["", f"Unparseable outputs: {result['num_unparseable']} / {result['num_samples']} (scored as misses)"]
    return "\n".join(lines)


class Bvpi(evaluate.Metric):
    """BVPI presence / accuracy / per-object recall-precision on free-form or JSON model outputs."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})],
        )

    def _compute(self, predictions, references):
        return bvpi_metrics(predictions, references)


__all__ = ["ACCURACY_FIELDS", "EVAL_OBJECTS", "MANDATORY_FIELDS", "Bvpi", "bvpi_metrics", "format_bvpi_tables", "parse_bvpi_output"]
