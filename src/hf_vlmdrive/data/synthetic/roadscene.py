"""Synthetic road scenes with known sidewalk / road / object positions, written in the real formats.

`write_synthetic_roadscene(output_dir, num_samples)` draws simple first-person street images (sky,
road, sidewalk strip, objects as coloured shapes placed in the Left / Center / Right thirds), and writes

    images/scene_00000.png ...
    annotations.json      BVPI annotations (SPEC 1.3 schema, validated by `load_bvpi_annotations`)
    annotations.csv       the same, one `objects_on_sidewalk.<object>` column per object
    captions.jsonl        {"id", "image", "captions": [template caption, paraphrase]}
    bvpi_sft.jsonl        {"id", "messages": [user "<image> prompt", assistant JSON], "images": [...]}
    roadscene_sft.jsonl   both tasks in one SFT file: per scene the BVPI record and a caption record
                          (user "<image> Describe the road scene for a pedestrian.", assistant: the caption)

Captions are generated from the annotation by templates, so a model that reads the image correctly can
reproduce them and the caption metrics have a known ceiling.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from ..roadscene import (
    DEFAULT_BVPI_PROMPT,
    DEFAULT_CAPTION_PROMPT,
    OBJECT_NAMES,
    ROAD_POSITIONS,
    SIDEWALK_POSITIONS,
    annotation_answer,
)

__all__ = ["caption_from_annotation", "random_annotation", "render_scene", "synthetic_roadscene_paths",
           "write_synthetic_roadscene"]

# Object colours (grass / plants stay "not present"; trees appear outside the sidewalk only).
_COLORS = {
    "person": (220, 40, 40),
    "car": (30, 60, 220),
    "bicycle": (240, 200, 20),
    "obstacle": (150, 80, 20),
    "traffic_sign": (230, 0, 230),
    "traffic_light": (20, 200, 60),
    "trees": (0, 70, 0),
}
_THIRD = {"Left": 0, "Center": 1, "Right": 2, "Front": 1}


def random_annotation(rng: random.Random, image: str) -> dict[str, Any]:
    """A random, schema-valid BVPI annotation."""
    sidewalk = rng.choice(SIDEWALK_POSITIONS)
    road_choices = [p for p in ROAD_POSITIONS if p == "Not present" or _THIRD.get(p) != _THIRD.get(sidewalk)]
    road = rng.choice(road_choices)
    ann: dict[str, Any] = {"image": image, "sidewalk_pos": sidewalk, "road_pos": road}
    on = {}
    if sidewalk != "Outside":
        for obj in ("person", "bicycle", "obstacle"):
            if rng.random() < 0.4:
                on[obj] = rng.choice(("Left", "Center", "Right"))
    ann["object_present"] = "Yes" if on else "No"
    outside = {}
    for obj in ("car", "traffic_sign", "traffic_light", "trees"):
        if rng.random() < 0.2:  # about 40 % of the scenes have nothing outside the sidewalk
            outside[obj] = rng.choice(("Left", "Right")) if obj != "car" or road == "Not present" else (
                "Center" if road == "Front" else road
            )
    ann["object_present_outside"] = "Yes" if outside else "No"
    if on:
        ann["objects_on_sidewalk"] = {o: on.get(o, "not present") for o in OBJECT_NAMES}
    ann["objects_outside_sidewalk"] = {o: outside.get(o, "not present") for o in OBJECT_NAMES}
    return ann


# Every drawn object has its own slot inside its image third, in its group's row, so no object hides another:
# the picture determines every field of the annotation (positions by third, objects by colour and row).
_ON_SLOTS = ("person", "bicycle", "obstacle")
_OUT_SLOTS = ("car", "traffic_sign", "traffic_light", "trees")


def render_scene(annotation: dict[str, Any], size: int = 64):
    """Draw the scene described by `annotation` as a PIL RGB image of `size` x `size` pixels.

    Layout: sky above the horizon (2/5 of the height), grass below; the road (dark grey) and the sidewalk
    (light grey) fill their image thirds (Left / Center or Front / Right) below the horizon. Objects outside the
    sidewalk stand in a row in the lower part of the ground, objects on the sidewalk in a row below it; inside
    its third each object kind has a fixed slot (width third / kinds in its row) and a fixed colour, so the
    image alone gives sidewalk_pos, road_pos, object_present(_outside) and every object's position.
    """
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (135, 190, 235))  # sky
    draw = ImageDraw.Draw(img)
    horizon = size * 2 // 5
    draw.rectangle([0, horizon, size, size], fill=(90, 140, 60))  # ground (grass)
    third = size / 3

    def band(pos: str, color):
        if pos in _THIRD:
            x0 = round(_THIRD[pos] * third)
            draw.rectangle([x0, horizon, round((_THIRD[pos] + 1) * third) - 1, size], fill=color)

    band(annotation["road_pos"], (70, 70, 70))
    if annotation["sidewalk_pos"] != "Outside":
        band(annotation["sidewalk_pos"], (200, 200, 190))
    s = max(2, size // 10)
    # Two object rows in the lower part of the ground: objects outside the sidewalk above, objects on it at the
    # bottom (the rows between the horizon and the first object row show the bands alone).
    rows = (("objects_outside_sidewalk", size - 4 * s - 2, _OUT_SLOTS), ("objects_on_sidewalk", size - 2 * s - 1, _ON_SLOTS))
    for group, y, slots in rows:
        slot = third / len(slots)
        for obj, pos in (annotation.get(group) or {}).items():
            if obj not in slots:
                continue
            for p in pos if isinstance(pos, list) else [pos]:
                if p not in _THIRD:  # "not present"
                    continue
                x0 = round(_THIRD[p] * third + slots.index(obj) * slot)
                draw.rectangle([x0, y, max(x0 + 1, round(x0 + slot) - 2), y + 2 * s - 1], fill=_COLORS[obj])
    return img


def _where(pos: str) -> str:
    return {"Left": "on the left", "Center": "in the center", "Right": "on the right", "Front": "in front"}.get(
        pos, pos.lower()
    )


def caption_from_annotation(annotation: dict[str, Any], paraphrase: bool = False) -> str:
    """Template caption (and a paraphrase) of a BVPI annotation, ending with a navigation cue."""
    side, road = annotation["sidewalk_pos"], annotation["road_pos"]
    parts = []
    if side == "Outside":
        parts.append("you are not on a sidewalk" if not paraphrase else "there is no sidewalk under you")
    else:
        parts.append(f"the sidewalk is {_where(side)}" if not paraphrase else f"a sidewalk runs {_where(side)}")
    parts.append("there is no road" if road == "Not present" else f"the road is {_where(road)}")
    on = [f"a {o.replace('_', ' ')} {_where(p)}" for o, p in (annotation.get("objects_on_sidewalk") or {}).items()
          if p != "not present" and not isinstance(p, list)]
    if on:
        parts.append("on the sidewalk there is " + " and ".join(on))
    out = [f"a {o.replace('_', ' ')} {_where(p)}" for o, p in (annotation.get("objects_outside_sidewalk") or {}).items()
           if p != "not present"]
    if out:
        parts.append("beside it there is " + " and ".join(out))
    cue = "Walk with caution" if on else "The path is clear, keep walking"
    text = ", ".join(parts) + f". {cue}."
    return text[0].upper() + text[1:]


def synthetic_roadscene_paths(output_dir: str | Path) -> dict[str, Path]:
    """The files `write_synthetic_roadscene(output_dir)` writes, by name (roadscene_sft.jsonl is written last)."""
    output_dir = Path(output_dir)
    return {
        "annotations_json": output_dir / "annotations.json",
        "annotations_csv": output_dir / "annotations.csv",
        "captions": output_dir / "captions.jsonl",
        "bvpi_sft": output_dir / "bvpi_sft.jsonl",
        "roadscene_sft": output_dir / "roadscene_sft.jsonl",
        "images": output_dir / "images",
    }


def write_synthetic_roadscene(
    output_dir: str | Path, num_samples: int = 16, image_size: int = 64, seed: int = 0, compact_answers: bool = False
) -> dict[str, Path]:
    """Write `num_samples` synthetic scenes and every road-scene file format; returns the file paths.

    `compact_answers=True` writes the SFT answers without the objects that are not present
    (`annotation_answer(..., compact=True)`); the annotation files always list every object.
    """
    output_dir = Path(output_dir)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    annotations = []
    for i in range(num_samples):
        name = f"images/scene_{i:05d}.png"
        ann = random_annotation(rng, name)
        render_scene(ann, size=image_size).save(output_dir / name)
        annotations.append(ann)
    paths = synthetic_roadscene_paths(output_dir)
    paths["annotations_json"].write_text(json.dumps(annotations, indent=1), encoding="utf-8")
    columns = ["image", "sidewalk_pos", "road_pos", "object_present", "object_present_outside"]
    columns += [f"{g}.{o}" for g in ("objects_on_sidewalk", "objects_outside_sidewalk") for o in OBJECT_NAMES]
    with paths["annotations_csv"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for ann in annotations:
            row = {k: ann.get(k, "") for k in columns[:5]}
            for g in ("objects_on_sidewalk", "objects_outside_sidewalk"):
                for o, p in (ann.get(g) or {}).items():
                    row[f"{g}.{o}"] = json.dumps(p) if isinstance(p, list) else p
            writer.writerow(row)
    with paths["captions"].open("w", encoding="utf-8") as fh:
        for i, ann in enumerate(annotations):
            caps = [caption_from_annotation(ann), caption_from_annotation(ann, paraphrase=True)]
            fh.write(json.dumps({"id": f"scene_{i:05d}", "image": ann["image"], "captions": caps}) + "\n")
    def chat(i: int, ann: dict, prompt: str, answer: str, suffix: str = "") -> str:
        return json.dumps({
            "id": f"scene_{i:05d}{suffix}",
            "messages": [{"role": "user", "content": f"<image> {prompt}"}, {"role": "assistant", "content": answer}],
            "images": [ann["image"]],
        }) + "\n"

    with paths["bvpi_sft"].open("w", encoding="utf-8") as fh:
        for i, ann in enumerate(annotations):
            fh.write(chat(i, ann, DEFAULT_BVPI_PROMPT, annotation_answer(ann, compact=compact_answers)))
    with paths["roadscene_sft"].open("w", encoding="utf-8") as fh:
        for i, ann in enumerate(annotations):
            fh.write(chat(i, ann, DEFAULT_BVPI_PROMPT, annotation_answer(ann, compact=compact_answers), "_bvpi"))
            fh.write(chat(i, ann, DEFAULT_CAPTION_PROMPT, caption_from_annotation(ann), "_caption"))
    return paths
