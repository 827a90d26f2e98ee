"""GeoVLA with MapAnything as its geometry encoder (the default): the reference build on the meta device, a tiny
MapAnything inside a tiny GeoVLA (frozen, cached, loaded from the released layout by `from_backbones`)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import hf_vlmdrive  # noqa: F401  (registers the Auto classes)
from hf_vlmdrive.errors import UserError
from hf_vlmdrive.features.geometry_cache import GeometryFeatureCache
from hf_vlmdrive.models.geovla import GeoVLAConfig, GeoVLAForActionPrediction
from hf_vlmdrive.models.geovla.configuration_geovla import QWEN2_5_VL_3B_CONFIG
from hf_vlmdrive.models.mapanything import MapAnythingConfig, MapAnythingModel
from hf_vlmdrive.testing.tiny_models import tiny_mapanything_config
from hf_vlmdrive.testing.tiny_qwen import (
    build_tiny_qwen_tokenizer,
    save_tiny_qwen2_5_vl,
    tiny_qwen2_5_vl_config,
)

# Qwen2.5-VL-3B-Instruct's config.json (the fields that size it), as the package ships it.
QWEN2_5_VL_3B = QWEN2_5_VL_3B_CONFIG


def test_reference_geovla_on_meta_has_mapanything_v11_geometry():
    """The seed's GeoVLA: Qwen2.5-VL-3B + MapAnything V1.1 (frozen) + 16-layer DiT, pool compressor."""
    config = GeoVLAConfig(vlm_config=QWEN2_5_VL_3B, compressor_type="pool", dit_num_layers=16)
    assert isinstance(config.geometry_config, MapAnythingConfig) and config.geometry_config.output_size == 1536
    assert config.geometry_image_size == 224
    assert config.geometry_config.tokens_per_view(224, 224) == 256  # not the seed plan's 196
    with torch.device("meta"):
        model = GeoVLAForActionPrediction(config)
    geometry = sum(p.numel() for p in model.geometry_encoder.parameters())
    assert isinstance(model.geometry_encoder, MapAnythingModel)
    assert geometry == 1_136_483_840  # the trunk; the released file adds 92,007,382 unused head / input-encoder values
    assert geometry + 92_007_382 == 1_228_491_222
    assert model.geometry_is_frozen
    assert len(model.action_head.blocks) == 16 and model.config.vlm_hidden_size == 2048
    # RAM per cached frame: 2 views x 256 tokens x 1536 in bf16 = 1.5 MiB (the seed plan's 196 tokens: 600 KB)
    cache = GeometryFeatureCache(memory_budget_mb=64, log_every=0)
    g = 2 * config.geometry_config.tokens_per_view(224, 224)
    cache.put("frame", torch.zeros(g, config.geometry_config.output_size))
    assert cache.memory_bytes == 2 * 256 * 1536 * 2 == 1_572_864
    cache.close()


def _tiny_geovla(tokenizer, **geometry):
    return GeoVLAConfig(
        vlm_config=tiny_qwen2_5_vl_config(tokenizer, hidden_size=32, num_layers=2).to_dict(),
        geometry_config={"model_type": "mapanything", **tiny_mapanything_config(**geometry).to_diff_dict()},
        geometry_image_size=28, compressor_type="pool", num_geometry_tokens=4, compressor_num_heads=2,
        dit_num_layers=2, dit_hidden_size=32, dit_num_heads=2,
    )


def test_tiny_geovla_runs_mapanything_frozen_and_caches_its_tokens():
    tokenizer = build_tiny_qwen_tokenizer()
    torch.manual_seed(0)
    config = _tiny_geovla(tokenizer)
    assert config.geometry_image_mean == (0.485, 0.456, 0.406)
    assert _tiny_geovla(tokenizer, feature_mode="qwenmapanythingpi").geometry_image_std == (1.0, 1.0, 1.0)
    again = GeoVLAConfig.from_dict(json.loads(config.to_json_string()))
    assert isinstance(again.geometry_config, MapAnythingConfig) and again.to_dict() == config.to_dict()
    model = GeoVLAForActionPrediction(config).eval()
    assert isinstance(model.geometry_encoder, MapAnythingModel) and model.geometry_is_frozen
    pixels = torch.randn(3, 2, 3, 28, 28)
    with torch.no_grad():
        direct = model.encode_geometry(pixels)
        assert direct.shape == (3, 2 * 4, 32)  # (B, V * (28/14)^2, C)
        torch.testing.assert_close(direct, model.geometry_encoder(pixel_values=pixels).last_hidden_state)
        cache = GeometryFeatureCache(memory_budget_mb=1, log_every=0)
        model.attach_geometry_cache(cache)
        first = model.encode_geometry(pixels)
        second = model.encode_geometry(pixels)
    assert cache.misses == 3 and cache.hits_memory == 3
    assert cache.memory_bytes == 3 * 8 * 32 * 2  # bf16 (V * P, C) per sample
    torch.testing.assert_close(first, direct, atol=2e-2, rtol=2e-2)  # stored in bf16
    assert torch.equal(first, second)
    cache.close()


def test_from_backbones_loads_mapanything_from_the_released_layout(tmp_path):
    vlm_dir = save_tiny_qwen2_5_vl(tmp_path / "qwen", seed=3)
    torch.manual_seed(0)
    reference = MapAnythingModel(tiny_mapanything_config()).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    released = tmp_path / "map-anything"
    released.mkdir()
    state = {("encoder.model." + k[len("encoder."):] if k.startswith("encoder.") else k): v.contiguous()
             for k, v in reference.state_dict().items()}
    state["scale_head.mlp.0.weight"] = torch.zeros(4, 4)  # a head the trunk does not use
    save_file(state, str(released / "model.safetensors"))
    (released / "config.json").write_text(json.dumps({
        "encoder_config": {"encoder_str": "dinov2", "size": "giant", "keep_first_n_layers": 2,
                           "norm_returned_features": False, "with_registers": False},
        "info_sharing_config": {"model_type": "alternating_attention", "custom_positional_encoding": None,
                                "module_args": {"dim": 32, "num_heads": 2, "depth": 4, "init_values": 1e-5,
                                                "indices": [1, 2]}},
        "use_register_tokens_from_encoder": True, "info_sharing_mlp_layer_str": "swiglufused",
    }), encoding="utf-8")
    with pytest.raises(UserError, match=r"no field\(s\) \['mystery'\]"):
        GeoVLAForActionPrediction.from_backbones(vlm=str(vlm_dir), geometry=str(released),
                                                 geometry_kwargs={"mystery": 1, "encoder_num_heads": 2})
    model = GeoVLAForActionPrediction.from_backbones(
        vlm=str(vlm_dir), geometry=str(released), geometry_kwargs={"num_views": 2, "encoder_num_heads": 2},
        geometry_image_size=28, num_geometry_tokens=4, dit_num_layers=2, dit_hidden_size=32, dit_num_heads=2,
        compressor_num_heads=2,
    )
    assert isinstance(model.geometry_encoder, MapAnythingModel) and model.geometry_is_frozen
    assert model.config.geometry_is_mapanything and model.config.geometry_name_or_path == str(released)
    pixels = torch.randn(2, 3, 3, 28, 28)  # any number of views
    with torch.no_grad():
        assert torch.equal(model.encode_geometry(pixels), reference(pixel_values=pixels).last_hidden_state)
    assert not any(p.is_meta for p in model.parameters())


def test_default_config_builds_the_seeds_vlm_and_geometry_encoder():
    """`GeoVLAConfig()` is the seed's system (Qwen2.5-VL-3B + MapAnything V1.1), not transformers' 74.5 B default."""
    assert GeoVLAConfig().vlm_hidden_size == 2048
    config = GeoVLAConfig()
    assert config.dit_num_layers == 16  # the seed's DiT depth (starVLA's QwenPI would take the LM's 36)
    with torch.device("meta"):
        model = GeoVLAForActionPrediction(config)
    vlm = sum(p.numel() for p in model.vlm.parameters())
    assert vlm == 3_754_622_976  # Qwen2.5-VL-3B-Instruct
    assert sum(p.numel() for p in model.geometry_encoder.parameters()) == 1_136_483_840
