"""GeoVLA's geometry_injection variants (the seed's baselines): "llm_pool" (geometry averaged, projected and fed
through the LLM as one extra token) and "none" (no geometry at all), beside the default "dit"."""

from __future__ import annotations

import pytest
import torch

import hf_vlmdrive  # noqa: F401  (registers the Auto classes)
from hf_vlmdrive.data.collators import GeoVLACollator
from hf_vlmdrive.data.lerobot import LeRobotDataset, make_synthetic_libero
from hf_vlmdrive.errors import UserError
from hf_vlmdrive.models.geovla import GeoVLAConfig, GeoVLAForActionPrediction
from hf_vlmdrive.testing.tiny_qwen import (
    build_tiny_qwen_processor,
    build_tiny_qwen_tokenizer,
    tiny_dinov2_config,
    tiny_qwen2_5_vl_config,
)

pytest.importorskip("av")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_qwen_tokenizer()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = make_synthetic_libero(tmp_path_factory.mktemp("libero") / "ds", num_episodes=2, episode_length=8,
                                 image_size=32, image_storage="image")
    return LeRobotDataset(root, action_horizon=8)


@pytest.fixture(scope="module")
def batch(tokenizer, dataset):
    collator = GeoVLACollator(build_tiny_qwen_processor(tokenizer), geometry_image_size=28)
    return collator([dataset[0], dataset[5], dataset[9]])


def config(tokenizer, **kw):
    return GeoVLAConfig(
        vlm_config=tiny_qwen2_5_vl_config(tokenizer, hidden_size=32, num_layers=4).to_dict(),
        geometry_config={"model_type": "geovla_geometry", "backbone_config": tiny_dinov2_config().to_dict(),
                         "num_views": 2, "num_layers": 1, "num_heads": 2, "output_size": 48},
        compressor_type="pool", num_geometry_tokens=4, compressor_num_heads=2, dit_num_layers=2, dit_hidden_size=32,
        dit_num_heads=2, num_inference_steps=2, **kw)


def _model(tokenizer, dataset, **kw):
    torch.manual_seed(0)
    model = GeoVLAForActionPrediction(config(tokenizer, **kw))
    model.set_norm_stats(dataset.stats)
    return model


def test_llm_pool_feeds_one_pooled_geometry_token_through_the_llm(tokenizer, dataset, batch):
    model = _model(tokenizer, dataset, geometry_injection="llm_pool")
    assert isinstance(model.geometry_compressor, torch.nn.Linear) and model.geometry_compressor.in_features == 48
    seen = {}
    for i, block in enumerate(model.action_head.blocks):
        block.attn1.register_forward_hook(lambda mod, args, out, i=i: seen.__setitem__(i, (args[1], args[2])))
    model.eval()
    with torch.no_grad():
        model(**batch)
        raw = model.encode_geometry(batch["geometry_pixel_values"])
        token = model.geometry_compressor(raw.mean(dim=1))
        hidden, mask = model.encode_vl(batch["input_ids"], batch["attention_mask"], batch["pixel_values"],
                                       batch["image_grid_thw"], geometry_token=token)
        plain, plain_mask = model.encode_vl(batch["input_ids"], batch["attention_mask"], batch["pixel_values"],
                                            batch["image_grid_thw"])
    length = batch["input_ids"].shape[1]
    assert hidden[0].shape[1] == length + 1 and mask[:, -1].all()
    torch.testing.assert_close(hidden[0][:, -1], token)  # layer 0 = the input embeddings: the geometry vector
    # causal: the prompt's states do not see the appended token; the appended one carries the geometry upwards
    torch.testing.assert_close(hidden[-1][:, :length][mask[:, :length]], plain[-1][plain_mask])
    context, context_mask = seen[0]
    reps = model.config.num_flow_samples
    torch.testing.assert_close(context, hidden[model.config.dit_vlm_layer_map[0]].repeat(reps, 1, 1))
    assert torch.equal(context_mask, mask.repeat(reps, 1))  # only the LLM's states: no geometry tokens in the DiT
    # the geometry reaches the actions through the LLM, and gradient reaches the projection
    model.train()
    out = model(**batch)
    out.loss.backward()
    assert model.geometry_compressor.weight.grad.abs().sum() > 0


def test_none_builds_no_geometry_and_ignores_geometry_inputs(tokenizer, dataset, batch, tmp_path):
    model = _model(tokenizer, dataset, geometry_injection="none")
    assert model.geometry_encoder is None and model.geometry_compressor is None
    dit = _model(tokenizer, dataset)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in dit.parameters())
    model.eval()
    noise = torch.randn(3, 8, 7, generator=torch.Generator().manual_seed(1))
    without = {k: v for k, v in batch.items() if not k.startswith("geometry")}
    with torch.no_grad():
        a = model.predict_action(**batch, noise=noise)
        b = model.predict_action(**without, noise=noise)
    torch.testing.assert_close(a, b)
    model.save_pretrained(tmp_path / "none")
    again = GeoVLAForActionPrediction.from_pretrained(tmp_path / "none")
    assert again.config.geometry_injection == "none" and again.geometry_encoder is None
    with torch.no_grad():
        torch.testing.assert_close(again.predict_action(**without, noise=noise), b)


def test_default_is_dit_and_unknown_values_are_refused(tokenizer):
    assert config(tokenizer).geometry_injection == "dit"
    with pytest.raises(UserError, match="geometry_injection must be one of"):
        config(tokenizer, geometry_injection="llm")
