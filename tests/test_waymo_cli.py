"""Train / eval / predict through WOD-E2E TFRecords with the CLI; the challenge submission."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from hf_vlmdrive.data.synthetic.waymo import write_synthetic_e2ed
from hf_vlmdrive.data.waymo_e2e import read_submission

TINY_TOWER = json.dumps(dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                             num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8))


def test_train_eval_predict_submission_through_tfrecords(tmp_path: Path, cli):
    data = tmp_path / "wod"
    write_synthetic_e2ed(data, 32, seed=0, split="training", num_shards=2, width=48, height=32, camera_names=("FRONT",), progress=False)
    write_synthetic_e2ed(data, 8, seed=1, split="validation", width=48, height=32, camera_names=("FRONT",), progress=False)
    write_synthetic_e2ed(data, 5, seed=2, split="test", width=48, height=32, camera_names=("FRONT",), progress=False)
    cfg = dict(
        model_config=dict(vision_config=json.loads(TINY_TOWER),
                          head_hidden_sizes=[32], past_state_scale=10.0, waypoint_scale=10.0),
        train_data=str(data / "training.tfrecord*"), eval_data=str(data / "validation.tfrecord*"),
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, max_steps=3, save_strategy="no",
        eval_strategy="no", report_to="none", disable_tqdm=True,
    )
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert cli("train", "waypoint", "--config", tmp_path / "cfg.yaml") == 0
    model_dir = tmp_path / "run"
    out_json = tmp_path / "metrics.json"
    assert cli("eval", "waypoint", "--model", model_dir, "--data", data / "validation.tfrecord-00000-of-00001",
               "--output_json", out_json) == 0
    metrics = json.loads(out_json.read_text())
    assert metrics["num_samples"] == 8
    assert 0.0 <= metrics["model"]["rfs"] <= 10.0 and metrics["model"]["rfs_num_frames"] == 8
    # the constant-velocity baseline is scored against the same raters
    assert 0.0 <= metrics["constant_velocity"]["rfs"] <= 10.0

    sub_path, pred_json = tmp_path / "out.binproto", tmp_path / "pred.json"
    assert cli("predict", "waypoint", "--model", model_dir, "--data", str(data / "test.tfrecord*"),
               "--submission", sub_path, "--output_json", pred_json, "--method_name", "tiny") == 0
    sub = read_submission(sub_path)
    assert len(sub.predictions) == 5 and sub.unique_method_name == "tiny"
    assert all(len(p.trajectory.pos_x) == 20 and len(p.trajectory.pos_y) == 20 for p in sub.predictions)
    preds = json.loads(pred_json.read_text())
    first = sub.predictions[0]
    np.testing.assert_allclose(first.trajectory.pos_x, np.asarray(preds[first.frame_name])[:, 0], rtol=1e-6)
    assert sub.num_model_parameters.endswith("K")
