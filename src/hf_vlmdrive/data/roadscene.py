"""Road-scene captioning and BVPI navigation data (SPEC 1.3).

Three real formats are read:

- captions: JSON (a list, or `{"annotations": [...]}`) or JSONL of `{"image": ..., "caption": str}` or
  `{"image": ..., "captions": [str, ...]}` (an optional `id`; several rows for one image are merged);
- BVPI SFT: JSONL of TRL chat records `{"messages": [{"role": "user", "content": "<image> prompt"},
  {"role": "assistant", "content": ...}], "images": [...]}`;
- BVPI annotations: CSV or JSON following the schema below, validated row by row. Invalid rows are
  reported with their row number and field, skipped and counted (`LoadReport`).

BVPI schema: `image` (str); `sidewalk_pos` in {Left, Center, Right, Outside}; `road_pos` in
{Not present, Left, Front, Right}; `object_present` and `object_present_outside` in {No, Yes};
`objects_on_sidewalk` / `objects_outside_sidewalk`: mappings from the objects (bicycle, car, person,
traffic_sign, traffic_light, obstacle, grass, plants, trees) to {not present, Left, Center, Right}
(obstacle on the sidewalk may be a list of positions). When `object_present` is "No",
`objects_on_sidewalk` is omitted. In CSV files the object mappings are either a JSON string in the
`objects_on_sidewalk` column or one column per object named `objects_on_sidewalk.<object>`.

`to_sft_dataset` turns records into a `datasets.Dataset` with `images` (list of images) and `messages`
(structured chat content) columns, the layout TRL's `SFTTrainer` expects for vision-language models.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError, UserFileNotFoundError

logger = logging.getLogger(__name__)

SIDEWALK_POSITIONS = ("Left", "Center", "Right", "Outside")
ROAD_POSITIONS = ("Not present", "Left", "Front", "Right")
YES_NO = ("No", "Yes")
OBJECT_POSITIONS = ("not present", "Left", "Center", "Right")
OBJECT_NAMES = ("bicycle", "car", "person", "traffic_sign", "traffic_light", "obstacle", "grass", "plants", "trees")
REQUIRED_FIELDS = ("image", "sidewalk_pos", "road_pos", "object_present", "object_present_outside")
OBJECT_GROUPS = ("objects_on_sidewalk", "objects_outside_sidewalk")
ROAD_VS_SIDEWALK = ("Left", "Right", "Same", "Not present", "No sidewalk")
IMAGE_TOKEN = "<image>"
DEFAULT_CAPTION_PROMPT = "Describe the road scene for a pedestrian."
DEFAULT_BVPI_PROMPT = "Describe where the sidewalk, the road and the objects are. Answer in JSON."
ANNOTATION_PROMPT = "Using road annotations: {annotations}, generate caption and cue."

_ENUMS = {
    "sidewalk_pos": SIDEWALK_POSITIONS,
    "road_pos": ROAD_POSITIONS,
    "object_present": YES_NO,
    "object_present_outside": YES_NO,
}


@dataclass
class LoadReport:
    """What a loader kept and skipped. `errors` holds one message per problem: `row N: field: ...`."""

    path: str
    num_rows: int = 0
    num_valid: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        """Rows skipped because they failed validation or could not be parsed."""
        return self.num_rows - self.num_valid

    def summary(self) -> str:
        """One line (plus the first errors) for logs."""
        head = f"{self.path}: {self.num_valid}/{self.num_rows} rows valid, {self.num_skipped} skipped"
        if self.errors:
            shown = "\n  ".join(self.errors[:10])
            more = f"\n  ... and {len(self.errors) - 10} more" if len(self.errors) > 10 else ""
            head += f"\n  {shown}{more}"
        return head


# ---------------------------------------------------------------------------------------------- schema


def _canonical(value: Any, allowed: Sequence[str]) -> str | None:
    """`value` mapped onto `allowed` ignoring case, surrounding spaces and `_`/space differences."""
    if not isinstance(value, str):
        return None
    def norm(text: str) -> str:
        return " ".join(text.replace("_", " ").split()).lower()

    key = norm(value)
    for option in allowed:
        if norm(option) == key:
            return option
    return None


def normalize_bvpi_annotation(record: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """Validate one annotation against the BVPI schema; returns `(normalized_record, errors)`.

    Enum values are matched case-insensitively and rewritten in their canonical spelling. The record is
    `None` when there is any error; each error names the field, the offending value and what is allowed.
    """
    errors: list[str] = []
    out: dict[str, Any] = {}
    if not isinstance(record, dict):
        return None, [f"record must be an object, got {type(record).__name__}"]
    for name in REQUIRED_FIELDS:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors.append(f"{name}: required field is missing")
            continue
        if name == "image":
            if not isinstance(value, str):
                errors.append(f"image: must be a string path, got {value!r}")
            else:
                out["image"] = value.strip()
            continue
        canon = _canonical(value, _ENUMS[name])
        if canon is None:
            errors.append(f"{name}: {value!r} is not one of {list(_ENUMS[name])}")
        else:
            out[name] = canon
    for group in OBJECT_GROUPS:
        objects = record.get(group)
        if objects is None or objects == "" or objects == {}:
            continue
        if isinstance(objects, str):
            try:
                objects = json.loads(objects)
            except json.JSONDecodeError:
                errors.append(f"{group}: not valid JSON: {objects[:60]!r}")
                continue
        if not isinstance(objects, dict):
            errors.append(f"{group}: must map object names to positions, got {type(objects).__name__}")
            continue
        parsed: dict[str, Any] = {}
        for obj, pos in objects.items():
            obj_name = _canonical(obj, OBJECT_NAMES)
            if obj_name is None:
                errors.append(f"{group}.{obj}: unknown object; objects are {list(OBJECT_NAMES)}")
                continue
            if isinstance(pos, list):
                if not (group == "objects_on_sidewalk" and obj_name == "obstacle"):
                    errors.append(f"{group}.{obj_name}: a list of positions is only allowed for obstacle on the sidewalk")
                    continue
                canon_list = [_canonical(p, OBJECT_POSITIONS) for p in pos]
                if not pos or any(c is None for c in canon_list):
                    errors.append(f"{group}.{obj_name}: {pos!r} must be positions from {list(OBJECT_POSITIONS)}")
                    continue
                parsed[obj_name] = canon_list if len(canon_list) > 1 else canon_list[0]
            else:
                canon = _canonical(pos, OBJECT_POSITIONS)
                if canon is None:
                    errors.append(f"{group}.{obj_name}: {pos!r} is not one of {list(OBJECT_POSITIONS)}")
                    continue
                parsed[obj_name] = canon
        out[group] = parsed
    # The object_present rule of the schema.
    present = out.get("object_present")
    on_sidewalk = out.get("objects_on_sidewalk")
    if present == "No" and on_sidewalk and any(v != "not present" for v in on_sidewalk.values()):
        errors.append("objects_on_sidewalk: must be omitted when object_present is 'No'")
    if present == "No":
        out.pop("objects_on_sidewalk", None)
    if present == "Yes" and not on_sidewalk:
        errors.append("objects_on_sidewalk: required when object_present is 'Yes'")
    if errors:
        return None, errors
    return out, []


def _csv_record(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row -> annotation dict (dotted `group.object` columns are gathered into the group)."""
    record: dict[str, Any] = {}
    for key, value in row.items():
        if key is None:
            continue
        key = key.strip()
        value = value.strip() if isinstance(value, str) else value
        if "." in key and key.split(".", 1)[0] in OBJECT_GROUPS:
            group, obj = key.split(".", 1)
            if value:
                if value.startswith("["):
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError:
                        pass
                record.setdefault(group, {})[obj] = value
        elif value != "":
            record[key] = value
    return record


def _read_json_records(path: Path) -> list[Any]:
    """Rows of a JSON list / `{"annotations"|"data"|"images": [...]}` / JSONL file (bad lines -> error)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        rows: list[Any] = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                rows.append(_BadRow(f"line {i}: not valid JSON ({err.msg})"))
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON: {err}") from err
    if isinstance(data, dict):
        for key in ("annotations", "data", "images"):
            if isinstance(data.get(key), list):
                return data[key]
        raise UserError(f"{path}: expected a JSON list or an object with an 'annotations' list")
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


@dataclass
class _BadRow:
    message: str


def load_bvpi_annotations(path: str | Path) -> tuple[list[dict[str, Any]], LoadReport]:
    """Read and validate BVPI annotations from CSV, JSON or JSONL; invalid rows are reported and skipped.

    Rows are numbered from 1 (CSV: data rows after the header). Returns `(records, report)`.
    """
    path = Path(path)
    if not path.is_file():
        raise UserFileNotFoundError(f"BVPI annotation file {path} does not exist")
    report = LoadReport(path=str(path))
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            rows: list[Any] = [_csv_record(r) for r in csv.DictReader(fh)]
    elif path.suffix.lower() in (".json", ".jsonl"):
        rows = _read_json_records(path)
    else:
        raise UserError(f"{path}: BVPI annotations must be .csv, .json or .jsonl, got {path.suffix!r}")
    records = []
    for i, row in enumerate(rows, start=1):
        report.num_rows += 1
        if isinstance(row, _BadRow):
            report.errors.append(f"row {i}: {row.message}")
            continue
        record, errors = normalize_bvpi_annotation(row)
        if record is None:
            report.errors.extend(f"row {i}: {e}" for e in errors)
            continue
        records.append(record)
        report.num_valid += 1
    if report.num_skipped:
        logger.warning(report.summary())
    return records, report


# ---------------------------------------------------------------------------------------------- captions


def load_captions(path: str | Path) -> tuple[list[dict[str, Any]], LoadReport]:
    """Read captioning data from JSON/JSONL: returns `([{"id", "image", "captions"}], report)`.

    Rows with the same image are merged (several references per image). Rows without an image or
    without a non-empty caption are reported and skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise UserFileNotFoundError(f"caption file {path} does not exist")
    report = LoadReport(path=str(path))
    by_image: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(_read_json_records(path), start=1):
        report.num_rows += 1
        if isinstance(row, _BadRow):
            report.errors.append(f"row {i}: {row.message}")
            continue
        if not isinstance(row, dict):
            report.errors.append(f"row {i}: expected an object, got {type(row).__name__}")
            continue
        image = row.get("image", row.get("file_name", row.get("image_id")))
        if image is None or str(image).strip() == "":
            report.errors.append(f"row {i}: image: required field is missing")
            continue
        caps = row.get("captions", row.get("caption"))
        if isinstance(caps, str):
            caps = [caps]
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) and c.strip() for c in caps):
            report.errors.append(f"row {i}: caption(s): need a non-empty string or list of strings, got {caps!r}")
            continue
        key = str(image)
        entry = by_image.setdefault(key, {"id": str(row.get("id", key)), "image": key, "captions": []})
        entry["captions"].extend(c.strip() for c in caps)
        report.num_valid += 1
    if report.num_skipped:
        logger.warning(report.summary())
    return list(by_image.values()), report


# ---------------------------------------------------------------------------------------------- chat / SFT


def structure_content(content: Any) -> list[dict[str, Any]]:
    """Chat content -> TRL's structured list; each `<image>` marker in a string becomes an image part."""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or "type" not in part:
                raise UserError(f"structured content parts need a 'type', got {part!r}")
            parts.append({"type": part["type"], "text": part.get("text")})
        return parts
    if not isinstance(content, str):
        raise UserError(f"message content must be a string or a list of parts, got {type(content).__name__}")
    parts: list[dict[str, Any]] = []
    for j, chunk in enumerate(content.split(IMAGE_TOKEN)):
        if j > 0:
            parts.append({"type": "image", "text": None})
        chunk = chunk.strip() if j > 0 or len(content.split(IMAGE_TOKEN)) > 1 else chunk
        if chunk:
            parts.append({"type": "text", "text": chunk})
    return parts


def _count_images(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages for p in m["content"] if p["type"] == "image")


def load_bvpi_sft(path: str | Path, image_root: str | Path | None = None) -> tuple[list[dict[str, Any]], LoadReport]:
    """Read BVPI SFT JSONL (`messages` + `images`); malformed records are reported and skipped.

    Messages are converted to structured content (`<image>` markers become image parts); the number of
    image parts must equal the number of images. Image paths are resolved against `image_root`
    (default: the file's folder).
    """
    path = Path(path)
    if not path.is_file():
        raise UserFileNotFoundError(f"SFT file {path} does not exist")
    root = Path(image_root) if image_root is not None else path.parent
    report = LoadReport(path=str(path))
    out = []
    for i, row in enumerate(_read_json_records(path), start=1):
        report.num_rows += 1
        if isinstance(row, _BadRow):
            report.errors.append(f"row {i}: {row.message}")
            continue
        try:
            messages = row["messages"]
            if not isinstance(messages, list) or not messages:
                raise UserError("messages: need a non-empty list")
            structured = []
            for m in messages:
                if m.get("role") not in ("system", "user", "assistant"):
                    raise UserError(f"messages: role {m.get('role')!r} is not system/user/assistant")
                structured.append({"role": m["role"], "content": structure_content(m.get("content"))})
            if not any(m["role"] == "assistant" for m in structured):
                raise UserError("messages: no assistant turn to train on")
            images = row.get("images", [])
            if isinstance(images, str):
                images = [images]
            n_parts = _count_images(structured)
            if n_parts == 0 and images:
                # No `<image>` marker: images go before the first user text, as TRL does.
                first_user = next(m for m in structured if m["role"] == "user")
                first_user["content"] = [{"type": "image", "text": None} for _ in images] + first_user["content"]
            elif n_parts != len(images):
                raise UserError(f"images: {len(images)} image(s) but {n_parts} <image> marker(s) in messages")
            resolved = [str(p if Path(p).is_absolute() else root / p) for p in images]
            missing = [p for p in resolved if not Path(p).is_file()]
            if missing:
                raise UserError(f"images: file not found: {missing[0]}")
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            msg = f"missing field {err}" if isinstance(err, KeyError) else str(err)
            report.errors.append(f"row {i}: {msg}")
            continue
        out.append({"id": str(row.get("id", i)), "images": resolved, "messages": structured})
        report.num_valid += 1
    if report.num_skipped:
        logger.warning(report.summary())
    return out, report


def annotation_prompt(annotation: dict[str, Any]) -> str:
    """The SPEC 1.3 prompt that carries the annotations as JSON (without the `image` field)."""
    payload = {k: v for k, v in annotation.items() if k != "image"}
    return ANNOTATION_PROMPT.format(annotations=json.dumps(payload, separators=(", ", ": ")))


def road_vs_sidewalk(annotation: dict[str, Any]) -> str:
    """Where the road is relative to the sidewalk: Left / Right / Same / Not present / No sidewalk.

    A derived BVPI field (mandatory in model answers): "Not present" without road, "No sidewalk" when
    `sidewalk_pos` is Outside, else the road's image third (Left < Center=Front < Right) compared with the
    sidewalk's.
    """
    road, side = annotation.get("road_pos"), annotation.get("sidewalk_pos")
    if road == "Not present":
        return "Not present"
    if side == "Outside":
        return "No sidewalk"
    third = {"Left": 0, "Center": 1, "Front": 1, "Right": 2}
    if road not in third or side not in third:
        raise UserError(f"cannot relate road_pos={road!r} to sidewalk_pos={side!r}")
    diff = third[road] - third[side]
    return "Same" if diff == 0 else ("Left" if diff < 0 else "Right")


def annotation_answer(annotation: dict[str, Any], compact: bool = False) -> str:
    """The BVPI target answer: the annotation (without `image`) plus `road_vs_sidewalk`, as JSON.

    `compact=True` leaves out the objects that are "not present" (an object that is not named is not present,
    which is how the BVPI metrics read an answer) and an object group with none, about a third of the tokens for
    the same information, and
    orders the fields as the evidence goes: positions, road_vs_sidewalk, then each object list followed by its
    yes/no flag (so a generated flag can follow the list generated before it).
    """
    answer = {k: v for k, v in annotation.items() if k != "image"}
    if compact:
        for group in OBJECT_GROUPS:
            if isinstance(answer.get(group), dict):
                answer[group] = {o: p for o, p in answer[group].items() if p != "not present"}
                if not answer[group]:  # like objects_on_sidewalk when object_present is "No": left out
                    del answer[group]
        order = ("sidewalk_pos", "road_pos", "road_vs_sidewalk", "objects_on_sidewalk", "object_present",
                 "objects_outside_sidewalk", "object_present_outside")
        answer["road_vs_sidewalk"] = road_vs_sidewalk(annotation)
        ordered = {k: answer[k] for k in order if k in answer}
        return json.dumps({**ordered, **{k: v for k, v in answer.items() if k not in ordered}})
    answer["road_vs_sidewalk"] = road_vs_sidewalk(annotation)
    return json.dumps(answer)


def make_chat_records(
    records: Iterable[dict[str, Any]],
    task: str = "caption",
    prompt: str | None = None,
    annotations: dict[str, dict[str, Any]] | None = None,
    image_root: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Build chat records (`id`, `images`, `messages`) from caption or annotation records.

    - `task="caption"`: one record per image, the first caption as the answer; with `annotations`
      (image -> annotation) the prompt carries the annotation JSON (`annotation_prompt`).
    - `task="bvpi"`: records are annotations; the answer is the annotation JSON.
    """
    if task not in ("caption", "bvpi"):
        raise UserError(f"task must be 'caption' or 'bvpi', got {task!r}")
    root = Path(image_root) if image_root is not None else None
    out = []
    for rec in records:
        image = rec["image"]
        image_path = str(root / image) if root is not None and not Path(image).is_absolute() else image
        if task == "caption":
            ann = (annotations or {}).get(image)
            user_text = annotation_prompt(ann) if ann is not None else (prompt or DEFAULT_CAPTION_PROMPT)
            answer = rec["captions"][0]
        else:
            user_text = prompt or DEFAULT_BVPI_PROMPT
            answer = annotation_answer(rec)
        out.append(
            {
                "id": str(rec.get("id", image)),
                "images": [image_path],
                "messages": [
                    {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": user_text}]},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                ],
            }
        )
    return out


def to_sft_dataset(records: Sequence[dict[str, Any]]):
    """Chat records -> `datasets.Dataset` with `images` (decoded lazily as PIL) and `messages` columns."""
    import datasets

    if not records:
        raise UserError("no records to build a dataset from (all rows invalid or empty input)")
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "images": datasets.Sequence(datasets.Image()),
            "messages": [
                {
                    "role": datasets.Value("string"),
                    "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}],
                }
            ],
        }
    )
    data = {
        "id": [str(r.get("id", i)) for i, r in enumerate(records)],
        "images": [list(r["images"]) for r in records],
        "messages": [r["messages"] for r in records],
    }
    return datasets.Dataset.from_dict(data, features=features)


def load_sft_dataset(
    path: str | Path,
    task: str = "auto",
    image_root: str | Path | None = None,
    prompt: str | None = None,
    annotations_path: str | Path | None = None,
):
    """Load any road-scene training file into an SFT `datasets.Dataset` (+ its `LoadReport`).

    `task="auto"` picks the format from the content: rows with `messages` -> BVPI SFT; rows with
    `caption(s)` -> captioning; otherwise BVPI annotations (answer = annotation JSON).
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    if task == "auto":
        task = _sniff_task(path)
    if task == "sft":
        records, report = load_bvpi_sft(path, image_root=root)
    elif task == "caption":
        caps, report = load_captions(path)
        anns = None
        if annotations_path is not None:
            ann_records, _ = load_bvpi_annotations(annotations_path)
            anns = {a["image"]: a for a in ann_records}
        records = make_chat_records(caps, task="caption", prompt=prompt, annotations=anns, image_root=root)
    elif task == "bvpi":
        anns, report = load_bvpi_annotations(path)
        records = make_chat_records(anns, task="bvpi", prompt=prompt, image_root=root)
    else:
        raise UserError(f"task must be auto, sft, caption or bvpi, got {task!r}")
    if not records:
        raise UserError(f"no usable example in {path}: {report.summary()}")
    return to_sft_dataset(records), report


def _sniff_task(path: Path) -> str:
    if path.suffix.lower() == ".csv":
        return "bvpi"
    rows = _read_json_records(path)
    first = next((r for r in rows if isinstance(r, dict)), {})
    if "messages" in first:
        return "sft"
    if "caption" in first or "captions" in first:
        return "caption"
    return "bvpi"


__all__ = [
    "ANNOTATION_PROMPT",
    "DEFAULT_BVPI_PROMPT",
    "DEFAULT_CAPTION_PROMPT",
    "OBJECT_NAMES",
    "OBJECT_POSITIONS",
    "REQUIRED_FIELDS",
    "ROAD_POSITIONS",
    "ROAD_VS_SIDEWALK",
    "SIDEWALK_POSITIONS",
    "LoadReport",
    "annotation_answer",
    "annotation_prompt",
    "load_bvpi_annotations",
    "load_bvpi_sft",
    "load_captions",
    "load_sft_dataset",
    "make_chat_records",
    "normalize_bvpi_annotation",
    "road_vs_sidewalk",
    "structure_content",
    "to_sft_dataset",
]
