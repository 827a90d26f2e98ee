"""The shared plumbing every family uses: `model_config` arguments, the parameter-group builder, processors
(saved beside the weights, loaded with AutoProcessor, equal to what the training collators produce), and
running a model without anything from `trainers/`."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoProcessor, TrainingArguments

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.arguments import parse_args
from hf_vlmdrive.errors import UserError
from hf_vlmdrive.trainers.geovla_config import GeoVLAScriptArguments, GeoVLATrainingArguments
from hf_vlmdrive.trainers.param_groups import ParamGroupRule, build_parameter_groups, uses_weight_decay
from hf_vlmdrive.trainers.simlingo_config import SimLingoScriptArguments, SimLingoTrainingArguments
from hf_vlmdrive.trainers.waypoint_config import WaypointScriptArguments


# ----------------------------------------------------------------------------------- model_config
def test_model_config_from_yaml_json_and_dotted_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset_root: d\nmodel_config:\n  dit_num_layers: 2\n  geometry_config: {num_layers: 1}\n"
                   "output_dir: o\n")
    script, _ = parse_args(
        (GeoVLAScriptArguments, GeoVLATrainingArguments),
        ["--config", str(cfg), "--model_config.dit_hidden_size", "64", "--model_config.geometry_config.num_heads",
         "2", "--model_config.dit_vlm_layer_map", "[1, 2]", "--model_config.flow_beta_alpha=2.5"],
    )
    assert script.model_config == {"dit_num_layers": 2, "dit_hidden_size": 64, "dit_vlm_layer_map": [1, 2],
                                   "flow_beta_alpha": 2.5, "geometry_config": {"num_layers": 1, "num_heads": 2}}
    # A JSON mapping on the command line merges over the YAML one.
    script, _ = parse_args((GeoVLAScriptArguments, GeoVLATrainingArguments),
                           ["--config", str(cfg), "--model_config", '{"dit_num_layers": 4, "dit_mlp_ratio": 2.0}'])
    assert script.model_config["dit_num_layers"] == 4 and script.model_config["dit_mlp_ratio"] == 2.0
    assert script.model_config["geometry_config"] == {"num_layers": 1}


def test_every_config_field_is_settable_and_unknown_ones_are_named():
    from hf_vlmdrive.arguments import config_fields
    from hf_vlmdrive.models.geovla.configuration_geovla import GeoVLAConfig

    # The 7 fields that could not be set before (DiT dropout / MLP ratio, flow matching, state / action keys).
    for name in ("dit_dropout", "dit_mlp_ratio", "flow_beta_alpha", "flow_beta_beta", "flow_time_scale",
                 "state_key", "action_key"):
        assert name in config_fields(GeoVLAConfig)
        args = GeoVLAScriptArguments(dataset_root="d", model_config={name: GeoVLAConfig().to_dict()[name]})
        assert name in args.model_config
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['dit_layers'\] for GeoVLAConfig"):
        GeoVLAScriptArguments(dataset_root="d", model_config={"dit_layers": 2})
    with pytest.raises(ValueError, match="action_dim.*taken from the data"):
        GeoVLAScriptArguments(dataset_root="d", model_config={"action_dim": 3})
    with pytest.raises(ValueError, match="mapping of config fields"):
        WaypointScriptArguments(model_config="[1, 2]")


def test_model_config_fields_as_plain_arguments_say_how_to_write_them(tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text("pooling: attention\noutput_dir: o\n")
    with pytest.raises(UserError, match=r"'pooling' is a WaypointVLMConfig field: put it under model_config"):
        parse_args((WaypointScriptArguments, TrainingArguments), ["--config", str(cfg)])
    with pytest.raises(UserError, match=r"--route_as is a SimLingoConfig field: write --model_config.route_as VALUE"):
        parse_args((SimLingoScriptArguments, SimLingoTrainingArguments), ["--route_as", "coords", "--output_dir", "o"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the documented form warns about nothing
        script, _ = parse_args((SimLingoScriptArguments, SimLingoTrainingArguments),
                               ["--model_config.route_as", "coords", "--model_config.vision_config.image_size", "64",
                                "--output_dir", "o"])
    assert script.model_config == {"route_as": "coords", "vision_config": {"image_size": 64}}


def test_parameter_group_builder_rules_multipliers_and_decay():
    toy = nn.Module()
    toy.vision_model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    toy.xattn = nn.Linear(2, 2)
    toy.attn_gate = nn.Parameter(torch.zeros(1))
    toy.queries = nn.Parameter(torch.zeros(4, 2))
    toy.head = nn.Linear(2, 2)
    toy.head.bias.requires_grad_(False)
    rules = [ParamGroupRule("vision", ("vision_model.*",), lr=0.1),
             ParamGroupRule("gates", ("*_gate",), lr_multiplier=50.0)]
    groups = {g["name"]: g for g in build_parameter_groups(toy, rules, learning_rate=0.01, weight_decay=0.3)}
    assert set(groups) == {"vision", "vision_no_decay", "gates_no_decay", "base", "base_no_decay"}
    assert groups["vision"]["lr"] == 0.1 and groups["gates_no_decay"]["lr"] == pytest.approx(0.5)
    assert groups["base"]["lr"] == 0.01 and groups["base"]["weight_decay"] == 0.3
    assert groups["base_no_decay"]["weight_decay"] == 0.0
    ids = {n: {id(p) for p in g["params"]} for n, g in groups.items()}
    assert ids["base"] == {id(toy.xattn.weight), id(toy.head.weight)}
    assert ids["base_no_decay"] == {id(toy.xattn.bias), id(toy.queries)}  # frozen head.bias is in no group
    assert id(toy.vision_model[1].weight) in ids["vision_no_decay"]
    assert not uses_weight_decay("x.embedding.weight", torch.zeros(2, 2)) and uses_weight_decay("x.w", torch.zeros(2, 2))


# ----------------------------------------------------------------------------------- processors
def test_simlingo_processor_matches_the_reader_and_round_trips(tmp_path):
    from hf_vlmdrive.data.carla import CarlaRouteDataset
    from hf_vlmdrive.data.collators import SimLingoCollator
    from hf_vlmdrive.data.synthetic.carla import write_carla_dataset
    from hf_vlmdrive.models.simlingo.processing_simlingo import SimLingoProcessor

    root = tmp_path / "carla"
    write_carla_dataset(root, 1, seed=0, frames_per_route=6, width=96, height=48)
    ds = CarlaRouteDataset(root, image_size=(48, 24), skip_first_frames=0, require_full_future=False)
    processor = SimLingoProcessor(image_size=[48, 24], route_as="target_point")
    processor.save_pretrained(tmp_path / "proc")
    loaded = AutoProcessor.from_pretrained(tmp_path / "proc")
    assert type(loaded) is SimLingoProcessor and loaded.image_size == [48, 24]
    from PIL import Image

    route = next(p for p in root.rglob("rgb") if p.is_dir())
    frame = sorted(route.glob("*.jpg"))[0]
    sample = ds[0]
    assert sample["frame"] == frame.stem
    with Image.open(frame) as im:
        raw = im.convert("RGB")
    out = loaded(images=[[raw]], speed=[sample["speed"][0]], target_point=[sample["target_point"]],
                 target_point_next=[sample["route_coords"][1]])
    batch = SimLingoCollator()([sample])
    for key in ("pixel_values", "speed", "target_point", "route_coords"):
        assert torch.equal(out[key], batch[key]), key
    image_proc = SimLingoProcessor(route_as="image", route_image_size=[32, 32])
    drawn = image_proc(images=[[raw]], speed=[1.0], route=[np.array([[1.0, 0.0], [5.0, 1.0]])])["route_image"]
    assert drawn.shape == (1, 3, 32, 32) and drawn.dtype == torch.uint8 and drawn.sum() > 0
    with pytest.raises(ValueError, match="needs target_point"):
        loaded(images=[[raw]], speed=[1.0])


def test_geovla_processor_round_trip_equals_the_collator(tmp_path):
    from hf_vlmdrive.data.collators import GeoVLACollator
    from hf_vlmdrive.models.geovla.processing_geovla import GeoVLAProcessor
    from hf_vlmdrive.testing.tiny_qwen import build_tiny_qwen_processor

    base = build_tiny_qwen_processor()
    processor = GeoVLAProcessor.from_vlm_processor(base, geometry_image_size=28, prompt="do: {instruction}")
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is GeoVLAProcessor
    assert (loaded.geometry_image_size, loaded.prompt) == (28, "do: {instruction}")
    rng = np.random.default_rng(0)
    samples = [{"images": [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(2)],
                "language": "put the bowl on the plate", "state": np.ones(8, np.float32),
                "actions": np.zeros((4, 7), np.float32), "action_is_pad": np.zeros(4, bool)} for _ in range(2)]
    old_style = GeoVLACollator(base, geometry_image_size=28, prompt="do: {instruction}")(samples)
    new_style = GeoVLACollator(loaded)(samples)
    server_style = loaded(images=[s["images"] for s in samples], instructions=[s["language"] for s in samples],
                          state=[s["state"] for s in samples])
    assert set(new_style) == set(old_style)
    for key in old_style:
        assert torch.equal(new_style[key], old_style[key]), key
    for key in server_style:
        assert torch.equal(server_style[key], new_style[key]), key
    with pytest.raises(ValueError, match=r"\{instruction\}"):
        GeoVLAProcessor.from_vlm_processor(base, prompt="no placeholder")


def test_a_model_runs_without_anything_from_trainers(tmp_path):
    """Build a saved model + processor, then in a fresh process load and run it with only the library's
    models: `hf_vlmdrive.trainers` must not be imported."""
    from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel
    from hf_vlmdrive.models.waypoint_vlm.processing_waypoint_vlm import WaypointVLMProcessor

    config = WaypointVLMConfig(vision_config={"model_type": "siglip_vision_model", "hidden_size": 32,
                                              "intermediate_size": 64, "num_hidden_layers": 1,
                                              "num_attention_heads": 2, "image_size": 32, "patch_size": 8})
    WaypointVLMModel(config).save_pretrained(tmp_path)
    WaypointVLMProcessor.from_config(config).save_pretrained(tmp_path)
    code = f"""
import sys, numpy as np, torch
import hf_vlmdrive
from transformers import AutoModel, AutoProcessor
model, processor = AutoModel.from_pretrained({str(tmp_path)!r}), AutoProcessor.from_pretrained({str(tmp_path)!r})
image = np.zeros((40, 60, 3), dtype=np.uint8)
out = model(**processor(images=[image], past_states=np.zeros((1, 16, 6)), intent=[1]))
print(type(processor).__name__, tuple(out.waypoints.shape),
      sorted(m for m in sys.modules if m.startswith("hf_vlmdrive.trainers")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "WaypointVLMProcessor (1, 20, 2) []"


def test_layout_every_family_has_config_recipe_and_processor():
    import importlib

    for family in ("waypoint", "simlingo", "geovla", "roadscene", "flamingo", "robovlm"):
        importlib.import_module(f"hf_vlmdrive.trainers.{family}_config")
        recipe = importlib.import_module(f"hf_vlmdrive.trainers.{family}_recipe")
        assert callable(getattr(recipe, f"train_{family}"))
    for module, name in (("waypoint_vlm.processing_waypoint_vlm", "WaypointVLMProcessor"),
                         ("simlingo.processing_simlingo", "SimLingoProcessor"),
                         ("geovla.processing_geovla", "GeoVLAProcessor"),
                         ("flamingo.processing_flamingo", "FlamingoProcessor"),
                         ("robovlm.processing_robovlm", "RoboVLMProcessor")):
        assert hasattr(importlib.import_module(f"hf_vlmdrive.models.{module}"), name)
    assert json.dumps(sorted(hf_vlmdrive.__all__))


def test_mean_loss_families_tell_trainer_not_to_rescale():
    # Trainer multiplies the loss of a `**kwargs` forward by the processes / accumulation steps (it assumes a sum over
    # num_items_in_batch). Families whose loss is a batch mean must say so; the LM families pass the count to the
    # language model's loss (a sum over the items divided by num_items_in_batch), so Trainer's default is right.
    import importlib

    for module, cls, accepts in (("waypoint_vlm", "WaypointVLMModel", False),
                                 ("simlingo", "SimLingoForWaypointPrediction", False),
                                 ("robovlm", "RoboVLMForActionPrediction", False),
                                 ("geovla", "GeoVLAForActionPrediction", False),
                                 ("flamingo", "FlamingoForConditionalGeneration", True),
                                 ("mosaic_gpt", "MosaicGPTForCausalLM", True)):
        model_class = getattr(importlib.import_module(f"hf_vlmdrive.models.{module}"), cls)
        assert getattr(model_class, "accepts_loss_kwargs", True) is accepts, cls
