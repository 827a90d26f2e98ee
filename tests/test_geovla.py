"""GeoVLA: compressors, DiT context wiring, flow matching, normalisation, cache, save/load, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoProcessor

import hf_vlmdrive  # noqa: F401  (registers the Auto classes)
from hf_vlmdrive.data.collators import GeoVLACollator
from hf_vlmdrive.data.lerobot import LeRobotDataset, make_synthetic_libero
from hf_vlmdrive.features.geometry_cache import GeometryFeatureCache, content_key
from hf_vlmdrive.models.common.flow_matching import (
    euler_integrate,
    flow_matching_inputs,
    flow_matching_loss,
    sample_flow_time,
)
from hf_vlmdrive.models.common.geometry_compressor import build_geometry_compressor
from hf_vlmdrive.models.geovla import GeoVLAConfig, GeoVLAForActionPrediction
from hf_vlmdrive.testing.tiny_qwen import (
    build_tiny_qwen_processor,
    build_tiny_qwen_tokenizer,
    save_tiny_dinov2,
    save_tiny_qwen2_5_vl,
    tiny_dinov2_config,
    tiny_qwen2_5_vl_config,
)

pytest.importorskip("av")


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_qwen_tokenizer()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = make_synthetic_libero(tmp_path_factory.mktemp("libero") / "ds", num_episodes=4, episode_length=8,
                                 image_size=32, image_storage="image")
    return LeRobotDataset(root, action_horizon=8)


def tiny_config(tokenizer, **kw):
    base = dict(
        vlm_config=tiny_qwen2_5_vl_config(tokenizer, hidden_size=32, num_layers=4).to_dict(),
        geometry_config={"model_type": "geovla_geometry", "backbone_config": tiny_dinov2_config().to_dict(),
                         "num_views": 2, "num_layers": 1,
                         "num_heads": 2, "output_size": 48},
        compressor_type="pool", num_geometry_tokens=4, compressor_num_heads=2,
        dit_num_layers=2, dit_hidden_size=32, dit_num_heads=2, num_inference_steps=4,
    )
    base.update(kw)
    return GeoVLAConfig(**base)


@pytest.fixture(scope="module")
def batch(tokenizer, dataset):
    collator = GeoVLACollator(build_tiny_qwen_processor(tokenizer), geometry_image_size=28)
    return collator([dataset[0], dataset[7], dataset[10]])


def _randomise_zero_init(model):
    # AdaLN-Zero starts every DiT branch (and the output) at zero; perturb so outputs depend on the inputs.
    with torch.no_grad():
        for p in model.action_head.parameters():
            if p.abs().sum() == 0 and p.ndim == 2:
                p.normal_(0, 0.05)


# ------------------------------------------------------------------------------------------- compressors
def test_compressor_shapes():
    raw = torch.randn(2, 10, 12)
    for kind in ("pool", "per_layer", "qformer"):
        comp = build_geometry_compressor(kind, 12, 16, num_tokens=4, num_layers=3, num_heads=2)
        out = comp(raw)
        assert out.shape == (3, 2, 4, 16), kind
        same = torch.equal(out[0], out[1])
        assert same == (kind != "per_layer"), kind  # per_layer gives different tokens per DiT layer


def test_compressor_parameter_counts_at_reference_size():
    counts = {}
    with torch.device("meta"):  # reference dims (1536 -> 2048, K=16, 16 layers) without allocating memory
        for kind in ("pool", "per_layer", "qformer"):
            comp = build_geometry_compressor(kind, 1536, 2048, num_tokens=16, num_layers=16, num_heads=8)
            counts[kind] = sum(p.numel() for p in comp.parameters())
    assert counts["pool"] < counts["qformer"] < counts["per_layer"]
    assert 2.9e6 < counts["pool"] < 3.3e6  # SPEC: ~3 M
    assert 18e6 < counts["qformer"] < 22e6  # ~20 M
    assert 48e6 < counts["per_layer"] < 53e6  # ~50 M


# ------------------------------------------------------------------------------------------- config
def test_layer_map_default_and_validation(tokenizer):
    cfg = tiny_config(tokenizer, dit_num_layers=2)
    assert cfg.dit_vlm_layer_map == [3, 4]  # the last 2 of 4 LM layers
    assert tiny_config(tokenizer, dit_num_layers=8).dit_vlm_layer_map == [1, 1, 2, 2, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="dit_vlm_layer_map has 3 entries but dit_num_layers=2"):
        tiny_config(tokenizer, dit_vlm_layer_map=[1, 2, 3])
    with pytest.raises(ValueError, match=r"dit_vlm_layer_map entries must be in \[0, 4\].*\[5\]"):
        tiny_config(tokenizer, dit_vlm_layer_map=[1, 5])
    with pytest.raises(ValueError, match="compressor_type"):
        tiny_config(tokenizer, compressor_type="mean")


# ------------------------------------------------------------------------------------------- wiring
@pytest.mark.parametrize("head", ["layerwise_fm", "adaln_zero"])
def test_dit_layer_i_gets_vl_layer_map_i_and_geometry_tokens_i(tokenizer, dataset, batch, head):
    # layerwise_fm (starVLA) interleaves: blocks 0 and 2 cross-attend, 1 and 3 self-attend (their map entries unused).
    layer_map, cross = ([4, 2, 1, 3], [0, 2]) if head == "layerwise_fm" else ([4, 1], [0, 1])
    model = GeoVLAForActionPrediction(tiny_config(tokenizer, compressor_type="per_layer", action_head_type=head,
                                                  dit_num_layers=len(layer_map), dit_vlm_layer_map=layer_map))
    # one projection per DiT layer (the seed's per_layer), the self-attending blocks' ones unused
    assert model.config.cross_attention_layers == cross and len(model.geometry_compressor.projs) == len(layer_map)
    model.set_norm_stats(dataset.stats)
    model.eval()
    seen = {}
    for i, block in enumerate(model.action_head.blocks):
        attn = block.attn1 if head == "layerwise_fm" else block.cross_attn
        attn.register_forward_hook(
            lambda mod, args, out, i=i: seen.__setitem__(i, (args[1], args[2]))
        )
    with torch.no_grad():
        model(**batch)
        hidden, mask = model.encode_vl(batch["input_ids"], batch["attention_mask"], batch["pixel_values"],
                                       batch["image_grid_thw"])
        geom = model.geometry_compressor(model.encode_geometry(batch["geometry_pixel_values"]))
    reps = model.config.num_flow_samples  # the contexts are tiled once per flow draw
    for i in cross:
        context, context_mask = seen[i]
        expected = torch.cat([hidden[layer_map[i]], geom[i]], dim=1).repeat(reps, 1, 1)
        torch.testing.assert_close(context, expected)
        assert context_mask[:, -4:].all() and torch.equal(context_mask[:, :-4], mask.repeat(reps, 1))
    for i in set(range(len(layer_map))) - set(cross):
        assert seen[i] == (None, None)  # self-attention blocks get no context
    assert not torch.allclose(seen[cross[0]][0][:, -4:], seen[cross[1]][0][:, -4:])  # per-layer tokens differ


# ------------------------------------------------------------------------------------------- flow matching
def test_flow_matching_known_case():
    actions = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    noise = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])
    x_t, target = flow_matching_inputs(actions, noise, torch.tensor([0.25]))
    torch.testing.assert_close(x_t, 0.75 * noise + 0.25 * actions)
    torch.testing.assert_close(target, torch.tensor([[[1.0, 1.0], [4.0, 4.0]]]))
    velocity = torch.zeros_like(target)
    assert flow_matching_loss(velocity, target).item() == pytest.approx((1 + 1 + 16 + 16) / 4)
    pad = torch.tensor([[False, True]])
    assert flow_matching_loss(velocity, target, pad).item() == pytest.approx(1.0)
    # The mirrored option: t = Beta(1.5, 1) * 0.999 (the starVLA default is tested in test_geovla_starvla.py).
    t = sample_flow_time(20000, generator=torch.Generator().manual_seed(0), rule="beta_scaled")
    assert t.min() >= 0 and t.max() <= 0.999
    assert t.mean().item() == pytest.approx(1.5 / 2.5 * 0.999, abs=0.01)  # Beta(1.5, 1) mean, scaled


def test_euler_recovers_constant_target():
    target = torch.tensor([[[0.5, -2.0, 3.0]]])
    x0 = torch.randn(1, 1, 3)
    # The straight-path field towards a fixed endpoint, v = (a - x) / (1 - t): Euler lands exactly on a.
    out = euler_integrate(lambda x, t: (target - x) / (1 - t).view(-1, 1, 1), x0, num_steps=5)
    torch.testing.assert_close(out, target)
    # Constant velocity a - x0: any number of steps is exact.
    torch.testing.assert_close(euler_integrate(lambda x, t: target - x0, x0, num_steps=7), target)


# ------------------------------------------------------------------------------------------- normalisation
def test_normalisation_round_trip_and_key_errors(tokenizer, dataset):
    for mode in ("mean_std", "quantile"):
        model = GeoVLAForActionPrediction(tiny_config(tokenizer, normalization_mode=mode))
        model.set_norm_stats(dataset.stats)
        actions = torch.from_numpy(dataset.actions[:5])
        back = model.unnormalize("action", model.normalize("action", actions))
        if mode == "quantile":  # values outside [q01, q99] are clipped by design
            inside = (actions >= model.norm_stats["action"]["q01"]) & (actions <= model.norm_stats["action"]["q99"])
            back, actions = back[inside], actions[inside]
        torch.testing.assert_close(back, actions, atol=1e-5, rtol=1e-5)
        assert model.normalize("observation.state", torch.from_numpy(dataset.states[:5])).shape == (5, 8)
    model = GeoVLAForActionPrediction(tiny_config(tokenizer))
    with pytest.raises(KeyError, match="no statistics for 'action'"):
        model.set_norm_stats({"observation.state": dataset.stats["observation.state"]})
    bad = {k: dict(v) for k, v in dataset.stats.items()}
    bad["action"]["mean"] = bad["action"]["mean"][:6]
    with pytest.raises(ValueError, match="'action'.mean has 6 values but the model expects 7"):
        model.set_norm_stats(bad)


def test_predict_without_stats_is_an_error(tokenizer, batch):
    model = GeoVLAForActionPrediction(tiny_config(tokenizer))
    with pytest.raises(RuntimeError, match="no normalisation statistics"):
        model.predict_action(**batch)


# ------------------------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tokenizer, dataset, batch, tmp_path):
    from transformers import AutoConfig, AutoModel

    model = GeoVLAForActionPrediction(tiny_config(tokenizer, compressor_type="qformer"))
    model.set_norm_stats(dataset.stats)
    _randomise_zero_init(model)
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt/norm_stats.json").read_text())
    assert sorted(saved) == ["action", "observation.state"]
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "ckpt"), GeoVLAConfig)
    loaded = AutoModel.from_pretrained(tmp_path / "ckpt")
    assert isinstance(loaded, GeoVLAForActionPrediction)
    assert loaded.geometry_is_frozen and loaded.config.compressor_type == "qformer"
    model.eval()
    loaded.eval()
    noise = torch.randn(3, 8, 7, generator=torch.Generator().manual_seed(1))
    a = model.predict_action(**batch, noise=noise)
    b = loaded.predict_action(**batch, noise=noise)
    assert a.shape == (3, 8, 7)
    torch.testing.assert_close(a, b)
    # Un-normalised: in dataset units (not the normalised ones), so not simply the noise.
    assert not torch.allclose(a, noise)

    saved["action"] = saved.pop("action")
    saved["actions"] = saved.pop("action")
    (tmp_path / "ckpt/norm_stats.json").write_text(json.dumps(saved))
    with pytest.raises(KeyError, match="no statistics for 'action'"):
        AutoModel.from_pretrained(tmp_path / "ckpt")


def test_from_backbones_loads_pretrained_towers(tmp_path):
    from transformers import Dinov2Model, Qwen2_5_VLModel

    vlm_dir = save_tiny_qwen2_5_vl(tmp_path / "qwen", seed=3)
    geo_dir = save_tiny_dinov2(tmp_path / "dino", seed=4)
    model = GeoVLAForActionPrediction.from_backbones(
        vlm=str(vlm_dir), geometry=str(geo_dir),
        geometry_kwargs={"num_views": 2, "num_layers": 1, "num_heads": 2, "output_size": 48},
        num_geometry_tokens=4, dit_num_layers=2, dit_hidden_size=32, dit_num_heads=2, compressor_num_heads=2,
    )
    ref_vlm = Qwen2_5_VLModel.from_pretrained(vlm_dir)
    ref_geo = Dinov2Model.from_pretrained(geo_dir)
    for (n, p), (_, q) in zip(model.vlm.state_dict().items(), ref_vlm.state_dict().items()):
        torch.testing.assert_close(p, q, msg=n)
    for (n, p), (_, q) in zip(model.geometry_encoder.backbone.state_dict().items(), ref_geo.state_dict().items()):
        torch.testing.assert_close(p, q, msg=n)
    assert model.geometry_is_frozen and model.config.vlm_name_or_path == str(vlm_dir)
    # The new parts were built on the meta device and then allocated: every tensor is real and initialised.
    assert not any(p.is_meta for p in model.parameters())
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
    # starVLA's head keeps PyTorch's default init (kaiming-uniform Linear, bound 1/sqrt(fan_in)); the two
    # embedding tables are normal(0, 0.02).
    layer1 = model.action_head.action_encoder.layer1
    assert layer1.weight.abs().max() <= 1 / layer1.in_features ** 0.5 and layer1.weight.std() > 0.1
    assert 0.01 < model.action_head.position_embedding.weight.std() < 0.03
    assert 0.01 < model.action_head.future_tokens.weight.std() < 0.03
    assert model.geometry_encoder.out_proj.weight.std() > 0.01 and model.geometry_encoder.view_embedding.std() > 0.01
    mha = model.geometry_encoder.multiview.layers[0].self_attn
    assert 0.05 < mha.in_proj_weight.std() < 0.5 and mha.in_proj_bias.abs().sum() == 0


# ------------------------------------------------------------------------------------------- cache
def test_cache_hit_miss_spill(tmp_path):
    entry = torch.randn(4, 32)  # 4*32 bf16 = 256 bytes
    cache = GeometryFeatureCache(memory_budget_mb=600 / 2**20, spill_dir=tmp_path / "spill", log_every=0)
    keys = [content_key(torch.full((3, 2, 2), float(i))) for i in range(3)]
    assert len(set(keys)) == 3 and content_key(torch.full((3, 2, 2), 1.0)) == keys[1]
    assert cache.get(keys[0]) is None
    for k in keys:
        cache.put(k, entry + float(keys.index(k)))
    assert cache.spilled == 1 and (tmp_path / "spill" / f"{keys[0]}.safetensors").is_file()
    assert cache.memory_bytes <= 600
    torch.testing.assert_close(cache.get(keys[0]).float(), (entry + 0).bfloat16().float())  # from disk
    torch.testing.assert_close(cache.get(keys[2]).float(), (entry + 2).bfloat16().float())  # from RAM
    s = cache.stats()
    assert (s["geom_cache_misses"], s["geom_cache_hits_disk"], s["geom_cache_hits_memory"]) == (1, 1, 1)
    assert cache.hit_rate == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="refuses augmented inputs"):
        GeometryFeatureCache(augmentation=True)


def test_model_with_cache_matches_without(tokenizer, dataset, batch):
    model = GeoVLAForActionPrediction(tiny_config(tokenizer))
    model.set_norm_stats(dataset.stats)
    direct = model.encode_geometry(batch["geometry_pixel_values"])
    cache = GeometryFeatureCache(memory_budget_mb=1, log_every=0)
    model.attach_geometry_cache(cache)
    first = model.encode_geometry(batch["geometry_pixel_values"])
    second = model.encode_geometry(batch["geometry_pixel_values"])
    assert cache.misses == 3 and cache.hits_memory == 3
    torch.testing.assert_close(second, first)
    torch.testing.assert_close(first.float(), direct.float(), atol=2e-2, rtol=2e-2)  # bf16 storage
    model.geometry_encoder.requires_grad_(True)
    with pytest.raises(ValueError, match="needs a frozen geometry encoder"):
        model.attach_geometry_cache(GeometryFeatureCache(log_every=0))


def test_collator_cache_keys_are_the_content_keys_the_cache_would_compute(tokenizer, dataset, batch, monkeypatch):
    collator = GeoVLACollator(build_tiny_qwen_processor(tokenizer), geometry_image_size=28, cache_keys=True)
    keyed = collator([dataset[i] for i in range(3)])
    assert keyed["geometry_cache_keys"] == [content_key(p) for p in keyed["geometry_pixel_values"]]
    assert "geometry_cache_keys" not in batch  # off by default
    model = GeoVLAForActionPrediction(tiny_config(tokenizer))
    model.set_norm_stats(dataset.stats)
    cache = GeometryFeatureCache(memory_budget_mb=1, log_every=0)
    model.attach_geometry_cache(cache)
    hashed = model.encode_geometry(keyed["geometry_pixel_values"])  # keys computed by the cache: 3 misses
    import hf_vlmdrive.features.geometry_cache as gc

    def no_hashing(_):
        raise AssertionError("the training step hashed the batch although the collator gave its keys")

    monkeypatch.setattr(gc, "content_key", no_hashing)
    torch.manual_seed(0)
    out = model(**keyed)  # forward takes the collator's keys: 3 memory hits, no hashing
    assert cache.misses == 3 and cache.hits_memory == 3 and torch.isfinite(out.loss)
    torch.testing.assert_close(model.encode_geometry(keyed["geometry_pixel_values"], keyed["geometry_cache_keys"]),
                               hashed)
    with pytest.raises(ValueError, match="2 keys for a batch of 3"):
        model.encode_geometry(keyed["geometry_pixel_values"], keyed["geometry_cache_keys"][:2])


# ------------------------------------------------------------------------------------------- training
def test_short_training_lowers_loss_and_keeps_geometry_frozen(tokenizer, dataset, tmp_path):
    from hf_vlmdrive.trainers.geovla_config import GeoVLATrainingArguments
    from hf_vlmdrive.trainers.geovla_trainer import GeoVLATrainer

    torch.manual_seed(0)
    model = GeoVLAForActionPrediction(tiny_config(tokenizer))
    model.set_norm_stats(dataset.stats)
    geo_before = {k: v.clone() for k, v in model.geometry_encoder.state_dict().items()}
    vlm_before = {k: v.clone() for k, v in model.vlm.state_dict().items()}
    args = GeoVLATrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=40, per_device_train_batch_size=4, learning_rate=1e-4,
        vlm_learning_rate=2e-4, action_head_learning_rate=2e-3, compressor_learning_rate=3e-3, logging_steps=1,
        save_steps=20, report_to="none", use_cpu=True, seed=0, disable_tqdm=True, geometry_cache_mb=8,
    )
    model.attach_geometry_cache(GeometryFeatureCache(args.geometry_cache_mb, log_every=0))
    collator = GeoVLACollator(build_tiny_qwen_processor(tokenizer), geometry_image_size=28, cache_keys=True)
    trainer = GeoVLATrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    lrs = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}  # before the schedule
    assert lrs["action_head"] == 2e-3 and lrs["compressor"] == 3e-3 and lrs["vlm"] == 2e-4
    assert not any(n.startswith("geometry_encoder") for n, p in model.named_parameters() if p.requires_grad)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print("loss curve", [round(x, 3) for x in losses])
    assert np.mean(losses[-8:]) < 0.85 * np.mean(losses[:8]), losses
    for k, v in model.geometry_encoder.state_dict().items():
        assert torch.equal(v, geo_before[k]), k
    assert any(not torch.equal(v, vlm_before[k]) for k, v in model.vlm.state_dict().items())
    assert model.geometry_cache.hit_rate > 0.5  # 32 frames, 40 steps x 4 samples
    ckpt = tmp_path / "run" / "checkpoint-20"
    assert (ckpt / "norm_stats.json").is_file() and (ckpt / "config.json").is_file()


def test_cache_with_augmentation_is_refused_by_training(tmp_path):
    from hf_vlmdrive.trainers.geovla_config import GeoVLAScriptArguments, GeoVLATrainingArguments
    from hf_vlmdrive.trainers.geovla_recipe import train_geovla

    args = GeoVLATrainingArguments(output_dir=str(tmp_path), geometry_cache_mb=8, image_augmentation=True,
                                   report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="deterministic"):
        train_geovla(GeoVLAScriptArguments(dataset_root=str(tmp_path / "none")), args)


def test_parameter_group_assignment(tmp_path):
    from hf_vlmdrive.trainers.geovla_config import GeoVLATrainingArguments
    from hf_vlmdrive.trainers.geovla_trainer import GeoVLATrainer, module_group

    assert module_group("vlm.language_model.layers.0.mlp.up_proj.weight") == "vlm"
    assert module_group("action_head.model.transformer_blocks.0.attn1.to_q.weight") == "action_head"
    assert module_group("geometry_compressor.proj.weight") == "compressor"
    assert module_group("geometry_encoder.out_proj.weight") == "base"
    toy = nn.Module()
    toy.vlm, toy.action_head, toy.other = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    toy.vlm.bias.requires_grad_(False)
    toy.forward = lambda **kw: None
    args = GeoVLATrainingArguments(output_dir=str(tmp_path), learning_rate=0.4, vlm_learning_rate=0.1,
                                   action_head_learning_rate=0.2, compressor_learning_rate=0.3, weight_decay=0.01,
                                   report_to="none", use_cpu=True)
    trainer = GeoVLATrainer(model=toy, args=args)
    groups = trainer.create_optimizer().param_groups
    assert {(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in groups} == {
        ("vlm", 0.1, 0.01, 1), ("action_head", 0.2, 0.01, 1), ("action_head_no_decay", 0.2, 0.0, 1),
        ("base", 0.4, 0.01, 1), ("base_no_decay", 0.4, 0.0, 1),
    }


def test_train_geovla_end_to_end_on_a_mixture(tmp_path):
    """The path of examples/train_libero.py: tiny backbones from dirs, a two-suite mixture, checkpoints."""
    from hf_vlmdrive.trainers.geovla_config import GeoVLAScriptArguments, GeoVLATrainingArguments
    from hf_vlmdrive.trainers.geovla_recipe import train_geovla

    for k, name in enumerate(("libero_object", "libero_goal")):
        make_synthetic_libero(tmp_path / "data" / name, num_episodes=1, episode_length=6, image_size=32,
                              image_storage="video", seed=k)
    script = GeoVLAScriptArguments(
        dataset_root=str(tmp_path / "data"), mixture="libero_object,libero_goal", vlm_name_or_path="tiny-random",
        geometry_name_or_path="tiny-random",
        model_config={"geometry_config": {"num_layers": 1, "num_heads": 2, "output_size": 48}, "num_geometry_tokens": 4,
                      "dit_num_layers": 2, "dit_hidden_size": 32, "dit_num_heads": 2, "dit_dropout": 0.1},
    )
    args = GeoVLATrainingArguments(output_dir=str(tmp_path / "run"), max_steps=4, save_steps=2, logging_steps=1,
                                   per_device_train_batch_size=2, report_to="none", use_cpu=True, disable_tqdm=True,
                                   geometry_cache_mb=4)
    trainer = train_geovla(script, args)
    for ckpt in ("checkpoint-2", "checkpoint-4"):
        assert {"config.json", "model.safetensors", "norm_stats.json"} <= {p.name for p in (tmp_path / "run" / ckpt).iterdir()}
    assert len(json.loads((tmp_path / "run" / "loss_curve.json").read_text())) == 4
    from transformers import AutoModel

    reloaded = AutoModel.from_pretrained(tmp_path / "run" / "checkpoint-4")
    assert reloaded.norm_stats["action"]["mean"].shape == (7,)
    assert trainer.model.geometry_cache is not None
    assert reloaded.config.dit_dropout == 0.1  # a field no flag mirrored before model_config
    assert type(AutoProcessor.from_pretrained(tmp_path / "run")).__name__ == "GeoVLAProcessor"
    # the seed's signals are in every training log record and in trainer_state.json beside the model
    saved = json.loads((tmp_path / "run" / "trainer_state.json").read_text())["log_history"]
    records = [h for h in saved if "loss" in h]
    assert len(records) == 4
    for record in records:
        assert record["grad_norm/compressor"] > 0 and record["grad_norm/action_head"] > 0
        assert record["grad_norm/vlm"] > 0 and record["memory/peak_rss_mb"] > 0
    # 2 distinct frames per step (4 steps x batch 2 over 12 frames): misses first, hits once frames repeat
    assert records[0]["geometry_cache/misses"] >= 1 and records[-1]["geometry_cache/entries"] >= 1
