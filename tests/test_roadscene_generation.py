"""Generation writes valid JSONL and resumes; the road-scene CLI commands run end to end."""

from __future__ import annotations

import io
import json
import shutil
import sys

import pytest

from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene
from hf_vlmdrive.generation import generate_predictions
from hf_vlmdrive.testing.tiny_smolvlm import build_tiny_smolvlm


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rs_gen")
    paths = write_synthetic_roadscene(root / "data", num_samples=5, image_size=32)
    build_tiny_smolvlm(root / "model")
    return root, paths


class _NoStdin(io.StringIO):
    def read(self, *a):
        raise AssertionError("stdin was read")

    readline = read


def test_generate_writes_jsonl_and_resumes(setup, monkeypatch):
    root, paths = setup
    monkeypatch.setattr(sys, "stdin", _NoStdin())
    out = root / "preds.jsonl"
    counts = generate_predictions(str(root / "model"), paths["captions"], out, num_beams=2, max_new_tokens=6, batch_size=2)
    assert counts == {"num_records": 5, "num_skipped_done": 0, "num_generated": 5}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == [f"scene_{i:05d}" for i in range(5)]
    assert all(isinstance(r["prediction"], str) and r["image"].endswith(".png") for r in lines)
    # Interrupted run: two complete lines and a torn third one.
    text = out.read_text().splitlines()
    out.write_text(text[0] + "\n" + text[1] + "\n" + text[2][:10])
    counts = generate_predictions(str(root / "model"), paths["captions"], out, num_beams=2, max_new_tokens=6, batch_size=2)
    assert counts == {"num_records": 5, "num_skipped_done": 2, "num_generated": 3}
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in lines)
    # Deterministic beam search: the regenerated lines equal the first run's.
    assert {r["id"]: r["prediction"] for r in again} == {r["id"]: r["prediction"] for r in lines}


def test_cli_sft_generate_eval(setup, cli, capsys):
    root, paths = setup
    assert cli("sft", "roadscene", "--model", root / "model", "--train_file", paths["bvpi_sft"], "--output_dir", root / "sft",
               "--max_steps", "2", "--per_device_train_batch_size", "2", "--report_to", "none", "--use_cpu", "true",
               "--gradient_checkpointing", "false", "--save_strategy", "no", "--load_in_4bit", "false") == 0
    assert (root / "sft" / "adapter_config.json").is_file()
    preds = root / "bvpi_preds.jsonl"
    assert cli("generate", "--model", root / "sft", "--input", paths["bvpi_sft"], "--output", preds,
               "--num-beams", "2", "--max-new-tokens", "8") == 0
    assert len(preds.read_text().splitlines()) == 5
    capsys.readouterr()
    assert cli("eval", "bvpi", "--predictions", preds, "--references", paths["annotations_csv"]) == 0
    out = capsys.readouterr().out
    assert "| Mandatory field | Presence rate (%) |" in out and "| Object | Recall (%) | Precision (%) | Support |" in out
    result = json.loads(out[out.index("\n{") + 1 :])
    assert result["num_samples"] == 5 and result["num_missing_predictions"] == 0


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")
def test_cli_eval_captions(setup, cli, capsys, caplog, tmp_path):
    root, paths = setup
    refs = [json.loads(line) for line in paths["captions"].read_text().splitlines()]
    preds = tmp_path / "preds.jsonl"
    # Perfect predictions for all but one sample; one sample without prediction.
    preds.write_text("".join(json.dumps({"id": r["id"], "prediction": r["captions"][0]}) + "\n" for r in refs[:-1]))
    assert cli("eval", "captions", "--predictions", preds, "--references", paths["captions"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    for key in ("Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE", "avg_pred_len", "avg_ref_len", "protocol"):
        assert key in result
    assert result["num_missing_predictions"] == 1 and result["Bleu_1"] > 0.5
    # the missing prediction is said once on stderr, with the count
    assert captured.err.count("1 of 5 reference(s) have no prediction") == 1
    if result["SPICE"] is None:  # the notice is one log line; where to put the jars is in the result
        assert "stanford-corenlp-3.6.0.jar" in result["SPICE_error"]
        notices = [r for r in caplog.records if "SPICE" in r.getMessage()]
        assert len(notices) == 1 and notices[0].levelname == "WARNING", [r.getMessage() for r in notices]
        assert "stanford-corenlp" not in captured.err
