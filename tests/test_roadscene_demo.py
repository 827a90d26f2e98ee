"""The road-scene quick path learns: scenes determine their answers, the baselines are what they say, and the
tiny SFT run beats the per-field majority answer and a constant caption on held-out scenes (slow)."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from hf_vlmdrive.data.roadscene import OBJECT_NAMES, annotation_answer, load_bvpi_annotations
from hf_vlmdrive.data.synthetic.roadscene import random_annotation, render_scene, write_synthetic_roadscene
from hf_vlmdrive.demos.roadscene import majority_annotation, majority_bvpi_answer
from hf_vlmdrive.metrics.bvpi.bvpi import bvpi_metrics

SKY, GRASS, ROAD, SIDEWALK = (135, 190, 235), (90, 140, 60), (70, 70, 70), (200, 200, 190)
COLORS = {"person": (220, 40, 40), "car": (30, 60, 220), "bicycle": (240, 200, 20), "obstacle": (150, 80, 20),
          "traffic_sign": (230, 0, 230), "traffic_light": (20, 200, 60), "trees": (0, 70, 0)}
THIRDS = ("Left", "Center", "Right")


def read_scene(img, size: int) -> dict:
    """An independent reader: the annotation recovered from the pixels alone (layout of `render_scene`'s docstring:
    bands per third below the horizon; a row of objects outside the sidewalk, below it the row of objects on the
    sidewalk; one slot per object kind inside its third)."""
    px = np.asarray(img)
    horizon, s, third = size * 2 // 5, max(2, size // 10), size / 3
    bottom = horizon + 2  # above both object rows: only the bands
    kinds = [tuple(px[bottom, int((k + 0.5) * third)]) for k in range(3)]
    road = next((("Left", "Front", "Right")[k] for k in range(3) if kinds[k] == ROAD), "Not present")
    side = next((THIRDS[k] for k in range(3) if kinds[k] == SIDEWALK), "Outside")
    out = {"sidewalk_pos": side, "road_pos": road}
    rows = (("objects_outside_sidewalk", size - 3 * s - 2, ("car", "traffic_sign", "traffic_light", "trees")),
            ("objects_on_sidewalk", size - s - 1, ("person", "bicycle", "obstacle")))
    for group, y, slots in rows:
        found = {}
        for k in range(3):
            for j, obj in enumerate(slots):
                x = int(k * third + (j + 0.3) * third / len(slots))
                if tuple(px[y, x]) == COLORS[obj]:
                    found[obj] = THIRDS[k]
        out[group] = {o: found.get(o, "not present") for o in OBJECT_NAMES}
    out["object_present"] = "Yes" if any(v != "not present" for v in out["objects_on_sidewalk"].values()) else "No"
    out["object_present_outside"] = "Yes" if any(
        v != "not present" for v in out["objects_outside_sidewalk"].values()) else "No"
    if out["object_present"] == "No":
        del out["objects_on_sidewalk"]
    return out


@pytest.mark.parametrize("size", [32, 64])
def test_the_image_determines_every_field(size):
    rng = random.Random(size)
    for i in range(300):
        ann = random_annotation(rng, f"{i}.png")
        assert read_scene(render_scene(ann, size), size) == {k: v for k, v in ann.items() if k != "image"}, ann


def test_compact_answer_scores_like_the_full_answer():
    rng = random.Random(1)
    anns = [random_annotation(rng, f"{i}.png") for i in range(60)]
    full = bvpi_metrics([annotation_answer(a) for a in anns], anns)
    compact = bvpi_metrics([annotation_answer(a, compact=True) for a in anns], anns)
    assert {k: v for k, v in full.items() if k != "protocol"} == {k: v for k, v in compact.items() if k != "protocol"}
    assert full["accuracy/road_vs_sidewalk"] == 1.0 and full["num_unparseable"] == 0
    assert len(annotation_answer(anns[0], compact=True)) < 0.6 * len(annotation_answer(anns[0]))


def test_mixed_sft_file_and_majority_baseline(tmp_path):
    paths = write_synthetic_roadscene(tmp_path, num_samples=30, image_size=32, seed=3, compact_answers=True)
    rows = [json.loads(line) for line in paths["roadscene_sft"].read_text().splitlines()]
    assert len(rows) == 60 and rows[0]["id"] == "scene_00000_bvpi" and rows[1]["id"] == "scene_00000_caption"
    anns, _ = load_bvpi_annotations(paths["annotations_json"])
    assert json.loads(rows[0]["messages"][1]["content"]) == json.loads(annotation_answer(anns[0], compact=True))
    # Independent majority: count each field's values by hand.
    for field in ("sidewalk_pos", "road_pos", "object_present", "object_present_outside"):
        counts = {}
        for a in anns:
            counts[a[field]] = counts.get(a[field], 0) + 1
        assert counts[majority_annotation(anns)[field]] == max(counts.values())
    base = bvpi_metrics([majority_bvpi_answer(anns)] * len(anns), anns)
    for field in ("sidewalk_pos", "road_pos", "object_present", "object_present_outside"):
        share = max(sum(a[field] == v for a in anns) for v in {a[field] for a in anns}) / len(anns)
        assert base[f"accuracy/{field}"] == pytest.approx(share)  # the majority answer scores the majority share


def test_roadscene_figure(tmp_path):
    from PIL import Image

    from hf_vlmdrive.visualization import plot_roadscene_predictions

    rng = random.Random(0)
    anns = [random_annotation(rng, f"{i}.png") for i in range(2)]
    images = [render_scene(a, 32) for a in anns]
    refs = [annotation_answer(a) for a in anns]
    path = plot_roadscene_predictions(images, [refs[0], "garbage"], refs, tmp_path / "fig.png",
                                      caption_predictions=["a", "b"], caption_references=["a", "c"])
    assert Image.open(path).size[0] > 800 and path.stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need Java (pycocoevalcap)")
def test_demo_beats_the_baselines(tmp_path):
    """The documented demo run (fixed seed): every BVPI field above the per-field majority, captions above the
    constant caption. Measured figures: docs/roadscene.md."""
    from huggingface_hub import ModelCard

    from hf_vlmdrive.demos.roadscene import RoadSceneDemoConfig, run_roadscene_demo

    res = run_roadscene_demo(tmp_path, RoadSceneDemoConfig(seed=0))
    model, base = res["bvpi"]["model"], res["bvpi"]["baseline"]
    assert res["bvpi"]["parse_rate"] >= 0.95 and model["num_unparseable"] <= 2
    # Measured margins (points): +83, +60, +60, +56, +27 (docs/roadscene.md; seeds 1, 2: outside +23, +10);
    # asserted with room for the float differences between machines.
    for field in ("sidewalk_pos", "road_pos", "road_vs_sidewalk", "object_present"):
        assert model[f"accuracy/{field}"] > base[f"accuracy/{field}"] + 0.25, field
    assert model["accuracy/object_present_outside"] > base["accuracy/object_present_outside"] + 0.05
    caps = res["captions"]
    for key in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert caps["model"][key] > caps["baseline"][key] + 0.15, key
    assert (tmp_path / "roadscene_predictions.png").stat().st_size > 20_000
    card = ModelCard.load(tmp_path / "roadscene-tiny" / "README.md")
    assert "majority answer per field" in card.text and card.data.to_dict()["model-index"]
