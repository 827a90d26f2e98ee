"""BVPI output parser on adversarial outputs and the BVPI metrics."""

from __future__ import annotations

import json
import math

import pytest

from hf_vlmdrive.metrics import load_metric
from hf_vlmdrive.metrics.bvpi.bvpi import bvpi_metrics, parse_bvpi_output

REF = {
    "image": "a.png", "sidewalk_pos": "Left", "road_pos": "Front", "object_present": "Yes",
    "object_present_outside": "Yes", "objects_on_sidewalk": {"person": "Center"},
    "objects_outside_sidewalk": {"car": "Right"},
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ('Sure!\n```json\n{"Sidewalk_Pos": "left", "ROAD_POS": "front"}\n```\nAnything else?',
         {"sidewalk_pos": "Left", "road_pos": "Front"}),
        ("{'sidewalk_pos': 'Center', 'road_pos': 'Left'", {"sidewalk_pos": "Center", "road_pos": "Left"}),  # truncated
        ("Sidewalk position: on the right\nRoad: none", {"sidewalk_pos": "Right", "road_pos": "Not present"}),
        ('{"sidewalk_pos": "Left", "note": "a } brace"} {"road_pos": "Right"}', {"sidewalk_pos": "Left"}),
        ('{"sidewalk_pos": true}', None),
        ("I cannot see the road.", None),
        ("", None),
        (None, None),
        ("{{{{ ]]", None),
        ("sidewalk_pos: Leftish", None),
    ],
)
def test_parser_adversarial(text, expected):
    parsed = parse_bvpi_output(text)
    if expected is None:
        assert parsed is None
    else:
        assert {k: parsed[k] for k in expected} == expected


def test_parser_objects_and_lists():
    parsed = parse_bvpi_output(
        'answer: {"sidewalk_pos": "Left", "objects_on_sidewalk": {"Traffic Light": "LEFT", "obstacle": ["left", "Center"], '
        '"dragon": "Left"}, "objects_outside_sidewalk": {"car": "nope"}}'
    )
    assert parsed["objects_on_sidewalk"] == {"traffic_light": "Left", "obstacle": ["Left", "Center"]}
    assert parsed["objects_outside_sidewalk"] == {}


def test_metrics_values():
    perfect = json.dumps({**{k: v for k, v in REF.items() if k != "image"}, "road_vs_sidewalk": "Right"})
    partial = '```\n{"sidewalk_pos": "LEFT", "road_pos": "Right", "objects_on_sidewalk": {"bicycle": "Left"}}\n```'
    preds = [perfect, partial, "no idea", None]
    result = bvpi_metrics(preds, [REF] * 4, tables=True)
    assert result["num_unparseable"] == 2 and result["num_samples"] == 4
    assert result["presence/sidewalk_pos"] == 0.5 and result["presence/road_vs_sidewalk"] == 0.25
    assert result["accuracy/sidewalk_pos"] == 0.5 and result["accuracy/road_pos"] == 0.25
    assert result["accuracy/road_vs_sidewalk"] == 0.25  # road Front (center third) is right of a Left sidewalk
    assert result["recall/person"] == 0.25 and result["precision/person"] == 1.0
    assert result["recall/car"] == 0.25 and result["precision/bicycle"] == 0.0 and math.isnan(result["recall/bicycle"])
    assert "| sidewalk_pos | 50.0 |" in result["tables"] and "Unparseable outputs: 2 / 4" in result["tables"]
    via_evaluate = load_metric("bvpi").compute(predictions=["no idea", perfect], references=[json.dumps(REF)] * 2)
    assert via_evaluate["accuracy/sidewalk_pos"] == 0.5 and via_evaluate["num_unparseable"] == 1


def test_invalid_reference_is_an_error():
    with pytest.raises(ValueError, match="reference 0 is not a valid BVPI annotation: sidewalk_pos"):
        bvpi_metrics(["x"], [{**REF, "sidewalk_pos": "Up"}])


def test_torn_prediction_line_is_counted_said_once_and_refused_under_strict(tmp_path, cli, capsys):
    from hf_vlmdrive.data.roadscene import annotation_answer, load_bvpi_annotations
    from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene

    paths = write_synthetic_roadscene(tmp_path / "data", num_samples=4, image_size=32)
    anns, _ = load_bvpi_annotations(paths["annotations_json"])
    lines = [json.dumps({"id": f"scene_{i:05d}", "image": a["image"], "prediction": annotation_answer(a)})
             for i, a in enumerate(anns)]
    lines[2] = lines[2][:25]  # torn by an interrupted run
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(lines) + "\n")
    assert cli("eval", "bvpi", "--predictions", preds, "--references", paths["annotations_json"]) == 0
    captured = capsys.readouterr()
    said = [line for line in captured.err.splitlines() if "malformed" in line]
    assert len(said) == 1 and "1 malformed line(s)" in said[0] and "line 3" in said[0] and "--strict" in said[0]
    assert "1 of 4 reference(s) have no prediction" in said[0]
    result = json.loads(captured.out[captured.out.index("\n{") + 1:])
    assert result["num_malformed_prediction_lines"] == 1 and result["num_missing_predictions"] == 1
    assert cli("eval", "bvpi", "--predictions", preds, "--references", paths["annotations_json"], "--strict") == 2
    err = capsys.readouterr().err
    assert "1 malformed line(s)" in err and "(--strict)" in err and "Traceback" not in err
