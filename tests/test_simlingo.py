"""SimLingo-base: shapes in every mode, cumsum semantics, masked loss, parameter groups, save/load, training."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel, LlavaNextConfig, LlavaNextForConditionalGeneration

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.models.simlingo import (
    SimLingoConfig,
    SimLingoForWaypointPrediction,
    lm_preset,
    masked_waypoint_loss,
)
from hf_vlmdrive.models.simlingo.modeling_simlingo import cumulative_distance, place_along_path
from hf_vlmdrive.trainers.simlingo_config import SimLingoTrainingArguments
from hf_vlmdrive.trainers.simlingo_trainer import SimLingoTrainer, simlingo_parameter_groups

VISION = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 2, "image_size": 16, "patch_size": 4}
TEXT = {"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "hidden_size": 32,
        "intermediate_size": 64}


def make_config(**kw) -> SimLingoConfig:
    kw.setdefault("vision_config", VISION)
    kw.setdefault("text_config", TEXT)
    kw.setdefault("head_hidden_size", 16)
    kw.setdefault("encoder_hidden_size", 16)
    return SimLingoConfig(**kw)


def make_inputs(b=2, t=1, n=1, h=16, w=32, route_as="target_point", k=2):
    inputs = {
        "pixel_values": torch.randint(0, 256, (b, t, n, 3, h, w), dtype=torch.uint8),
        "speed": torch.rand(b, 1) * 10,
        "intrinsics": torch.eye(3).expand(b, n, 3, 3).clone(),
        "extrinsics": torch.eye(4).expand(b, n, 4, 4).clone(),
    }
    if route_as == "target_point":
        inputs["target_point"] = torch.randn(b, 2) * 10
    elif route_as == "coords":
        inputs["route_coords"] = torch.randn(b, k, 2) * 10
    else:
        inputs["route_image"] = torch.randint(0, 256, (b, 3, 32, 32), dtype=torch.uint8)
    return inputs


@pytest.mark.parametrize(
    "mode,route_as,t,n",
    [("2d", "target_point", 1, 1), ("1d", "target_point", 1, 1), ("2d", "image", 1, 1), ("2d", "coords", 1, 1),
     ("2d", "target_point", 2, 1), ("2d", "target_point", 1, 3), ("1d", "image", 2, 2)],
)
def test_shapes_every_mode(mode, route_as, t, n):
    config = make_config(speed_wps_mode=mode, route_as=route_as, num_frames=t, num_cameras=n)
    model = SimLingoForWaypointPrediction(config)
    out = model(**make_inputs(b=2, t=t, n=n, route_as=route_as),
                speed_wps_labels=torch.randn(2, 10, 2), route_labels=torch.randn(2, 20, 2))
    assert out.speed_wps.shape == (2, 10, 2)
    assert out.route.shape == (2, 20, 2)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert torch.allclose(out.loss, out.speed_wps_loss + out.route_loss)
    if mode == "1d":
        assert out.speed_distances.shape == (2, 10)
    # Sequence: T*N*tokens_per_image vision tokens; each tile 16px / patch 4 = 4x4 -> pooled 2x2; 2 tiles.
    assert config.tokens_per_image == 8
    out.loss.backward()
    assert model.vision_projection.weight.grad is not None and model.speed_queries.grad is not None


def test_no_token_embeddings_and_presets():
    model = SimLingoForWaypointPrediction(make_config())
    assert model.language_model.embed_tokens is None
    assert model.get_input_embeddings() is None
    tiny = lm_preset("tiny")
    assert (tiny["num_hidden_layers"], tiny["num_attention_heads"], tiny["hidden_size"], tiny["intermediate_size"]) == (
        12, 8, 512, 2048)
    with pytest.raises(ValueError, match="preset"):
        lm_preset("huge")


def test_cumsum_semantics_deltas_to_absolute():
    model = SimLingoForWaypointPrediction(make_config()).eval()
    # Make every head emit a constant delta: zero the last layer's weight and set its bias.
    with torch.no_grad():
        model.speed_head[-1].weight.zero_()
        model.speed_head[-1].bias.copy_(torch.tensor([1.5, -0.5]))
        model.route_head[-1].weight.zero_()
        model.route_head[-1].bias.copy_(torch.tensor([1.0, 0.25]))
    out = model(**make_inputs())
    steps = torch.arange(1, 11, dtype=torch.float32)[:, None]
    assert torch.allclose(out.speed_wps[0], steps * torch.tensor([1.5, -0.5]))
    assert torch.allclose(out.route[1], torch.arange(1, 21, dtype=torch.float32)[:, None] * torch.tensor([1.0, 0.25]))


def test_1d_mode_places_distances_on_route():
    model = SimLingoForWaypointPrediction(make_config(speed_wps_mode="1d")).eval()
    with torch.no_grad():
        model.speed_head[-1].weight.zero_()
        model.speed_head[-1].bias.fill_(2.0)  # 2 m per step
        model.route_head[-1].weight.zero_()
        model.route_head[-1].bias.copy_(torch.tensor([1.0, 0.0]))  # route straight ahead, 1 m apart
    out = model(**make_inputs())
    assert torch.allclose(out.speed_distances[0], 2.0 * torch.arange(1, 11, dtype=torch.float32))
    expected = torch.stack([2.0 * torch.arange(1, 11, dtype=torch.float32), torch.zeros(10)], -1)
    assert torch.allclose(out.speed_wps[0], expected, atol=1e-5)
    # Geometry helpers: distance along a right-angle path.
    path = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [2.0, 1.0], [2.0, 2.0]]])
    assert torch.allclose(place_along_path(path, torch.tensor([[1.5, 3.0]])), torch.tensor([[[1.5, 0.0], [2.0, 1.0]]]))
    assert torch.allclose(cumulative_distance(path), torch.tensor([[1.0, 2.0, 3.0, 4.0]]))


def test_masked_loss_ignores_invalid_samples_and_points():
    pred = torch.zeros(3, 4, 2)
    target = torch.zeros(3, 4, 2)
    target[1] = 100.0  # an invalid sample with a huge error
    target[2, 3] = 2.0  # a masked point
    sample_mask = torch.tensor([True, False, True])
    assert masked_waypoint_loss(pred, target, sample_mask).item() == pytest.approx((0 + 8 / 4) / 2)  # sample 2: 8 at one of 4 points
    point_mask = torch.ones(3, 4, dtype=torch.bool)
    point_mask[1] = False
    point_mask[2, 3] = False
    assert masked_waypoint_loss(pred, target, point_mask).item() == pytest.approx(0.0)
    # MSE summed over x,y and averaged over time, per sample, then over samples.
    target2 = torch.zeros(2, 2, 2)
    target2[0, 0] = torch.tensor([1.0, 2.0])
    assert masked_waypoint_loss(torch.zeros(2, 2, 2), target2).item() == pytest.approx((5 / 2) / 2)
    # No valid sample: 0, but still differentiable.
    p = torch.ones(2, 4, 2, requires_grad=True)
    loss = masked_waypoint_loss(p, target[:2], torch.tensor([False, False]))
    loss.backward()
    assert loss.item() == 0.0 and p.grad is not None


def test_model_loss_respects_masks():
    model = SimLingoForWaypointPrediction(make_config()).eval()
    inputs = make_inputs(b=2)
    labels = torch.zeros(2, 10, 2)
    out = model(**inputs, speed_wps_labels=labels, route_labels=torch.zeros(2, 20, 2),
                speed_wps_mask=torch.tensor([True, False]), route_mask=torch.tensor([True, False]))
    garbage = labels.clone()
    garbage[1] = 1e4
    out2 = model(**inputs, speed_wps_labels=garbage, route_labels=torch.zeros(2, 20, 2),
                 speed_wps_mask=torch.tensor([True, False]), route_mask=torch.tensor([True, False]))
    assert torch.allclose(out.loss, out2.loss)


def test_config_validation_names_field():
    with pytest.raises(ValueError, match="speed_wps_mode"):
        make_config(speed_wps_mode="3d")
    with pytest.raises(ValueError, match="route_as"):
        make_config(route_as="text")
    with pytest.raises(ValueError, match="image_grid_pinpoint"):
        make_config(image_grid_pinpoint=[16, 20])
    with pytest.raises(ValueError, match="feature_downsample"):
        make_config(feature_downsample=3)
    model = SimLingoForWaypointPrediction(make_config())
    with pytest.raises(ValueError, match="target_point"):
        model(pixel_values=torch.zeros(1, 1, 1, 3, 16, 32, dtype=torch.uint8), speed=torch.zeros(1, 1))
    with pytest.raises(ValueError, match="num_cameras"):
        model(**make_inputs(n=2))


def test_save_load_round_trip(tmp_path):
    model = SimLingoForWaypointPrediction(make_config(route_as="image", speed_wps_mode="1d", freeze_vision=True))
    model.eval()
    inputs = make_inputs(route_as="image")
    expected = model(**inputs)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "simlingo"
    assert isinstance(AutoConfig.from_pretrained(tmp_path), SimLingoConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SimLingoForWaypointPrediction)
    got = loaded(**inputs)
    assert torch.equal(expected.route, got.route) and torch.equal(expected.speed_wps, got.speed_wps)
    assert loaded.vision_is_frozen and loaded.config.route_as == "image"


def test_from_backbone_takes_only_the_vision_tower(tmp_path):
    llava_cfg = LlavaNextConfig(
        vision_config=VISION,
        text_config={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 64},
        image_grid_pinpoints=[[16, 32]], image_token_index=63, vision_feature_layer=-1,
    )
    source = LlavaNextForConditionalGeneration(llava_cfg)
    source.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    model = SimLingoForWaypointPrediction.from_backbone(
        str(tmp_path), lm_size="micro", head_hidden_size=16, encoder_hidden_size=16, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    model = model.float()
    with pytest.warns(FutureWarning, match="from_backbone"):  # the old name, kept for one release
        old = SimLingoForWaypointPrediction.from_llava_next(str(tmp_path), lm_size="micro", head_hidden_size=16,
                                                            encoder_hidden_size=16)
    assert torch.equal(old.vision_model.embeddings.patch_embedding.weight,
                       model.vision_model.embeddings.patch_embedding.weight)
    src_state = source.model.vision_tower.state_dict()
    for key, value in model.vision_model.state_dict().items():
        if not key.endswith("position_ids"):
            assert torch.equal(value, src_state[key]), key
    assert model.config.text_config.num_hidden_layers == 2 and model.config.hidden_size == 64  # the micro preset
    assert model.config.vision_feature_layer == -1 and model.config.image_mean == [0.5] * 3
    assert model.config.backbone_name_or_path == str(tmp_path)
    assert not any("multi_modal_projector" in k or "lm_head" in k for k in model.state_dict())
    out = model(**make_inputs())
    assert out.route.shape == (2, 20, 2)


def test_parameter_groups_get_configured_lrs(tmp_path):
    model = SimLingoForWaypointPrediction(make_config())
    args = SimLingoTrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, vision_learning_rate=1e-4,
                                     weight_decay=0.1, report_to="none", max_steps=20)
    trainer = SimLingoTrainer(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=20)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert set(groups) == {"vision", "vision_no_decay", "base", "base_no_decay"}
    assert groups["vision"]["max_lr"] == 1e-4 and groups["vision_no_decay"]["max_lr"] == 1e-4
    assert groups["base"]["max_lr"] == 1e-3 and groups["base_no_decay"]["max_lr"] == 1e-3
    assert groups["base"]["weight_decay"] == 0.1 and groups["base_no_decay"]["weight_decay"] == 0.0
    assert groups["vision"]["weight_decay"] == 0.1 and groups["vision_no_decay"]["weight_decay"] == 0.0
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert id(model.vision_projection.weight) in ids["base"]
    assert id(model.speed_queries) in ids["base_no_decay"] and id(model.camera_embedding) in ids["base_no_decay"]
    assert id(model.language_model.norm.weight) in ids["base_no_decay"]
    assert id(model.speed_head[0].bias) in ids["base_no_decay"]
    assert id(model.vision_model.encoder.layers[0].mlp.fc1.weight) in ids["vision"]
    assert id(model.vision_model.post_layernorm.weight) in ids["vision_no_decay"]
    assert sum(len(v) for v in ids.values()) == sum(1 for p in model.parameters() if p.requires_grad)
    assert trainer.optimizer.defaults["betas"] == (0.9, 0.999)
    # OneCycleLR: starts at lr/div_factor, peaks at lr after 5 % warm-up (1 of 20 steps), stepped per step.
    sched = trainer.lr_scheduler
    assert isinstance(sched, torch.optim.lr_scheduler.OneCycleLR)
    assert groups["base"]["lr"] == pytest.approx(1e-3 / 25)
    trainer.optimizer.step()
    sched.step()
    assert groups["base"]["lr"] == pytest.approx(1e-3) and groups["vision"]["lr"] == pytest.approx(1e-4)
    # Frozen tower: its parameters are left out.
    frozen = SimLingoForWaypointPrediction(make_config(freeze_vision=True))
    names = [g["name"] for g in simlingo_parameter_groups(frozen, 1e-3, 1e-4)]
    assert names == ["base", "base_no_decay"]


def test_short_training_run_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    model = SimLingoForWaypointPrediction(make_config())
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(16):
        speed = torch.rand(1, generator=g) * 10
        steps = torch.arange(1, 11, dtype=torch.float32)
        rows.append({
            "pixel_values": torch.randint(0, 256, (1, 1, 3, 16, 32), dtype=torch.uint8, generator=g),
            "speed": speed,
            "target_point": torch.randn(2, generator=g) * 5,
            "speed_wps_labels": torch.stack([speed * steps / 4, torch.zeros(10)], -1),
            "route_labels": torch.stack([torch.arange(20, dtype=torch.float32), torch.zeros(20)], -1),
        })

    def collate(batch):
        return {k: torch.stack([r[k] for r in batch]) for k in batch[0]}

    def loss_of() -> float:
        model.eval()
        with torch.no_grad():
            return float(model(**collate(rows)).loss)

    before = loss_of()
    args = SimLingoTrainingArguments(output_dir=str(tmp_path), learning_rate=3e-3, vision_learning_rate=1e-3,
                                     per_device_train_batch_size=8, max_steps=40, report_to="none",
                                     save_strategy="no", logging_steps=10, disable_tqdm=True, use_cpu=True)
    SimLingoTrainer(model=model, args=args, train_dataset=rows, data_collator=collate).train()
    after = loss_of()
    assert after < 0.5 * before, (before, after)
