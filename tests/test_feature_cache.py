"""The on-disk frozen-feature cache: keys, atomic writes, corrupt entries, concurrency, and training from it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainerCallback, TrainingArguments

from hf_vlmdrive.arguments import parse_args
from hf_vlmdrive.data.collators import WaypointCollator
from hf_vlmdrive.data.waypoint import load_waypoint_dataset
from hf_vlmdrive.features.cache import FeatureCache, image_digest, weights_fingerprint
from hf_vlmdrive.features.waypoint_cache import (
    fill_waypoint_cache,
    waypoint_feature_cache,
    with_undecoded_images,
)
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel
from hf_vlmdrive.models.waypoint_vlm.image_processing import build_image_processor
from hf_vlmdrive.trainers.waypoint_config import WaypointScriptArguments
from hf_vlmdrive.trainers.waypoint_recipe import train_waypoint

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
TOWER = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=2, image_size=32, patch_size=8)


def tiny_model(pooling: str = "mean", num_cameras: int = 1, **tower) -> WaypointVLMModel:
    torch.manual_seed(0)
    config = WaypointVLMConfig(vision_config={**TOWER, **tower}, pooling=pooling, head_hidden_sizes=[32],
                               num_cameras=num_cameras, attention_pool_heads=2)
    return WaypointVLMModel(config).eval()


@pytest.fixture(scope="module")
def scenes():
    return load_waypoint_dataset("synthetic:12:3", image_width=48, image_height=32, progress=False)


# ---------------------------------------------------------------------------------------------- keys
def test_entries_round_trip_exactly_and_are_keyed_by_content(tmp_path):
    cache = FeatureCache({"encoder": "x"}, cache_dir=tmp_path)
    value = torch.randn(5, 7)
    assert cache.get(image_digest(b"jpeg-1")) is None
    cache.put(image_digest(b"jpeg-1"), value)
    assert torch.equal(cache.get(image_digest(b"jpeg-1")), value)
    assert cache.get(image_digest(b"jpeg-2")) is None
    assert cache.stats() == {"hits": 1, "misses": 2, "corrupt": 0, "writes": 1}
    # image dicts (datasets decode=False) hash their bytes, or the file at `path`
    path = tmp_path / "img.jpg"
    path.write_bytes(b"jpeg-1")
    assert image_digest({"bytes": b"jpeg-1", "path": None}) == image_digest({"bytes": None, "path": str(path)})
    assert image_digest(b"jpeg-1") in cache
    with pytest.raises(TypeError, match="cannot hash"):
        image_digest(3.5)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        image_digest({"bytes": None, "path": str(tmp_path / "missing.jpg")})
    meta = json.loads((cache.root / "meta.json").read_text())
    assert meta["identity"] == {"encoder": "x"} and meta["namespace"] == cache.namespace


def test_tower_config_weights_preprocessing_and_pooling_change_the_namespace():
    model = tiny_model()
    processor = build_image_processor(model.config)
    base = FeatureCache(model.feature_cache_identity(processor)).namespace
    assert FeatureCache(model.feature_cache_identity(processor)).namespace == base  # deterministic

    other_config = tiny_model(layer_norm_eps=1e-5)  # same weights (same seed), another config value
    assert weights_fingerprint(other_config.vision_model) == weights_fingerprint(model.vision_model)
    assert FeatureCache(other_config.feature_cache_identity(processor)).namespace != base

    tweaked = tiny_model()
    with torch.no_grad():
        tweaked.vision_model.post_layernorm.weight[0] += 1e-6
    assert FeatureCache(tweaked.feature_cache_identity(processor)).namespace != base

    resized = build_image_processor(model.config)
    resized.image_mean = [0.4, 0.5, 0.6]
    assert FeatureCache(model.feature_cache_identity(resized)).namespace != base

    attention = tiny_model(pooling="attention")
    assert attention.feature_cache_kind == "tokens" and model.feature_cache_kind == "pooled"
    assert FeatureCache(attention.feature_cache_identity(processor)).namespace != base


# ---------------------------------------------------------------------------------------------- robustness
def test_partial_and_corrupt_entries_are_misses_reported_and_rewritten(tmp_path, scenes, caplog):
    model = tiny_model()
    processor = build_image_processor(model.config)
    cache = waypoint_feature_cache(model, processor, cache_dir=tmp_path)
    counts = fill_waypoint_cache(model, scenes, processor, cache, batch_size=5, progress=False)
    assert counts == {"images": 12, "cached": 0, "computed": 12, "corrupt": 0}
    entries = sorted(cache.root.glob("??/*.safetensors"))
    assert len(entries) == 12 == len(cache)

    # a killed writer leaves only a temporary file, which is never read
    orphan = entries[0].parent / f".{entries[0].name}.999.dead.tmp"
    orphan.write_bytes(entries[0].read_bytes()[:20])
    # a truncated entry (e.g. a broken copy) and an entry holding another key's data
    entries[1].write_bytes(entries[1].read_bytes()[:-9])
    entries[2].write_bytes(entries[3].read_bytes())
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))

    fresh = waypoint_feature_cache(model, processor, cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_vlmdrive.features.cache"):
        counts = fill_waypoint_cache(model, scenes, processor, fresh, batch_size=5, progress=False)
    assert counts == {"images": 12, "cached": 10, "computed": 2, "corrupt": 2}
    assert str(entries[1]) in caplog.text and str(entries[2]) in caplog.text
    assert not orphan.exists()  # stale temporary files are cleaned up
    # everything reads back now, and equals the tower's output
    raw = with_undecoded_images(scenes)
    collate = WaypointCollator(processor)
    for i in range(len(scenes)):
        cached = fresh.get(image_digest(raw[i]["image"]))
        pixels = collate([scenes[i]])["pixel_values"]
        torch.testing.assert_close(cached, model.cacheable_image_features(pixels)[0])
    assert fresh.corrupt == 2


WRITER = textwrap.dedent(
    """
    import sys, torch
    from hf_vlmdrive.features.cache import FeatureCache, image_digest
    cache = FeatureCache({"encoder": "concurrency"}, cache_dir=sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:  # rewrite the same 8 keys with large, self-describing values until killed
        key = i % 8
        cache.put(image_digest(str(key).encode()), torch.full((256, 512), float(key)))
        i += 1
    """
)


def test_concurrent_reader_never_sees_a_partial_entry_and_a_killed_writer_leaves_none(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        reader = FeatureCache({"encoder": "concurrency"}, cache_dir=tmp_path)
        seen = 0
        deadline = time.time() + 3.0
        while time.time() < deadline:
            for key in range(8):
                value = reader.get(image_digest(str(key).encode()))
                if value is not None:
                    assert value.shape == (256, 512) and bool((value == key).all())
                    seen += 1
        assert seen > 0 and reader.corrupt == 0
    finally:
        writer.send_signal(signal.SIGKILL)  # killed in the middle of its writes
        writer.wait()
    after = FeatureCache({"encoder": "concurrency"}, cache_dir=tmp_path)
    for key in range(8):
        value = after.get(image_digest(str(key).encode()))
        assert value is None or bool((value == key).all())
    assert after.corrupt == 0


# ---------------------------------------------------------------------------------------------- collator / model
@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_cached_batches_give_the_same_waypoints_as_pixels(tmp_path, pooling):
    cams = ("FRONT_LEFT", "FRONT", "FRONT_RIGHT")
    data = load_waypoint_dataset("synthetic:6:4", image_width=48, image_height=32, camera_names=cams, progress=False)
    model = tiny_model(pooling=pooling, num_cameras=3)
    processor = build_image_processor(model.config)
    cache = waypoint_feature_cache(model, processor, cache_dir=tmp_path)
    counts = fill_waypoint_cache(model, data, processor, cache, progress=False)
    assert counts["computed"] == 18  # 6 scenes x 3 cameras

    raw = with_undecoded_images(data)
    rows = [raw[i] for i in range(len(raw))]
    cached = WaypointCollator(processor, multi_camera=True, feature_cache=cache)(rows)
    key = "image_features" if pooling == "mean" else "vision_hidden_states"
    assert key in cached and "pixel_values" not in cached
    if pooling == "attention":
        assert cached[key].shape == (6, 3, 16, 32)  # (B, cameras, tokens, D)
    plain = WaypointCollator(processor, multi_camera=True)([data[i] for i in range(len(data))])
    with torch.no_grad():
        a = model(**{k: v for k, v in cached.items() if k != "labels"}).waypoints
        b = model(**{k: v for k, v in plain.items() if k != "labels"}).waypoints
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

    # one missing entry: the whole batch falls back to pixels (nothing lost)
    next(cache.root.glob("??/*.safetensors")).unlink()
    collate = WaypointCollator(processor, multi_camera=True, feature_cache=cache)
    fallback = collate(rows)
    assert "pixel_values" in fallback and collate.pixel_batches == 1 and collate.cache_batches == 0


def test_model_checks_vision_hidden_states_shape():
    model = tiny_model(pooling="attention")
    past, intent = torch.zeros(2, 16, 6), torch.ones(2, dtype=torch.long)
    with pytest.raises(ValueError, match="vision_hidden_states"):
        model(vision_hidden_states=torch.zeros(2, 16, 32), past_states=past, intent=intent)
    with pytest.raises(ValueError, match="exactly one"):
        model(vision_hidden_states=torch.zeros(2, 1, 16, 32), image_features=torch.zeros(2, 32),
              past_states=past, intent=intent)


# ---------------------------------------------------------------------------------------------- training
def _args(tmp_path: Path, name: str, **overrides):
    model_config = dict(vision_config=TOWER, pooling="attention", head_hidden_sizes=[64], past_state_scale=10.0,
                        waypoint_scale=10.0)
    for key in ("freeze_vision", "lora"):
        if key in overrides:
            model_config[key] = overrides.pop(key)
    cfg = dict(
        model_config=model_config, train_data="synthetic:48", eval_data="synthetic:16:1",
        image_width=48, image_height=32, output_dir=str(tmp_path / name), per_device_train_batch_size=16,
        per_device_eval_batch_size=16, learning_rate=3e-3, num_train_epochs=3, logging_steps=1,
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True, seed=0,
        feature_cache_dir=str(tmp_path / "cache"), use_cpu=True,
    )
    cfg.update(overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return parse_args((WaypointScriptArguments, TrainingArguments), ["--config", str(path)])


class Losses(TrainerCallback):
    def __init__(self):
        self.values = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.values.append(float(logs["loss"]))


def test_training_from_the_cache_matches_training_from_images(tmp_path, caplog):
    plain_losses, cached_losses = Losses(), Losses()
    plain = train_waypoint(*_args(tmp_path, "plain", use_feature_cache=False), callbacks=[plain_losses])
    assert plain.data_collator.feature_cache is None
    with caplog.at_level(logging.INFO):
        cached = train_waypoint(*_args(tmp_path, "cached"), callbacks=[cached_losses])
    collate = cached.data_collator
    assert collate.feature_cache is not None
    assert collate.cache_batches == 9 and collate.pixel_batches == 0  # 3 epochs x 3 batches, no image decoded
    assert "48 images, 0 already cached, 48 computed" in caplog.text  # the first pass fills the cache
    assert len(plain_losses.values) == len(cached_losses.values) == 9
    torch.testing.assert_close(torch.tensor(cached_losses.values), torch.tensor(plain_losses.values), rtol=1e-4, atol=1e-4)
    for (name, a), b in zip(plain.model.state_dict().items(), cached.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)

    # a second run finds everything cached
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = train_waypoint(*_args(tmp_path, "again", num_train_epochs=1))
    assert "48 already cached, 0 computed" in caplog.text and "16 already cached, 0 computed" in caplog.text
    assert again.data_collator.pixel_batches == 0


def test_trainable_tower_disables_the_cache_with_a_log_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="hf_vlmdrive.trainers.waypoint_recipe"):
        trainer = train_waypoint(*_args(tmp_path, "unfrozen", freeze_vision=False, max_steps=2))
    assert "feature cache disabled" in caplog.text
    assert trainer.data_collator.feature_cache is None and trainer.data_collator.pixel_batches > 0
    assert not (tmp_path / "cache").exists()
    model = tiny_model()
    model.unfreeze_vision_model()
    with pytest.raises(ValueError, match="trainable"):
        waypoint_feature_cache(model, build_image_processor(model.config), cache_dir=tmp_path)


def test_lora_stage_disables_the_cache_and_a_merged_tower_gets_its_own_namespace(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="hf_vlmdrive.trainers.waypoint_recipe"):
        trainer = train_waypoint(*_args(tmp_path, "lora", lora={"r": 8}, max_steps=2))
    assert "feature cache disabled" in caplog.text
    assert trainer.data_collator.feature_cache is None and trainer.data_collator.pixel_batches >= 2
    assert not (tmp_path / "cache").exists()

    model = trainer.model.eval()
    processor = build_image_processor(model.config)
    with pytest.raises(ValueError, match="trainable"):
        waypoint_feature_cache(model, processor, cache_dir=tmp_path)
    plain = tiny_model(pooling="attention")
    model.merge_vision_lora()  # the adapters trained, so the merged tower differs from the stage-1 tower
    assert model.vision_is_frozen
    merged = waypoint_feature_cache(model, processor, cache_dir=tmp_path)
    assert merged.namespace != waypoint_feature_cache(plain, processor, cache_dir=tmp_path).namespace


def test_cli_cache_features_then_train_reads_only_the_cache(tmp_path, cli, capsys, caplog):
    script_args, training_args = _args(tmp_path, "cli")
    config = tmp_path / "cli.yaml"
    assert cli("cache-features", "--config", config) == 0
    out = capsys.readouterr()
    report = json.loads(out.out[out.out.index("{"):])
    assert report["train"] == {"images": 48, "cached": 0, "computed": 48, "corrupt": 0}
    assert report["eval"]["computed"] == 16
    assert "caching tower features (train)" in out.err  # the progress bar
    with caplog.at_level(logging.INFO):
        trainer = train_waypoint(script_args, training_args)
    assert "48 already cached, 0 computed" in caplog.text
    assert trainer.data_collator.cache_batches > 0 and trainer.data_collator.pixel_batches == 0
