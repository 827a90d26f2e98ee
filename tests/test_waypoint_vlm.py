"""waypoint_vlm: config validation, shapes, freezing, Auto round trip, backbones, input errors."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel

TINY_SIGLIP = dict(
    model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=2, image_size=32, patch_size=8,
)
TINY_TOWERS = {
    "siglip": TINY_SIGLIP,
    "idefics3": dict(model_type="idefics3_vision", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=2, image_size=32, patch_size=8),
    "smolvlm": dict(model_type="smolvlm_vision", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, image_size=32, patch_size=8),
    "clip": dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, image_size=32, patch_size=8, projection_dim=16),
    "dinov2": dict(model_type="dinov2", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, image_size=32, patch_size=8, mlp_ratio=2),
}


def tiny_config(**kwargs) -> WaypointVLMConfig:
    kwargs.setdefault("vision_config", TINY_SIGLIP)
    kwargs.setdefault("head_hidden_sizes", [32, 32])
    return WaypointVLMConfig(**kwargs)


def inputs(batch=2, cameras=None, size=32):
    pixels = torch.randn(batch, 3, size, size) if cameras is None else torch.randn(batch, cameras, 3, size, size)
    return dict(pixel_values=pixels, past_states=torch.randn(batch, 16, 6), intent=torch.tensor([1, 3] * (batch // 2)))


def test_default_config_is_the_reference_system():
    config = WaypointVLMConfig()
    vision = config.vision_config  # HuggingFaceTB/SmolVLM-Base's tower, not transformers' generic defaults
    assert vision.model_type == "idefics3_vision"
    assert (vision.num_hidden_layers, vision.image_size, vision.patch_size) == (27, 384, 14)
    assert config.vision_hidden_size == 1152
    assert config.head_input_size == 1152 + 96 + 3 == 1251
    with torch.device("meta"):  # the reference model, built without weights
        model = WaypointVLMModel(config)
    tower = sum(p.numel() for p in model.vision_model.parameters())
    head = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("vision_model."))
    assert tower == 412_987_248  # SmolVLM-Base's vision tower
    assert head == 926_248  # the seed's MLP head ("about 0.9 M trainable parameters")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if not n.startswith("vision_model.")}  # frozen tower


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(pooling="max"), "pooling"),
        (dict(pooling="cls"), "pooling='cls'"),  # SigLIP has no class token
        (dict(loss_type="mae"), "loss_type"),
        (dict(num_waypoints=0), "num_waypoints"),
        (dict(num_cameras=-1), "num_cameras"),
        (dict(head_dropout=1.5), "head_dropout"),
        (dict(head_hidden_sizes=[]), "head_hidden_sizes"),
        (dict(pooling="attention", attention_pool_heads=5), "attention_pool_heads"),
        (dict(waypoint_scale=0), "waypoint_scale"),
        (dict(vision_config={"model_type": "not_a_model"}), "vision_config.model_type"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace("(", r"\(")):
        tiny_config(**kwargs)


@pytest.mark.parametrize(
    "tower, pooling",
    [(t, p) for t in sorted(TINY_TOWERS) for p in ("mean", "attention")] + [("clip", "cls"), ("dinov2", "cls")],
)
def test_forward_shapes_every_tower_and_pooling(tower, pooling):
    model = WaypointVLMModel(tiny_config(vision_config=TINY_TOWERS[tower], pooling=pooling, attention_pool_heads=2))
    out = model(**inputs(), labels=torch.randn(2, 20, 2), output_image_features=True)
    assert out.waypoints.shape == (2, 20, 2)
    assert out.image_features.shape == (2, 32)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)


def test_multi_camera_concatenates_features():
    model = WaypointVLMModel(tiny_config(num_cameras=3))
    out = model(**inputs(cameras=3), output_image_features=True)
    assert out.waypoints.shape == (2, 20, 2)
    assert out.image_features.shape == (2, 3 * 32)
    # Camera order matters: swapping two cameras changes the prediction.
    x = inputs(cameras=3)
    model.eval()
    a = model(**x).waypoints
    x["pixel_values"] = x["pixel_values"][:, [1, 0, 2]]
    assert not torch.allclose(a, model(**x).waypoints)


def test_image_features_path_matches_pixels_path():
    model = WaypointVLMModel(tiny_config()).eval()
    x = inputs()
    full = model(**x, output_image_features=True)
    again = model(image_features=full.image_features, past_states=x["past_states"], intent=x["intent"])
    torch.testing.assert_close(full.waypoints, again.waypoints)


@pytest.mark.parametrize("loss_type", ["mse", "l1", "huber"])
def test_losses_and_mask(loss_type):
    model = WaypointVLMModel(tiny_config(loss_type=loss_type, huber_delta=0.5))
    pred = torch.zeros(1, 20, 2)
    labels = torch.full((1, 20, 2), 2.0)
    expected = {"mse": 4.0, "l1": 2.0, "huber": 0.5 * (2.0 - 0.25)}[loss_type]
    assert model.waypoint_loss(pred, labels).item() == pytest.approx(expected)
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[0, :5] = True
    labels[0, 5:] = 100.0  # ignored points
    assert model.waypoint_loss(pred, labels, mask).item() == pytest.approx(expected)


def test_frozen_encoder_stays_frozen_and_in_eval_mode():
    model = WaypointVLMModel(tiny_config())
    model.train()
    assert model.vision_is_frozen
    assert not model.vision_model.training
    assert model.head.training
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)
    model.unfreeze_vision_model()
    assert not model.vision_is_frozen and model.vision_model.training


def test_auto_round_trip_is_exact(tmp_path):
    model = WaypointVLMModel(tiny_config(pooling="attention", attention_pool_heads=2)).eval()
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, WaypointVLMConfig) and config.pooling == "attention"
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is WaypointVLMModel
    assert loaded.vision_is_frozen  # freezing survives loading
    x = inputs()
    with torch.no_grad():
        assert torch.equal(model(**x).waypoints, loaded.eval()(**x).waypoints)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


@pytest.mark.parametrize("kind", ["smolvlm", "idefics3", "siglip", "clip", "dinov2"])
def test_from_backbone_takes_only_the_vision_tower(tmp_path, kind):
    """The same classmethod a user calls with a Hub id, on a local checkpoint of a tiny model."""
    from transformers import (
        CLIPConfig,
        CLIPModel,
        Dinov2Config,
        Dinov2Model,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        SiglipConfig,
        SiglipModel,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
    )

    vision = {k: v for k, v in TINY_TOWERS[kind].items() if k != "model_type"}
    text = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=2)
    if kind in ("smolvlm", "idefics3"):
        cfg_cls, model_cls = (
            (SmolVLMConfig, SmolVLMForConditionalGeneration) if kind == "smolvlm"
            else (Idefics3Config, Idefics3ForConditionalGeneration)
        )
        source = model_cls(cfg_cls(vision_config=vision, text_config={"model_type": "llama", **text}, scale_factor=2))
        source_tower = source.model.vision_model
    elif kind == "siglip":
        source = SiglipModel(SiglipConfig(vision_config=vision, text_config=dict(vocab_size=128, hidden_size=32,
                             intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)))
        source_tower = source.vision_model
    elif kind == "clip":
        source = CLIPModel(CLIPConfig(vision_config=vision, text_config=dict(vocab_size=128, hidden_size=32,
                           intermediate_size=64, num_hidden_layers=1, num_attention_heads=2), projection_dim=16))
        source_tower = source.vision_model
    else:
        source = Dinov2Model(Dinov2Config(**vision))
        source_tower = source
    source.save_pretrained(tmp_path)
    model = WaypointVLMModel.from_backbone(str(tmp_path), head_hidden_sizes=[32, 32])
    assert model.config.backbone_name_or_path == str(tmp_path)
    assert model.vision_is_frozen
    tower_state = model.vision_model.state_dict()
    for name, tensor in tower_state.items():
        if name.endswith("position_ids"):
            continue
        src = source_tower.state_dict()
        key = name if name in src else "vision_model." + name
        assert torch.equal(tensor, src[key]), name
    assert model(**inputs()).waypoints.shape == (2, 20, 2)


def test_from_backbone_errors_on_a_checkpoint_without_the_tower(tmp_path):
    from transformers import LlamaConfig, LlamaModel

    LlamaModel(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no vision tower"):
        WaypointVLMModel.from_backbone(str(tmp_path))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(pixel_values=torch.randn(2, 3, 16, 16)), r"`pixel_values` must have shape \(batch, 3, 32, 32\)"),
        (dict(pixel_values=torch.randn(2, 32, 32)), "`pixel_values` must have shape"),
        (dict(past_states=torch.randn(2, 10, 6)), r"`past_states` must have shape \(batch, 16, 6\)"),
        (dict(past_states=torch.randn(2, 16, 4)), "`past_states` must have shape"),
        (dict(past_states=None), "`past_states` must have shape"),
        (dict(intent=torch.tensor([1, 7])), r"`intent` values must be in \[1, 3\]"),
        (dict(intent=torch.tensor([-1, 1])), r"`intent` values must be in \[1, 3\] or 0 \(UNKNOWN\)"),
        (dict(intent=torch.tensor([1.0, 2.0])), "`intent` must be an integer tensor"),
        (dict(intent=torch.tensor([1])), r"`intent` must have shape \(batch,\)"),
    ],
)
def test_bad_inputs_give_clear_errors(change, match):
    model = WaypointVLMModel(tiny_config())
    x = {**inputs(), **change}
    with pytest.raises(ValueError, match=match):
        model(**x)


def test_unknown_intent_zero_default_is_an_all_zero_onehot():
    torch.manual_seed(0)
    model = WaypointVLMModel(tiny_config()).eval()
    assert model.config.unknown_intent == "zeros" and model.config.head_input_size == 32 + 96 + 3
    x = inputs(batch=4)
    x["intent"] = torch.tensor([0, 1, 2, 3])  # a WOD-E2E frame with intent UNKNOWN first
    onehot = model.intent_onehot(x["intent"], torch.float32)
    assert onehot.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    with torch.no_grad():
        out = model(**x).waypoints
        # UNKNOWN = the head fed a zero intent block; known intents unchanged by the UNKNOWN row
        feats = model.encode_images(x["pixel_values"])
        past = x["past_states"].reshape(4, -1)
        manual = model.head(torch.cat([feats, past, onehot], -1)).reshape(4, 20, 2)
        known = model(**{**x, "pixel_values": x["pixel_values"][1:], "past_states": x["past_states"][1:],
                         "intent": x["intent"][1:]}).waypoints
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, manual)
    torch.testing.assert_close(out[1:], known)


def test_unknown_intent_error_and_own_slot():
    x = {**inputs(), "intent": torch.tensor([0, 2])}
    with pytest.raises(ValueError, match=r"`intent` values must be in \[1, 3\] \(num_intents"):
        WaypointVLMModel(tiny_config(unknown_intent="error"))(**x)
    model = WaypointVLMModel(tiny_config(unknown_intent="own_slot")).eval()
    assert model.config.head_input_size == 32 + 96 + 4
    assert model.intent_onehot(torch.tensor([0, 1, 3]), torch.float32).tolist() == [
        [0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]]
    assert model(**x).waypoints.shape == (2, 20, 2)
    with pytest.raises(ValueError, match="unknown_intent"):
        tiny_config(unknown_intent="drop")
    with pytest.raises(ValueError, match="own_slot"):
        tiny_config(unknown_intent="own_slot", num_intents=4, intent_offset=0)
    # UNKNOWN as a regular class (num_intents=4, intent_offset=0): the option has no effect
    four = WaypointVLMModel(tiny_config(num_intents=4, intent_offset=0))
    assert four.intent_onehot(torch.tensor([0, 3]), torch.float32).tolist() == [[1, 0, 0, 0], [0, 0, 0, 1]]


def test_saved_config_without_unknown_intent_loads_identically(tmp_path):
    import json

    torch.manual_seed(0)
    model = WaypointVLMModel(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    cfg_path = tmp_path / "config.json"
    saved = json.loads(cfg_path.read_text())
    saved.pop("unknown_intent", None)  # a config saved before the option existed
    cfg_path.write_text(json.dumps(saved))
    again = AutoModel.from_pretrained(tmp_path).eval()
    assert again.config.unknown_intent == "zeros" and again.config.head_input_size == model.config.head_input_size
    x = {**inputs(), "intent": torch.tensor([1, 3])}
    with torch.no_grad():
        torch.testing.assert_close(again(**x).waypoints, model(**x).waypoints)
        # the intent block for 1..3 is the plain one-hot, as before the option existed
        onehot = torch.nn.functional.one_hot(x["intent"] - 1, 3).float()
        feats = model.encode_images(x["pixel_values"])
        manual = model.head(torch.cat([feats, x["past_states"].reshape(2, -1), onehot], -1)).reshape(2, 20, 2)
        torch.testing.assert_close(model(**x).waypoints, manual)


def test_wrong_label_shape_and_camera_count():
    model = WaypointVLMModel(tiny_config(num_cameras=2))
    with pytest.raises(ValueError, match=r"\(batch, 2, 3, 32, 32\)"):
        model(**inputs())
    model = WaypointVLMModel(tiny_config())
    with pytest.raises(ValueError, match="`labels` must have shape"):
        model(**inputs(), labels=torch.randn(2, 10, 2))


@pytest.mark.parametrize("dim,heads", [(32, 2), (64, 8)])
def test_attention_pool_equals_multihead_attention_with_its_weights(dim, heads):
    from hf_vlmdrive.models.common.pooling import AttentionPool

    torch.manual_seed(0)
    pool = AttentionPool(dim, heads)
    with torch.no_grad():  # non-zero biases and query, so every term of the rewrite is exercised
        pool.attention.in_proj_bias.normal_()
        pool.attention.out_proj.bias.normal_()
        pool.query.normal_()
    tokens = torch.randn(3, 20, dim, requires_grad=True)
    fast = pool(tokens)
    reference, _ = pool.attention(pool.query.expand(3, -1, -1), tokens, tokens, need_weights=False)
    reference = pool.norm(reference[:, 0])
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    weight = torch.randn(3, dim)
    fast_grads = torch.autograd.grad((fast * weight).sum(), [tokens, *pool.parameters()])
    ref_grads = torch.autograd.grad((reference * weight).sum(), [tokens, *pool.parameters()])
    for a, b in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_processor_takes_one_sample_or_a_batch():
    """One sample (a bare image, (16, 6) past states, a plain int intent) gives a batch of 1 equal to the same
    sample given as a batch of lists; mismatched batch sizes and wrong ranks are errors naming the input."""
    import numpy as np
    from PIL import Image

    from hf_vlmdrive.errors import UserError
    from hf_vlmdrive.models.waypoint_vlm.processing_waypoint_vlm import WaypointVLMProcessor

    processor = WaypointVLMProcessor.from_config(tiny_config())
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    states, waypoints = rng.normal(size=(16, 6)), rng.normal(size=(20, 2))
    one = processor(images=image, past_states=states, intent=2, future_waypoints=waypoints)
    batch = processor(images=[image], past_states=[states], intent=[2], future_waypoints=[waypoints])
    assert {k: tuple(v.shape) for k, v in one.items()} == {
        "pixel_values": (1, 3, 32, 32), "past_states": (1, 16, 6), "intent": (1,), "labels": (1, 20, 2)}
    for key in batch:
        assert torch.equal(one[key], batch[key]), key
    assert one["intent"].dtype == torch.long and one["intent"].tolist() == [2]
    assert processor(intent=np.int64(3))["intent"].tolist() == [3]
    two = processor(images=[image, image], past_states=np.stack([states, states]), intent=torch.tensor([1, 3]))
    assert tuple(two["pixel_values"].shape) == (2, 3, 32, 32) and two["intent"].tolist() == [1, 3]
    assert WaypointVLMModel(tiny_config()).eval()(**one).waypoints.shape == (1, 20, 2)
    with pytest.raises(UserError, match=r"different numbers of samples: \{'past_states': 1, 'intent': 2\}"):
        processor(past_states=states, intent=[1, 2])
    with pytest.raises(UserError, match=r"past_states must have 2 dimension\(s\) per sample .* got shape \(6,\)"):
        processor(past_states=states[0])
