"""A tiny SmolVLM2-shaped model + processor built offline, with the classes a user gets from the Hub.

`build_tiny_smolvlm(output_dir)` writes a directory that `AutoProcessor.from_pretrained` and
`AutoModelForImageTextToText.from_pretrained` load exactly like `HuggingFaceTB/SmolVLM2-2.2B-Instruct`:

- model: `SmolVLMForConditionalGeneration` (SigLIP-style vision tower -> pixel-shuffle connector ->
  Llama text model), random weights from a tiny `SmolVLMConfig`;
- tokenizer: a byte-level BPE trained locally with `tokenizers` on road-scene text, wrapped in
  `PreTrainedTokenizerFast`, with SmolVLM's special tokens (`<image>`, `<fake_token_around_image>`,
  `<global-img>`, `<end_of_utterance>`, `<|im_start|>`) and SmolVLM2's chat template;
- processor: `SmolVLMProcessor` (image processor without splitting, video processor, tokenizer).

Idefics3 / SmolVLM rule: `image_seq_len = (image_size / patch_size) ** 2 / scale_factor ** 2`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError

__all__ = ["SMOLVLM2_CHAT_TEMPLATE", "build_tiny_smolvlm", "train_tiny_tokenizer"]

# SmolVLM2-Instruct's chat template (image/text parts of structured content, `<end_of_utterance>` after
# each turn, `Assistant:` as the generation prompt).
SMOLVLM2_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'] is string %}{{': ' + message['content']}}{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<video>",
] + [f"<row_{r}_col_{c}>" for r in range(1, 4) for c in range(1, 4)]

_CORPUS = [
    "User: Assistant: System:",
    "A pedestrian walks on the sidewalk to the left of the road while a car drives in front.",
    "The sidewalk is on the right, the road is in front, a bicycle and a person are on the sidewalk.",
    "Using road annotations: generate caption and cue. sidewalk_pos road_pos object_present",
    '{"image": "x.png", "sidewalk_pos": "Left", "road_pos": "Front", "object_present": "Yes"}',
    "objects_on_sidewalk objects_outside_sidewalk bicycle car person traffic_sign traffic_light obstacle",
    "grass plants trees not present Left Center Right Outside Not present No Yes",
    "Describe the road scene. Keep walking straight, the path is clear. Caution: obstacle ahead.",
    "0 1 2 3 4 5 6 7 8 9 , . : ; { } [ ] \" ' - _",
]


def train_tiny_tokenizer(vocab_size: int = 400, extra_text: list[str] | None = None):
    """Train a byte-level BPE tokenizer locally and wrap it in `PreTrainedTokenizerFast` (SmolVLM tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4 + list(extra_text or []), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[2:],
        chat_template=SMOLVLM2_CHAT_TEMPLATE,
        model_max_length=2048,
    )


def build_tiny_smolvlm(
    output_dir: str | Path | None = None,
    image_size: int = 32,
    patch_size: int = 8,
    scale_factor: int = 2,
    hidden_size: int = 32,
    vocab_size: int = 400,
    seed: int = 0,
    extra_text: list[str] | None = None,
):
    """Build (and optionally save) a tiny SmolVLM2-shaped model and its processor.

    `extra_text` is added to the tokenizer's training corpus (e.g. the training answers, so that their words and
    JSON keys become single tokens; raise `vocab_size` with it).

    Returns `(model, processor)`. With `output_dir`, both are saved there so that `AutoProcessor` and
    `AutoModelForImageTextToText` load them. Images are resized to `image_size` px without splitting, so
    each image costs `(image_size/patch_size)**2 / scale_factor**2` `<image>` tokens (+3 wrapper tokens).
    """
    import torch
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    if (image_size // patch_size) % scale_factor:
        raise UserError(
            f"image_size/patch_size = {image_size // patch_size} must be divisible by scale_factor={scale_factor}"
        )
    image_seq_len = (image_size // patch_size) ** 2 // scale_factor**2
    tokenizer = train_tiny_tokenizer(vocab_size=vocab_size, extra_text=extra_text)
    text_config = {
        "model_type": "llama",
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": False,
    }
    vision_config = {
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": image_size,
        "patch_size": patch_size,
    }
    config = SmolVLMConfig(
        text_config=text_config,
        vision_config=vision_config,
        scale_factor=scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = SmolVLMForConditionalGeneration(config).eval()
    for gen_attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.generation_config, gen_attr, getattr(tokenizer, gen_attr))
    size = {"longest_edge": image_size}
    image_processor = SmolVLMImageProcessor(
        do_image_splitting=False, size=size, max_image_size=size, do_resize=True
    )
    video_processor = SmolVLMVideoProcessor(size=size, max_image_size=size)
    processor = SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_len=image_seq_len,
        chat_template=SMOLVLM2_CHAT_TEMPLATE,
    )
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    return model, processor
