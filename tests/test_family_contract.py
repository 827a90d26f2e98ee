"""The shared family contract (`hf_vlmdrive.testing.family.FamilyContract`) run for every model family."""

from __future__ import annotations

import numpy as np
import torch
from transformers.models.clip.modeling_clip import CLIPEncoderLayer
from transformers.models.llama.modeling_llama import LlamaDecoderLayer
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLDecoderLayer, Qwen2_5_VLVisionBlock
from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

import hf_vlmdrive  # noqa: F401  (registers the Auto classes)
from hf_vlmdrive.models.common.layerwise_dit import LayerwiseDiTBlock
from hf_vlmdrive.models.geovla import GeoVLAConfig, GeoVLAForActionPrediction
from hf_vlmdrive.models.simlingo import SimLingoConfig, SimLingoForWaypointPrediction
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel
from hf_vlmdrive.testing.family import FamilyContract
from hf_vlmdrive.testing.tiny_qwen import (
    build_tiny_qwen_processor,
    build_tiny_qwen_tokenizer,
    tiny_dinov2_config,
    tiny_qwen2_5_vl_config,
)


def _set(key, value):
    """An input mutation: `inputs[key] = value(inputs)` (or delete the key when `value` is None)."""

    def mutate(inputs):
        if value is None:
            inputs.pop(key)
        else:
            inputs[key] = value(inputs)

    mutate.__name__ = f"set_{key}"
    return mutate


def _images(batch: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(batch)]


# ------------------------------------------------------------------------------------------- waypoint_vlm
TINY_SIGLIP = dict(
    model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=2, image_size=32, patch_size=8,
)


class TestWaypointVLMFamily(FamilyContract):
    """Frozen SigLIP tower + MLP head. The head has no repeated blocks; with the tower made trainable
    (`freeze_vision=False`) its encoder layers are the checkpointed blocks."""

    config_class = WaypointVLMConfig
    model_class = WaypointVLMModel
    output_keys = ("loss", "waypoints")
    frozen_prefixes = ("vision_model.",)
    checkpointed_block_types = (SiglipEncoderLayer,)
    checkpointing_overrides = {"freeze_vision": False, "head_dropout": 0.0}
    learning_rate = 3e-3
    bad_config_cases = [
        (dict(pooling="max"), "pooling", "max"),
        (dict(loss_type="mae"), "loss_type", "mae"),
        (dict(num_waypoints=0), "num_waypoints", 0),
        (dict(num_cameras=-1), "num_cameras", -1),
        (dict(head_dropout=1.5), "head_dropout", 1.5),
        (dict(head_hidden_sizes=[]), "head_hidden_sizes", []),
        (dict(pooling="attention", attention_pool_heads=5), "attention_pool_heads", 5),
        (dict(waypoint_scale=-2.0), "waypoint_scale", -2.0),
        (dict(vision_config={"model_type": "not_a_model"}), "vision_config.model_type", "not_a_model"),
        (dict(lora=8, freeze_vision=False), "freeze_vision", False),
    ]
    bad_input_cases = [
        (_set("pixel_values", lambda x: torch.randn(2, 3, 16, 16)), "(batch, 3, 32, 32)"),
        (_set("past_states", lambda x: torch.randn(2, 10, 6)), "(batch, 16, 6)"),
        (_set("past_states", None), "`past_states` must have shape"),
        (_set("intent", lambda x: torch.tensor([1, 7])), "[1, 3]"),
        (_set("intent", lambda x: torch.tensor([1.0, 2.0])), "integer tensor"),
        (_set("labels", lambda x: torch.randn(2, 10, 2)), "(2, 20, 2)"),
    ]

    def build_config(self, **overrides):
        kwargs = {"vision_config": TINY_SIGLIP, "head_hidden_sizes": [32, 32], **overrides}
        return WaypointVLMConfig(**kwargs)

    def build_inputs(self, model, batch_size=2):
        return {
            "pixel_values": torch.randn(batch_size, 3, 32, 32),
            "past_states": torch.randn(batch_size, 16, 6),
            "intent": torch.arange(batch_size) % 3 + 1,
            "labels": torch.randn(batch_size, 20, 2),
        }

    def test_checkpointing_with_the_default_frozen_tower(self):
        """Default config: checkpointing is accepted and changes nothing; the frozen tower runs without
        autograd, so its layers are not recomputed (one forward each), and only the head gets gradients."""
        model, plain, ckpt = self.checkpointing_run({}, self.checkpointed_block_types)
        assert plain and set(plain.values()) == {1} and ckpt == plain, (plain, ckpt)
        with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
        assert with_grad and all(n.startswith("head.") for n in with_grad), sorted(with_grad)

    def build_processor(self, tmp_path):
        from hf_vlmdrive.models.waypoint_vlm.processing_waypoint_vlm import WaypointVLMProcessor

        return WaypointVLMProcessor.from_config(self.build_config())

    def processor_inputs(self):
        return {"images": _images(2, (40, 48)), "past_states": np.zeros((2, 16, 6)), "intent": [1, 3],
                "future_waypoints": np.ones((2, 20, 2))}


# ------------------------------------------------------------------------------------------- simlingo
SIMLINGO_VISION = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                   "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 16, "patch_size": 4}
SIMLINGO_TEXT = {"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "hidden_size": 32,
                 "intermediate_size": 64}


class TestSimLingoFamily(FamilyContract):
    """CLIP tower (trained by default) + Llama. Freezing is checked with `freeze_vision=True`; checkpointing
    with the default trainable tower, so both the Llama and the CLIP layers must recompute (the tower's
    last layer is off the backward path: `vision_feature_layer=-2` takes the penultimate hidden state)."""

    config_class = SimLingoConfig
    model_class = SimLingoForWaypointPrediction
    output_keys = ("loss", "speed_wps", "route")
    frozen_prefixes = ("vision_model.",)
    freezing_overrides = {"freeze_vision": True}
    checkpointed_block_types = (LlamaDecoderLayer, CLIPEncoderLayer)
    learning_rate = 5e-3
    bad_config_cases = [
        (dict(speed_wps_mode="3d"), "speed_wps_mode", "3d"),
        (dict(route_as="text"), "route_as", "text"),
        (dict(image_grid_pinpoint=[16, 20]), "image_grid_pinpoint", [16, 20]),
        (dict(feature_downsample=3), "feature_downsample", 3),
        (dict(num_speed_wps=0), "num_speed_wps", 0),
        (dict(max_speed=-1.0), "max_speed", -1.0),
        (dict(route_loss_weight=-0.5), "route_loss_weight", -0.5),
        (dict(vision_feature_layer=7), "vision_feature_layer", 7),
    ]
    bad_input_cases = [
        (_set("pixel_values", lambda x: x["pixel_values"][:, 0]), "(B, T, N, 3, H, W)"),
        (_set("speed", lambda x: torch.rand(2, 3)), "(B, 1)"),
        (_set("target_point", None), "`target_point` of shape (2, 2)"),
        (_set("pixel_values", lambda x: x["pixel_values"].repeat(1, 1, 2, 1, 1, 1)), "num_cameras=1"),
        (_set("intrinsics", lambda x: torch.eye(3).expand(2, 2, 3, 3)), "(2, 1, 3, 3)"),
    ]
    def build_processor(self, tmp_path):
        from hf_vlmdrive.models.simlingo.processing_simlingo import SimLingoProcessor

        return SimLingoProcessor(image_size=[32, 16], route_as="target_point")

    def processor_inputs(self):
        return {"images": [[im] for im in _images(2, (40, 48))], "speed": [3.0, 5.0],
                "target_point": [[10.0, 1.0], [12.0, -2.0]]}

    def build_config(self, **overrides):
        kwargs = {"vision_config": SIMLINGO_VISION, "text_config": SIMLINGO_TEXT, "head_hidden_size": 16,
                  "encoder_hidden_size": 16, "projector_hidden_size": 32, **overrides}
        return SimLingoConfig(**kwargs)

    def build_inputs(self, model, batch_size=2):
        b = batch_size
        return {
            "pixel_values": torch.randint(0, 256, (b, 1, 1, 3, 16, 32), dtype=torch.uint8),
            "speed": torch.rand(b, 1) * 10,
            "target_point": torch.randn(b, 2) * 10,
            "intrinsics": torch.eye(3).expand(b, 1, 3, 3).clone(),
            "extrinsics": torch.eye(4).expand(b, 1, 4, 4).clone(),
            "speed_wps_labels": torch.randn(b, 10, 2),
            "route_labels": torch.randn(b, 20, 2),
        }


# ------------------------------------------------------------------------------------------- geovla
_TOKENIZER = None


def _tokenizer():
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = build_tiny_qwen_tokenizer()
    return _TOKENIZER


def _norm_stats() -> dict:
    rng = np.random.default_rng(0)
    return {
        "observation.state": {"mean": rng.normal(size=8).tolist(), "std": rng.uniform(0.5, 2, 8).tolist()},
        "action": {"mean": rng.normal(size=7).tolist(), "std": rng.uniform(0.5, 2, 7).tolist()},
    }


class TestGeoVLAFamily(FamilyContract):
    """Qwen2.5-VL (trained) + frozen DINOv2 geometry encoder + starVLA's layer-wise DiT flow-matching head.
    Flow-matching noise and times (two draws per example) are passed in."""

    config_class = GeoVLAConfig
    model_class = GeoVLAForActionPrediction
    output_keys = ("loss", "velocity", "target_velocity")
    frozen_prefixes = ("geometry_encoder.",)
    checkpointed_block_types = (LayerwiseDiTBlock, Qwen2_5_VLDecoderLayer, Qwen2_5_VLVisionBlock)
    checkpointing_overrides = {"dit_dropout": 0.0}
    learning_rate = 2e-3
    bad_config_cases = [
        (dict(compressor_type="mean"), "compressor_type", "mean"),
        (dict(dit_num_heads=3), "dit_num_heads", 3),
        (dict(dit_vlm_layer_map=[1, 5]), "dit_vlm_layer_map", 5),
        (dict(normalization_mode="minmax"), "normalization_mode", "minmax"),
        (dict(dit_dropout=1.5), "dit_dropout", 1.5),
        (dict(action_dim=0), "action_dim", 0),
        (dict(vlm_config={"model_type": "llama"}), "vlm_config.model_type", "llama"),
    ]
    bad_input_cases = [
        (_set("actions", lambda x: torch.randn(2, 4, 7)), "(2, 8, 7)"),
        (_set("state", lambda x: torch.randn(2, 6)), "(2, 8)"),
        (_set("geometry_pixel_values", lambda x: torch.randn(2, 3, 3, 28, 28)), "(batch, 2, 3, 28, 28)"),
        (_set("geometry_features", lambda x: torch.randn(2, 8, 48)), "exactly one of"),
        (_set("input_ids", None), "`input_ids` are required"),
    ]

    def build_config(self, **overrides):
        kwargs = dict(
            vlm_config=tiny_qwen2_5_vl_config(_tokenizer(), hidden_size=32, num_layers=2).to_dict(),
            geometry_config={"backbone_config": tiny_dinov2_config().to_dict(), "num_views": 2, "num_layers": 1,
                             "num_heads": 2, "output_size": 48},
            compressor_type="pool", num_geometry_tokens=4, compressor_num_heads=2,
            dit_num_layers=2, dit_hidden_size=32, dit_num_heads=2, num_inference_steps=2,
        )
        kwargs.update(overrides)
        return GeoVLAConfig(**kwargs)

    def prepare_model(self, model):
        model.set_norm_stats(_norm_stats())

    def post_load(self, loaded, original):
        assert loaded.norm_stats is not None, "norm_stats.json did not come back with from_pretrained"
        assert set(loaded.norm_stats) == set(original.norm_stats)
        for key, stats in original.norm_stats.items():
            for name, value in stats.items():
                assert torch.equal(loaded.norm_stats[key][name], value), f"norm stats {key}.{name} changed"

    def build_inputs(self, model, batch_size=2):
        processor = build_tiny_qwen_processor(_tokenizer())
        texts = ["<|vision_start|><|image_pad|><|vision_end|>put the bowl on the plate"] * batch_size
        enc = processor(text=texts, images=[[im] for im in _images(batch_size, (56, 56))], return_tensors="pt",
                        padding=True)
        cfg = model.config
        shape = (batch_size, cfg.action_chunk_size, cfg.action_dim)
        draws = cfg.num_flow_samples * batch_size  # noise and times for every flow draw
        return {
            **{k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")},
            "geometry_pixel_values": torch.randn(batch_size, 2, 3, 28, 28),
            "state": torch.randn(batch_size, cfg.state_dim),
            "actions": torch.randn(shape),
            "noise": torch.randn(draws, *shape[1:]),
            "time": torch.linspace(0.2, 0.8, draws),
        }

    def build_processor(self, tmp_path):
        from hf_vlmdrive.models.geovla.processing_geovla import GeoVLAProcessor

        return GeoVLAProcessor.from_vlm_processor(build_tiny_qwen_processor(_tokenizer()), geometry_image_size=28)

    def processor_inputs(self):
        return {"images": [[np.asarray(im) for im in _images(2, (56, 56))]], "instructions": ["open the top drawer"],
                "state": [np.ones(8, np.float32)]}
