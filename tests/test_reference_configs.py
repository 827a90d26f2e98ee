"""Reference configurations (issue 28): every seed system builds on the meta device from its typed-in backbone
configs, its parameter table equals the figures of docs/reference_configs.md, its YAML is what its recipe parses,
and `estimate`'s bytes equal a real model's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import hf_vlmdrive  # noqa: F401  (registers the Auto classes)
from hf_vlmdrive.arguments import parse_args
from hf_vlmdrive.errors import UserError
from hf_vlmdrive.estimate import memory_plan
from hf_vlmdrive.reference import REFERENCES, build_reference, from_reference, get_reference

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (parameters, trainable) per top-level module, measured on the meta device (docs/reference_configs.md).
GEOVLA = {"vlm": (3_754_622_976, 3_754_622_976), "geometry_encoder": (1_136_483_840, 0),
          "action_head": (963_587_079, 963_587_079)}
EXPECTED = {
    "waypoint_smolvlm": {"vision_model": (412_987_248, 0), "head": (926_248, 926_248)},
    "simlingo_base": {"vision_model": (303_507_456, 303_507_456), "multi_modal_projector": (20_979_712, 20_979_712),
                      "vision_projection": (2_097_664, 2_097_664), "speed_encoder": (132_096, 132_096),
                      "route_encoder": (132_352, 132_352), "language_model": (50_344_448, 50_344_448),
                      "speed_head": (131_840, 131_840), "route_head": (131_840, 131_840),
                      "(model's own)": (20_480, 20_480)},  # queries 15,360 + image_newline 4,096 + camera, temporal 1,024
    "simlingo_base_seed_heads": {"speed_head": (131_842, 131_842), "route_head": (394_498, 394_498),
                                 "language_model": (50_344_448, 50_344_448)},
    "roadscene_smolvlm2_qlora": {"model": (2_150_995_824, 5_136_384), "lm_head": (100_925_440, 0)},
    "roadscene_smolvlm2_lora": {"model": (2_150_995_824, 5_136_384), "lm_head": (100_925_440, 0)},
    "flamingo_openflamingo3b": {"vision_model": (303_179_776, 0), "perceiver": (63_019_008, 63_019_008),
                                "language_model": (2_192_132_144, 983_973_936)},
    "robovlm_kosmos2_lstm": {"backbone": (1_664_485_376, 1_664_485_376), "policy_head": (14_297_346, 14_297_346),
                             "(model's own)": (2048, 2048)},
    "geovla_libero_pool": {**GEOVLA, "geometry_compressor": (3_151_872, 3_151_872)},
    "geovla_libero_per_layer": {**GEOVLA, "geometry_compressor": (50_368_512, 50_368_512)},
    "geovla_libero_qformer": {**GEOVLA, "geometry_compressor": (19_970_048, 19_970_048)},
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_builds_on_meta_with_the_documented_table(name):
    model = build_reference(name)
    assert all(p.is_meta for p in model.parameters())
    rows = {r.name: (r.parameters, r.trainable) for r in memory_plan(model).rows}
    for module, counts in EXPECTED[name].items():
        assert rows[module] == counts, (name, module, rows[module])


def test_seed_figures_that_the_references_reproduce():
    flamingo = {r.name: r.trainable for r in memory_plan(build_reference("flamingo_openflamingo3b")).rows}
    assert sum(flamingo.values()) == 1_046_992_944  # the seed's "~1.04 B"
    lstm = build_reference("robovlm_kosmos2_lstm").policy_head
    assert sum(p.numel() for n, p in lstm.named_parameters() if n.startswith("rnn.")) == 12_591_104  # 1 layer
    simlingo = build_reference("simlingo_base")
    assert sum(p.numel() for p in simlingo.language_model.parameters()) == 50_344_448  # "~50 M"
    assert simlingo.route_queries.numel() + simlingo.speed_queries.numel() == 15_360


def test_no_argument_configs_are_the_reference_systems():
    from hf_vlmdrive.models.flamingo import FlamingoConfig
    from hf_vlmdrive.models.geovla import GeoVLAConfig
    from hf_vlmdrive.models.simlingo import SimLingoConfig
    from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig

    assert GeoVLAConfig().to_diff_dict() == GeoVLAConfig(dit_num_layers=16, compressor_type="pool").to_diff_dict()
    assert from_reference("geovla_libero_pool").dit_num_layers == GeoVLAConfig().dit_num_layers == 16
    assert WaypointVLMConfig().vision_config.to_dict() == from_reference("waypoint_smolvlm").vision_config.to_dict()
    sim, ref = SimLingoConfig(), from_reference("simlingo_base")
    assert sim.vision_config.to_dict() == ref.vision_config.to_dict()
    assert sim.text_config.to_dict() == ref.text_config.to_dict()
    assert FlamingoConfig().to_dict() == from_reference("flamingo_openflamingo3b").to_dict() | {
        "train_lm_embeddings": FlamingoConfig().train_lm_embeddings}


def _recipe_types(command):
    if command == "train geovla":
        from hf_vlmdrive.trainers.geovla_config import GeoVLAScriptArguments, GeoVLATrainingArguments
        return GeoVLAScriptArguments, GeoVLATrainingArguments
    if command == "train waypoint":
        from transformers import TrainingArguments

        from hf_vlmdrive.trainers.waypoint_config import WaypointScriptArguments
        return WaypointScriptArguments, TrainingArguments
    if command == "train simlingo":
        from hf_vlmdrive.trainers.simlingo_config import SimLingoScriptArguments, SimLingoTrainingArguments
        return SimLingoScriptArguments, SimLingoTrainingArguments
    if command == "train robovlm":
        from hf_vlmdrive.trainers.robovlm_config import RoboVLMScriptArguments, RoboVLMTrainingArguments
        return RoboVLMScriptArguments, RoboVLMTrainingArguments
    if command == "sft flamingo":
        from hf_vlmdrive.trainers.flamingo_config import FlamingoSFTArguments, FlamingoTrainingArguments
        return FlamingoSFTArguments, FlamingoTrainingArguments
    if command == "sft roadscene":
        from trl import SFTConfig

        from hf_vlmdrive.trainers.roadscene_config import RoadSceneSFTArguments
        return RoadSceneSFTArguments, SFTConfig
    raise AssertionError(command)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_yaml_is_what_its_recipe_parses(name):
    ref = get_reference(name)
    assert ref.yaml_path.is_file(), ref.yaml_path
    script, _ = parse_args(_recipe_types(ref.command), ["--config", str(ref.yaml_path), "--use_cpu", "true"])
    for key, hub_id in ref.backbones.items():
        assert getattr(script, key) == hub_id, key
    assert (getattr(script, "model_config", None) or {}) == ref.model_config
    for key, value in ref.recipe.items():
        assert getattr(script, key if key != "lora_target_modules" else "target_modules") == (
            value if key != "lora_target_modules" else value.split(",")), key


def test_unknown_reference_is_a_user_error():
    with pytest.raises(UserError, match="geovla_libero_pool"):
        get_reference("geovla_pool")


# ------------------------------------------------------------------------------------------- estimate vs real bytes
def _tiny_waypoint_trained_one_step():
    from hf_vlmdrive.models.waypoint_vlm import WaypointVLMModel
    from hf_vlmdrive.testing.tiny_models import tiny_waypoint_vlm_config

    torch.manual_seed(0)
    model = WaypointVLMModel(tiny_waypoint_vlm_config())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    out = model(pixel_values=torch.randn(2, 3, 32, 32), past_states=torch.randn(2, 16, 6),
                intent=torch.tensor([1, 2]), labels=torch.randn(2, 20, 2))
    out.loss.backward()
    opt.step()
    return model, opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_estimate_equals_the_bytes_of_a_real_model(dtype, tmp_path):
    model, opt = _tiny_waypoint_trained_one_step()
    model.to(dtype)
    for state in opt.state.values():
        for k, v in state.items():
            if k != "step":
                state[k] = v.to(dtype)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    states = sum(v.numel() * v.element_size() for s in opt.state.values() for k, v in s.items() if k != "step")
    # the same model on the meta device, through the saved config (what `hf-vlmdrive estimate DIR` builds)
    model.save_pretrained(tmp_path / "m")
    from hf_vlmdrive.cli.estimate import _build_from_directory

    plan = memory_plan(_build_from_directory(tmp_path / "m"), zero=0,
                       dtype={torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype])
    total = plan.total
    assert (total.weight_bytes, total.gradient_bytes, total.optimizer_bytes) == (weights, grads, states)
    assert total.parameters == sum(p.numel() for p in model.parameters())
    assert total.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad) > 0


def test_zero_sharding_divides_what_deepspeed_partitions():
    model = build_reference("geovla_libero_pool")
    one = memory_plan(model, zero=2, num_gpus=1).total
    assert one.weight_bytes == 2 * 5_857_845_767 and one.gradient_bytes == 2 * 4_721_361_927
    assert one.optimizer_bytes == 12 * 4_721_361_927
    eight2, eight3 = memory_plan(model, zero=2, num_gpus=8).total, memory_plan(model, zero=3, num_gpus=8).total
    assert eight2.weight_bytes == one.weight_bytes and eight2.gradient_bytes == one.gradient_bytes / 8
    assert eight2.optimizer_bytes == one.optimizer_bytes / 8
    assert eight3.weight_bytes == one.weight_bytes / 8
    zero0 = memory_plan(model, zero=0, num_gpus=8).total  # DDP: fp32 weights, nothing sharded
    assert (zero0.weight_bytes, zero0.optimizer_bytes) == (4 * 5_857_845_767, 8 * 4_721_361_927)


@pytest.mark.parametrize("zero,gpus", [(0, 1), (0, 4), (2, 1), (2, 8), (3, 8)])
def test_estimate_names_the_launch_that_runs_its_plan(zero, gpus):
    """The ZeRO stage and GPU count picked in `estimate` are the ones its printed `accelerate launch` line runs."""
    import shlex

    import yaml
    from accelerate.commands.launch import launch_command_parser

    from hf_vlmdrive.estimate import launch_command
    from hf_vlmdrive.reference import REFERENCES

    for ref in REFERENCES.values():
        config = f"examples/configs/reference/{ref.name}.yaml"
        line = launch_command(zero, gpus, ref.command, config).split(" (but ")[0]
        args = launch_command_parser().parse_args(shlex.split(line)[2:])
        assert (ROOT / config).is_file() and args.training_script_args[:-2] == ref.command.split()
        launch = yaml.safe_load((ROOT / args.config_file).read_text())
        processes = int(args.num_processes or launch["num_processes"])
        assert processes == gpus, (ref.name, line)
        if zero == 0:
            assert launch["distributed_type"] == ("MULTI_GPU" if gpus > 1 else "NO")
        else:
            assert launch["distributed_type"] == "DEEPSPEED"
            ds = json.loads((ROOT / launch["deepspeed_config"]["deepspeed_config_file"]).read_text())
            assert ds["zero_optimization"]["stage"] == zero
