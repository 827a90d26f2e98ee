"""Flamingo's quick path learns: the recipe's `train_language_model` option trains the LM with the resampler and
gated blocks (the vision tower stays frozen), the demo's tiny model is the LM while its gates are 0, the caption
figure shows what it should, and the documented demo beats a constant caption on held-out scenes (slow)."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.data.synthetic.roadscene import write_synthetic_roadscene
from hf_vlmdrive.demos.flamingo import FlamingoDemoConfig, build_demo_flamingo
from hf_vlmdrive.trainers.flamingo_config import FlamingoSFTArguments, FlamingoTrainingArguments
from hf_vlmdrive.trainers.flamingo_recipe import train_flamingo


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("flamingo_demo")
    paths = write_synthetic_roadscene(root / "data", num_samples=8, image_size=32)
    texts = [line for line in paths["captions"].read_text().splitlines()]
    cfg = FlamingoDemoConfig(image_size=32, hidden_size=32, num_latents=4, vocab_size=400)
    build_demo_flamingo(root / "model", texts, cfg)
    return root, paths


def test_demo_model_is_its_language_model_while_gates_are_zero(tiny):
    """OpenFlamingo's initialisation: with every gate at 0 the image changes nothing (the logits are the bare
    LM's); the tokenizer learnt the captions' words."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    root, paths = tiny
    model = AutoModelForImageTextToText.from_pretrained(root / "model").eval()
    processor = AutoProcessor.from_pretrained(root / "model")
    assert all(float(b.attn_gate.detach()) == 0.0 and float(b.ff_gate.detach()) == 0.0
               for b in model.gated_cross_attn_layers)
    image = Image.open(sorted(paths["images"].glob("*.png"))[0]).convert("RGB")
    inputs = processor(text=["<image>The sidewalk is on the left"], images=[[image]], return_tensors="pt")
    with torch.no_grad():
        full = model(**inputs).logits
        lm = model.language_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    torch.testing.assert_close(full, lm, rtol=0, atol=0)
    words = processor.tokenizer("The sidewalk is on the left")["input_ids"]
    assert len(words) <= 8, words  # whole words, not bytes


def test_train_language_model_trains_the_lm_but_not_the_tower(tiny):
    root, paths = tiny
    out = root / "sft"
    args = FlamingoSFTArguments(model_name_or_path=str(root / "model"), train_file=str(paths["captions"]),
                                task="caption", train_language_model=True, gate_lr_multiplier=5.0)
    training = FlamingoTrainingArguments(output_dir=str(out), max_steps=3, per_device_train_batch_size=4,
                                         learning_rate=1e-2, warmup_steps=1, logging_steps=1, save_strategy="no",
                                         report_to="none", use_cpu=True, max_length=256)
    train_flamingo(args, training)
    before, after = load_file(str(root / "model" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("language_model.") and ".gated_cross_attn_layer." not in k for k in changed)
    assert any(".decoder_layer." in k or "embed_tokens" in k for k in changed)
    assert not any(k.startswith("vision_model.") for k in changed)
    card = (out / "README.md").read_text()
    assert "the whole language model" in card and "the vision tower stays frozen" in card
    # The default keeps the LM frozen (OpenFlamingo's recipe).
    assert FlamingoSFTArguments().train_language_model is False


def test_caption_figure(tmp_path, tiny):
    from PIL import Image

    from hf_vlmdrive.visualization import plot_caption_predictions

    _, paths = tiny
    images = [Image.open(p).convert("RGB") for p in sorted(paths["images"].glob("*.png"))[:3]]
    path = plot_caption_predictions(images, ["a", "b", "c"], ["a", "x", "y"], tmp_path / "f.png",
                                    alternatives=[["a"], ["x", "b"], ["y"]], baseline="constant")
    img = Image.open(path)
    assert img.size[0] > 800 and img.size[1] > 3 * 150


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need Java (pycocoevalcap)")
def test_demo_beats_the_constant_caption(tmp_path):
    """`python examples/sft_flamingo.py --demo` on its fixed seed (0): every caption metric above the constant
    caption's, CIDEr by a wide margin (measured: docs/flamingo.md)."""
    from huggingface_hub import ModelCard

    from hf_vlmdrive.demos.flamingo import run_flamingo_demo

    res = run_flamingo_demo(tmp_path)
    caps = res["captions"]
    assert caps["model"]["CIDEr"] > 2.0 * caps["baseline"]["CIDEr"], (caps["model"], caps["baseline"])
    for key in ("Bleu_4", "METEOR", "ROUGE_L"):
        assert caps["model"][key] > caps["baseline"][key] + 0.1, key
    assert (tmp_path / "flamingo_predictions.png").stat().st_size > 20_000
    card = ModelCard.load(tmp_path / "flamingo-tiny" / "README.md")
    assert "constant caption" in card.text and card.data.to_dict()["model-index"]
