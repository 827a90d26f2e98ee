"""Tiny configs of every model family, in one place: what the family contract, the families' tests and the demos
build (hidden 16-64, 1-2 layers, images 16-32 px; real transformers backbones, built locally, no Hub access).

One builder per class registered with `AutoModel` (`models/auto.py::AUTO_CLASSES`), each taking config
overrides as keyword arguments:

| registered class                    | builder                         | backbones                                 |
| ----------------------------------- | ------------------------------- | ----------------------------------------- |
| `WaypointVLMModel`                  | `tiny_waypoint_vlm_config`      | SigLIP 32 px, 2 layers                    |
| `SimLingoForWaypointPrediction`     | `tiny_simlingo_config`          | CLIP 16 px + Llama, 2 layers each         |
| `GeoVLAForActionPrediction`         | `tiny_geovla_config`            | Qwen2.5-VL + DINOv2 28 px (`tiny_qwen`)   |
| `GeoVLAGeometryEncoder`             | `tiny_geovla_geometry_config`   | DINOv2 28 px                              |
| `RoboVLMForActionPrediction`        | `tiny_robovlm_config`           | Kosmos-2 32 px (`tiny_kosmos2`)           |
| `FlamingoForConditionalGeneration`  | `tiny_flamingo_model_config`    | CLIP 16 px + Llama (`tiny_flamingo`)      |
| `MosaicGPTModel`                    | `tiny_mosaic_gpt_config`        | none (width 32, 4 heads, 2 layers)        |
| `MosaicGPTForCausalLM`              | `tiny_mosaic_gpt_config`        | none (width 32, 4 heads, 2 layers)        |
| `MapAnythingModel`                  | `tiny_mapanything_config`       | none (MapAnything's own blocks, 28 px)    |

`TINY_CONFIG_BUILDERS` maps each registered class name to its builder; the contract checks that it covers every
registration. Importing this module imports no modeling code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import PretrainedConfig

__all__ = [
    "FLAMINGO_END_OF_CHUNK_ID",
    "FLAMINGO_MEDIA_ID",
    "FLAMINGO_VOCAB_SIZE",
    "TINY_CONFIG_BUILDERS",
    "TINY_MAPANYTHING",
    "TINY_ROBOVLM_HEAD",
    "TINY_SIGLIP",
    "TINY_SIMLINGO_TEXT",
    "TINY_SIMLINGO_VISION",
    "tiny_flamingo_model_config",
    "tiny_geovla_config",
    "tiny_geovla_geometry_config",
    "tiny_mosaic_gpt_config",
    "tiny_mapanything_config",
    "tiny_robovlm_config",
    "tiny_simlingo_config",
    "tiny_waypoint_vlm_config",
]

# ------------------------------------------------------------------------------------------- waypoint_vlm
TINY_SIGLIP = dict(
    model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=2, image_size=32, patch_size=8,
)


def tiny_waypoint_vlm_config(**overrides: Any) -> PretrainedConfig:
    """A `WaypointVLMConfig`: 2-layer SigLIP tower (32 px, patch 8), head [32, 32]; `overrides` are config fields."""
    from ..models.waypoint_vlm.configuration_waypoint_vlm import WaypointVLMConfig

    return WaypointVLMConfig(**{"vision_config": TINY_SIGLIP, "head_hidden_sizes": [32, 32], **overrides})


# ------------------------------------------------------------------------------------------- simlingo
TINY_SIMLINGO_VISION = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                        "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 16, "patch_size": 4}
TINY_SIMLINGO_TEXT = {"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "hidden_size": 32,
                      "intermediate_size": 64}


def tiny_simlingo_config(**overrides: Any) -> PretrainedConfig:
    """A `SimLingoConfig`: 2-layer CLIP tower (16 px, patch 4) + 2-layer Llama of width 32, 16-wide adaptors."""
    from ..models.simlingo.configuration_simlingo import SimLingoConfig

    kwargs = {"vision_config": TINY_SIMLINGO_VISION, "text_config": TINY_SIMLINGO_TEXT, "head_hidden_size": 16,
              "encoder_hidden_size": 16, "projector_hidden_size": 32, **overrides}
    return SimLingoConfig(**kwargs)


# ------------------------------------------------------------------------------------------- geovla
def tiny_geovla_geometry_config(**overrides: Any) -> PretrainedConfig:
    """A `GeoVLAGeometryConfig`: 1-layer DINOv2 (28 px, patch 14, width 32), 2 views, 1 multi-view layer, 48 out."""
    from ..models.geovla.configuration_geovla import GeoVLAGeometryConfig
    from .tiny_qwen import tiny_dinov2_config

    kwargs = {"backbone_config": tiny_dinov2_config().to_dict(), "num_views": 2, "num_layers": 1, "num_heads": 2,
              "output_size": 48, **overrides}
    return GeoVLAGeometryConfig(**kwargs)


def tiny_geovla_config(tokenizer=None, **overrides: Any) -> PretrainedConfig:
    """A `GeoVLAConfig`: Qwen2.5-VL of width 32 x 2 layers (token ids of `tokenizer`, the tiny Qwen tokenizer by
    default), the tiny geometry encoder, a pool compressor (4 tokens) and a 2-layer DiT of width 32."""
    from ..models.geovla.configuration_geovla import GeoVLAConfig
    from .tiny_qwen import build_tiny_qwen_tokenizer, tiny_qwen2_5_vl_config

    tokenizer = tokenizer if tokenizer is not None else build_tiny_qwen_tokenizer()
    kwargs = dict(
        vlm_config=tiny_qwen2_5_vl_config(tokenizer, hidden_size=32, num_layers=2).to_dict(),
        geometry_config=tiny_geovla_geometry_config().to_dict(),
        compressor_type="pool", num_geometry_tokens=4, compressor_num_heads=2,
        dit_num_layers=2, dit_hidden_size=32, dit_num_heads=2, num_inference_steps=2,
    )
    kwargs.update(overrides)
    return GeoVLAConfig(**kwargs)


# ------------------------------------------------------------------------------------------- robovlm
TINY_ROBOVLM_HEAD = dict(head_hidden_size=32, head_num_layers=2, head_mlp_sizes=[32, 16], gpt_num_layers=2,
                         gpt_num_heads=2, window_size=3)


def tiny_robovlm_config(**overrides: Any) -> PretrainedConfig:
    """A `RoboVLMConfig`: tiny Kosmos-2 (32 px, width 32, 2 + 2 layers), 2-layer LSTM head of width 32, window 3."""
    from ..models.robovlm.configuration_robovlm import RoboVLMConfig
    from .tiny_kosmos2 import tiny_kosmos2_config

    return RoboVLMConfig(**{"backbone_config": tiny_kosmos2_config(), **TINY_ROBOVLM_HEAD, **overrides})


# ------------------------------------------------------------------------------------------- flamingo
# Tiny configs without a tokenizer: the last two ids of the vocabulary are <image> and <|endofchunk|>.
FLAMINGO_MEDIA_ID, FLAMINGO_END_OF_CHUNK_ID, FLAMINGO_VOCAB_SIZE = 298, 299, 300


def tiny_flamingo_model_config(**overrides: Any) -> PretrainedConfig:
    """A `FlamingoConfig` (`tiny_flamingo.tiny_flamingo_config("llama")`, vocabulary 300 with `<image>` = 298 and
    `<|endofchunk|>` = 299) whose LM head is untied from the embeddings, so that it is a parameter of its own."""
    from .tiny_flamingo import tiny_flamingo_config

    kwargs = {"media_token_id": FLAMINGO_MEDIA_ID, "end_of_chunk_token_id": FLAMINGO_END_OF_CHUNK_ID, **overrides}
    config = tiny_flamingo_config("llama", vocab_size=FLAMINGO_VOCAB_SIZE, **kwargs)
    if "text_config" not in overrides:
        config.text_config.tie_word_embeddings = False
    return config


# ------------------------------------------------------------------------------------------- mosaic_gpt
def tiny_mosaic_gpt_config(**overrides: Any) -> PretrainedConfig:
    """A `MosaicGPTConfig` with every switch MPT-1B uses (ALiBi, QK LayerNorm, no biases, tied output): width 32,
    4 heads, 2 layers, vocabulary 300, 64 positions; `overrides` are config fields."""
    from ..models.mosaic_gpt.configuration_mosaic_gpt import MosaicGPTConfig

    kwargs = dict(d_model=32, n_heads=4, n_layers=2, mlp_ratio=4, max_seq_len=64, vocab_size=300, alibi=True,
                  attn_qk_ln=True, no_bias=True, attn_impl="torch", bos_token_id=0, eos_token_id=0)
    kwargs.update(overrides)
    return MosaicGPTConfig(**kwargs)


# ------------------------------------------------------------------------------------------- mapanything
TINY_MAPANYTHING = dict(
    image_size=28, hidden_size=32, num_attention_heads=2, num_hidden_layers=2, intermediate_size=64,
    info_sharing_hidden_size=32, info_sharing_num_heads=2, info_sharing_num_layers=4,
    info_sharing_intermediate_size=64, intermediate_layer_indices=[1, 2],
)


def tiny_mapanything_config(**overrides: Any) -> PretrainedConfig:
    """A `MapAnythingConfig` of the V1.1 architecture: encoder width 32 x 2 blocks (2 heads, fused SwiGLU 64,
    position table 2 x 2 = 28 px), AAT width 32 x 4 blocks (2 global + 2 frame), intermediates after blocks 1, 2."""
    from ..models.mapanything.configuration_mapanything import MapAnythingConfig

    return MapAnythingConfig(**{**TINY_MAPANYTHING, **overrides})


TINY_CONFIG_BUILDERS: dict[str, Callable[..., PretrainedConfig]] = {
    "WaypointVLMModel": tiny_waypoint_vlm_config,
    "SimLingoForWaypointPrediction": tiny_simlingo_config,
    "GeoVLAForActionPrediction": tiny_geovla_config,
    "GeoVLAGeometryEncoder": tiny_geovla_geometry_config,
    "RoboVLMForActionPrediction": tiny_robovlm_config,
    "FlamingoForConditionalGeneration": tiny_flamingo_model_config,
    "MosaicGPTModel": tiny_mosaic_gpt_config,
    "MosaicGPTForCausalLM": tiny_mosaic_gpt_config,
    "MapAnythingModel": tiny_mapanything_config,
}
