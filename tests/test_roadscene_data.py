"""Road-scene readers: BVPI schema validation, caption / SFT files, synthetic writer, SFT dataset."""

from __future__ import annotations

import json

import pytest

from hf_vlmdrive.data.roadscene import (
    annotation_prompt,
    load_bvpi_annotations,
    load_bvpi_sft,
    load_captions,
    load_sft_dataset,
    normalize_bvpi_annotation,
    road_vs_sidewalk,
)
from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_roadscene(tmp_path_factory.mktemp("rs"), num_samples=12, image_size=32, seed=1)


def _good():
    return {
        "image": "a.png", "sidewalk_pos": "left", "road_pos": "FRONT", "object_present": "Yes",
        "object_present_outside": "No", "objects_on_sidewalk": {"person": "Center", "obstacle": ["Left", "right"]},
    }


def test_valid_annotation_is_normalized():
    rec, errors = normalize_bvpi_annotation(_good())
    assert errors == []
    assert rec["sidewalk_pos"] == "Left" and rec["road_pos"] == "Front"
    assert rec["objects_on_sidewalk"]["obstacle"] == ["Left", "Right"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"sidewalk_pos": "Up"}, "sidewalk_pos"),
        ({"road_pos": None}, "road_pos"),
        ({"object_present": "maybe"}, "object_present"),
        ({"objects_on_sidewalk": {"dragon": "Left"}}, "objects_on_sidewalk.dragon"),
        ({"objects_on_sidewalk": {"car": "Behind"}}, "objects_on_sidewalk.car"),
        ({"objects_on_sidewalk": None}, "objects_on_sidewalk"),  # Yes without objects
        ({"object_present": "No"}, "objects_on_sidewalk"),  # No with objects present
    ],
)
def test_invalid_annotation_names_field(change, field):
    rec = {**_good(), **change}
    out, errors = normalize_bvpi_annotation(rec)
    assert out is None
    assert any(e.startswith(field + ":") for e in errors), errors


def test_obstacle_list_only_on_sidewalk():
    rec = {**_good(), "objects_outside_sidewalk": {"obstacle": ["Left", "Right"]}}
    out, errors = normalize_bvpi_annotation(rec)
    assert out is None and "objects_outside_sidewalk.obstacle" in errors[0]


def test_annotation_file_reports_rows_and_skips(tmp_path):
    rows = [_good(), {**_good(), "sidewalk_pos": "Nowhere"}, {"image": "c.png"}, _good()]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(rows))
    records, report = load_bvpi_annotations(path)
    assert len(records) == 2 and report.num_rows == 4 and report.num_skipped == 2
    assert any(e.startswith("row 2: sidewalk_pos: 'Nowhere'") for e in report.errors)
    assert any(e.startswith("row 3: road_pos: required") for e in report.errors)


def test_csv_and_json_annotations_agree(synth):
    from_json, r1 = load_bvpi_annotations(synth["annotations_json"])
    from_csv, r2 = load_bvpi_annotations(synth["annotations_csv"])
    assert r1.num_skipped == r2.num_skipped == 0
    assert from_json == from_csv and len(from_json) == 12


def test_jsonl_bad_line_is_counted(tmp_path):
    path = tmp_path / "caps.jsonl"
    path.write_text('{"image": "a.png", "caption": "a road"}\n{broken\n{"image": "a.png", "captions": ["x"]}\n{"image": "b.png"}\n')
    caps, report = load_captions(path)
    assert report.num_rows == 4 and report.num_valid == 2
    assert caps == [{"id": "a.png", "image": "a.png", "captions": ["a road", "x"]}]
    assert any(e.startswith("row 2: line 2: not valid JSON") for e in report.errors)
    assert any(e.startswith("row 4: caption(s)") for e in report.errors)


def test_sft_jsonl_to_dataset(synth, tmp_path):
    ds, report = load_sft_dataset(synth["bvpi_sft"])
    assert report.num_skipped == 0 and len(ds) == 12
    row = ds[0]
    assert row["images"][0].size == (32, 32)
    user, assistant = row["messages"]
    assert [p["type"] for p in user["content"]] == ["image", "text"]
    answer = json.loads(assistant["content"][0]["text"])
    assert answer["road_vs_sidewalk"] == road_vs_sidewalk(answer)
    # A record whose <image> markers and images disagree is reported and skipped.
    bad = tmp_path / "bad.jsonl"
    line = json.loads(synth["bvpi_sft"].read_text().splitlines()[0])
    line["messages"][0]["content"] = "<image><image> two markers"
    bad.write_text(json.dumps(line) + "\n")
    records, rep = load_bvpi_sft(bad, image_root=synth["bvpi_sft"].parent)
    assert records == [] and "1 image(s) but 2 <image> marker(s)" in rep.errors[0]


def test_caption_dataset_with_annotation_prompt(synth):
    ds, _ = load_sft_dataset(synth["captions"], annotations_path=synth["annotations_json"])
    anns, _ = load_bvpi_annotations(synth["annotations_json"])
    text = ds[0]["messages"][0]["content"][1]["text"]
    assert text == annotation_prompt(anns[0])
    assert text.startswith("Using road annotations: {") and text.endswith("generate caption and cue.")
