"""The shared family contract (`hf_vlmdrive.testing.family.FamilyContract`), run for every model class registered
with the Auto classes (`models/auto.py`): one test class each, all in this module, built from the tiny configs of
`hf_vlmdrive.testing.tiny_models`; plus the checks across families (every registration has its contract class,
configuration modules import no modeling code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.clip.modeling_clip import CLIPEncoderLayer
from transformers.models.dinov2.modeling_dinov2 import Dinov2Layer
from transformers.models.kosmos2.modeling_kosmos2 import Kosmos2TextBlock
from transformers.models.llama.modeling_llama import LlamaDecoderLayer
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLDecoderLayer, Qwen2_5_VLVisionBlock
from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

import hf_vlmdrive
from hf_vlmdrive.models.auto import AUTO_CLASSES
from hf_vlmdrive.models.common.gated_cross_attention import GatedCrossAttentionBlock
from hf_vlmdrive.models.common.layerwise_dit import LayerwiseDiTBlock
from hf_vlmdrive.models.flamingo import FlamingoConfig, FlamingoForConditionalGeneration, FlamingoProcessor
from hf_vlmdrive.models.geovla import GeoVLAConfig, GeoVLAForActionPrediction, GeoVLAGeometryEncoder
from hf_vlmdrive.models.geovla.configuration_geovla import GeoVLAGeometryConfig
from hf_vlmdrive.models.mapanything import MapAnythingConfig, MapAnythingImageProcessor, MapAnythingModel
from hf_vlmdrive.models.mapanything.modeling_mapanything import MapAnythingBlock
from hf_vlmdrive.models.mosaic_gpt import MosaicGPTConfig
from hf_vlmdrive.models.mosaic_gpt.modeling_mosaic_gpt import (
    MosaicGPTBlock,
    MosaicGPTForCausalLM,
    MosaicGPTModel,
)
from hf_vlmdrive.models.robovlm import RoboVLMConfig, RoboVLMForActionPrediction
from hf_vlmdrive.models.simlingo import SimLingoConfig, SimLingoForWaypointPrediction
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel
from hf_vlmdrive.testing.family import FamilyContract
from hf_vlmdrive.testing.tiny_flamingo import tiny_image_processor, train_tiny_base_tokenizer
from hf_vlmdrive.testing.tiny_kosmos2 import build_tiny_robovlm_processor
from hf_vlmdrive.testing.tiny_models import (
    FLAMINGO_END_OF_CHUNK_ID,
    FLAMINGO_MEDIA_ID,
    TINY_CONFIG_BUILDERS,
    TINY_MAPANYTHING,
    tiny_flamingo_model_config,
    tiny_geovla_config,
    tiny_geovla_geometry_config,
    tiny_mapanything_config,
    tiny_mosaic_gpt_config,
    tiny_robovlm_config,
    tiny_simlingo_config,
    tiny_waypoint_vlm_config,
)
from hf_vlmdrive.testing.tiny_qwen import build_tiny_qwen_processor, build_tiny_qwen_tokenizer


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
        return tiny_waypoint_vlm_config(**overrides)

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
        return tiny_simlingo_config(**overrides)

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
    # The default geometry encoder, MapAnything's trunk (tiny), as a structural variant of the stand-in.
    variant_overrides = [{"action_head_type": "adaln_zero"},
                         {"geometry_config": {"model_type": "mapanything", **TINY_MAPANYTHING}, "geometry_image_size": 28}]
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
        return tiny_geovla_config(_tokenizer(), **overrides)

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

    def select_sample(self, inputs, index, batch_size):
        """Qwen2.5-VL's `pixel_values` are the patches of all images in one (patches, dim) tensor, image i has
        prod(image_grid_thw[i]) of them; `noise` / `time` hold R draws of the batch (`repeat` order)."""
        sample = super().select_sample(inputs, index, batch_size)
        counts = inputs["image_grid_thw"].prod(-1).tolist()
        start = sum(counts[:index])
        sample["pixel_values"] = inputs["pixel_values"][start : start + counts[index]]
        draws = len(inputs["time"]) // batch_size
        rows = [r * batch_size + index for r in range(draws)]
        sample["noise"], sample["time"] = inputs["noise"][rows], inputs["time"][rows]
        return sample

    def sample_output(self, value, index, batch_size):
        draws = len(value) // batch_size  # velocity and target hold R draws of the batch, `repeat` order
        return value[[r * batch_size + index for r in range(draws)]]

    def build_processor(self, tmp_path):
        from hf_vlmdrive.models.geovla.processing_geovla import GeoVLAProcessor

        return GeoVLAProcessor.from_vlm_processor(build_tiny_qwen_processor(_tokenizer()), geometry_image_size=28)

    def processor_inputs(self):
        return {"images": [[np.asarray(im) for im in _images(2, (56, 56))]], "instructions": ["open the top drawer"],
                "state": [np.ones(8, np.float32)]}


class TestGeoVLAGeometryEncoderFamily(FamilyContract):
    """GeoVLA's geometry encoder, registered with AutoModel on its own (`model_type: geovla_geometry`): DINOv2 per
    view + view embedding + multi-view transformer. It has no loss: the checkpointing and training checks use the
    mean square of its tokens as a fixed surrogate. Inside GeoVLA it is frozen; on its own everything trains."""

    config_class = GeoVLAGeometryConfig
    model_class = GeoVLAGeometryEncoder
    output_keys = ("tokens",)
    checkpointed_block_types = (Dinov2Layer,)
    learning_rate = 3e-3
    bad_config_cases = [
        (dict(num_views=0), "num_views", 0),
        (dict(num_heads=3), "num_heads", 3),
        (dict(output_size=-1), "output_size", -1),
        (dict(backbone_config={"model_type": "not_a_model"}), "backbone_config.model_type", "not_a_model"),
    ]
    bad_input_cases = [
        (_set("pixel_values", lambda x: torch.randn(2, 3, 3, 28, 28)), "(batch, 2, 3, 28, 28)"),
        (_set("pixel_values", lambda x: torch.randn(2, 2, 3, 14, 14)), "(batch, 2, 3, 28, 28)"),
    ]
    processor_skip_reason = "the geometry encoder takes GeoVLAProcessor's geometry_pixel_values; it has no processor"

    def build_config(self, **overrides):
        return tiny_geovla_geometry_config(**overrides)

    def build_inputs(self, model, batch_size=2):
        return {"pixel_values": torch.randn(batch_size, 2, 3, 28, 28)}

    def output_fields(self, outputs):
        return {"tokens": outputs}

    def loss_of(self, outputs):
        return outputs.square().mean()


# ------------------------------------------------------------------------------------------- mapanything
class TestMapAnythingFamily(FamilyContract):
    """MapAnything's feature trunk (V1.1 architecture at width 32): DINOv2 blocks, fusion LayerNorm, alternating-
    attention transformer. It has no loss: the checkpointing and training checks use the mean square of its patch
    tokens, CLS registers and scale token as a fixed surrogate. Non-square views (28 x 42) interpolate the 2 x 2
    position table. Inside GeoVLA it is frozen; on its own everything trains."""

    config_class = MapAnythingConfig
    model_class = MapAnythingModel
    output_keys = ("last_hidden_state", "cls_tokens", "scale_token", "encoder_hidden_state")
    checkpointed_block_types = (MapAnythingBlock,)
    learning_rate = 1e-2
    variant_overrides = [{"feature_mode": "qwenmapanythingpi"}]
    bad_config_cases = [
        (dict(feature_mode="starvla"), "feature_mode", "starvla"),
        (dict(num_attention_heads=5), "num_attention_heads", 5),
        (dict(info_sharing_num_heads=3), "info_sharing_num_heads", 3),
        (dict(encoder_mlp_type="gelu"), "encoder_mlp_type", "gelu"),
        (dict(intermediate_layer_indices=[9]), "intermediate_layer_indices", [9]),
        (dict(image_size=30), "image_size", 30),
        (dict(num_hidden_layers=0), "num_hidden_layers", 0),
    ]
    bad_input_cases = [
        (_set("pixel_values", lambda x: x["pixel_values"][:, 0]), "(batch, views, 3, H, W)"),
        (_set("pixel_values", lambda x: x["pixel_values"][..., :30]), "multiples of 14"),
        (_set("pixel_values", lambda x: x["pixel_values"][:, :, :1]), "(batch, views, 3, H, W)"),
    ]

    def build_config(self, **overrides):
        return tiny_mapanything_config(**overrides)

    def build_inputs(self, model, batch_size=2):
        return {"pixel_values": torch.randn(batch_size, 2, 3, 28, 42)}

    def loss_of(self, outputs):
        return (outputs.last_hidden_state.square().mean() + outputs.cls_tokens.square().mean()
                + outputs.scale_token.square().mean())

    def build_processor(self, tmp_path):
        return MapAnythingImageProcessor(size={"height": 28, "width": 42})

    def processor_inputs(self):
        return {"images": [_images(2, (30, 40), seed=0), _images(2, (50, 20), seed=1)]}


# ------------------------------------------------------------------------------------------- robovlm
def _robovlm_frames(batch: int, window: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(window)] for _ in range(batch)]


class TestRoboVLMFamily(FamilyContract):
    """Tiny Kosmos-2 + action token + LSTM head; the Kosmos-2 text blocks are the checkpointed blocks."""

    config_class = RoboVLMConfig
    model_class = RoboVLMForActionPrediction
    output_keys = ("loss", "actions", "context_vectors")
    frozen_prefixes = ("backbone.",)
    freezing_overrides = {"freeze_backbone": True}
    checkpointed_block_types = (Kosmos2TextBlock,)
    learning_rate = 3e-3
    variant_overrides = [{"head_type": "mlp"}, {"head_type": "gpt"}]
    bad_config_cases = [
        (dict(head_type="transformer"), "head_type", "transformer"),
        (dict(loss_type="l1"), "loss_type", "l1"),
        (dict(window_size=0), "window_size", 0),
        (dict(action_dim=0), "action_dim", 0),
        (dict(action_dim=1, use_gripper=True), "action_dim", 1),
        (dict(head_type="gpt", gpt_num_heads=5), "gpt_num_heads", 5),
        (dict(action_low=[0.0, 0.0], action_high=[0.0, 1.0]), "action_low", [0.0, 0.0]),
        (dict(action_low=[0.0, 0.0, 0.0]), "action_low", [0.0, 0.0, 0.0]),
        (dict(head_dropout=1.5), "head_dropout", 1.5),
        (dict(backbone_config={"model_type": "llava"}), "backbone_config.model_type", "llava"),
    ]
    bad_input_cases = [
        (_set("pixel_values", lambda x: torch.randn(2, 3, 3, 16, 16)), "(batch, window, 3, 32, 32)"),
        (_set("input_ids", lambda x: x["input_ids"][:1]), "`input_ids` must have shape"),
        (_set("actions", lambda x: torch.zeros(2, 3, 1, 5)), "(2, 3, 1, 2)"),
        (_set("attention_mask", lambda x: torch.cat([torch.zeros_like(x["attention_mask"][:, :1]),
                                                     x["attention_mask"][:, 1:]], 1)), "right-padded"),
    ]

    def build_config(self, **overrides):
        return tiny_robovlm_config(**overrides)

    def build_inputs(self, model, batch_size=2):
        proc = build_tiny_robovlm_processor()
        rng = np.random.default_rng(1)
        actions = rng.uniform(-0.9, 0.9, size=(batch_size, 3, 1, 2)).astype(np.float32)
        texts = ["horizontal left", "horizontal right"] * batch_size
        return dict(proc(images=_robovlm_frames(batch_size, 3), text=texts[:batch_size], actions=actions))

    def prepare_model(self, model):
        with torch.no_grad():
            model.action_token.normal_(0, 0.5)  # zero-initialised like RoboVLMs; perturbed so it matters

    def build_processor(self, tmp_path):
        return build_tiny_robovlm_processor()

    def processor_inputs(self):
        return {"images": _robovlm_frames(2, 2), "text": ["horizontal left", "horizontal right"]}


# ------------------------------------------------------------------------------------------- flamingo
def _flamingo_ids(batch: int = 2) -> torch.Tensor:
    """Rows with text before the first image, two images, text after each."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 290, (batch, 12), generator=g)
    ids[:, 3] = FLAMINGO_MEDIA_ID
    ids[:, 8] = FLAMINGO_MEDIA_ID
    ids[:, 7] = FLAMINGO_END_OF_CHUNK_ID
    return ids


class TestFlamingoFamily(FamilyContract):
    """Frozen CLIP tower and LM; the Perceiver resampler and the gated blocks train (gates perturbed)."""

    config_class = FlamingoConfig
    model_class = FlamingoForConditionalGeneration
    output_keys = ("loss", "logits")
    frozen_prefixes = (
        "vision_model.",
        "language_model.model.embed_tokens.",
        "language_model.model.layers.0.decoder_layer.",
        "language_model.model.layers.1.decoder_layer.",
        "language_model.model.norm.",
        "language_model.lm_head.",
    )
    checkpointed_block_types = (GatedCrossAttentionBlock,)
    learning_rate = 2e-2
    bad_config_cases = [
        (dict(cross_attn_every_n_layers=0), "cross_attn_every_n_layers", 0),
        (dict(cross_attn_every_n_layers=3), "cross_attn_every_n_layers", 3),
        (dict(perceiver_depth=0), "perceiver_depth", 0),
        (dict(perceiver_num_latents=-4), "perceiver_num_latents", -4),
        (dict(cross_attn_ff_mult=0), "cross_attn_ff_mult", 0),
        (dict(media_token_id=-1), "media_token_id", -1),
        (dict(text_config={"model_type": "not_a_model"}), "text_config.model_type", "not_a_model"),
        (dict(end_of_chunk_token_id="eoc"), "end_of_chunk_token_id", "eoc"),
        (dict(text_config={"model_type": "bert"}, decoder_layers_attr=None), "decoder_layers_attr", "bert"),
    ]
    bad_input_cases = [
        (_set("pixel_values", lambda x: x["pixel_values"][:, 0]), "(B, T_img, F, 3, H, W)"),
        (_set("pixel_values", None), "no pixel_values"),
        (_set("pixel_values", lambda x: x["pixel_values"][:, :1]), "only 1 images per row"),
        (_set("pixel_values", lambda x: x["pixel_values"][:1]), "batch size 1"),
    ]

    def build_config(self, **overrides):
        return tiny_flamingo_model_config(**overrides)

    def build_inputs(self, model, batch_size=2):
        ids = _flamingo_ids(batch_size)
        labels = torch.full_like(ids, 7)  # a target the trainable blocks can reach through the frozen LM
        labels[:, :4] = -100
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                "pixel_values": torch.randn(batch_size, 2, 1, 3, 16, 16), "labels": labels}

    def prepare_model(self, model):
        with torch.no_grad():
            for block in model.gated_cross_attn_layers:
                block.attn_gate.fill_(0.5)
                block.ff_gate.fill_(-0.5)

    def build_processor(self, tmp_path):
        return FlamingoProcessor(image_processor=tiny_image_processor(), tokenizer=train_tiny_base_tokenizer())

    def processor_inputs(self):
        rng = np.random.default_rng(0)
        ims = [Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)) for _ in range(3)]
        return {"text": ["User:<image> Describe the road scene.", "<image>a car<|endofchunk|><image>a bus"],
                "images": [[ims[0]], [ims[1], ims[2]]]}


# ------------------------------------------------------------------------------------------- mosaic_gpt
def _mosaic_inputs(batch_size):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 300, (batch_size, 10), generator=g)
    return ids


class TestMosaicGPTForCausalLMFamily(FamilyContract):
    """MosaicGPT (MPT-1B's LM) as a causal LM: everything trains; its blocks are checkpointed."""

    config_class = MosaicGPTConfig
    model_class = MosaicGPTForCausalLM
    auto_class = "AutoModelForCausalLM"
    output_keys = ("loss", "logits")
    checkpointed_block_types = (MosaicGPTBlock,)
    learning_rate = 1e-2
    bad_config_cases = [
        (dict(n_heads=5), "n_heads", 5),
        (dict(attn_impl="cuda"), "attn_impl", "cuda"),
        (dict(embedding_fraction=0.0), "embedding_fraction", 0.0),
        (dict(logit_scale="inv_d"), "logit_scale", "inv_d"),
        (dict(prefix_lm=True), "prefix_lm", True),
        (dict(attn_pdrop=1.5), "attn_pdrop", 1.5),
        (dict(attn_clip_qkv=-1.0), "attn_clip_qkv", -1.0),
        (dict(tie_word_embeddings=False), "tie_word_embeddings", False),
    ]
    bad_input_cases = [
        (_set("attention_mask", lambda x: x["attention_mask"][:, :4]), "attention_mask must have shape"),
        (_set("input_ids", lambda x: torch.ones(2, 80, dtype=torch.long)), "exceeds max_seq_len=64"),
    ]

    def build_config(self, **overrides):
        return tiny_mosaic_gpt_config(**overrides)

    def build_inputs(self, model, batch_size=2):
        ids = _mosaic_inputs(batch_size)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


class TestMosaicGPTModelFamily(FamilyContract):
    """The MosaicGPT trunk alone (no loss of its own: the squared last hidden state stands in)."""

    config_class = MosaicGPTConfig
    model_class = MosaicGPTModel
    output_keys = ("last_hidden_state",)
    checkpointed_block_types = (MosaicGPTBlock,)
    learning_rate = 1e-2
    bad_config_cases = [
        (dict(d_model=30), "d_model", 30),
        (dict(attn_uses_sequence_id=True), "attn_uses_sequence_id", True),
    ]
    bad_input_cases = [
        (_set("input_ids", None), "exactly one of input_ids and inputs_embeds"),
    ]

    def build_config(self, **overrides):
        return tiny_mosaic_gpt_config(**overrides)

    def build_inputs(self, model, batch_size=2):
        ids = _mosaic_inputs(batch_size)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def loss_of(self, outputs):
        return outputs.last_hidden_state.pow(2).mean()


# ------------------------------------------------------------------------------------------- across families
def _contract_classes() -> list[type[FamilyContract]]:
    return [c for c in globals().values()
            if isinstance(c, type) and issubclass(c, FamilyContract) and c is not FamilyContract]


def test_every_registered_model_class_has_a_contract_test():
    """Each class registered with a model Auto class (models/auto.py) has a contract class here and a tiny config
    builder in hf_vlmdrive.testing.tiny_models."""
    registered = {e.name for e in AUTO_CLASSES if e.auto_class.startswith("AutoModel")}
    assert len(registered) >= 6, registered
    tested = {c.model_class.__name__ for c in _contract_classes()}
    missing = sorted(registered - tested)
    assert not missing, (
        f"registered with the Auto classes but without a contract test in {Path(__file__).name}: {missing}; add a "
        "FamilyContract subclass for each"
    )
    without_builder = sorted(registered - set(TINY_CONFIG_BUILDERS))
    assert not without_builder, f"no tiny config builder in hf_vlmdrive.testing.tiny_models for {without_builder}"
    for cls in _contract_classes():
        config = TINY_CONFIG_BUILDERS[cls.model_class.__name__]()
        assert type(config) is cls.config_class, (cls.__name__, type(config))


_SRC = Path(hf_vlmdrive.__file__).parent
_CONFIG_MODULES = sorted(
    ".".join(p.relative_to(_SRC.parent).with_suffix("").parts) for p in _SRC.glob("models/*/configuration_*.py")
)
_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("hf_vlmdrive"))))
"""


@pytest.mark.parametrize("module", _CONFIG_MODULES)
def test_configuration_modules_import_no_modeling_code(module):
    """Importing a configuration module (which `import hf_vlmdrive` does) imports none of the library's torch
    modules: no `models.<family>.modeling_*` and nothing of `models.common` but the torch-free `config_utils` and
    `lora_config`."""
    assert len(_CONFIG_MODULES) >= 5, _CONFIG_MODULES
    proc = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = json.loads(proc.stdout.strip().splitlines()[-1])
    light_common = {"hf_vlmdrive.models.common", "hf_vlmdrive.models.common.config_utils",
                    "hf_vlmdrive.models.common.lora_config"}
    heavy = [m for m in imported
             if (m.startswith("hf_vlmdrive.models.") and ".modeling_" in m)
             or (m.startswith("hf_vlmdrive.models.common.") and m not in light_common)]
    assert not heavy, (
        f"importing {module} imports the library's torch modules {heavy}; configuration modules must stay light "
        "(move the constant they need into the configuration module or models/common/config_utils.py)"
    )
