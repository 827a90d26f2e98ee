"""All inference preprocessing of Flamingo: `FlamingoProcessor` (CLIP image processor + the LM's tokenizer with
OpenFlamingo's special tokens).

```
 text: str per sample, one "<image>" per image ----> tokenizer -> input_ids, attention_mask (B, T_txt)
 images: list of images per sample (in <image> order) -> CLIP image processor (resize, center crop,
        normalise) -> pixel_values (B, T_img_max, 1, 3, H, W), rows with fewer images zero-padded
        (never attended: a text token only sees the images its <image> tokens introduced)
```

Special tokens exactly as OpenFlamingo's `create_model_and_transforms` adds them: `<|endofchunk|>` and
`<image>` as additional special tokens, then `<PAD>` as the pad token when the tokenizer has none
([`add_flamingo_special_tokens`]). The chat template renders `User: <image> prompt\nAssistant: answer
<|endofchunk|>` so that the road-scene SFT data (SPEC 1.3) trains the model to end its answers with
`<|endofchunk|>`, the default end of generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from ...errors import UserError

__all__ = ["END_OF_CHUNK_TOKEN", "FLAMINGO_CHAT_TEMPLATE", "IMAGE_TOKEN", "FlamingoProcessor",
           "add_flamingo_special_tokens"]

IMAGE_TOKEN = "<image>"
END_OF_CHUNK_TOKEN = "<|endofchunk|>"
PAD_TOKEN = "<PAD>"

# User turns: "User:" + parts ("<image>" for an image part, " text" for a text part) + "\n";
# assistant turns: "Assistant:" + " text" parts + "<|endofchunk|>\n"; the generation prompt is "Assistant:".
FLAMINGO_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ ' ' + message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% elif part['type'] == 'text' %}{{ ' ' + part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|endofchunk|>' }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def add_flamingo_special_tokens(tokenizer) -> dict[str, int]:
    """Add OpenFlamingo's tokens as `create_model_and_transforms` does; returns their ids.

    `<|endofchunk|>` and `<image>` as additional special tokens, then `<PAD>` as pad token if none is set.
    The ids are `tokenizer.encode(token)[-1]` as in the original (robust to a BOS the tokenizer prepends).
    """
    tokenizer.add_special_tokens({"additional_special_tokens": [END_OF_CHUNK_TOKEN, IMAGE_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return {
        "end_of_chunk_token_id": tokenizer.encode(END_OF_CHUNK_TOKEN)[-1],
        "media_token_id": tokenizer.encode(IMAGE_TOKEN)[-1],
    }


class FlamingoProcessor(ProcessorMixin):
    """CLIP image processor + tokenizer (with `<image>`, `<|endofchunk|>`, a pad token) + chat template.

    `processor(text=..., images=...)` returns `input_ids`, `attention_mask` and `pixel_values`
    (B, T_img, 1, 3, H, W) for [`FlamingoForConditionalGeneration`].

    Args:
        image_processor: a `CLIPImageProcessor` (OpenFlamingo uses open_clip's CLIP transform: bicubic resize of
            the short side, center crop, CLIP mean / std).
        tokenizer: the LM's tokenizer; the Flamingo special tokens are added if missing.
        chat_template (`str`, *optional*): defaults to `FLAMINGO_CHAT_TEMPLATE`.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template: str | None = None, **kwargs):
        if tokenizer is not None and (IMAGE_TOKEN not in tokenizer.get_vocab()
                                      or END_OF_CHUNK_TOKEN not in tokenizer.get_vocab()
                                      or tokenizer.pad_token is None):
            add_flamingo_special_tokens(tokenizer)
        super().__init__(image_processor, tokenizer, chat_template=chat_template or FLAMINGO_CHAT_TEMPLATE)

    image_token = IMAGE_TOKEN
    end_of_chunk_token = END_OF_CHUNK_TOKEN

    @classmethod
    def from_backbones(
        cls, vision: str, text: str, *, revision: str | None = None, token: str | bool | None = None
    ) -> FlamingoProcessor:
        """The processor of a new Flamingo built with `FlamingoForConditionalGeneration.from_backbones(vision,
        text)`: the CLIP checkpoint's image processor and the LM's tokenizer with OpenFlamingo's special tokens.
        `revision` / `token` go to the Hub for both checkpoints."""
        from transformers import AutoTokenizer, CLIPImageProcessor

        hub = {"revision": revision, "token": token}
        return cls(CLIPImageProcessor.from_pretrained(vision, **hub), AutoTokenizer.from_pretrained(text, **hub))

    @property
    def image_token_id(self) -> int:
        """Id of `<image>` (the model's `media_token_id`)."""
        return self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    @property
    def end_of_chunk_token_id(self) -> int:
        """Id of `<|endofchunk|>` (the model's `end_of_chunk_token_id`, the eos of generation)."""
        return self.tokenizer.convert_tokens_to_ids(END_OF_CHUNK_TOKEN)

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        padding: bool | str = True,
        padding_side: str | None = None,
        truncation: bool | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Tokenize `text` (one `<image>` per image) and preprocess `images` (a list of images per sample, or one
        image per sample)."""
        if text is None:
            raise UserError("FlamingoProcessor needs `text` (with one <image> token per image)")
        texts = [text] if isinstance(text, str) else list(text)
        tok_kwargs = {"padding": padding, "truncation": truncation, "max_length": max_length,
                      "add_special_tokens": add_special_tokens, "return_tensors": "pt"}
        if padding_side is not None:
            tok_kwargs["padding_side"] = padding_side
        encoded = self.tokenizer(texts, **{k: v for k, v in tok_kwargs.items() if v is not None})
        input_ids = encoded["input_ids"]
        counts = (input_ids == self.image_token_id).sum(-1).tolist()
        per_sample = self._images_per_sample(images, len(texts))
        for row, (count, imgs) in enumerate(zip(counts, per_sample)):
            if count != len(imgs):
                raise UserError(
                    f"sample {row}: the text holds {count} {IMAGE_TOKEN} token(s) but {len(imgs)} image(s) were "
                    f"given; put one {IMAGE_TOKEN} in the text per image (text: {texts[row][:80]!r})"
                )
        data = {"input_ids": input_ids, "attention_mask": encoded["attention_mask"]}
        flat = [im for imgs in per_sample for im in imgs]
        if flat:
            pixels = self.image_processor(images=flat, return_tensors="pt")["pixel_values"]  # (N, 3, H, W)
            most = max(len(imgs) for imgs in per_sample)
            pixel_values = torch.zeros(len(texts), most, 1, *pixels.shape[1:], dtype=pixels.dtype)
            k = 0
            for row, imgs in enumerate(per_sample):
                for t in range(len(imgs)):
                    pixel_values[row, t, 0] = pixels[k]
                    k += 1
            data["pixel_values"] = pixel_values
        return BatchFeature(data=data, tensor_type=return_tensors)

    @staticmethod
    def _images_per_sample(images: Any, batch: int) -> list[list[Any]]:
        if images is None:
            return [[] for _ in range(batch)]
        if not isinstance(images, (list, tuple)):
            images = [images]
        if all(isinstance(x, (list, tuple)) for x in images):
            nested = [list(x) for x in images]
        elif batch == 1:
            nested = [list(images)]
        else:
            nested = [[x] for x in images]
        if len(nested) != batch:
            raise UserError(f"got images for {len(nested)} samples but {batch} texts; give one list of images per text")
        return nested

    def batch_decode(self, *args, **kwargs):
        """The tokenizer's `batch_decode`."""
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        """The tokenizer's `decode`."""
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]
