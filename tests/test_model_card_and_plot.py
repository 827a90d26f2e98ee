"""Model card rendering and the trajectory figure."""

from __future__ import annotations

import numpy as np
from huggingface_hub import ModelCard

from hf_vlmdrive.data.synthetic.driving import PinholeCamera, sample_waypoint_scene
from hf_vlmdrive.model_card import render_waypoint_card
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel
from hf_vlmdrive.visualization import plot_waypoint_predictions, project_ground_waypoints


def test_card_has_metadata_and_metrics(tmp_path):
    model = WaypointVLMModel(WaypointVLMConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        head_hidden_sizes=[16, 16]))
    card = render_waypoint_card(model, "| metric | model |\n|---|---|\n| ade | 1.234 |", "synthetic:10",
                                "synthetic:5:1", str(tmp_path / "m"), metrics={"ade": 1.234, "protocol": "x"})
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.library_name == "hf_vlmdrive"
    assert "waypoint_vlm" in loaded.data.tags and loaded.data.metrics == ["ade"]
    assert "| ade | 1.234 |" in loaded.text and "siglip_vision_model" in loaded.text
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert f"{trainable:,}" in loaded.text


def test_card_names_the_lora_stage(tmp_path):
    tower = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=2, image_size=32, patch_size=8)
    model = WaypointVLMModel(WaypointVLMConfig(vision_config=tower, head_hidden_sizes=[16], lora={"r": 8}))
    card = render_waypoint_card(model, "table", "synthetic:10", "synthetic:5:1", str(tmp_path / "m"))
    assert "frozen, with LoRA adapters r=8 alpha=16 on q_proj/k_proj/v_proj/out_proj" in card.text
    model.merge_vision_lora()
    assert "tower (frozen)" in render_waypoint_card(model, "t", "a", "b", str(tmp_path / "m")).text


def test_projection_and_plot(tmp_path):
    cam = PinholeCamera(96, 64)
    uv, ok = project_ground_waypoints(np.array([[10.0, 0.0], [10.0, 5.0], [-5.0, 0.0]]), cam)
    assert ok.tolist() == [True, True, False]  # behind the camera is not drawn
    assert uv[0, 0] == 48.0 and uv[0, 1] > 32  # straight ahead: centre column, below the horizon
    assert uv[1, 0] < uv[0, 0]  # left (+y) is left in the image
    s = sample_waypoint_scene(0, 96, 64)
    path = plot_waypoint_predictions([s.images["FRONT"]], s.future_waypoints[None] + 0.5, s.future_waypoints[None],
                                     tmp_path / "fig.png", camera=cam, titles=["x"])
    assert path.stat().st_size > 5_000


# ------------------------------------------------------------------ issue 19: one card mechanism, every command
import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from hf_vlmdrive.model_card import render_model_card, write_model_card  # noqa: E402

REQUIRED = ("library_name", "license", "tags", "datasets", "metrics", "model-index", "metrics_protocol")


def check_card(directory: Path, family: str) -> ModelCard:
    """The README.md of a run: YAML parses, carries the required keys, and links only to real Hub pages."""
    path = Path(directory) / "README.md"
    assert path.is_file(), f"no model card in {directory}"
    card = ModelCard.load(path)
    meta = card.data.to_dict()
    missing = [k for k in REQUIRED if not meta.get(k)]
    assert not missing, f"card metadata lacks {missing}: {sorted(meta)}"
    assert meta["library_name"] == "hf_vlmdrive" and family in meta["tags"]
    assert set(meta["metrics"]) == {m["type"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    for url in re.findall(r"https?://[^\s)\"'>]+", path.read_text()):
        assert re.fullmatch(r"https://huggingface\.co/[\w.-]+/[\w.-]+", url), f"placeholder or unknown link {url}"
    assert "{{" not in card.text and str(Path(directory).parent) not in card.text  # rendered; no machine paths
    return card


def _tiny_waypoint():
    from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel

    return WaypointVLMModel(WaypointVLMConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        head_hidden_sizes=[16]))


def test_write_model_card_metadata_base_model_and_links(tmp_path):
    model = _tiny_waypoint()
    local_base = tmp_path / "my-local-tower"
    local_base.mkdir()
    path = write_model_card(
        tmp_path / "run", model, family="waypoint_vlm", vision_state="frozen",
        metrics={"ade": 0.5, "fde": 1.25, "protocol": "ignored: protocol given", "note": "text", "bad": float("nan")},
        baselines={"constant velocity": {"ade": 2.0, "fde": 4.0}}, protocol="ADE/FDE in m, 16 held-out samples",
        train_data="synthetic:64", eval_data="synthetic:16:1",
        base_model=["HuggingFaceTB/SmolVLM-Base", str(local_base)], datasets=["synthetic:64"])
    assert path == tmp_path / "run" / "README.md"
    card = check_card(tmp_path / "run", "waypoint_vlm")
    assert card.data.base_model == "HuggingFaceTB/SmolVLM-Base"  # the local directory is no Hub id
    assert "`my-local-tower` (a local model directory)" in card.text
    assert card.data.metrics == ["ade", "fde"]  # numbers only; NaN and text dropped
    assert card.data.to_dict()["metrics_protocol"] == "ADE/FDE in m, 16 held-out samples"
    assert "| ade | 0.5 | 2 |" in card.text and "| metric | model | constant velocity |" in card.text
    assert 'from_pretrained("run")' in card.text  # the directory's name, not this machine's path
    pushed = render_model_card(model, family="waypoint_vlm", vision_state="frozen", repo_id="my-org/waypoint-tiny")
    assert 'from_pretrained("my-org/waypoint-tiny")' in pushed.text and pushed.data.model_name == "waypoint-tiny"
    with pytest.raises(ValueError, match="not a valid Hub repo id"):
        render_model_card(model, family="waypoint_vlm", repo_id="bad id/with space")


def test_family_without_template_gets_the_base_layout(tmp_path):
    write_model_card(tmp_path / "m", None, family="newfamily", metrics={"loss": 0.1}, protocol="train loss",
                     datasets=["d"], train_data="d")
    card = check_card(tmp_path / "m", "newfamily")
    assert "A `newfamily` model trained with hf_vlmdrive." in card.text


def test_train_waypoint_writes_a_card_with_the_baseline(tmp_path, cli):
    import yaml

    cfg = dict(model_config=dict(vision_config=dict(model_type="siglip_vision_model", hidden_size=32,
                                                    intermediate_size=64, num_hidden_layers=1,
                                                    num_attention_heads=2, image_size=32, patch_size=8),
                                 head_hidden_sizes=[32]),
               train_data="synthetic:16", eval_data="synthetic:8:1", image_width=48, image_height=32,
               output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, per_device_eval_batch_size=8,
               max_steps=2, save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert cli("train", "waypoint", "--config", tmp_path / "cfg.yaml") == 0
    card = check_card(tmp_path / "run", "waypoint_vlm")
    assert "ade" in card.data.metrics and "| metric | model | constant velocity |" in card.text
    saved = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert f"{saved['model']['ade']:.3f}" in card.text


def test_train_simlingo_writes_a_card(tmp_path, cli):
    out = tmp_path / "run"
    assert cli("train", "simlingo", "--output_dir", out, "--synthetic_train_routes", 1, "--synthetic_eval_routes", 1,
               "--synthetic_frames_per_route", 5, "--image_width", 32, "--image_height", 16,
               "--model_config.vision_config.image_size", 16, "--model_config.vision_config.hidden_size", 32, "--max_steps", 1, "--per_device_train_batch_size", 2, "--report_to",
               "none", "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true", "--num_plot_samples",
               1, "--skip_first_frames", 0, "--require_full_future", "false") == 0
    card = check_card(out, "simlingo")
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"route_ade", "speed_wps_fde"} <= set(card.data.metrics)
    assert f"{metrics['route']['straight_line']['ade']:.4g}" in card.text  # the baseline column


def test_train_geovla_writes_a_card(tmp_path):
    from hf_vlmdrive.data.lerobot import make_synthetic_libero
    from hf_vlmdrive.trainers.geovla_config import GeoVLAScriptArguments, GeoVLATrainingArguments
    from hf_vlmdrive.trainers.geovla_recipe import train_geovla

    make_synthetic_libero(tmp_path / "data", num_episodes=1, episode_length=4, image_size=32, seed=0)
    script = GeoVLAScriptArguments(
        dataset_root=str(tmp_path / "data"), vlm_name_or_path="tiny-random", geometry_name_or_path="tiny-random",
        model_config={"geometry_config": {"num_layers": 1, "num_heads": 2, "output_size": 48},
                      "num_geometry_tokens": 4, "dit_num_layers": 2, "dit_hidden_size": 32, "dit_num_heads": 2})
    args = GeoVLATrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, save_strategy="no", logging_steps=1,
                                   per_device_train_batch_size=2, report_to="none", use_cpu=True, disable_tqdm=True)
    train_geovla(script, args)
    card = check_card(tmp_path / "run", "geovla")
    assert card.data.metrics == ["train_loss_first", "train_loss_last"] and card.data.base_model is None
    assert "norm_stats.json" in card.text


def test_sft_roadscene_writes_a_card(tmp_path, cli):
    from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene
    from hf_vlmdrive.testing.tiny_smolvlm import build_tiny_smolvlm

    paths = write_synthetic_roadscene(tmp_path / "data", num_samples=4, image_size=32)
    build_tiny_smolvlm(tmp_path / "tiny-smolvlm2")
    assert cli("sft", "roadscene", "--model", tmp_path / "tiny-smolvlm2", "--train_file", paths["bvpi_sft"],
               "--output_dir", tmp_path / "sft", "--max_steps", "2", "--per_device_train_batch_size", "2",
               "--logging_steps", "1", "--report_to", "none", "--use_cpu", "true", "--gradient_checkpointing",
               "false", "--save_strategy", "no", "--load_in_4bit", "false") == 0
    card = check_card(tmp_path / "sft", "roadscene")
    assert card.data.base_model is None and "`tiny-smolvlm2` (a local model directory)" in card.text
    assert "PeftModel.from_pretrained(model, \"sft\")" in card.text and "r=16, alpha=32 on q_proj, v_proj" in card.text
