"""A tiny Flamingo model + processor built offline, with the classes a converted OpenFlamingo checkpoint uses.

- `train_tiny_base_tokenizer()`: a byte-level BPE trained locally on road-scene text, wrapped in
  `PreTrainedTokenizerFast`, WITHOUT the Flamingo tokens (like a released LM's tokenizer: GPT-NeoX / MPT
  style, `<|endoftext|>` as bos / eos, no pad token);
- `tiny_vision_config()` / `tiny_text_config(kind)`: CLIP tower (QuickGELU, 16 px) and a Llama, GPT-NeoX,
  Qwen2, OPT, MPT or MosaicGPT (MPT-1B's architecture) causal LM (hidden 32, 2 layers);
- `build_tiny_flamingo(output_dir)`: tokenizer + special tokens as OpenFlamingo's factory adds them, a
  `FlamingoProcessor` (CLIP image processor), a `FlamingoForConditionalGeneration` with random weights and
  non-zero gates, saved so that `AutoModelForImageTextToText` / `AutoProcessor` load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["build_tiny_flamingo", "tiny_flamingo_config", "tiny_image_processor", "tiny_text_config",
           "tiny_vision_config", "train_tiny_base_tokenizer"]

_CORPUS = [
    "User: Assistant: Output: Describe the road scene.",
    "A pedestrian walks on the sidewalk to the left of the road while a car drives in front.",
    "The sidewalk is on the right, the road is in front, a bicycle and a person are on the sidewalk.",
    "Using road annotations: generate caption and cue. sidewalk_pos road_pos object_present",
    '{"image": "x.png", "sidewalk_pos": "Left", "road_pos": "Front", "object_present": "Yes"}',
    "objects_on_sidewalk objects_outside_sidewalk bicycle car person traffic_sign traffic_light obstacle",
    "grass plants trees not present Left Center Right Outside Not present No Yes",
    "Keep walking straight, the path is clear. Caution: obstacle ahead.",
    "0 1 2 3 4 5 6 7 8 9 , . : ; { } [ ] \" ' - _",
]


def train_tiny_base_tokenizer(vocab_size: int = 300):
    """A base LM tokenizer (no `<image>`, `<|endofchunk|>` nor pad token), trained locally."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", model_max_length=2048)


def tiny_vision_config(image_size: int = 16, patch_size: int = 8, hidden_size: int = 32) -> dict[str, Any]:
    """A CLIP vision tower config (QuickGELU like OpenAI's ViT-L-14)."""
    return dict(model_type="clip_vision_model", hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                num_hidden_layers=2, num_attention_heads=2, image_size=image_size, patch_size=patch_size,
                hidden_act="quick_gelu")


def tiny_text_config(kind: str = "llama", vocab_size: int = 300, hidden_size: int = 32) -> dict[str, Any]:
    """A tiny causal LM config of `kind` (llama, gpt_neox, qwen2, opt, mpt, mosaic_gpt)."""
    if kind == "llama":
        return dict(model_type="llama", vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True,
                    bos_token_id=0, eos_token_id=0)
    if kind == "gpt_neox":
        return dict(model_type="gpt_neox", vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2, rotary_pct=0.25, tie_word_embeddings=False,
                    use_parallel_residual=True, bos_token_id=0, eos_token_id=0)
    if kind == "qwen2":
        return dict(model_type="qwen2", vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                    bos_token_id=0, eos_token_id=0)
    if kind == "opt":
        return dict(model_type="opt", vocab_size=vocab_size, hidden_size=hidden_size, ffn_dim=64,
                    num_hidden_layers=2, num_attention_heads=2, word_embed_proj_dim=hidden_size,
                    max_position_embeddings=128, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    if kind == "mpt":
        return dict(model_type="mpt", vocab_size=vocab_size, d_model=hidden_size, n_heads=2, n_layers=2,
                    expansion_ratio=2, max_seq_len=128, bos_token_id=0, eos_token_id=0)
    if kind == "mosaic_gpt":  # MPT-1B's MosaicGPT: ALiBi, QK LayerNorm, no biases, tied output
        return dict(model_type="mosaic_gpt", vocab_size=vocab_size, d_model=hidden_size, n_heads=4, n_layers=2,
                    mlp_ratio=4, max_seq_len=128, alibi=True, attn_qk_ln=True, no_bias=True, bos_token_id=0,
                    eos_token_id=0)
    raise ValueError(f"tiny_text_config: unknown kind {kind!r} (llama, gpt_neox, qwen2, opt, mpt, mosaic_gpt)")


def tiny_flamingo_config(kind: str = "llama", vocab_size: int = 300, media_token_id: int | None = None,
                         end_of_chunk_token_id: int | None = None, **overrides):
    """A tiny `FlamingoConfig` (perceiver depth 2 / 4 latents, cross-attention 2 heads x 8)."""
    from ..models.flamingo import FlamingoConfig

    kwargs = dict(vision_config=tiny_vision_config(), text_config=tiny_text_config(kind, vocab_size),
                  perceiver_depth=2, perceiver_num_latents=4, perceiver_heads=2, perceiver_dim_head=8,
                  cross_attn_heads=2, cross_attn_dim_head=8, cross_attn_ff_mult=2, perceiver_ff_mult=2,
                  media_token_id=media_token_id, end_of_chunk_token_id=end_of_chunk_token_id)
    kwargs.update(overrides)
    return FlamingoConfig(**kwargs)


def tiny_image_processor(image_size: int = 16):
    """open_clip's CLIP transform as a `CLIPImageProcessor`: bicubic short-side resize, center crop, CLIP stats."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def build_tiny_flamingo(output_dir: str | Path | None = None, kind: str = "llama", seed: int = 0,
                        gate_value: float = 0.5):
    """`(model, processor)`; saved to `output_dir` (model, processor, generation config) when given.

    Gates are set to `gate_value` (not OpenFlamingo's initial 0) so that the images change the outputs.
    """
    import torch

    from ..models.flamingo import FlamingoForConditionalGeneration, FlamingoProcessor
    from ..models.flamingo.processing_flamingo import add_flamingo_special_tokens

    tokenizer = train_tiny_base_tokenizer()
    ids = add_flamingo_special_tokens(tokenizer)
    processor = FlamingoProcessor(image_processor=tiny_image_processor(), tokenizer=tokenizer)
    config = tiny_flamingo_config(kind, vocab_size=len(tokenizer), **ids)
    config.text_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = FlamingoForConditionalGeneration(config)
    with torch.no_grad():
        for block in model.gated_cross_attn_layers:
            block.attn_gate.fill_(gate_value)
            block.ff_gate.fill_(gate_value)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    if output_dir is not None:
        output_dir = Path(output_dir)
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    return model, processor
