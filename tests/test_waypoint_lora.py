"""waypoint_vlm LoRA stage: config, PEFT injection, what trains, save / reload, stage 2 from stage 1, merging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoConfig, AutoModel, TrainerCallback, TrainingArguments

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.arguments import parse_args
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel
from hf_vlmdrive.trainers.waypoint_config import WaypointScriptArguments
from hf_vlmdrive.trainers.waypoint_recipe import build_waypoint_model, train_waypoint

TINY_SIGLIP = dict(
    model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=2, image_size=32, patch_size=8,
)
TINY_TOWERS = {
    "siglip": TINY_SIGLIP,
    "smolvlm": {**TINY_SIGLIP, "model_type": "smolvlm_vision"},
    "clip": {**TINY_SIGLIP, "model_type": "clip_vision_model", "projection_dim": 16},
    "dinov2": {**TINY_SIGLIP, "model_type": "dinov2", "mlp_ratio": 2},
}
ATTN = ["q_proj", "k_proj", "v_proj", "out_proj"]


def tiny_config(**kwargs) -> WaypointVLMConfig:
    kwargs.setdefault("vision_config", TINY_SIGLIP)
    kwargs.setdefault("head_hidden_sizes", [32, 32])
    return WaypointVLMConfig(**kwargs)


def inputs(batch=2):
    return dict(pixel_values=torch.randn(batch, 3, 32, 32), past_states=torch.randn(batch, 16, 6),
                intent=torch.tensor([1, 3] * (batch // 2)))


def lora_names(model) -> list[str]:
    return [n for n, _ in model.named_parameters() if ".lora_" in n]


def randomize_lora_b(model, std=0.2) -> None:
    """LoRA B starts at zero (adapted tower == plain tower); give it values so that LoRA changes outputs."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(0.0, std)


# ---------------------------------------------------------------------------------------------- config
def test_config_normalises_lora_and_round_trips(tmp_path):
    cfg = tiny_config(lora={"r": 16})
    assert cfg.lora == {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ATTN, "bias": "none"}
    assert tiny_config(lora=8).lora["r"] == 8 and tiny_config(lora=8).lora["lora_alpha"] == 16
    assert tiny_config().lora is None
    custom = tiny_config(lora=dict(r=4, lora_alpha=6.5, lora_dropout=0.0, target_modules=("q_proj", "fc1")))
    assert custom.lora == {"r": 4, "lora_alpha": 6.5, "lora_dropout": 0.0, "target_modules": ["q_proj", "fc1"],
                           "bias": "none"}
    # DINOv2 names its attention output o_proj (transformers 5).
    dino = tiny_config(vision_config=TINY_TOWERS["dinov2"], lora={"r": 8})
    assert dino.lora["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    custom.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["lora"] == custom.lora
    assert AutoConfig.from_pretrained(tmp_path).lora == custom.lora


@pytest.mark.parametrize(
    "lora, match",
    [
        ({"r": 8, "rank": 8}, r"WaypointVLMConfig.lora has unknown keys \['rank'\]"),
        ({"lora_alpha": 16}, r"WaypointVLMConfig.lora\['r'\].*required"),
        ({"r": 0}, r"WaypointVLMConfig.lora\['r'\] must be a positive integer"),
        ({"r": 8.0}, r"WaypointVLMConfig.lora\['r'\] must be a positive integer"),
        ({"r": True}, r"WaypointVLMConfig.lora\['r'\] must be a positive integer"),
        ({"r": 8, "lora_alpha": 0}, r"WaypointVLMConfig.lora\['lora_alpha'\]"),
        ({"r": 8, "lora_dropout": 1.0}, r"WaypointVLMConfig.lora\['lora_dropout'\] must be a number in \[0, 1\)"),
        ({"r": 8, "lora_dropout": -0.1}, r"WaypointVLMConfig.lora\['lora_dropout'\]"),
        ({"r": 8, "target_modules": "q_proj"}, r"WaypointVLMConfig.lora\['target_modules'\] must be a non-empty list"),
        ({"r": 8, "target_modules": []}, r"WaypointVLMConfig.lora\['target_modules'\]"),
        ({"r": 8, "bias": "all"}, r"WaypointVLMConfig.lora\['bias'\] must be 'none'"),
        ("r16", r"WaypointVLMConfig.lora must be a dict"),
    ],
)
def test_config_lora_validation_names_the_key(lora, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(lora=lora)


def test_lora_needs_a_frozen_tower():
    with pytest.raises(ValueError, match="freeze_vision must be True"):
        tiny_config(lora={"r": 8}, freeze_vision=False)
    model = WaypointVLMModel(tiny_config(lora=8))
    with pytest.raises(ValueError, match="merge them first"):
        model.unfreeze_vision_model()


# ---------------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("rank", [8, 16, 32])
def test_forward_and_trainable_parameters_are_lora_and_head(rank):
    model = WaypointVLMModel(tiny_config(lora={"r": rank}, pooling="attention", attention_pool_heads=2))
    out = model(**inputs(), labels=torch.randn(2, 20, 2), output_image_features=True)
    assert out.waypoints.shape == (2, 20, 2) and out.image_features.shape == (2, 32)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = set(lora_names(model))
    expected = lora | {n for n, _ in model.named_parameters() if n.startswith(("head.", "attention_pool."))}
    assert trainable == expected
    # 2 layers x q/k/v/out, each with A (r x 32) and B (32 x r); SigLIP's pooling-head MHA out_proj is not adapted.
    assert len(lora) == 2 * 4 * 2
    assert sum(p.numel() for n, p in model.named_parameters() if n in lora) == 2 * 4 * 2 * rank * 32
    assert not any("vision_model.head." in n for n in lora)
    assert not model.vision_is_frozen  # gradients must flow through the tower to the adapters
    out.loss.backward()
    for n, p in model.named_parameters():
        if ".lora_A." in n:  # B is zero at init, so only A's gradient is zero; B's is not
            continue
        assert (p.grad is not None) == (n in trainable), n
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in lora if ".lora_B." in n)


def test_enable_on_a_plain_model_starts_as_the_plain_model_and_follows_train_mode():
    model = WaypointVLMModel(tiny_config(pooling="attention", attention_pool_heads=2))
    model.eval()
    x = inputs()
    before = model(**x).waypoints
    targeted = model.enable_vision_lora({"r": 8, "lora_dropout": 0.1})
    assert len(targeted) == 8 and all(t.endswith(tuple(ATTN)) for t in targeted)
    assert model.config.lora["r"] == 8 and model.config.freeze_vision
    model.eval()
    assert torch.allclose(model(**x).waypoints, before, atol=1e-6)  # B = 0: adapters start as the identity
    model.train()
    assert model.vision_model.training  # LoRA dropout is active while training
    dropouts = [m for n, m in model.vision_model.named_modules() if n.endswith("lora_dropout.default")]
    assert dropouts and all(m.training for m in dropouts)
    model.eval()
    assert not model.vision_model.training
    with pytest.raises(ValueError, match="already has LoRA"):
        model.enable_vision_lora(8)


def test_unknown_target_module_is_named_with_the_towers_linear_modules():
    with pytest.raises(ValueError, match=r"\['qkv'\] match no module.*'fc1'.*'q_proj'"):
        WaypointVLMModel(tiny_config(lora={"r": 8, "target_modules": ["q_proj", "qkv"]}))
    model = WaypointVLMModel(tiny_config())
    with pytest.raises(ValueError, match=r"\['query', 'value'\] match no module"):
        model.enable_vision_lora({"r": 8, "target_modules": ["query", "value"]})
    assert model.config.lora is None and not lora_names(model)  # nothing half-applied


@pytest.mark.parametrize("tower", ["smolvlm", "clip", "dinov2"])
def test_default_targets_fit_every_tower(tower):
    model = WaypointVLMModel(tiny_config(vision_config=TINY_TOWERS[tower], lora=4))
    assert len(lora_names(model)) == 2 * 4 * 2
    randomize_lora_b(model)
    out = model(**inputs(), labels=torch.randn(2, 20, 2))
    out.loss.backward()
    assert all(model.get_parameter(n).grad is not None for n in lora_names(model))


def test_activation_checkpointing_still_trains_the_adapters():
    model = WaypointVLMModel(tiny_config(lora=8))
    model.activation_checkpointing_enable()
    model.train()
    model(**inputs(), labels=torch.randn(2, 20, 2)).loss.backward()
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in lora_names(model) if ".lora_B." in n)


def test_auto_round_trip_is_exact_and_keeps_adapters_trainable(tmp_path):
    model = WaypointVLMModel(tiny_config(lora={"r": 8, "target_modules": ["q_proj", "v_proj"]}))
    randomize_lora_b(model)
    model.eval()
    x = inputs()
    expected = model(**x).waypoints
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is WaypointVLMModel and loaded.config.lora == model.config.lora
    loaded.eval()
    assert torch.equal(loaded(**x).waypoints, expected)
    assert model.state_dict().keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    trainable = {n for n, p in loaded.named_parameters() if p.requires_grad}
    assert trainable == set(lora_names(loaded)) | {n for n, _ in loaded.named_parameters() if n.startswith("head.")}
    assert len(lora_names(loaded)) == 2 * 2 * 2 and not loaded.vision_is_frozen


def test_merge_gives_the_same_outputs_and_a_plain_frozen_tower(tmp_path):
    model = WaypointVLMModel(tiny_config(lora=16))
    randomize_lora_b(model)
    model.eval()
    x = inputs()
    adapted = model(**x).waypoints
    plain = WaypointVLMModel(tiny_config())
    plain.load_state_dict({k.replace(".base_layer", ""): v for k, v in model.state_dict().items() if ".lora_" not in k})
    plain.eval()
    assert not torch.allclose(plain(**x).waypoints, adapted, atol=1e-4)  # the adapters matter
    assert model.merge_vision_lora() == 8
    assert model.config.lora is None and model.vision_is_frozen
    assert not any("lora_" in k or "base_layer" in k for k in model.state_dict())
    assert torch.allclose(model(**x).waypoints, adapted, atol=1e-5)
    model.train()
    assert not model.vision_model.training  # frozen again: eval mode while the head trains
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert reloaded.config.lora is None and reloaded.vision_is_frozen
    reloaded.eval()
    assert torch.equal(reloaded(**x).waypoints, model.eval()(**x).waypoints)
    with pytest.raises(ValueError, match="no LoRA adapters to merge"):
        model.merge_vision_lora()


def test_save_vision_adapter_writes_peft_format(tmp_path):
    from peft import PeftModel
    from safetensors import safe_open

    model = WaypointVLMModel(tiny_config(lora={"r": 8, "lora_alpha": 8}))
    randomize_lora_b(model)
    model.eval()
    out = model.save_vision_adapter(tmp_path / "adapter")
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["peft_type"] == "LORA" and adapter_cfg["r"] == 8 and adapter_cfg["lora_alpha"] == 8
    assert sorted(adapter_cfg["target_modules"]) == sorted(ATTN)
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert len(keys) == 16 and all(k.startswith("base_model.model.") for k in keys)
    # PEFT itself loads the adapter onto a plain tower with the same base weights.
    tower = AutoModel.from_config(model.config.vision_config)
    tower.load_state_dict({k.replace(".base_layer", ""): v for k, v in model.vision_model.state_dict().items()
                           if ".lora_" not in k})
    peft_tower = PeftModel.from_pretrained(tower, str(out)).eval()
    pixels = torch.randn(2, 3, 32, 32)
    expected = model.vision_model(pixel_values=pixels).last_hidden_state
    assert torch.allclose(peft_tower(pixel_values=pixels).last_hidden_state, expected, atol=1e-6)
    with pytest.raises(ValueError, match="no LoRA adapter to save"):
        WaypointVLMModel(tiny_config()).save_vision_adapter(tmp_path / "none")


def test_from_backbone_loads_the_tower_then_adds_lora(tmp_path):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    vision = {k: v for k, v in TINY_SIGLIP.items() if k != "model_type"}
    source = SiglipVisionModel(SiglipVisionConfig(**vision))
    source.save_pretrained(tmp_path / "backbone")
    model = WaypointVLMModel.from_backbone(str(tmp_path / "backbone"), head_hidden_sizes=[32, 32], lora={"r": 8})
    assert model.config.lora["r"] == 8 and len(lora_names(model)) == 16
    src = source.state_dict()
    for name, tensor in model.vision_model.state_dict().items():
        if ".lora_" in name or name.endswith("position_ids"):
            continue
        assert torch.equal(tensor, src[name.replace(".base_layer", "")]), name
    # The training flag takes the same route.
    built, _ = build_waypoint_model(WaypointScriptArguments(backbone=str(tmp_path / "backbone"),
                                                            model_config={"lora": {"r": 32}, "head_hidden_sizes": [32, 32]}))
    assert built.config.lora["r"] == 32 and built.config.lora["lora_alpha"] == 64


# ---------------------------------------------------------------------------------------------- training
def tiny_yaml(tmp_path: Path, name: str, **overrides) -> Path:
    model_config = dict(vision_config=TINY_SIGLIP, pooling="attention", head_hidden_sizes=[32, 32],
                        past_state_scale=10.0, waypoint_scale=10.0)
    cfg = dict(
        train_data="synthetic:32", eval_data="synthetic:8:1",
        image_width=48, image_height=32, output_dir=str(tmp_path / name), per_device_train_batch_size=8,
        learning_rate=3e-3, max_steps=4, logging_steps=1, save_strategy="no", eval_strategy="no",
        report_to="none", disable_tqdm=True, seed=0,
    )
    for key, value in overrides.items():  # model config fields go under model_config
        (model_config if key in WaypointVLMConfig().to_dict() else cfg)[key] = value
    cfg["model_config"] = {k: v for k, v in model_config.items() if v is not None}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Snapshot(TrainerCallback):
    """Copies every tensor of the model when training starts."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(tmp_path, name, *extra: str, **overrides):
    argv = ["--config", str(tiny_yaml(tmp_path, name, **overrides)), *extra]
    script_args, training_args = parse_args((WaypointScriptArguments, TrainingArguments), argv)
    snapshot = Snapshot()
    trainer = train_waypoint(script_args, training_args, callbacks=[snapshot])
    return trainer, snapshot.initial


def test_trainer_changes_only_lora_and_head_and_reloads(tmp_path, caplog):
    caplog.set_level("INFO", logger="hf_vlmdrive.trainers.waypoint_recipe")
    trainer, initial = _train(tmp_path, "lora", "--model_config.lora.r", "8")
    assert "frozen + LoRA r=8" in caplog.text
    final = trainer.model.state_dict()
    changed = {k for k in final if not torch.equal(initial[k], final[k])}
    lora_b = {k for k in final if ".lora_B." in k}
    lora_a = {k for k in final if ".lora_A." in k}
    head = {k for k in final if k.startswith(("head.", "attention_pool."))}
    base_tower = {k for k in final if k.startswith("vision_model.") and ".lora_" not in k}
    assert len(lora_b) == 8 and lora_b <= changed, "LoRA B matrices did not train"
    assert lora_a & changed  # A gets gradients once B is non-zero
    assert head <= changed
    assert changed <= lora_a | lora_b | head
    assert base_tower and not (base_tower & changed), "base tower weights changed"
    # The saved run reloads with its adapters, identical outputs, adapters still trainable.
    out = Path(trainer.args.output_dir)
    reloaded = AutoModel.from_pretrained(out).eval()
    trained = trainer.model.eval()
    x = inputs()
    assert reloaded.config.lora == trained.config.lora
    assert torch.equal(reloaded(**x).waypoints, trained(**x).waypoints)
    assert {n for n, p in reloaded.named_parameters() if p.requires_grad} == {
        n for n, p in trained.named_parameters() if p.requires_grad
    }


def test_stage_two_continues_a_stage_one_model(tmp_path, cli):
    stage1, _ = _train(tmp_path, "stage1")
    stage1_dir = Path(stage1.args.output_dir)
    assert AutoModel.from_pretrained(stage1_dir).config.lora is None
    # build_waypoint_model adds adapters to the loaded stage-1 model; it starts exactly as stage 1.
    model, _ = build_waypoint_model(WaypointScriptArguments(model_name_or_path=str(stage1_dir), model_config={"lora": {"r": 16}}))
    assert model.config.lora["r"] == 16 and len(lora_names(model)) == 16
    x = inputs()
    assert torch.allclose(model.eval()(**x).waypoints, stage1.model.eval()(**x).waypoints, atol=1e-6)
    # The CLI flag on the stage-1 directory (no vision_config: the model comes from the directory).
    cfg = tiny_yaml(tmp_path, "stage2", vision_config=None, pooling=None, head_hidden_sizes=None)
    assert cli("train", "waypoint", "--config", cfg, "--model_name_or_path", stage1_dir, "--model_config.lora.r", "16",
               "--model_config.lora.target_modules", "q_proj", "v_proj", "--model_config.lora.lora_dropout", "0.0") == 0
    stage2 = AutoModel.from_pretrained(tmp_path / "stage2")
    assert stage2.config.lora == {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                                  "target_modules": ["q_proj", "v_proj"], "bias": "none"}
    s1, s2 = AutoModel.from_pretrained(stage1_dir).state_dict(), stage2.state_dict()
    for name, tensor in s2.items():  # the tower's own weights are stage 1's
        if name.startswith("vision_model.") and ".lora_" not in name:
            assert torch.equal(tensor, s1[name.replace(".base_layer", "")]), name
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in s2.items() if ".lora_B." in k)
    # Continuing a stage-2 model keeps its adapters; asking for different ones is an error.
    again, _ = build_waypoint_model(WaypointScriptArguments(model_name_or_path=str(tmp_path / "stage2")))
    assert again.config.lora == stage2.config.lora and not again.vision_is_frozen
    with pytest.raises(ValueError, match="already has LoRA"):
        build_waypoint_model(WaypointScriptArguments(model_name_or_path=str(tmp_path / "stage2"), model_config={"lora": {"r": 8}}))
    with pytest.raises(ValueError, match="need a LoRA rank"):
        build_waypoint_model(WaypointScriptArguments(model_config={"vision_config": TINY_SIGLIP,
                                                                   "lora": {"target_modules": ["q_proj"]}}))
    with pytest.raises(ValueError, match="freeze_vision must be True"):
        build_waypoint_model(WaypointScriptArguments(model_config={"vision_config": TINY_SIGLIP, "lora": {"r": 8},
                                                                   "freeze_vision": False}))
