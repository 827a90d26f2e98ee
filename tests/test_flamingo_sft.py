"""Flamingo SFT recipe (SPEC 1.3) and the captioning CLI (`generate`, `eval captions`, `eval bvpi`) on a tiny
Flamingo directory."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.data.collators import AssistantOnlyVLMCollator, FlamingoSFTCollator
from hf_vlmdrive.data.roadscene import DEFAULT_CAPTION_PROMPT, annotation_prompt
from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene
from hf_vlmdrive.testing.tiny_flamingo import build_tiny_flamingo
from hf_vlmdrive.trainers.flamingo_config import FlamingoSFTArguments, FlamingoTrainingArguments
from hf_vlmdrive.trainers.flamingo_recipe import build_model, merge_cross_attention_lora
from hf_vlmdrive.trainers.flamingo_trainer import FlamingoTrainer, gate_penalty


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("flamingo_sft")
    paths = write_synthetic_roadscene(root / "data", num_samples=6, image_size=32)
    build_tiny_flamingo(root / "model", gate_value=0.3)
    return root, paths


def _state(directory):
    return load_file(str(directory / "model.safetensors"))


def _train_args(out, **kw):
    base = dict(output_dir=str(out), max_steps=4, per_device_train_batch_size=2, learning_rate=1e-3, warmup_steps=1,
                logging_steps=1, save_strategy="no", report_to="none", use_cpu=True)
    base.update(kw)
    return FlamingoTrainingArguments(**base)


def test_cli_sft_trains_only_the_resampler_and_gated_blocks_and_resumes(setup, cli):
    root, paths = setup
    out = root / "sft"
    common = ["sft", "flamingo", "--model", root / "model", "--train_file", paths["bvpi_sft"], "--output_dir", out,
              "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--warmup_steps", "1",
              "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "2", "--report_to", "none",
              "--use_cpu", "true", "--text_dropout", "0.5"]
    assert cli(*common, "--max_steps", "2") == 0
    assert (out / "checkpoint-2").is_dir()
    assert cli(*common, "--max_steps", "4", "--resume_from_checkpoint", "true") == 0
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == [1, 2, 3, 4]  # 3 and 4 come from the resumed run
    assert all("gate_penalty" in h for h in state["log_history"] if "loss" in h)

    before, after = _state(root / "model"), _state(out)
    assert set(before) == set(after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("perceiver.") or ".gated_cross_attn_layer." in k for k in changed), \
        sorted(changed)[:5]
    assert any(k.endswith("attn_gate") for k in changed) and any(k.startswith("perceiver.") for k in changed)
    for name in ("README.md", "loss_curve.json", "generation_config.json", "processor_config.json"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    assert "flamingo" in card and "<|endofchunk|>" in card
    curve = json.loads((out / "loss_curve.json").read_text())
    assert len(curve) == 4 and all(isinstance(loss, float) for _, loss in curve)


def test_gate_lr_multiplier_and_weight_decay_groups(setup):
    root, _ = setup
    args = FlamingoSFTArguments(model_name_or_path=str(root / "model"), gate_lr_multiplier=50.0)
    model, processor, _ = build_model(args, root / "unused")
    trainer = FlamingoTrainer(model=model, args=_train_args(root / "g", learning_rate=3e-5, weight_decay=0.1),
                              gate_lr_multiplier=50.0)
    groups = {g["name"]: g for g in trainer.create_optimizer().param_groups}
    assert groups["gates_no_decay"]["lr"] == pytest.approx(1.5e-3)
    gate_ids = {id(b.attn_gate) for b in model.gated_cross_attn_layers} | {id(b.ff_gate) for b in model.gated_cross_attn_layers}
    assert {id(p) for p in groups["gates_no_decay"]["params"]} == gate_ids
    assert groups["gated_cross_attn"]["lr"] == pytest.approx(3e-5) and groups["gated_cross_attn"]["weight_decay"] == 0.1
    assert groups["perceiver"]["weight_decay"] == 0.0
    assert "base" not in groups and "embeddings" not in groups  # nothing else trains by default
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    assert not frozen & {id(p) for g in groups.values() for p in g["params"]}


def test_gradient_accumulation_equals_the_whole_batch_with_the_gate_penalty(setup):
    """GA 2 x batch 1 gives the update of GA 1 x batch 2: the token-normalised cross-entropy and the gate penalty
    (once per optimiser step, not once per micro-step)."""
    from hf_vlmdrive.data.roadscene import load_sft_dataset

    root, paths = setup
    ds, _ = load_sft_dataset(paths["bvpi_sft"])
    rows = [ds[0], ds[1]]
    states = []
    for batch, accumulation in ((2, 1), (1, 2)):
        model, processor, _ = build_model(FlamingoSFTArguments(model_name_or_path=str(root / "model")), root / "unused")
        args = _train_args(root / f"ga{accumulation}", max_steps=1, per_device_train_batch_size=batch,
                           gradient_accumulation_steps=accumulation, optim="sgd", learning_rate=0.5, warmup_steps=0,
                           max_grad_norm=0.0, weight_decay=0.0, remove_unused_columns=False)
        trainer = FlamingoTrainer(model=model, args=args, train_dataset=rows, gate_regularization=5.0,
                                  data_collator=AssistantOnlyVLMCollator(processor, max_length=384))
        trainer.train()
        states.append({k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad})
    gates = [k for k in states[0] if k.endswith(("attn_gate", "ff_gate"))]
    assert gates
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], rtol=1e-5, atol=1e-6, msg=key)


def test_gate_penalty_is_the_mean_of_tanh_squared(setup):
    root, _ = setup
    model, _, _ = build_model(FlamingoSFTArguments(model_name_or_path=str(root / "model")), root / "unused")
    gates = [p for b in model.gated_cross_attn_layers for p in (b.attn_gate, b.ff_gate)]
    want = sum(g.detach().tanh().item() ** 2 for g in gates) / len(gates)
    assert gate_penalty(model).item() == pytest.approx(want) and want > 0


def test_embedding_gradients_only_on_the_new_token_rows(setup):
    root, paths = setup
    args = FlamingoSFTArguments(model_name_or_path=str(root / "model"), train_lm_embeddings=True)
    model, processor, _ = build_model(args, root / "unused")
    emb = model.get_input_embeddings().weight
    assert emb.requires_grad
    before = emb.detach().clone()
    from hf_vlmdrive.data.roadscene import load_sft_dataset

    ds, _ = load_sft_dataset(paths["bvpi_sft"])
    batch = AssistantOnlyVLMCollator(processor, max_length=384)([ds[0], ds[1]])
    trainer = FlamingoTrainer(model=model, args=_train_args(root / "e", max_steps=1, weight_decay=0.1))
    trainer.create_optimizer()
    model.train()
    loss = model(**batch).loss
    loss.backward()
    grad_rows = emb.grad.abs().sum(-1).nonzero().flatten().tolist()
    assert sorted(grad_rows) == sorted([processor.image_token_id, processor.end_of_chunk_token_id])
    trainer.optimizer.step()
    changed_rows = (emb.detach() - before).abs().sum(-1).nonzero().flatten().tolist()
    assert sorted(changed_rows) == sorted(grad_rows)


def test_text_dropout_replaces_only_annotation_prompts(setup):
    root, _ = setup
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(root / "model")
    ann = {"image": "a.png", "sidewalk_pos": "Left", "road_pos": "Front", "object_present": "No",
           "object_present_outside": "No"}
    example = {"messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": annotation_prompt(ann)}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A road."}]}], "images": []}
    other = {"messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A road."}]}], "images": []}
    base = AssistantOnlyVLMCollator(processor)
    always = FlamingoSFTCollator(base, text_dropout=0.999999)
    assert always.drop_descriptions(example)["messages"][0]["content"][1]["text"] == DEFAULT_CAPTION_PROMPT
    assert example["messages"][0]["content"][1]["text"] == annotation_prompt(ann)  # the input is not modified
    assert always.drop_descriptions(other)["messages"][0]["content"][1]["text"] == "Describe it."
    never = FlamingoSFTCollator(base, text_dropout=0.0)
    assert never.drop_descriptions(example)["messages"][0]["content"][1]["text"] == annotation_prompt(ann)
    half = FlamingoSFTCollator(base, text_dropout=0.25, seed=0)
    dropped = sum(half.drop_descriptions(example)["messages"][0]["content"][1]["text"] == DEFAULT_CAPTION_PROMPT
                  for _ in range(400))
    assert 60 < dropped < 140


def test_lora_on_cross_attention_trains_adapters_and_merges(setup):
    root, paths = setup
    args = FlamingoSFTArguments(model_name_or_path=str(root / "model"), lora_cross_attention=True, lora_r=4)
    model, processor, _ = build_model(args, root / "unused")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable)
    assert not any(".attn.to_q.base_layer" in n for n in trainable)
    assert any(n.endswith("attn_gate") for n in trainable) and any(n.startswith("perceiver.") for n in trainable)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.1)
    from hf_vlmdrive.data.roadscene import load_sft_dataset

    ds, _ = load_sft_dataset(paths["bvpi_sft"])
    batch = AssistantOnlyVLMCollator(processor)([ds[0]])
    model.eval()
    with torch.no_grad():
        with_adapters = model(**batch).logits
    assert merge_cross_attention_lora(model) == 6  # 2 blocks x (to_q, to_kv, to_out)
    assert not any("lora_" in n for n, _ in model.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, with_adapters, atol=1e-5, rtol=1e-5)


def test_generate_and_eval_commands_accept_a_flamingo_directory(setup, cli, capsys):
    root, paths = setup
    preds = root / "bvpi_preds.jsonl"
    assert cli("generate", "--model", root / "model", "--input", paths["bvpi_sft"], "--output", preds,
               "--num-beams", "3", "--max-new-tokens", "6", "--batch-size", "4") == 0
    lines = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(lines) == 6 and all(isinstance(r["prediction"], str) for r in lines)
    capsys.readouterr()
    assert cli("eval", "bvpi", "--predictions", preds, "--references", paths["annotations_csv"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("\n{") + 1 :])
    assert result["num_samples"] == 6 and result["num_missing_predictions"] == 0


@pytest.mark.skipif(shutil.which("java") is None, reason="eval captions needs Java (pycocoevalcap METEOR)")
def test_caption_generation_and_metrics_on_a_flamingo_directory(setup, cli, capsys):
    root, paths = setup
    caption_preds = root / "caption_preds.jsonl"
    assert cli("generate", "--model", root / "model", "--input", paths["captions"], "--output", caption_preds,
               "--num-beams", "3", "--max-new-tokens", "6") == 0
    assert len(caption_preds.read_text().splitlines()) == 6
    capsys.readouterr()
    assert cli("eval", "captions", "--predictions", caption_preds, "--references", paths["captions"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "CIDEr" in result and "Bleu_4" in result


def test_recipe_defaults_and_the_example_config_parse(tmp_path):
    """SPEC 1.3 defaults (lr 3e-5, 100 warm-up steps then constant, batch 2, per-epoch checkpoints, length 384)."""
    from hf_vlmdrive.arguments import parse_args

    script, train = parse_args([FlamingoSFTArguments, FlamingoTrainingArguments],
                               ["--config", "examples/configs/flamingo_tiny.yaml", "--output_dir", str(tmp_path)])
    assert script.model_name_or_path == "tiny-random" and script.gate_lr_multiplier == 50.0
    assert script.gate_regularization == 0.2 and script.text_dropout == 0.25
    defaults = FlamingoTrainingArguments(output_dir=str(tmp_path))
    assert defaults.learning_rate == 3e-5 and defaults.warmup_steps == 100
    assert str(defaults.lr_scheduler_type.value) == "constant_with_warmup"
    assert defaults.per_device_train_batch_size == 2 and defaults.max_length == 384
    assert str(defaults.save_strategy.value) == "epoch"
    with pytest.raises(ValueError, match="text_dropout"):
        FlamingoSFTArguments(text_dropout=1.5)
