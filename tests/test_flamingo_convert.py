"""The OpenFlamingo converter against an independent reference of OpenFlamingo 2.0.1's forward.

The reference below is a plain-torch port of `open_flamingo/src/helpers.py` (PerceiverResampler,
MaskedCrossAttention, GatedCrossAttentionBlock), `flamingo_lm.py` (FlamingoLayer, FlamingoLMMixin.init_flamingo:
the LM's layer list replaced, `old_decoder_blocks` / `gated_cross_attn_layers` aliases) and `flamingo.py`
(`_encode_vision_x`, `forward`), written with matmuls instead of einsum / einops. Its vision features are
the tokens of open_clip's own tower before `ln_post` (what open_clip <= 2.22 returned with
`output_tokens=True`), obtained by running the tower's `_embeds` and `transformer`. The test builds a tiny
open_clip ViT from a registered config, a tiny transformers LM, assembles the reference, saves its state
dict as OpenFlamingo's training script does (`filter_state_dict_to_trainable`) both as a flat
`checkpoint.pt` and as a training checkpoint (`model_state_dict` with DDP `module.` prefixes), converts, and
compares logits.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.cli import main as cli_main
from hf_vlmdrive.models.flamingo.convert_open_flamingo import convert_open_flamingo
from hf_vlmdrive.testing.tiny_flamingo import tiny_text_config, train_tiny_base_tokenizer

open_clip = pytest.importorskip("open_clip")

OPEN_CLIP_TINY = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 16, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


# ----------------------------------------------------------------------------- reference port of OpenFlamingo
def ref_ff(dim, mult=4):
    inner = int(dim * mult)
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(),
                         nn.Linear(inner, dim, bias=False))


def _heads(t, h):  # (..., n, h*d) -> (..., h, n, d)
    return t.unflatten(-1, (h, -1)).transpose(-2, -3)


class RefPerceiverAttention(nn.Module):
    def __init__(self, dim, dim_head=64, heads=8):
        super().__init__()
        self.scale, self.heads = dim_head**-0.5, heads
        inner = dim_head * heads
        self.norm_media, self.norm_latents = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, latents):
        x, latents = self.norm_media(x), self.norm_latents(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat((x, latents), dim=-2)).chunk(2, dim=-1)
        q, k, v = _heads(q, self.heads) * self.scale, _heads(k, self.heads), _heads(v, self.heads)
        sim = q @ k.transpose(-1, -2)
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        out = (attn @ v).transpose(-2, -3).flatten(-2)
        return self.to_out(out)


class RefPerceiverResampler(nn.Module):
    def __init__(self, dim, depth=6, dim_head=64, heads=8, num_latents=64, ff_mult=4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.layers = nn.ModuleList(
            [nn.ModuleList([RefPerceiverAttention(dim, dim_head, heads), ref_ff(dim, ff_mult)]) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):  # (b, T, F, v, D)
        b, t = x.shape[:2]
        x = x.flatten(2, 3)
        latents = self.latents[None, None].repeat(b, t, 1, 1)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm(latents)


class RefMaskedCrossAttention(nn.Module):
    def __init__(self, dim, dim_visual, dim_head=64, heads=8):
        super().__init__()
        self.scale, self.heads = dim_head**-0.5, heads
        inner = dim_head * heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, media, media_locations):  # only_attend_immediate_media=True, uncached path
        t_img, n = media.shape[1:3]
        x = self.norm(x)
        q = self.to_q(x)
        k, v = self.to_kv(media.flatten(1, 2)).chunk(2, dim=-1)
        q, k, v = _heads(q, self.heads) * self.scale, _heads(k, self.heads), _heads(v, self.heads)
        sim = q @ k.transpose(-1, -2)
        media_time = torch.arange(t_img) + 1
        text_time = media_locations.cumsum(dim=-1)
        mask = text_time[:, None, :, None] == media_time.repeat_interleave(n)[None, None, None, :]
        sim = sim.masked_fill(~mask, -torch.finfo(sim.dtype).max)
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        attn = attn.masked_fill((text_time == 0)[:, None, :, None], 0.0)
        return self.to_out((attn @ v).transpose(1, 2).flatten(-2))


class RefGatedCrossAttentionBlock(nn.Module):
    def __init__(self, dim, dim_visual, dim_head=64, heads=8, ff_mult=4):
        super().__init__()
        self.attn = RefMaskedCrossAttention(dim, dim_visual, dim_head, heads)
        self.attn_gate = nn.Parameter(torch.tensor([0.0]))
        self.ff = ref_ff(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.tensor([0.0]))

    def forward(self, x, media, media_locations):
        x = self.attn(x, media, media_locations) * self.attn_gate.tanh() + x
        return self.ff(x) * self.ff_gate.tanh() + x


class RefFlamingoLayer(nn.Module):
    def __init__(self, gated, decoder_layer):
        super().__init__()
        self.gated_cross_attn_layer, self.decoder_layer = gated, decoder_layer
        self.vis_x = self.media_locations = None
        for attr in ("attention_type",):
            if hasattr(decoder_layer, attr):
                setattr(self, attr, getattr(decoder_layer, attr))

    def forward(self, lang_x, *args, **kwargs):
        if self.gated_cross_attn_layer is not None:
            lang_x = self.gated_cross_attn_layer(lang_x, self.vis_x, self.media_locations)
        return self.decoder_layer(lang_x, *args, **kwargs)


def _get(obj, path):
    for p in path.split("."):
        obj = getattr(obj, p)
    return obj


class RefFlamingo(nn.Module):
    """OpenFlamingo's `Flamingo` with its LM prepared by `init_flamingo` (names as its state dict has them)."""

    def __init__(self, visual, lm, layers_attr, media_token_id, vis_dim, every_n, depth, num_latents):
        super().__init__()
        self.media_token_id = media_token_id
        self.vision_encoder = visual
        self.perceiver = RefPerceiverResampler(dim=vis_dim, depth=depth, num_latents=num_latents)
        lang_dim = lm.config.hidden_size
        lm.old_decoder_blocks = _get(lm, layers_attr)
        lm.gated_cross_attn_layers = nn.ModuleList(
            [RefGatedCrossAttentionBlock(lang_dim, vis_dim) if (i + 1) % every_n == 0 else None
             for i in range(len(lm.old_decoder_blocks))])
        parent, last = layers_attr.rsplit(".", 1)
        setattr(_get(lm, parent), last, nn.ModuleList(
            [RefFlamingoLayer(g, d) for g, d in zip(lm.gated_cross_attn_layers, lm.old_decoder_blocks)]))
        self.lang_encoder = lm
        self.layers_attr = layers_attr

    def vision_tokens(self, vision_x):
        """open_clip's tower to the tokens before ln_post, CLS dropped (open_clip <= 2.22 `output_tokens`)."""
        x = self.vision_encoder._embeds(vision_x)
        x = self.vision_encoder.transformer(x)
        return x[:, 1:]

    def forward(self, vision_x, lang_x, attention_mask=None):
        b, t, f = vision_x.shape[:3]
        with torch.no_grad():
            tokens = self.vision_tokens(vision_x.flatten(0, 2))
        vis = self.perceiver(tokens.unflatten(0, (b, t, f)))
        for layer in _get(self.lang_encoder, self.layers_attr):
            layer.vis_x, layer.media_locations = vis, lang_x == self.media_token_id
        return self.lang_encoder(input_ids=lang_x, attention_mask=attention_mask).logits


def filter_state_dict_to_trainable(model, state):
    """open_flamingo/train/train_utils.py: drop frozen params (except embeddings), aliases and the tower."""
    for name, p in model.named_parameters():
        if "embed" in name or isinstance(p, torch.nn.Embedding):
            continue
        if not p.requires_grad and name in state:
            del state[name]
    for n in [n for n in state if "lang_encoder.old_decoder_blocks" in n
              or "lang_encoder.gated_cross_attn_layers" in n or "vision_encoder" in n]:
        del state[n]
    return state


LAYERS = {"llama": "model.layers", "gpt_neox": "gpt_neox.layers", "mosaic_gpt": "transformer.blocks"}


def _build_reference(tmp_path, kind, every_n=1, depth=3, num_latents=5):
    """(reference model, its parts' paths, ids): base LM dir, open_clip config and weights files."""
    cfg_path = tmp_path / "tiny-vit-flamingo.json"
    cfg_path.write_text(json.dumps(OPEN_CLIP_TINY))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(0)
    clip = open_clip.create_model("tiny-vit-flamingo")
    with torch.no_grad():  # non-trivial LayerNorms
        for name, p in clip.visual.named_parameters():
            if "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    clip_file = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), clip_file)

    tok = train_tiny_base_tokenizer()
    lm_dir = tmp_path / f"lm_{kind}"
    from transformers import AutoConfig

    text = tiny_text_config(kind, vocab_size=len(tok))
    text_type = text.pop("model_type")
    lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(text_type, **text))
    lm.save_pretrained(lm_dir)
    tok.save_pretrained(lm_dir)

    # create_model_and_transforms: special tokens, resize, wrap; freeze all but perceiver, gated, embeddings
    tok.add_special_tokens({"additional_special_tokens": ["<|endofchunk|>", "<image>"]})
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<PAD>"})
    lm = AutoModelForCausalLM.from_pretrained(lm_dir)
    lm.resize_token_embeddings(len(tok))
    media_id = tok.encode("<image>")[-1]
    ref = RefFlamingo(clip.visual, lm, LAYERS[kind], media_id, 32, every_n, depth, num_latents).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for block in ref.lang_encoder.gated_cross_attn_layers:
            if block is not None:
                block.attn_gate.fill_(0.6)
                block.ff_gate.fill_(-0.4)
        ref.lang_encoder.get_input_embeddings().weight[-3:].normal_()  # the trained new-token rows
        out_emb = lm.get_output_embeddings()  # None for MosaicGPT: its logits use wte itself
        if out_emb is not None and out_emb.weight is not lm.get_input_embeddings().weight:
            out_emb.weight[-3:].normal_()
    ref.requires_grad_(False)
    ref.perceiver.requires_grad_(True)
    ref.lang_encoder.gated_cross_attn_layers.requires_grad_(True)
    ref.lang_encoder.get_input_embeddings().requires_grad_(True)
    return ref, {"clip_cfg": cfg_path, "clip_file": clip_file, "lm_dir": lm_dir}, tok


def _inputs(tok, media_id):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, 250, (2, 14), generator=g)
    ids[:, 2] = media_id
    ids[:, 9] = media_id
    ids[0, 8] = tok.convert_tokens_to_ids("<|endofchunk|>")
    return ids, torch.randn(2, 2, 1, 3, 16, 16, generator=g)


def _save_checkpoint(ref, state, form, path):
    """OpenFlamingo's checkpoint forms: `flat` (filter_state_dict_to_trainable), `training` (model_state_dict with
    DDP prefixes, optimizer state), `full` (the unfiltered state_dict: tower, LM, aliases), `ddp` (flat with
    `module.`), `nested` ({"model_state_dict": ...} without prefixes)."""
    if form == "full":
        state = ref.state_dict()
    if form in ("flat", "full"):
        torch.save(state, path)
    elif form == "ddp":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif form == "nested":
        torch.save({"model_state_dict": state, "epoch": 1}, path)
    else:
        torch.save({"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in state.items()},
                    "optimizer_state_dict": {"state": {}, "param_groups": []}}, path)


@pytest.mark.parametrize("kind,form", [("llama", "flat"), ("llama", "training"), ("gpt_neox", "flat"),
                                       ("mosaic_gpt", "flat"), ("mosaic_gpt", "full"), ("mosaic_gpt", "ddp"),
                                       ("mosaic_gpt", "nested")])
def test_converted_checkpoint_gives_open_flamingo_logits(tmp_path, kind, form, capsys):
    ref, paths, tok = _build_reference(tmp_path, kind)
    state = filter_state_dict_to_trainable(ref, ref.state_dict())
    assert any(".gated_cross_attn_layer." in k for k in state) and "perceiver.latents" in state
    assert not any(k.startswith("vision_encoder.") or "old_decoder_blocks" in k for k in state)
    if kind == "mosaic_gpt":  # the filter keeps the trained wte (requires_grad), although "embed" is not in its name
        assert "lang_encoder.transformer.wte.weight" in state
    if kind == "gpt_neox":
        # transformers 4.33 (OpenFlamingo's) named GPT-NeoX's output embeddings `embed_out` ("embed": kept by
        # the filter) and kept a rotary buffer per layer, saved in checkpoint.pt; current transformers says lm_head
        assert "lang_encoder.lm_head.weight" not in state  # (dropped here: no "embed" in the current name)
        state["lang_encoder.embed_out.weight"] = ref.lang_encoder.lm_head.weight.detach().clone()
        for i in range(2):
            state[f"lang_encoder.gpt_neox.layers.{i}.decoder_layer.attention.rotary_emb.inv_freq"] = torch.ones(2)
    ckpt = tmp_path / "checkpoint.pt"
    _save_checkpoint(ref, state, form, ckpt)

    out = tmp_path / "converted"
    code = cli_main(["convert", "open-flamingo", "--checkpoint", str(ckpt), "--vision-encoder", "tiny-vit-flamingo",
                     "--vision-pretrained", str(paths["clip_file"]), "--open-clip-config", str(paths["clip_cfg"]),
                     "--lang-encoder", str(paths["lm_dir"]), "--tokenizer", str(paths["lm_dir"]),
                     "--cross-attn-every-n-layers", "1", "--output", str(out)])
    assert code == 0
    report = json.loads((out / "conversion_report.json").read_text())
    assert report["missing"] == [] and report["unexpected"] == [], report
    assert report["settings"]["perceiver_depth"] == 3 and report["settings"]["perceiver_num_latents"] == 5
    if kind == "gpt_neox":
        assert len(report["ignored_buffers"]) == 2

    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    media_id = tok.encode("<image>")[-1]
    assert processor.image_token_id == media_id == model.config.media_token_id
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|endofchunk|>")
    ids, px = _inputs(tok, media_id)
    with torch.no_grad():
        want = ref(px, ids)
        got = model(input_ids=ids, pixel_values=px).logits
        # the vision path alone: CLIPVisionModel tokens == open_clip tokens before ln_post
        ours_tokens = model.vision_model(pixel_values=px.flatten(0, 2)).last_hidden_state[:, 1:]
        ref_tokens = ref.vision_tokens(px.flatten(0, 2))
    diff = (got - want).abs().max().item()
    print(f"{kind}/{form}: max |logit diff| = {diff:.3e}, vision tokens {(ours_tokens - ref_tokens).abs().max():.3e}")
    torch.testing.assert_close(ours_tokens, ref_tokens, atol=1e-5, rtol=1e-5)
    assert diff < 1e-4, diff
    # the images matter in both (the comparison is not vacuous)
    with torch.no_grad():
        assert (ref(px * 0.5, ids) - want).abs().max() > 1e-3


def test_converter_refuses_bad_inputs(tmp_path):
    ref, paths, tok = _build_reference(tmp_path, "llama")
    state = filter_state_dict_to_trainable(ref, ref.state_dict())
    ckpt = tmp_path / "checkpoint.pt"
    torch.save(state, ckpt)
    common = dict(vision_encoder="tiny-vit-flamingo", vision_pretrained=str(paths["clip_file"]),
                  lang_encoder=str(paths["lm_dir"]), tokenizer=str(paths["lm_dir"]), output=tmp_path / "o",
                  open_clip_config=paths["clip_cfg"])
    with pytest.raises(ValueError, match="puts gated blocks before layers"):
        convert_open_flamingo(ckpt, cross_attn_every_n_layers=2, **common)
    with pytest.raises(ValueError, match="does not exist"):
        convert_open_flamingo(tmp_path / "nope.pt", cross_attn_every_n_layers=1, **common)
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an OpenFlamingo checkpoint"):
        convert_open_flamingo(tmp_path / "other.pt", cross_attn_every_n_layers=1, **common)
    with pytest.raises(ValueError, match="not an open_clip model name"):
        convert_open_flamingo(ckpt, cross_attn_every_n_layers=1, **{**common, "vision_encoder": "ViT-Nope"})
    # an unknown key is an error naming it, not silently dropped
    for key in ("lang_encoder.some_new_module.weight", "text_head.weight"):
        torch.save({**state, key: torch.zeros(2)}, ckpt)
        with pytest.raises(ValueError, match=re.escape(key)):
            convert_open_flamingo(ckpt, cross_attn_every_n_layers=1, **common)
