"""OpenFlamingo-3B's architecture against the ORIGINAL code: MosaicML's MosaicGPT (examples v0.0.4) and
open-flamingo 2.0.1, through the fixture `tests/fixtures/open_flamingo_mpt/` (written by
scripts/make_open_flamingo_mpt_fixture.py in its own venv; README.md there lists every file and key).

- The MosaicGPT Hub folder `lm/` loads with `AutoModelForCausalLM` and no remote code; its logits (masked, unmasked),
  greedy and beam-3 generations equal the original's; `lm_switches/` (3 heads, clip_qkv, softmax_scale, logit_scale,
  embedding_fraction) too, including the embedding gradient embedding_fraction scales.
- `hf-vlmdrive convert open-flamingo` converts each of the four checkpoint forms (OpenFlamingo's trainable file, the
  full state dict, the DDP one, the nested training checkpoint) with the released command line; the converted model's
  logits equal OpenFlamingo's on non-pad positions (<= 1e-4), its greedy and beam-3 generations are identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.cli import main as cli_main
from hf_vlmdrive.models.mosaic_gpt import MosaicGPTConfig
from hf_vlmdrive.models.mosaic_gpt.modeling_mosaic_gpt import MosaicGPTForCausalLM, alibi_slopes

pytest.importorskip("open_clip")

FIXTURE = Path(__file__).parent / "fixtures" / "open_flamingo_mpt"
FORMATS = ["trainable", "full", "ddp", "nested"]


@pytest.fixture(scope="module")
def ref():
    return torch.load(FIXTURE / "reference_outputs.pt", weights_only=True)


def _non_pad_max_diff(got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor) -> float:
    return float((got - want).abs()[mask].max())


# ----------------------------------------------------------------------------- MosaicGPT alone
def test_lm_hub_folder_equals_the_original(ref):
    lm = AutoModelForCausalLM.from_pretrained(FIXTURE / "lm").eval()  # no trust_remote_code
    assert type(lm) is MosaicGPTForCausalLM
    ids, mask = ref["lm_input_ids"], ref["lm_attention_mask"]
    with torch.no_grad():
        logits = lm(input_ids=ids, attention_mask=mask).logits
        no_mask = lm(input_ids=ids).logits
        int_mask = lm(input_ids=ids, attention_mask=mask.long()).logits  # read as bool, as generate does
    diff = _non_pad_max_diff(logits, ref["lm_logits"], mask)
    print(f"lm: max |logit diff| non-pad {diff:.3e}, all {(logits - ref['lm_logits']).abs().max():.3e}, "
          f"no mask {(no_mask - ref['lm_logits_no_mask']).abs().max():.3e}")
    assert diff <= 1e-5
    torch.testing.assert_close(logits, ref["lm_logits"], atol=1e-5, rtol=0)  # pad queries too
    torch.testing.assert_close(no_mask, ref["lm_logits_no_mask"], atol=1e-5, rtol=0)
    assert torch.equal(int_mask, logits)
    torch.testing.assert_close(alibi_slopes(4), ref["alibi_slopes_lm"], atol=0, rtol=0)
    kwargs = dict(attention_mask=mask[:, :8], max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        greedy = lm.generate(ids[:, :8], num_beams=1, **kwargs)
        beams = lm.generate(ids[:, :8], num_beams=3, **kwargs)
    assert torch.equal(greedy, ref["lm_greedy"]), (greedy, ref["lm_greedy"])
    assert torch.equal(beams, ref["lm_beams"]), (beams, ref["lm_beams"])


def test_lm_without_qk_layernorm_equals_the_original_without_it(ref):
    """The original with attn_qk_ln=False (q_ln / k_ln dropped) -- what MptForCausalLM would compute for MPT-1B."""
    config = MosaicGPTConfig.from_pretrained(FIXTURE / "lm", attn_qk_ln=False)
    state = torch.load(FIXTURE / "lm" / "pytorch_model.bin", weights_only=True)
    dropped = sorted(k for k in state if ".q_ln." in k or ".k_ln." in k)
    assert len(dropped) == 2 * 2
    lm = MosaicGPTForCausalLM(config).eval()
    lm.load_state_dict({k: v for k, v in state.items() if k not in dropped}, strict=True)
    mask = ref["lm_attention_mask"]
    with torch.no_grad():
        logits = lm(input_ids=ref["lm_input_ids"], attention_mask=mask).logits
    assert _non_pad_max_diff(logits, ref["lm_logits_no_qk_ln"], mask) <= 1e-5
    moved = _non_pad_max_diff(ref["lm_logits_no_qk_ln"], ref["lm_logits"], mask)
    flips = (ref["lm_logits_no_qk_ln"].argmax(-1) != ref["lm_logits"].argmax(-1))[mask].float().mean()
    print(f"dropping QK-LN moves the logits by up to {moved:.3f} and changes the argmax at {flips:.0%} of positions")
    assert moved > 0.1


def test_lm_switches_equal_the_original(ref):
    lm = AutoModelForCausalLM.from_pretrained(FIXTURE / "lm_switches").eval()
    c = lm.config
    assert (c.n_heads, c.attn_clip_qkv, c.softmax_scale, c.logit_scale, c.embedding_fraction) == (
        3, 0.6, 0.3, "inv_sqrt_d_model", 0.5)
    torch.testing.assert_close(alibi_slopes(3, c.alibi_bias_max), ref["alibi_slopes_switches"], atol=0, rtol=0)
    ids, mask = ref["switches_input_ids"], ref["switches_attention_mask"]
    logits = lm(input_ids=ids, attention_mask=mask).logits
    diff = _non_pad_max_diff(logits.detach(), ref["switches_logits"], mask)
    print(f"lm_switches: max |logit diff| non-pad {diff:.3e}")
    assert diff <= 1e-5
    # embedding_fraction shows in the gradient only; the loss reads the pad positions too, where the default eager
    # kernel blocks the gradient into the future keys as the original does (SDPA, opt-in, does not)
    assert c._attn_implementation == "eager"
    logits.pow(2).mean().backward()
    grad = lm.get_input_embeddings().weight.grad
    torch.testing.assert_close(grad, ref["switches_wte_grad"], atol=1e-6, rtol=1e-4)
    sdpa = AutoModelForCausalLM.from_pretrained(FIXTURE / "lm_switches", attn_implementation="sdpa").eval()
    with torch.no_grad():
        got = sdpa(input_ids=ids, attention_mask=mask).logits
    assert _non_pad_max_diff(got, ref["switches_logits"], mask) <= 1e-5


# ----------------------------------------------------------------------------- OpenFlamingo
@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """{format: converted directory}, each made by the CLI with the released command line."""
    out = {}
    for form in FORMATS:
        target = tmp_path_factory.mktemp(f"of_{form}")
        code = cli_main([
            "convert", "open-flamingo", "--checkpoint", str(FIXTURE / f"checkpoint_{form}.pt"),
            "--vision-encoder", "tiny-vit-of-mpt", "--open-clip-config", str(FIXTURE / "tiny-vit-of-mpt.json"),
            "--vision-pretrained", str(FIXTURE / "clip.pt"), "--lang-encoder", str(FIXTURE / "lm"),
            "--tokenizer", str(FIXTURE / "lm"), "--cross-attn-every-n-layers", "1", "--output", str(target),
        ])
        assert code == 0, form
        out[form] = target
    return out


@pytest.mark.parametrize("form", FORMATS)
def test_converted_open_flamingo_equals_the_original(converted, ref, form):
    directory = converted[form]
    report = json.loads((directory / "conversion_report.json").read_text())
    assert report["missing"] == [] and report["unexpected"] == [], report
    assert report["settings"]["text_model_type"] == "mosaic_gpt"
    assert report["settings"]["perceiver_depth"] == 2 and report["settings"]["perceiver_num_latents"] == 8
    model = AutoModelForImageTextToText.from_pretrained(directory).eval()
    assert type(model.language_model) is MosaicGPTForCausalLM
    assert model.config.media_token_id == ref["media"] and model.config.end_of_chunk_token_id == ref["eoc"]
    assert model.get_input_embeddings().weight.shape[0] == ref["logits"].shape[-1] == 303
    figures = []
    for prefix in ("", "padded_"):
        ids, mask, px = ref[f"{prefix}input_ids"], ref[f"{prefix}attention_mask"], ref[f"{prefix}vision_x"]
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, pixel_values=px).logits
        diff = _non_pad_max_diff(logits, ref[f"{prefix}logits"], mask)
        n = ref[f"{prefix}generate_prompt_len"]
        kwargs = dict(pixel_values=px, attention_mask=mask[:, :n], max_new_tokens=ref["max_new_tokens"],
                      do_sample=False, pad_token_id=ref["pad"])
        with torch.no_grad():
            greedy = model.generate(ids[:, :n], num_beams=1, **kwargs)
            beams = model.generate(ids[:, :n], num_beams=3, **kwargs)
        figures.append(f"{prefix or 'plain_'}logits {diff:.3e}, greedy equal {torch.equal(greedy, ref[prefix + 'greedy'])}"
                       f", beam-3 equal {torch.equal(beams, ref[prefix + 'beams'])}")
        assert diff <= 1e-4, (prefix, diff)
        assert torch.equal(greedy, ref[f"{prefix}greedy"]), (prefix, greedy, ref[f"{prefix}greedy"])
        assert torch.equal(beams, ref[f"{prefix}beams"]), (prefix, beams, ref[f"{prefix}beams"])
    print(f"{form} ({model.language_model.config._attn_implementation} LM attention): " + "; ".join(figures))
