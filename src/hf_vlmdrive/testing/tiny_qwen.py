"""Tiny, randomly initialised Qwen2.5-VL and DINOv2 checkpoints built locally (no Hub access).

They use the real transformers classes (`Qwen2_5_VLForConditionalGeneration`, `Qwen2_5_VLProcessor`,
`Qwen2VLImageProcessor`, `Dinov2Model`), so tests, the demo config and the scripts run the same code path
as a user with real weights. The tokenizer is a word-level tokenizer trained with `tokenizers` on a few
robot instructions, wrapped in `PreTrainedTokenizerFast` with Qwen's special tokens.
"""

from __future__ import annotations

from pathlib import Path

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
]

_CORPUS = [
    "put the bowl on the plate", "open the top drawer", "pick up the black bowl", "turn on the stove",
    "put the cream cheese in the bowl", "push the plate to the front of the stove", "close the microwave",
    "pick up the alphabet soup and place it in the basket", "put both moka pots on the stove",
    "what action should the robot take to", "the robot arm gripper left right up down",
]


def build_tiny_qwen_tokenizer(vocab_size: int = 256):
    """A word-level `PreTrainedTokenizerFast` with Qwen2.5-VL's special tokens (ids 0..6)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=QWEN_SPECIAL_TOKENS + ["<unk>"])
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>", eos_token="<|im_end|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    fast.padding_side = "left"
    return fast


def tiny_qwen2_5_vl_config(tokenizer=None, hidden_size: int = 32, num_layers: int = 4, vision_depth: int = 1,
                           vision_hidden_size: int = 32, num_heads: int = 2):
    """A Qwen2.5-VL config with a `vision_depth`-layer vision tower of width `vision_hidden_size` and a
    `num_layers` language model of width `hidden_size` (`num_heads` heads in both)."""
    from transformers import Qwen2_5_VLConfig

    tokenizer = tokenizer or build_tiny_qwen_tokenizer()
    heads = num_heads
    head_dim = hidden_size // heads
    # mrope_section must sum to head_dim / 2 (temporal, height, width rotary sections).
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text_config = {
        "vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers, "num_attention_heads": heads, "num_key_value_heads": 1,
        "max_position_embeddings": 512, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
    }
    vision_config = {
        "depth": vision_depth, "hidden_size": vision_hidden_size, "intermediate_size": 2 * vision_hidden_size,
        "num_heads": heads, "out_hidden_size": hidden_size, "patch_size": 14, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": list(range(vision_depth)),
        "in_channels": 3,
    }
    return Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True,
    )


def build_tiny_qwen_processor(tokenizer=None, image_pixels: int = 56 * 56):
    """A real `Qwen2_5_VLProcessor` around the tiny tokenizer; every image is resized to `image_pixels`."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = tokenizer or build_tiny_qwen_tokenizer()
    size = {"shortest_edge": image_pixels, "longest_edge": image_pixels}
    image_processor = Qwen2VLImageProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)


def tiny_dinov2_config(image_size: int = 28, hidden_size: int = 32, num_layers: int = 1, num_heads: int = 2):
    """A `num_layers`-layer DINOv2 config (patch 14, so 4 patch tokens per 28 px view)."""
    from transformers import Dinov2Config

    return Dinov2Config(
        image_size=image_size, patch_size=14, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=2 * hidden_size,
    )


def save_tiny_qwen2_5_vl(path: str | Path, hidden_size: int = 32, num_layers: int = 4, seed: int = 0,
                         image_pixels: int = 56 * 56, **config_kwargs) -> Path:
    """Save a tiny random `Qwen2_5_VLForConditionalGeneration` + its processor to `path` (a Hub-like dir).

    `image_pixels`: the processor resizes every image to this many pixels; `config_kwargs` go to
    `tiny_qwen2_5_vl_config` (`vision_depth`, `vision_hidden_size`, `num_heads`)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    path = Path(path)
    torch.manual_seed(seed)
    tokenizer = build_tiny_qwen_tokenizer()
    model = Qwen2_5_VLForConditionalGeneration(tiny_qwen2_5_vl_config(tokenizer, hidden_size, num_layers,
                                                                      **config_kwargs))
    model.save_pretrained(path)
    build_tiny_qwen_processor(tokenizer, image_pixels=image_pixels).save_pretrained(path)
    return path


def save_tiny_dinov2(path: str | Path, image_size: int = 28, hidden_size: int = 32, seed: int = 0,
                     **config_kwargs) -> Path:
    """Save a tiny random `Dinov2Model` to `path` (`config_kwargs`: `num_layers`, `num_heads`)."""
    import torch
    from transformers import Dinov2Model

    torch.manual_seed(seed)
    Dinov2Model(tiny_dinov2_config(image_size, hidden_size, **config_kwargs)).save_pretrained(path)
    return Path(path)


__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "build_tiny_qwen_processor",
    "build_tiny_qwen_tokenizer",
    "save_tiny_dinov2",
    "save_tiny_qwen2_5_vl",
    "tiny_dinov2_config",
    "tiny_qwen2_5_vl_config",
]
