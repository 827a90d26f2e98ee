"""Road-scene SFT: tiny SmolVLM2 round trip, assistant-only labels, 2-step LoRA / QLoRA runs, resume."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("peft")

from hf_vlmdrive.data.collators import AssistantOnlyVLMCollator  # noqa: E402
from hf_vlmdrive.data.roadscene import load_sft_dataset  # noqa: E402
from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene  # noqa: E402
from hf_vlmdrive.testing.tiny_smolvlm import build_tiny_smolvlm  # noqa: E402
from hf_vlmdrive.trainers.roadscene_config import RoadSceneSFTArguments  # noqa: E402
from hf_vlmdrive.trainers.roadscene_recipe import build_model, load_processor, train_roadscene  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rs_sft")
    paths = write_synthetic_roadscene(root / "data", num_samples=6, image_size=32)
    build_tiny_smolvlm(root / "model")
    return root, paths


def test_tiny_model_round_trips_through_auto_classes(setup):
    from transformers import (
        AutoModelForImageTextToText,
        AutoProcessor,
        SmolVLMForConditionalGeneration,
        SmolVLMProcessor,
    )

    root, paths = setup
    processor = AutoProcessor.from_pretrained(root / "model")
    model = AutoModelForImageTextToText.from_pretrained(root / "model")
    assert isinstance(processor, SmolVLMProcessor) and isinstance(model, SmolVLMForConditionalGeneration)
    again, _ = build_tiny_smolvlm(None)
    ds, _ = load_sft_dataset(paths["bvpi_sft"])
    batch = AssistantOnlyVLMCollator(processor)([ds[0]])
    batch.pop("labels")
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, again(**batch).logits, atol=1e-6)


def test_labels_only_on_assistant_tokens(setup):
    root, paths = setup
    processor = load_processor(str(root / "model"))
    tok = processor.tokenizer
    ds, _ = load_sft_dataset(paths["bvpi_sft"])
    examples = [ds[0], ds[1], ds[2]]
    batch = AssistantOnlyVLMCollator(processor)(examples)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    image_id = processor.image_token_id
    assert (ids == image_id).any()
    for row, ex in enumerate(examples):
        answer = ex["messages"][1]["content"][0]["text"]
        kept = labels[row] != -100
        # The kept tokens are exactly the answer plus its end-of-turn, as one contiguous tail span.
        assert tok.decode(ids[row][kept]) == " " + answer + "<end_of_utterance>\n"
        positions = kept.nonzero().flatten()
        assert positions.numel() == positions[-1] - positions[0] + 1
        assert int(positions[-1]) == int(mask[row].sum()) - 1
        prompt_ids = ids[row][: positions[0]]
        assert (prompt_ids == image_id).sum() == processor.image_seq_len
        assert tok.decode(prompt_ids).endswith("Assistant:")
        assert torch.equal(labels[row][kept], ids[row][kept])
    assert (labels[ids == image_id] == -100).all()
    assert (labels[mask == 0] == -100).all()


def _snapshot(model):
    return {n: p.detach().float().clone() for n, p in model.named_parameters()}


def _train_two_steps(root, paths, qlora: bool, out: str):
    from trl import SFTConfig, SFTTrainer

    args = RoadSceneSFTArguments(model_name_or_path=str(root / "model"), train_file=str(paths["bvpi_sft"]), load_in_4bit=qlora)
    model = build_model(args)
    processor = load_processor(args.model_name_or_path)
    ds, _ = load_sft_dataset(args.train_file)
    config = SFTConfig(
        output_dir=str(root / out), max_steps=2, per_device_train_batch_size=2, learning_rate=5e-2,
        report_to=[], use_cpu=True, gradient_checkpointing=False, save_strategy="no", logging_steps=1,
        dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False,
    )
    before = _snapshot(model)
    trainer = SFTTrainer(model=model, args=config, train_dataset=ds, processing_class=processor,
                         data_collator=AssistantOnlyVLMCollator(processor))
    trainer.train()
    after = _snapshot(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    return model, changed


@pytest.mark.parametrize("qlora", [False, True], ids=["lora", "qlora"])
def test_two_step_sft_changes_only_adapters(setup, qlora):
    root, paths = setup
    model, changed = _train_two_steps(root, paths, qlora, f"out_{qlora}")
    assert changed, "no parameter changed in 2 steps"
    assert all("lora_" in n for n in changed), sorted(changed)[:5]
    lora_names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert lora_names and all("lora_" in n for n in lora_names)
    targets = {n.split(".")[-4] for n in lora_names}
    assert targets == {"q_proj", "v_proj"}
    if qlora:
        import bitsandbytes as bnb

        linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert linear4, "QLoRA model has no 4-bit layers"
        assert linear4[0].weight.quant_type == "nf4"
        assert linear4[0].weight.quant_state.nested  # double quantisation


def test_train_roadscene_saves_and_resumes(setup):
    from trl import SFTConfig

    root, paths = setup
    args = RoadSceneSFTArguments(model_name_or_path=str(root / "model"), train_file=str(paths["bvpi_sft"]), load_in_4bit=False)

    def config(steps):
        return SFTConfig(output_dir=str(root / "resume"), max_steps=steps, per_device_train_batch_size=2, save_steps=1,
                         report_to=[], use_cpu=True, gradient_checkpointing=False, logging_steps=1,
                         resume_from_checkpoint="last")

    first = train_roadscene(args, config(1)).sft_metrics
    assert (root / "resume" / "checkpoint-1").is_dir() and (root / "resume" / "adapter_config.json").is_file()
    second = train_roadscene(args, config(2)).sft_metrics
    assert (root / "resume" / "checkpoint-2").is_dir()
    # The resumed run only did the one missing step.
    assert first["num_train_records"] == second["num_train_records"] == 6
    import json

    state = json.loads((root / "resume" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2]


def test_lora_targets_are_configurable(setup):
    root, paths = setup
    args = RoadSceneSFTArguments(model_name_or_path=str(root / "model"), train_file="x", load_in_4bit=False,
                                 lora_target_modules="o_proj")
    model = build_model(args)
    assert {n.split(".")[-4] for n, p in model.named_parameters() if p.requires_grad} == {"o_proj"}
    with pytest.raises(ValueError, match="load_in_4bit=True needs use_peft"):
        RoadSceneSFTArguments(use_peft=False, load_in_4bit=True)
