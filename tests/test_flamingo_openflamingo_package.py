"""Parity against the `open-flamingo` 2.0.1 package itself, run in a separate environment.

OpenFlamingo needs transformers 4.33.3 and open_clip 2.20, which cannot share this environment. Set
`OPEN_FLAMINGO_PYTHON` to a Python with them (see docs/flamingo.md: `pip install --no-deps open-flamingo==2.0.1`
next to `transformers==4.33.3 open_clip_torch==2.20.0 einops einops-exts "numpy<2" torch torchvision`). That
Python builds tiny parts, the package's own `create_model_and_transforms` model (default resampler: depth 6,
64 latents), saves `checkpoint.pt` with the package's `filter_state_dict_to_trainable` (flat and as a training
checkpoint with `module.` prefixes), and records its logits, greedy and beam-3 generations; here the checkpoint
is converted with `hf-vlmdrive convert open-flamingo` and compared. Skipped without `OPEN_FLAMINGO_PYTHON`.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
from transformers import AutoModelForImageTextToText

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.cli import main

PYTHON = os.environ.get("OPEN_FLAMINGO_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PYTHON, reason="set OPEN_FLAMINGO_PYTHON to a Python with open-flamingo 2.0.1 installed"),
]

MAKE_REFERENCE = '"""Run in the open-flamingo 2.0.1 venv (transformers 4.33.3, open_clip 2.20): build tiny parts, the real\nOpenFlamingo model, save checkpoint.pt as its training script does, and its logits on fixed inputs."""\nimport json, sys, types, os\nfrom pathlib import Path\nsys.modules.setdefault("wandb", types.ModuleType("wandb"))  # train_utils imports wandb\nimport torch, open_clip\nfrom tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers\nfrom transformers import PreTrainedTokenizerFast, LlamaConfig, LlamaForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM\nimport transformers\nfrom open_flamingo import create_model_and_transforms\nfrom open_flamingo.train.train_utils import filter_state_dict_to_trainable\n\nkind = sys.argv[1]\nroot = Path(sys.argv[2]) / kind\nroot.mkdir(parents=True, exist_ok=True)\nprint("transformers", transformers.__version__, "open_clip", open_clip.version.__version__)\ncfg = {"embed_dim": 16, "quick_gelu": True,\n       "vision_cfg": {"image_size": 16, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},\n       "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}\n(root / "tiny-vit-of.json").write_text(json.dumps(cfg))\nopen_clip.add_model_config(root / "tiny-vit-of.json")\ntorch.manual_seed(0)\nclip = open_clip.create_model("tiny-vit-of")\nwith torch.no_grad():\n    for n, p in clip.visual.named_parameters():\n        if "ln_" in n:\n            p.add_(0.1 * torch.randn_like(p))\ntorch.save(clip.state_dict(), root / "clip.pt")\n\ncorpus = ["User: Assistant: Describe the road scene.", "A pedestrian walks on the sidewalk to the left of the road.",\n          "The sidewalk is on the right, a bicycle and a person are on the sidewalk. 0 1 2 3 4 5 6 7 8 9 , . : ;"]\ntok = Tokenizer(models.BPE(unk_token=None))\ntok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)\ntok.decoder = decoders.ByteLevel()\ntok.train_from_iterator(corpus * 4, trainer=trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],\n                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))\nhf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",\n                                 unk_token="<|endoftext|>")\nlm_dir = root / "lm"\nhf_tok.save_pretrained(lm_dir)\ntorch.manual_seed(1)\nV = len(hf_tok)\nif kind == "llama":\n    lm = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,\n                                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True,\n                                      bos_token_id=0, eos_token_id=0))\nelse:\n    lm = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,\n                                          num_attention_heads=2, rotary_pct=0.25, tie_word_embeddings=False,\n                                          use_parallel_residual=True, bos_token_id=0, eos_token_id=0))\nlm.save_pretrained(lm_dir, safe_serialization=True)\n\nmodel, image_processor, tokenizer = create_model_and_transforms(\n    clip_vision_encoder_path="tiny-vit-of", clip_vision_encoder_pretrained=str(root / "clip.pt"),\n    lang_encoder_path=str(lm_dir), tokenizer_path=str(lm_dir), cross_attn_every_n_layers=1)\ntorch.manual_seed(2)\nwith torch.no_grad():\n    for layer in model.lang_encoder.gated_cross_attn_layers:\n        if layer is not None:\n            layer.attn_gate.fill_(0.6)\n            layer.ff_gate.fill_(-0.4)\n    model.lang_encoder.get_input_embeddings().weight[-3:].normal_()\n    out_emb = model.lang_encoder.get_output_embeddings().weight\n    if out_emb is not model.lang_encoder.get_input_embeddings().weight:\n        out_emb[-3:].normal_()\nmodel.eval()\nstate = filter_state_dict_to_trainable(model, model.state_dict())\ntorch.save(state, root / "checkpoint.pt")\ntorch.save({"epoch": 0, "model_state_dict": {"module." + k: v for k, v in state.items()},\n            "optimizer_state_dict": {"state": {}, "param_groups": []}}, root / "training_checkpoint.pt")\nmedia = tokenizer.encode("<image>")[-1]\neoc = tokenizer.encode("<|endofchunk|>")[-1]\ng = torch.Generator().manual_seed(5)\nids = torch.randint(1, 250, (2, 14), generator=g)\nids[:, 2] = media\nids[:, 9] = media\nids[0, 8] = eoc\nvision_x = torch.randn(2, 2, 1, 3, 16, 16, generator=g)\nwith torch.no_grad():\n    logits = model(vision_x=vision_x, lang_x=ids, attention_mask=torch.ones_like(ids)).logits\n    gen_ids = ids[:, :10]\n    greedy = model.generate(vision_x=vision_x, lang_x=gen_ids, attention_mask=torch.ones_like(gen_ids),\n                            max_new_tokens=6, num_beams=1, pad_token_id=tokenizer.pad_token_id)\n    beams = model.generate(vision_x=vision_x, lang_x=gen_ids, attention_mask=torch.ones_like(gen_ids),\n                           max_new_tokens=6, num_beams=3, pad_token_id=tokenizer.pad_token_id)\ntorch.save({"input_ids": ids, "vision_x": vision_x, "logits": logits, "greedy": greedy, "beams": beams,\n            "media": media, "eoc": eoc}, root / "reference_outputs.pt")\nprint(kind, "checkpoint keys:", len(state), sorted(k for k in state if "gated" not in k and "perceiver" not in k))\n'


@pytest.mark.parametrize("kind", ["llama", "gpt_neox"])
def test_converted_checkpoint_equals_the_open_flamingo_package(tmp_path, kind):
    script = tmp_path / "make_reference.py"
    script.write_text(MAKE_REFERENCE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([PYTHON, str(script), kind, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    d = tmp_path / kind
    ref = torch.load(d / "reference_outputs.pt", weights_only=True)
    for form in ("checkpoint.pt", "training_checkpoint.pt"):
        out = d / f"converted_{form.split('.')[0]}"
        assert main(["convert", "open-flamingo", "--checkpoint", str(d / form), "--vision-encoder", "tiny-vit-of",
                     "--vision-pretrained", str(d / "clip.pt"), "--open-clip-config", str(d / "tiny-vit-of.json"),
                     "--lang-encoder", str(d / "lm"), "--tokenizer", str(d / "lm"),
                     "--cross-attn-every-n-layers", "1", "--output", str(out)]) == 0
        report = json.loads((out / "conversion_report.json").read_text())
        assert report["missing"] == [] and report["unexpected"] == []
        if kind == "gpt_neox":  # transformers 4.33 saved a rotary buffer per GPT-NeoX layer
            assert len(report["ignored_buffers"]) == 2
        model = AutoModelForImageTextToText.from_pretrained(out).eval()
        ids, px = ref["input_ids"], ref["vision_x"]
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=px, attention_mask=torch.ones_like(ids)).logits
            kw = dict(input_ids=ids[:, :10], pixel_values=px, attention_mask=torch.ones_like(ids[:, :10]),
                      max_new_tokens=6, do_sample=False)
            greedy = model.generate(**kw, num_beams=1)
            beams = model.generate(**kw, num_beams=3)
        diff = (logits - ref["logits"]).abs().max().item()
        print(f"{kind}/{form}: max |logit diff| vs open-flamingo 2.0.1 = {diff:.2e}")
        assert diff < 1e-4
        assert torch.equal(greedy, ref["greedy"]) and torch.equal(beams, ref["beams"])
