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
    kw.setdefault("projector_hidden_size", 48)
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
    # 16x32 frames: 12 rows after the 4.8/16 cut, padded into the 16x32 pinpoint; 4x8 patch grid, unpadded
    # (no padding rows at this size), pooled to 2x4, plus one newline per row: 2 * 5 tokens.
    assert config.tokens_for_image(16, 32) == 10
    assert make_config(vision_adapter="linear").tokens_for_image(16, 32) == 8  # SPEC: 2 tiles x 2x2
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
    model = SimLingoForWaypointPrediction(make_config(head_bias=True)).eval()
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
    model = SimLingoForWaypointPrediction(make_config(speed_wps_mode="1d", head_bias=True)).eval()
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
    src_state = source.model.vision_tower.state_dict()
    for key, value in model.vision_model.state_dict().items():
        if not key.endswith("position_ids"):
            assert torch.equal(value, src_state[key]), key
    assert model.config.text_config.num_hidden_layers == 2 and model.config.hidden_size == 64  # the micro preset
    assert model.config.vision_feature_layer == -1 and model.config.image_mean == [0.5] * 3
    assert model.config.backbone_name_or_path == str(tmp_path)
    assert not any("lm_head" in k or "language_model.embed" in k for k in model.state_dict())
    # The released simlingo_base keeps LLaVA-NeXT's projector and image_newline (llavanext_model.py:87,133).
    src_proj = source.model.multi_modal_projector.state_dict()
    for key, value in model.multi_modal_projector.state_dict().items():
        assert torch.equal(value, src_proj[key]), key
    assert torch.equal(model.image_newline, source.model.image_newline)
    assert model.config.projector_hidden_size == 32 and model.vision_projection.bias is not None
    out = model(**make_inputs())
    assert out.route.shape == (2, 20, 2)
    linear = SimLingoForWaypointPrediction.from_backbone(str(tmp_path), lm_size="micro", vision_adapter="linear")
    assert not any("multi_modal_projector" in k for k in linear.state_dict())


def test_parameter_groups_get_configured_lrs(tmp_path):
    model = SimLingoForWaypointPrediction(make_config())
    args = SimLingoTrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, vision_learning_rate=1e-4,
                                     weight_decay=0.1, report_to="none", max_steps=20)
    trainer = SimLingoTrainer(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=20)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert set(groups) == {"vision", "vision_no_decay", "route_head", "route_head_no_decay", "base", "base_no_decay"}
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
    assert names == ["route_head", "route_head_no_decay", "base", "base_no_decay"]


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


# ------------------------------------------------------------------ issue 14: the released simlingo_base
def test_heads_match_released_simlingo_base():
    # simlingo_base_training/models/adaptors/adaptors.py:105-107 (route) and 122-124 (speed):
    #   nn.Sequential(nn.Linear(hidden_size, mlp_dim), nn.SiLU(True), nn.Linear(mlp_dim, dim, bias=False))
    model = SimLingoForWaypointPrediction(make_config())
    for head, out in ((model.speed_head, 2), (model.route_head, 2)):
        kinds = [type(m) for m in head]
        assert kinds == [torch.nn.Linear, torch.nn.SiLU, torch.nn.Linear]
        assert head[0].in_features == 32 and head[0].out_features == 16 and head[0].bias is not None
        assert head[2].out_features == out and head[2].bias is None
    # SPEC 1.2's variant stays reachable: 3-layer route head, final biases.
    spec = SimLingoForWaypointPrediction(make_config(route_head_layers=3, head_bias=True))
    assert [m.out_features for m in spec.route_head if isinstance(m, torch.nn.Linear)] == [32, 16, 2]
    assert spec.route_head[-1].bias is not None and spec.speed_head[-1].bias is not None
    with pytest.raises(Exception, match="route_head_layers"):
        make_config(route_head_layers=4)


def test_heads_and_encoders_keep_pytorch_default_init():
    # The released DrivingModel / DrivingAdaptor / VectorInputAdaptor / WaypointInputAdaptor
    # (simlingo_base_training/models/driving.py:79-116, adaptors.py:34,73,105-124) build plain nn.Linear
    # layers and never re-initialise them: kaiming-uniform weights in +-1/sqrt(fan_in), uniform biases.
    torch.manual_seed(0)
    config = make_config(text_config={**TEXT, "hidden_size": 256, "num_attention_heads": 4,
                                      "num_key_value_heads": 4}, head_hidden_size=256, encoder_hidden_size=256)
    model = SimLingoForWaypointPrediction(config)
    for layer in (model.speed_head[0], model.route_head[0], model.speed_encoder.net[2], model.route_encoder.net[2],
                  model.vision_projection):
        bound = 1.0 / layer.in_features ** 0.5
        w = layer.weight.detach()
        assert w.abs().max() <= bound + 1e-6
        assert abs(w.std().item() - bound / 3 ** 0.5) < 0.1 * bound  # uniform(-b, b) has std b / sqrt(3)
        if layer.bias is not None:
            assert layer.bias.detach().abs().max() > 0  # not zeroed
    # SPEC's variant: normal(0, initializer_range), zero biases.
    spec = SimLingoForWaypointPrediction(make_config(init_style="normal"))
    assert torch.all(spec.speed_head[0].bias == 0)
    assert abs(spec.route_head[0].weight.std().item() - 0.02) < 0.005
    # A saved model reloads its (default-initialised) heads exactly.
    assert SimLingoConfig(**model.config.to_dict()).init_style == "torch_default"


def test_target_point_mode_feeds_two_tokens():
    # simlingo_base_training/dataloader/dataset_base.py:400-402: `tp = [target_point, next_target_point];
    # data['map_route'] = tp`; models/driving.py:101-110 and 185: route_as 'target_point' ->
    # WaypointInputAdaptor over map_route (B, 2, 2): two route tokens, one per target point.
    torch.manual_seed(0)
    model = SimLingoForWaypointPrediction(make_config()).eval()
    assert model.config.num_target_points == 2
    tp, nxt = torch.randn(2, 2) * 10, torch.randn(2, 2) * 10
    tokens = model.encode_route(target_point=tp, target_point_next=nxt)
    assert tokens.shape == (2, 2, 32)
    same = model.encode_route(route_coords=None, target_point=nxt)
    assert torch.allclose(tokens[:, 1], same[:, 0])  # the same MLP on each point
    inputs = make_inputs()
    a = model(**inputs, target_point_next=nxt).speed_wps
    b = model(**inputs, target_point_next=-nxt).speed_wps
    assert not torch.allclose(a, b)  # the second target point reaches the output
    # Without target_point_next the target point is repeated (as SimLingoProcessor does).
    assert torch.allclose(model(**inputs).speed_wps, model(**inputs, target_point_next=inputs["target_point"]).speed_wps)
    # SPEC 1.2's variant: one token.
    one = SimLingoForWaypointPrediction(make_config(num_target_points=1))
    assert one.encode_route(target_point=tp).shape == (2, 1, 32)
    # The processor and the CARLA collator carry target_point_next.
    from hf_vlmdrive.models.simlingo.processing_simlingo import SimLingoProcessor

    feats = SimLingoProcessor(image_size=[32, 16])(
        [[torch.zeros(16, 32, 3, dtype=torch.uint8).numpy()]] * 2, speed=[1.0, 2.0], target_point=tp.tolist(),
        target_point_next=nxt.tolist())
    assert torch.allclose(feats["target_point_next"], nxt)


def test_optimiser_exempts_route_head_and_cycles_momentum(tmp_path):
    # simlingo_base_training/models/utils.py:25-41,57-63: any parameter whose name contains "route_head"
    # (black_list_weight_names) gets weight_decay 0.0; "speed_wps_head" is not listed and decays.
    # models/driving.py:290-292: OneCycleLR(optimizer, max_lr, total_steps, pct_start) with torch's default
    # cycle_momentum=True (base_momentum 0.85, max_momentum 0.95), i.e. AdamW's beta1 cycles.
    model = SimLingoForWaypointPrediction(make_config())
    args = SimLingoTrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, report_to="none", max_steps=20)
    trainer = SimLingoTrainer(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=20)
    decay_of = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    for p in model.route_head.parameters():
        assert decay_of[id(p)] == 0.0
    assert decay_of[id(model.speed_head[0].weight)] == 0.1 and decay_of[id(model.speed_head[2].weight)] == 0.1
    group = trainer.optimizer.param_groups[0]
    assert group["betas"][0] == pytest.approx(0.95)  # max_momentum at the start
    trainer.optimizer.step()
    trainer.lr_scheduler.step()  # peak learning rate after the 1-step warm-up: base_momentum
    assert group["betas"][0] == pytest.approx(0.85)
    # SPEC 1.2's variants: the route head decays, momentum stays.
    args = SimLingoTrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, report_to="none", max_steps=20,
                                     decay_route_head=True, cycle_momentum=False)
    trainer = SimLingoTrainer(model=SimLingoForWaypointPrediction(make_config()), args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=20)
    decay_of = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert decay_of[id(trainer.model.route_head[0].weight)] == 0.1
    assert "route_head" not in {g["name"] for g in trainer.optimizer.param_groups}
    assert trainer.optimizer.param_groups[0]["betas"] == (0.9, 0.999)


def test_route_image_encoder_is_pooled_resnet18_with_loadable_weights(tmp_path):
    # simlingo_base_training/models/driving.py:21-29 (RouteEncode): resnet18(ResNet18_Weights.IMAGENET1K_V1),
    # backbone.fc = nn.Linear(512, out_channels); forward: backbone(route / 128.0 - 1.0).unsqueeze(-2): one token.
    from torchvision.models import resnet18

    torch.manual_seed(0)
    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = SimLingoForWaypointPrediction(make_config(route_as="image", route_image_weights=str(tmp_path / "resnet18.pth")))
    enc = model.route_encoder
    assert enc.weights_source == f"file {tmp_path / 'resnet18.pth'}"
    assert torch.equal(enc.backbone.conv1.weight, reference.conv1.weight)
    assert torch.equal(enc.backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert isinstance(enc.backbone.fc, torch.nn.Linear) and enc.backbone.fc.in_features == 512
    assert enc.backbone.fc.out_features == 32
    image = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    enc.eval()
    reference.fc = enc.backbone.fc
    reference.eval()
    assert torch.allclose(enc(image), reference(image.float() / 128.0 - 1.0)[:, None], atol=1e-5)
    assert enc(image).shape == (2, 1, 32)
    # Offline and uncached, "imagenet" says it fell back to a random init; SPEC's grid variant keeps h*w tokens.
    offline = SimLingoForWaypointPrediction(make_config(route_as="image"))
    assert offline.route_encoder.weights_source.startswith(("random init", "torchvision"))
    grid = SimLingoForWaypointPrediction(make_config(route_as="image", route_image_tokens="grid",
                                                     route_image_weights=str(tmp_path / "resnet18.pth")))
    assert torch.equal(grid.route_encoder.backbone[0].weight, reference.conv1.weight)
    assert grid.route_encoder(image).shape == (2, 4, 32)  # 64 px / 32 = 2x2 cells
    with pytest.raises(Exception, match="route_image_weights"):
        SimLingoForWaypointPrediction(make_config(route_as="image", route_image_weights=str(tmp_path / "nope.pth")))
    # from_pretrained restores the encoder from the checkpoint (no weights are fetched on load).
    model.save_pretrained(tmp_path / "ckpt")
    again = SimLingoForWaypointPrediction.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(again.route_encoder.backbone.conv1.weight, enc.backbone.conv1.weight)
    assert torch.equal(again.route_encoder.backbone.fc.bias, enc.backbone.fc.bias)


def _released_forward_image(llava, pixel_values, image_sizes, factor):
    """simlingo_base_training/models/encoder/llavanext_model.py:65-148 (use_global_img=False), ported as is."""
    import torch.nn.functional as F
    from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape, unpad_image

    cfg = llava.config
    batch_size, num_frames, num_cams, num_patches, num_channels, height, width = pixel_values.shape
    reshaped = pixel_values.reshape(batch_size * num_frames * num_cams * num_patches, num_channels, height, width)
    feats = llava.model.vision_tower(pixel_values=reshaped, output_hidden_states=True)
    selected = feats.hidden_states[cfg.vision_feature_layer][:, 1:]
    image_features = llava.model.multi_modal_projector(selected)
    image_features = list(image_features.view(batch_size * num_frames * num_cams, num_patches,
                                              image_features.shape[-2], image_features.shape[-1]))
    height = width = cfg.vision_config.image_size // cfg.vision_config.patch_size
    out = []
    for idx, f in enumerate(image_features):
        nph, npw = get_anyres_image_grid_shape(image_sizes[idx], cfg.image_grid_pinpoints, cfg.vision_config.image_size)
        f = f.view(nph, npw, height, width, -1).permute(4, 0, 2, 1, 3).contiguous().flatten(1, 2).flatten(2, 3)
        f = unpad_image(f, image_sizes[idx])
        f = F.avg_pool2d(f.unsqueeze(0), factor).squeeze(0)
        f = torch.cat((f, llava.model.image_newline[:, None, None].expand(*f.shape[:-1], 1)), dim=-1)
        out.append(f.flatten(1, 2).transpose(0, 1))
    return torch.stack(out, dim=0)


def test_vision_path_matches_released_llava_next_encoder(tmp_path):
    # Reference: llavanext.py:24-30,59-60 (LLaVA-NeXT's tower + multi_modal_projector, unpad_image, pool /2,
    # image_newline per row, then nn.Linear(4096, 512) with bias); dataset_base.py:375-378 (bottom 4.8/16
    # cut); datamodule.py:176-182 (LlavaNextImageProcessor, image_grid_pinpoints [[336, 672]], global tile
    # dropped).
    from transformers import LlavaNextImageProcessor

    torch.manual_seed(0)
    llava_cfg = LlavaNextConfig(
        vision_config=VISION,
        text_config={"model_type": "llama", "hidden_size": 40, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 64},
        image_grid_pinpoints=[[16, 32]], image_token_index=63, vision_feature_layer=-2,
    )
    source = LlavaNextForConditionalGeneration(llava_cfg).eval()
    source.save_pretrained(tmp_path)
    model = SimLingoForWaypointPrediction.from_backbone(str(tmp_path), lm_size="micro", head_hidden_size=16,
                                                        encoder_hidden_size=16).eval()
    cfg = model.config
    frame = torch.randint(0, 256, (1, 1, 1, 3, 64, 128), dtype=torch.uint8)
    kept = cfg.cropped_height(64)
    assert kept == int(64 - (64 * 4.8) // 16) == 45
    processor = LlavaNextImageProcessor(image_grid_pinpoints=[[16, 32]], size={"shortest_edge": 16},
                                        crop_size={"height": 16, "width": 16}, image_mean=cfg.image_mean,
                                        image_std=cfg.image_std)
    processed = processor([frame[0, 0, 0, :, :kept].numpy()], return_tensors="pt")
    tiles = processed["pixel_values"][:, 1:]  # the global tile is dropped
    assert processed["image_sizes"].tolist() == [[45, 128]]
    # Our preprocessing: crop, aspect-keeping bicubic resize, zero pad, normalise, tiles (close to PIL's bicubic).
    from hf_vlmdrive.models.simlingo.modeling_simlingo import llava_next_resize_pad

    x = frame[0, 0].float()[:, :, :kept]
    x = llava_next_resize_pad(x, tuple(cfg.image_grid_pinpoint), cfg.resized_size(45, 128)) / 255.0
    mean, std = torch.tensor(cfg.image_mean).view(1, 3, 1, 1), torch.tensor(cfg.image_std).view(1, 3, 1, 1)
    x = (x - mean) / std
    ours = x.reshape(1, 3, 1, 16, 2, 16).permute(0, 2, 4, 1, 3, 5).reshape(2, 3, 16, 16)
    assert cfg.resized_size(45, 128) == (12, 32)
    assert (ours - tiles[0]).abs().mean() < 0.05  # resampling kernels differ slightly (documented)
    # The token path on the same tiles: exactly the released forward_image, then Linear(P, H) with bias.
    with torch.no_grad():
        ref = model.vision_projection(_released_forward_image(source, tiles[:, None, None], [[45, 128]], 2))
        feats = model.vision_model(pixel_values=tiles[0], output_hidden_states=True).hidden_states[-2][:, 1:]
        mine = model._llava_next_tokens(feats, 1, 2, 4, 45, 128)
    assert mine.shape == ref.shape == (1, cfg.tokens_for_image(64, 128), 64)
    assert torch.allclose(mine, ref, atol=1e-5)
    assert model.encode_images(frame).shape == (1, cfg.tokens_for_image(64, 128), 64)


def test_tokens_per_image_is_200_for_a_1024x512_frame():
    # LLaVA-NeXT tower (336 px tiles, patch 14), pinpoint [336, 672], pool 2: 359 rows kept of 512, resized
    # to 236x672 and padded; the 24x48 grid unpads to 16x48, pools to 8x24, plus 8 newlines = 200.
    config = SimLingoConfig(text_config=lm_preset("micro"))
    assert config.camera_image_size == [1024, 512] and config.tokens_per_image == 200
    assert config.resized_size(config.cropped_height(512), 1024) == (236, 672)
    assert SimLingoConfig(text_config=lm_preset("micro"), vision_adapter="linear",
                          crop_bottom_sixteenths=0).tokens_per_image == 288  # SPEC 1.2's variant
