"""Flamingo family (the shared contract runs in test_family_contract.py): OpenFlamingo's semantics (zero gates, media masking, text time),
generation with the KV cache and beams, and save / load."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, GenerationConfig

import hf_vlmdrive  # noqa: F401  (registers the Auto classes)
from hf_vlmdrive.models.common.gated_cross_attention import (
    MaskedCrossAttention,
    text_time_from_media_locations,
)
from hf_vlmdrive.models.flamingo import FlamingoForConditionalGeneration, FlamingoProcessor
from hf_vlmdrive.testing.tiny_flamingo import (
    build_tiny_flamingo,
    tiny_flamingo_config,
    tiny_image_processor,
    train_tiny_base_tokenizer,
)

MEDIA, EOC, VOCAB = 298, 299, 300  # tiny configs without a tokenizer: the last two ids are <image>, <|endofchunk|>


def _ids(batch: int = 2) -> torch.Tensor:
    """Rows with text before the first image, two images, text after each."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 290, (batch, 12), generator=g)
    ids[:, 3] = MEDIA
    ids[:, 8] = MEDIA
    ids[:, 7] = EOC
    return ids


def _perturb_gates(model, value: float = 0.7) -> None:
    with torch.no_grad():
        for block in model.gated_cross_attn_layers:
            block.attn_gate.fill_(value)
            block.ff_gate.fill_(-value)


def _model(kind: str = "llama", gates: float | None = 0.7, **overrides) -> FlamingoForConditionalGeneration:
    torch.manual_seed(0)
    model = FlamingoForConditionalGeneration(
        tiny_flamingo_config(kind, vocab_size=VOCAB, media_token_id=MEDIA, end_of_chunk_token_id=EOC, **overrides)
    )
    if gates is not None:
        _perturb_gates(model, gates)
    return model.eval()


def _plain_lm(model: FlamingoForConditionalGeneration):
    """The same LM without the gated blocks, as transformers builds it (weights copied by name)."""
    lm = AutoModelForCausalLM.from_config(model.config.text_config).eval()
    state = {k.replace(".decoder_layer.", "."): v for k, v in model.language_model.state_dict().items()
             if ".gated_cross_attn_layer." not in k}
    missing, unexpected = lm.load_state_dict(state, strict=False)
    assert not unexpected and all("inv_freq" in k for k in missing), (missing, unexpected)
    return lm


# ------------------------------------------------------------------------------------------- semantics
@pytest.mark.parametrize("kind", ["llama", "gpt_neox", "opt", "qwen2", "mpt"])
def test_zero_gates_equal_the_plain_lm_exactly(kind):
    """Freshly built (gates 0, as OpenFlamingo initialises them): logits are bit-identical to the plain LM's."""
    model = _model(kind, gates=None)
    assert all(b.attn_gate.item() == 0.0 and b.ff_gate.item() == 0.0 for b in model.gated_cross_attn_layers)
    ids = _ids()
    with torch.no_grad():
        got = model(input_ids=ids, pixel_values=torch.randn(2, 2, 1, 3, 16, 16)).logits
        want = _plain_lm(model)(input_ids=ids).logits
    assert torch.equal(got, want), (got - want).abs().max()
    # With non-zero gates the images matter (the comparison above is not vacuous).
    _perturb_gates(model)
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=ids, pixel_values=torch.randn(2, 2, 1, 3, 16, 16)).logits, want)


def test_cross_attn_every_n_layers_places_blocks_before_layer_i_when_i_plus_1_divisible():
    model = _model("llama", cross_attn_every_n_layers=2)
    has = [layer.gated_cross_attn_layer is not None for layer in model.flamingo_layers]
    assert has == [False, True]
    names = [n for n, _ in model.named_parameters() if "gated_cross_attn_layer" in n]
    assert names and all(n.startswith("language_model.model.layers.1.gated_cross_attn_layer.") for n in names)


def test_text_time_is_the_inclusive_cumsum_of_image_tokens():
    loc = torch.tensor([[0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert text_time_from_media_locations(loc).tolist() == [[0, 1, 1, 1, 2, 2], [1, 1, 1, 1, 1, 1]]
    assert text_time_from_media_locations(loc[:, -1:], torch.tensor([2, 1])).tolist() == [[2], [1]]


def _reference_masked_xattn(mod: MaskedCrossAttention, x, media, media_locations):
    """OpenFlamingo helpers.py MaskedCrossAttention.forward (non-cached path), written with plain torch ops."""
    t_img, n = media.shape[1:3]
    h = mod.heads
    x = torch.nn.functional.layer_norm(x, x.shape[-1:], mod.norm.weight, mod.norm.bias, mod.norm.eps)
    q = x @ mod.to_q.weight.T
    m = media.reshape(media.shape[0], t_img * n, -1)
    k, v = (m @ mod.to_kv.weight.T).chunk(2, dim=-1)

    def heads(t):
        b, s, hd = t.shape
        return t.view(b, s, h, hd // h).permute(0, 2, 1, 3)

    q, k, v = heads(q) * mod.scale, heads(k), heads(v)
    sim = q @ k.transpose(-1, -2)
    media_time = torch.arange(t_img) + 1
    text_time = media_locations.cumsum(dim=-1)
    op = torch.eq if mod.only_attend_immediate_media else torch.ge
    mask = op(text_time[:, None, :, None], media_time.repeat_interleave(n)[None, None, None, :])
    sim = sim.masked_fill(~mask, -torch.finfo(sim.dtype).max)
    sim = sim - sim.amax(dim=-1, keepdim=True)
    attn = sim.softmax(dim=-1)
    if mod.only_attend_immediate_media:
        attn = attn.masked_fill((text_time == 0)[:, None, :, None], 0.0)
    out = (attn @ v).permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], -1)
    return out @ mod.to_out.weight.T


@pytest.mark.parametrize("immediate", [True, False])
def test_masked_cross_attention_matches_the_reference_and_its_rules(immediate):
    torch.manual_seed(0)
    mod = MaskedCrossAttention(dim=16, dim_visual=24, dim_head=8, heads=2, only_attend_immediate_media=immediate)
    x, media = torch.randn(2, 9, 16), torch.randn(2, 3, 4, 24)
    loc = torch.zeros(2, 9, dtype=torch.bool)
    loc[0, [2, 5, 7]] = True
    loc[1, [0, 4]] = True
    out = mod(x, media, text_time_from_media_locations(loc))
    torch.testing.assert_close(out, _reference_masked_xattn(mod, x, media, loc), atol=1e-6, rtol=1e-6)
    # before the first image: exactly 0 (immediate mode)
    if immediate:
        assert torch.equal(out[0, :2], torch.zeros_like(out[0, :2]))
    # which media each position depends on: perturb one media at a time
    time = text_time_from_media_locations(loc)
    for k in range(3):
        changed_media = media.clone()
        changed_media[:, k] += 1.0
        diff = (mod(x, changed_media, time) - out).abs().amax(-1)  # (B, T_txt)
        # all-media mode: OpenFlamingo does not zero text before the first image there, whose scores are all
        # masked alike, so it attends uniformly to every media (kept as in the original)
        sees_k = (time == k + 1) if immediate else (time >= k + 1) | (time == 0)
        assert torch.all(diff[~sees_k] == 0), (k, diff)
        assert torch.all(diff[sees_k] > 0), (k, diff)


def test_model_masking_before_first_image_and_image_two():
    """Text before the first <image> sees no image (outputs independent of every image) but the gated FF still
    acts; perturbing image 2 leaves every position before the second <image> bit-identical."""
    model = _model("llama")
    ids = _ids()
    px = torch.randn(2, 2, 1, 3, 16, 16)
    with torch.no_grad():
        base = model(input_ids=ids, pixel_values=px).logits
        other = model(input_ids=ids, pixel_values=torch.randn(2, 2, 1, 3, 16, 16)).logits
        px2 = px.clone()
        px2[:, 1] = torch.randn(2, 1, 3, 16, 16)
        second = model(input_ids=ids, pixel_values=px2).logits
        plain = _plain_lm(model)(input_ids=ids).logits
    assert torch.equal(base[:, :3], other[:, :3])  # positions 0..2 precede the first <image> (index 3)
    assert not torch.allclose(base[:, :3], plain[:, :3])  # ... yet the gated FF changed them
    assert not torch.allclose(base[:, 3:], other[:, 3:])
    assert torch.equal(base[:, :8], second[:, :8])  # the second <image> is at index 8
    assert not torch.allclose(base[:, 8:], second[:, 8:])


def test_text_only_input_applies_only_the_gated_ff():
    model = _model("llama")
    ids = torch.randint(1, 290, (2, 6))
    with torch.no_grad():
        no_media = model(input_ids=ids).logits
        with_media = model(input_ids=ids, pixel_values=torch.randn(2, 1, 1, 3, 16, 16)).logits
    assert torch.equal(no_media, with_media)  # no <image> token: no position sees an image


# ------------------------------------------------------------------------------------------- generation
def _greedy_no_cache(model, ids, px, steps):
    """Reference: full forward on the whole sequence each step (no cache), argmax, stop at <|endofchunk|>."""
    out = ids.clone()
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=out, pixel_values=px, use_cache=False,
                           num_prior_images=torch.zeros(out.shape[0], dtype=torch.long)).logits[:, -1]
        nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, model.generation_config.pad_token_id), nxt)
        out = torch.cat([out, nxt[:, None]], dim=1)
        done |= nxt == EOC
        if done.all():
            break
    return out


def test_greedy_generate_equals_a_step_by_step_reference_without_cache():
    model = _model("llama", gates=1.5)
    model.generation_config.pad_token_id = 0
    ids = _ids()[:, :10]  # ends after the second image: new tokens must see image 2
    px = torch.randn(2, 2, 1, 3, 16, 16)
    got = model.generate(input_ids=ids, pixel_values=px, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                         do_sample=False, num_beams=1)
    want = _greedy_no_cache(model, ids, px, 6)
    assert torch.equal(got, want[:, : got.shape[1]]), (got, want)
    # the images reach every generated step (the scores of the later steps change with image 2)
    def scores(pixels):
        out = model.generate(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids),
                             max_new_tokens=3, do_sample=False, min_new_tokens=3, output_scores=True,
                             return_dict_in_generate=True)
        return out.scores
    px2 = px.clone()
    px2[:, 1] = torch.randn(2, 1, 3, 16, 16)
    for a, b in zip(scores(px), scores(px2)):
        assert not torch.allclose(a, b)


def test_beam_generate_cache_equals_no_cache_and_vision_runs_once():
    model = _model("llama", gates=1.5)
    model.generation_config.pad_token_id = 0
    ids = _ids()[:, :10]
    px = torch.randn(2, 2, 1, 3, 16, 16)
    calls = []
    handle = model.vision_model.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0] if a else None))
    kwargs = dict(input_ids=ids, pixel_values=px, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                  do_sample=False, num_beams=3, num_return_sequences=3)
    cached = model.generate(**kwargs, use_cache=True)
    handle.remove()
    assert len(calls) == 1, calls  # vision features once per call, for the batch (beams share them)
    uncached = model.generate(**kwargs, use_cache=False)
    assert cached.shape[0] == 6
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("kind", ["llama", "gpt_neox", "mpt"])
def test_beam_generate_with_zero_gates_equals_the_lm_generate(kind):
    model = _model(kind, gates=None)
    model.generation_config.pad_token_id = 0
    ids = _ids()[:, :10]
    kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False, num_beams=3,
                  eos_token_id=EOC, pad_token_id=0)
    got = model.generate(input_ids=ids, pixel_values=torch.randn(2, 2, 1, 3, 16, 16), **kwargs)
    want = _plain_lm(model).generate(input_ids=ids, **kwargs)
    assert torch.equal(got, want)


def test_left_padded_batch_generation_matches_single_rows():
    """Pad tokens are left of the text (before any <image>): each row generates as it does alone."""
    model = _model("llama", gates=1.5)
    model.generation_config.pad_token_id = 0
    a = _ids(1)[:, :10]
    b = _ids(1)[:, 4:10]  # 6 tokens, holds one <image> (index 4 of the original)
    b[:, 0] = MEDIA
    px = torch.randn(2, 2, 1, 3, 16, 16)
    batch = torch.cat([a, torch.cat([torch.zeros(1, 4, dtype=torch.long), b], 1)])
    mask = torch.ones_like(batch)
    mask[1, :4] = 0
    kw = dict(max_new_tokens=5, do_sample=False, num_beams=3)
    together = model.generate(input_ids=batch, attention_mask=mask, pixel_values=px, **kw)
    alone_a = model.generate(input_ids=a, attention_mask=torch.ones_like(a), pixel_values=px[:1], **kw)
    alone_b = model.generate(input_ids=b, attention_mask=torch.ones_like(b), pixel_values=px[1:, :1], **kw)
    assert torch.equal(together[0, : alone_a.shape[1]], alone_a[0])
    n = alone_b.shape[1] - b.shape[1]
    torch.testing.assert_close(together[1, 10 : 10 + n], alone_b[0, 6:])


def test_saved_model_loads_with_auto_classes_and_eoc_is_the_generation_eos(tmp_path):
    model, processor = build_tiny_flamingo(tmp_path / "m")
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "m").eval()
    proc = AutoProcessor.from_pretrained(tmp_path / "m")
    assert type(loaded) is FlamingoForConditionalGeneration and type(proc) is FlamingoProcessor
    eoc = proc.end_of_chunk_token_id
    assert GenerationConfig.from_pretrained(tmp_path / "m").eos_token_id == eoc == loaded.config.end_of_chunk_token_id
    assert proc.image_token_id == loaded.config.media_token_id
    assert proc.tokenizer.pad_token == "<PAD>"
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the road scene."}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text.endswith("Assistant:") and "<image>" in text
    inputs = proc(text=[text], images=[[im]], add_special_tokens=False)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)
    with pytest.raises(ValueError, match="1 <image> token"):
        proc(text=[text], images=[[im, im]])


def test_processor_chat_template_ends_answers_with_endofchunk():
    proc = FlamingoProcessor(image_processor=tiny_image_processor(), tokenizer=train_tiny_base_tokenizer())
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A car."}]}]
    text = proc.apply_chat_template(msgs, tokenize=False)
    assert text == "<|endoftext|>User:<image> Describe.\nAssistant: A car.<|endofchunk|>\n"
    prompt = proc.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert text.startswith(prompt)


def test_train_lm_embeddings_keeps_other_lm_weights_frozen():
    model = FlamingoForConditionalGeneration(copy.deepcopy(_model().config).__class__(
        **{**_model().config.to_dict(), "train_lm_embeddings": True}))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "language_model.model.embed_tokens.weight" in trainable
    assert not any(n.startswith("vision_model.") or ".decoder_layer." in n for n in trainable)
    assert any(".gated_cross_attn_layer." in n for n in trainable) and any(n.startswith("perceiver.") for n in trainable)


def test_from_backbones_equals_the_pretrained_lm_and_tower(tmp_path):
    """A new Flamingo from a saved CLIP tower and LM: logits equal the LM's (gates 0), the tower is the saved one;
    FlamingoProcessor.from_backbones gives the tokenizer with the same ids; `dtype` sets every parameter's dtype."""
    from transformers import AutoConfig, CLIPVisionModel

    from hf_vlmdrive.testing.tiny_flamingo import tiny_text_config, tiny_vision_config

    tok = train_tiny_base_tokenizer()
    text = tiny_text_config("llama", vocab_size=len(tok))
    lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(text.pop("model_type"), **text))
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    vision = tiny_vision_config()
    tower = CLIPVisionModel(AutoConfig.for_model(vision.pop("model_type"), **vision))
    tower.save_pretrained(tmp_path / "clip")
    tiny_image_processor().save_pretrained(tmp_path / "clip")
    processor = FlamingoProcessor.from_backbones(str(tmp_path / "clip"), str(tmp_path / "lm"))
    tokenizer = processor.tokenizer
    model = FlamingoForConditionalGeneration.from_backbones(
        str(tmp_path / "clip"), str(tmp_path / "lm"), perceiver_depth=1, perceiver_num_latents=4)
    assert isinstance(model, FlamingoForConditionalGeneration)
    assert model.config.media_token_id == tokenizer.convert_tokens_to_ids("<image>") == processor.image_token_id
    assert model.config.end_of_chunk_token_id == processor.end_of_chunk_token_id
    assert model.config.text_config.vocab_size == len(tokenizer) == lm.config.vocab_size + 3
    for key, value in tower.state_dict().items():
        assert torch.equal(model.vision_model.state_dict()[key], value)
    ids = torch.randint(0, lm.config.vocab_size, (2, 7))  # base-vocabulary text (the LM has no <image> row)
    with torch.no_grad():
        got = model.eval()(input_ids=ids, pixel_values=torch.randn(2, 1, 1, 3, 16, 16)).logits
        want = lm.eval()(input_ids=ids).logits
    assert torch.equal(got[..., : lm.config.vocab_size], want)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("vision_model."))
    double = FlamingoForConditionalGeneration.from_backbones(
        str(tmp_path / "clip"), str(tmp_path / "lm"), dtype=torch.float64, tokenizer=tokenizer, perceiver_depth=1,
        perceiver_num_latents=4)
    assert {p.dtype for p in double.parameters()} == {torch.float64}
    assert double.config.media_token_id == model.config.media_token_id
