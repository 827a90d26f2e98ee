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
