"""MosaicGPT (MPT-1B's architecture, hf_vlmdrive.models.mosaic_gpt): ALiBi slopes, QK LayerNorm, the original's
switches against a plain-torch port of its forward, KV-cached generation, Hub-layout loading without remote code,
strict loading, the MptForCausalLM refusal, and OpenFlamingo-3B's parameter counts at the reference scale.

The port below follows MosaicML's source (github mosaicml/examples tag v0.0.4, `examples/llm/src/models/`):
`mosaic_gpt.py` (`_attn_bias`, `forward`), `layers/attention.py` (`MultiheadAttention.forward`,
`scaled_multihead_dot_product_attention`, `alibi_bias`), `layers/gpt_blocks.py` (`GPTBlock`, `GPTMLP`), written
from the text with plain tensor ops; the fixture test (tests/test_flamingo_mpt.py) compares against the original
code itself.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.models.flamingo import FlamingoConfig, FlamingoForConditionalGeneration
from hf_vlmdrive.models.flamingo.convert_open_flamingo import load_lang_encoder
from hf_vlmdrive.models.mosaic_gpt import MosaicGPTConfig
from hf_vlmdrive.models.mosaic_gpt.modeling_mosaic_gpt import MosaicGPTForCausalLM, alibi_slopes
from hf_vlmdrive.testing.tiny_models import tiny_mosaic_gpt_config

# The Hub config.json of mosaicml/mpt-1b-redpajama-200b (remote-code pointers included), at tiny size.
HUB_CONFIG = {
    "architectures": ["MosaicGPT"], "auto_map": {"AutoConfig": "configuration_mosaic_gpt.MosaicGPTConfig",
                                                 "AutoModelForCausalLM": "mosaic_gpt.MosaicGPT"},
    "model_type": "mosaic_gpt", "d_model": 32, "n_heads": 4, "n_layers": 2, "mlp_ratio": 4, "max_seq_len": 64,
    "vocab_size": 300, "alibi": True, "alibi_bias_max": 8, "attn_qk_ln": True, "attn_clip_qkv": None,
    "softmax_scale": None, "attn_impl": "torch", "no_bias": True, "low_precision_layernorm": True,
    "logit_scale": None, "embedding_fraction": 1.0, "attn_pdrop": 0, "resid_pdrop": 0, "emb_pdrop": 0,
    "prefix_lm": False, "attn_uses_sequence_id": False, "init_device": "cpu", "param_init_fn": "kaiming_normal_",
    "init_div_is_residual": True, "init_std": 0.02, "emb_init_std": None, "emb_init_uniform_lim": None,
    "init_gain": 0, "fan_mode": "fan_in", "init_nonlinearity": "relu", "verbose": 0, "use_cache": False,
    "tokenizer_name": "EleutherAI/gpt-neox-20b", "torch_dtype": "float32", "transformers_version": "4.27.4",
}


# ----------------------------------------------------------------------------- reference port of the original
def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd.get(f"{name}.bias"), 1e-5)


def _lin(x, sd, name):
    return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def reference_logits(sd: dict, c: dict, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MosaicGPT.forward (attn_impl torch, eval) from a Hub-layout state dict `sd` and config dict `c`."""
    d, h, L = c["d_model"], c["n_heads"], c["max_seq_len"]
    b, s = ids.shape
    x = sd["transformer.wte.weight"][ids]
    if not c["alibi"]:
        pos = torch.arange(s).unsqueeze(0)
        if mask is not None:
            pos = torch.clamp(pos - torch.cumsum((~mask).to(torch.int32), dim=1), min=0)
        x = x + sd["transformer.wpe.weight"][pos]
    f = c.get("embedding_fraction", 1.0)
    if f != 1:
        x = x * f + x.detach() * (1 - f)
    bias = None
    if c["alibi"]:  # alibi_bias(full=False): arange(1 - L, 1) * 1 / 2^m, m = arange(1, h + 1) * max / h
        m = torch.arange(1, h + 1, dtype=torch.float32) * (c["alibi_bias_max"] / h)
        bias = torch.zeros(1, h, 1, L) + torch.arange(1 - L, 1, dtype=torch.float32).view(1, 1, 1, L) * (
            1.0 / (2 ** m.view(1, h, 1, 1)))
    if mask is not None:
        bias = torch.zeros(1, 1, 1, s) if bias is None else bias[:, :, :, -s:]
        bias = bias.masked_fill(~mask.view(-1, 1, 1, s), torch.finfo(torch.float32).min)
    scale = c["softmax_scale"] if c.get("softmax_scale") is not None else 1 / math.sqrt(d / h)
    for i in range(c["n_layers"]):
        p = f"transformer.blocks.{i}"
        qkv = _lin(_ln(x, sd, f"{p}.ln_1"), sd, f"{p}.attn.Wqkv")
        if c.get("attn_clip_qkv"):
            qkv = qkv.clamp(min=-c["attn_clip_qkv"], max=c["attn_clip_qkv"])
        q, k, v = qkv.chunk(3, dim=2)
        if c["attn_qk_ln"]:
            q, k = _ln(q, sd, f"{p}.attn.q_ln"), _ln(k, sd, f"{p}.attn.k_ln")
        q = q.view(b, s, h, d // h).permute(0, 2, 1, 3)
        kt = k.view(b, s, h, d // h).permute(0, 2, 3, 1)  # 'b s (h d) -> b h d s'
        v = v.view(b, s, h, d // h).permute(0, 2, 1, 3)
        w = q.matmul(kt) * scale
        if bias is not None:
            w = w + bias[:, :, -s:, -s:]
        causal = ~torch.ones(s, s).tril().to(torch.bool)
        w = w.masked_fill(causal.view(1, 1, s, s), torch.finfo(w.dtype).min).softmax(dim=-1)
        out = w.matmul(v).permute(0, 2, 1, 3).reshape(b, s, d)
        x = x + _lin(out, sd, f"{p}.attn.out_proj")
        x = x + _lin(F.gelu(_lin(_ln(x, sd, f"{p}.ln_2"), sd, f"{p}.mlp.mlp_up")), sd, f"{p}.mlp.mlp_down")
    logits = F.linear(_ln(x, sd, "transformer.ln_f"), sd["transformer.wte.weight"])
    ls = c.get("logit_scale")
    if ls is not None:
        logits = logits * (1 / math.sqrt(d) if ls == "inv_sqrt_d_model" else ls)
    return logits


def _model(seed=0, **overrides) -> MosaicGPTForCausalLM:
    torch.manual_seed(seed)
    model = MosaicGPTForCausalLM(tiny_mosaic_gpt_config(**overrides)).eval()
    with torch.no_grad():  # LayerNorm weights away from 1 (and biases away from 0) so that they matter
        for name, p in model.named_parameters():
            if "ln" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


def _ids(b=2, s=11, seed=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 300, (b, s), generator=g)


# ----------------------------------------------------------------------------- ALiBi
def test_alibi_slopes_are_the_originals_for_4_3_and_16_heads():
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2**-2, 2**-4, 2**-6, 2**-8]))
    # no rounding up to a power of two (transformers' MPT would give the interleaved slopes of 4 heads)
    torch.testing.assert_close(alibi_slopes(3), torch.tensor([2 ** (-8 / 3), 2 ** (-16 / 3), 2.0**-8]))
    torch.testing.assert_close(alibi_slopes(16), 2 ** (-torch.arange(1, 17) / 2))  # MPT-1B: 2^-0.5 ... 2^-8
    torch.testing.assert_close(alibi_slopes(4, alibi_bias_max=16), torch.tensor([2**-4, 2**-8, 2**-12, 2**-16]))


def test_alibi_bias_is_query_independent_and_masks_with_dtype_min():
    model = _model()
    mask = torch.tensor([[False, True, True, True, True]])
    bias = model.transformer._attn_bias(5, mask, torch.float32, torch.device("cpu"))
    assert bias.shape == (1, 4, 1, 5)  # one row for every query
    slopes = alibi_slopes(4)
    torch.testing.assert_close(bias[0, :, 0, 1:], slopes[:, None] * torch.tensor([-3.0, -2.0, -1.0, 0.0]))
    assert (bias[0, :, 0, 0] == torch.finfo(torch.float32).min).all()


# ----------------------------------------------------------------------------- semantics vs the port
SWITCHES = [
    {},  # MPT-1B's switches: ALiBi, QK-LN, no bias
    {"n_heads": 8, "attn_clip_qkv": 0.3, "softmax_scale": 0.2, "logit_scale": "inv_sqrt_d_model"},
    {"alibi": False, "no_bias": False, "embedding_fraction": 0.25, "logit_scale": 1.7, "alibi_bias_max": 4},
    {"attn_qk_ln": False, "d_model": 48, "n_heads": 3},
]


@pytest.mark.parametrize("overrides", SWITCHES, ids=["mpt1b", "clip-scale", "wpe-bias-fraction", "no-qkln-3heads"])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_logits_equal_the_original_forward(overrides, implementation):
    model = _model(**overrides)
    model.config._attn_implementation_internal = implementation
    with torch.no_grad():
        if not model.config.no_bias:
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.normal_(std=0.1)
    c = model.config.to_dict()
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    ids = _ids()
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, :3] = False  # left padding
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask.long()).logits
        want = reference_logits(sd, c, ids, mask)
        got_nomask = model(input_ids=ids).logits
        want_nomask = reference_logits(sd, c, ids)
    tol = 1e-6 if implementation == "eager" else 1e-5
    torch.testing.assert_close(got[0], want[0], atol=tol, rtol=1e-5)
    torch.testing.assert_close(got[1, 3:], want[1, 3:], atol=tol, rtol=1e-5)  # non-pad positions
    torch.testing.assert_close(got_nomask, want_nomask, atol=tol, rtol=1e-5)
    if implementation == "eager":  # pad queries too (all keys at the dtype minimum: uniform attention)
        torch.testing.assert_close(got, want, atol=tol, rtol=1e-5)


def test_qk_layernorm_is_over_the_full_width_and_matters():
    model = _model()
    attn = model.transformer.blocks[0].attn
    assert attn.q_ln.weight.shape == (32,) and attn.q_ln.bias is None  # full d_model, weight only (no_bias)
    ids = _ids()
    with torch.no_grad():
        before = model(input_ids=ids).logits
        attn.k_ln.weight.mul_(2.0)
        after = model(input_ids=ids).logits
    assert (after - before).abs().max() > 1e-3
    off = MosaicGPTForCausalLM(tiny_mosaic_gpt_config(attn_qk_ln=False))
    assert not any("q_ln" in n or "k_ln" in n for n, _ in off.named_parameters())
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in off.parameters()) == 2 * 2 * 32


# ----------------------------------------------------------------------------- KV cache
def test_kv_cache_matches_the_full_forward_and_generate_is_cache_independent():
    model = _model()
    ids = _ids(s=9)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        first = model(input_ids=ids[:, :6], attention_mask=mask[:, :6], use_cache=True)
        rest = model(input_ids=ids[:, 6:], attention_mask=mask, cache=first.cache, use_cache=True).logits
    torch.testing.assert_close(rest[1], full[1, 6:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rest[0], full[0, 6:], atol=1e-5, rtol=1e-5)
    for beams in (1, 3):
        kwargs = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, num_beams=beams, pad_token_id=0,
                      eos_token_id=None)
        with torch.no_grad():
            cached = model.generate(ids, use_cache=True, **kwargs)
            uncached = model.generate(ids, use_cache=False, **kwargs)
        assert cached.shape == (2, 15) and torch.equal(cached, uncached), (beams, cached, uncached)
    # greedy decoding = the argmax of the full forward, step by step
    seq = ids[1:, 2:]
    with torch.no_grad():
        greedy = model.generate(seq, attention_mask=torch.ones_like(seq), max_new_tokens=3, do_sample=False,
                                eos_token_id=None, pad_token_id=0)
        for _ in range(3):
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(greedy, seq)


def test_sequence_longer_than_max_seq_len_is_refused():
    model = _model()
    with pytest.raises(ValueError, match="exceeds max_seq_len=64"):
        model(input_ids=torch.ones(1, 65, dtype=torch.long))


# ----------------------------------------------------------------------------- Hub layout
def _hub_folder(tmp_path, model, *, safetensors=False, extra=None, drop=None, config=None):
    folder = tmp_path / ("hub_st" if safetensors else "hub")
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or HUB_CONFIG))
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    sd.update(extra or {})
    for key in drop or ():
        del sd[key]
    if safetensors:
        save_file(sd, str(folder / "model.safetensors"))
    else:
        torch.save(sd, folder / "pytorch_model.bin")
    return folder


def test_transformers_does_not_own_mosaic_gpt():
    assert "mosaic_gpt" not in CONFIG_MAPPING_NAMES
    assert type(AutoConfig.for_model("mosaic_gpt")) is MosaicGPTConfig


@pytest.mark.parametrize("safetensors", [False, True])
def test_hub_layout_loads_without_remote_code(tmp_path, safetensors):
    model = _model()
    assert set(model.state_dict()) == {
        "transformer.wte.weight", "transformer.ln_f.weight",
        *(f"transformer.blocks.{i}.{n}.weight" for i in range(2) for n in (
            "ln_1", "attn.Wqkv", "attn.q_ln", "attn.k_ln", "attn.out_proj", "ln_2", "mlp.mlp_up", "mlp.mlp_down"))}
    folder = _hub_folder(tmp_path, model, safetensors=safetensors)
    loaded = AutoModelForCausalLM.from_pretrained(folder).eval()  # no trust_remote_code
    assert type(loaded) is MosaicGPTForCausalLM
    assert not hasattr(loaded.config, "auto_map") or not loaded.config.auto_map
    assert loaded.config.tokenizer_name == "EleutherAI/gpt-neox-20b" and loaded.config.attn_qk_ln
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    # saved again: the same Hub names, no lm_head copy
    loaded.save_pretrained(tmp_path / "again")
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / "again" / "model.safetensors")) == set(model.state_dict())


def test_unknown_missing_and_mismatched_weights_are_errors_naming_them(tmp_path):
    model = _model()
    folder = _hub_folder(tmp_path, model, extra={"transformer.blocks.0.attn.rotary.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"transformer\.blocks\.0\.attn\.rotary\.weight"):
        AutoModelForCausalLM.from_pretrained(folder)
    folder = _hub_folder(tmp_path, model, drop=["transformer.blocks.1.attn.k_ln.weight"])
    with pytest.raises(ValueError, match=r"transformer\.blocks\.1\.attn\.k_ln\.weight"):
        AutoModelForCausalLM.from_pretrained(folder)
    # q_ln / k_ln weights under a config that switches QK-LN off: not dropped, an error
    folder = _hub_folder(tmp_path, model, config={**HUB_CONFIG, "attn_qk_ln": False})
    with pytest.raises(ValueError, match=r"q_ln\.weight"):
        AutoModelForCausalLM.from_pretrained(folder)


def test_mpt_for_causal_lm_route_refuses_qk_layernorm(tmp_path):
    from transformers import MptConfig, MptForCausalLM

    mpt = MptForCausalLM(MptConfig(d_model=32, n_heads=4, n_layers=2, max_seq_len=64, vocab_size=300,
                                   attn_config={"qk_ln": True, "alibi": True}))
    mpt.save_pretrained(tmp_path / "mpt_cfg")
    with pytest.raises(ValueError, match="MosaicGPT route"):
        load_lang_encoder(str(tmp_path / "mpt_cfg"))
    # qk_ln false in the config, but the weights are there (e.g. renamed from MPT-1B): refused too
    plain = MptForCausalLM(MptConfig(d_model=32, n_heads=4, n_layers=2, max_seq_len=64, vocab_size=300))
    plain.save_pretrained(tmp_path / "mpt_w")
    from safetensors.torch import load_file

    sd = load_file(tmp_path / "mpt_w" / "model.safetensors")
    sd["transformer.blocks.0.attn.q_ln.weight"] = torch.ones(32)
    save_file(sd, str(tmp_path / "mpt_w" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="q_ln / k_ln weights"):
        load_lang_encoder(str(tmp_path / "mpt_w"))
    # the MosaicGPT folder loads
    folder = _hub_folder(tmp_path, _model())
    assert type(load_lang_encoder(str(folder))) is MosaicGPTForCausalLM


# ----------------------------------------------------------------------------- reference scale
def test_open_flamingo_3b_at_reference_scale_on_meta():
    """FlamingoConfig() is OpenFlamingo-3B: 1,046,992,944 trainable parameters with the LM input embeddings trained
    (OpenFlamingo's factory default), the seed's "~1.04B"; MPT-1B counts its 98,304 QK-LN weights."""
    config = FlamingoConfig(train_lm_embeddings=True)
    text, vision = config.text_config, config.vision_config
    assert text.model_type == "mosaic_gpt" and (text.d_model, text.n_heads, text.n_layers) == (2048, 16, 24)
    assert text.vocab_size == 50280 and text.attn_qk_ln and text.alibi and text.no_bias
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (1024, 24, 14, 224)
    assert vision.hidden_act == "quick_gelu" and config.cross_attn_every_n_layers == 1
    assert (config.perceiver_depth, config.perceiver_num_latents, config.perceiver_heads) == (6, 64, 8)
    with torch.device("meta"):
        model = FlamingoForConditionalGeneration(config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 1_046_992_944
    lm = {n: p for n, p in model.language_model.named_parameters() if ".gated_cross_attn_layer." not in n}
    qk = sum(p.numel() for n, p in lm.items() if ".q_ln." in n or ".k_ln." in n)
    assert qk == 24 * 2 * 2048 == 98_304
    assert sum(p.numel() for p in lm.values()) == 1_311_131_648  # MPT-1B with 50280 embedding rows
    assert len(model.gated_cross_attn_layers) == 24
    # the released MPT-1B (50432 rows): 1,311,442,944 parameters
    with torch.device("meta"):
        mpt = MosaicGPTForCausalLM(MosaicGPTConfig())
    assert sum(p.numel() for p in mpt.parameters()) == 1_311_442_944
