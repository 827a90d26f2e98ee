"""CLIPScore: formula 100*max(cos,0) / 2.5*max(cos,0) on a tiny transformers CLIPModel; open_clip path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hf_vlmdrive.metrics import load_metric
from hf_vlmdrive.metrics.clipscore.clipscore import clip_score
from hf_vlmdrive.testing.tiny_smolvlm import train_tiny_tokenizer

CAPTIONS = ["a car on the road", "the sidewalk is on the left", "a person", "trees"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    path = tmp_path_factory.mktemp("clip")
    tok = train_tiny_tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=64, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)) for _ in CAPTIONS]


def _manual(path, images, captions):
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(path).eval()
    tok, proc = AutoTokenizer.from_pretrained(path), AutoImageProcessor.from_pretrained(path)
    with torch.no_grad():
        out = model(**tok(captions, padding=True, return_tensors="pt"), pixel_values=proc(images=images, return_tensors="pt")["pixel_values"])
    img = out.image_embeds.double() / out.image_embeds.double().norm(dim=-1, keepdim=True)
    txt = out.text_embeds.double() / out.text_embeds.double().norm(dim=-1, keepdim=True)
    return (img * txt).sum(-1).numpy()


def test_clipscore_formula_transformers_clip(tiny_clip):
    images = _images()
    cos = _manual(tiny_clip, images, CAPTIONS)
    assert (cos > 0).any()
    result = load_metric("clipscore").compute(predictions=CAPTIONS, images=images, model=str(tiny_clip), batch_size=3)
    np.testing.assert_allclose(result["clipscore"], np.mean(100 * np.maximum(cos, 0)), rtol=1e-5)
    assert result["clipscore_scale"] == 100.0 and "100*max(cos,0)" in result["clipscore_convention"]
    hessel = clip_score(CAPTIONS, images, str(tiny_clip), scale=2.5)
    np.testing.assert_allclose(hessel["per_sample"], 2.5 * np.maximum(cos, 0), rtol=1e-5)
    assert "Hessel" in hessel["clipscore_convention"]
    with pytest.raises(ValueError, match="scale must be 100"):
        clip_score(CAPTIONS, images, str(tiny_clip), scale=1.0)


def test_clipscore_open_clip_random_weights(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    # A tiny architecture registered from a local config: pretrained=None builds random weights, no download.
    (tmp_path / "tiny-clip-test.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }))
    open_clip.add_model_config(tmp_path)
    images = _images()
    result = clip_score(CAPTIONS, images, "tiny-clip-test", pretrained=None)
    # Random weights differ per build: check the formula against one encoder's own embeddings.
    from hf_vlmdrive.metrics.clipscore.clipscore import ClipEncoder

    enc = ClipEncoder("tiny-clip-test")
    with torch.no_grad():
        img = enc.model.encode_image(torch.stack([enc.preprocess(i) for i in images])).double()
        txt = enc.model.encode_text(enc.tokenizer(CAPTIONS)).double()
    cos = torch.nn.functional.cosine_similarity(img, txt).numpy()
    manual = clip_score(CAPTIONS, images, enc)
    np.testing.assert_allclose(manual["per_sample"], 100 * np.maximum(cos, 0), rtol=1e-5)
    assert result["num_samples"] == 4 and 0 <= result["clipscore"] <= 100
