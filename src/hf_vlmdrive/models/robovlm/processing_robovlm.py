"""All inference preprocessing of RoboVLM: `RoboVLMProcessor` = the backbone's image processor + tokenizer + the
prompt template.

```
 frames: per sample a window of L uint8 (H, W, 3) images (or PIL) --> backbone image processor --> pixel_values
                                                                       (B, L, 3, S, S)
 instruction: str per sample --> prompt_template.format(instruction=...) --> tokenizer (right padding,
                                                                       <s> ... </s>) --> input_ids, attention_mask (B, T)
 actions (B, L, chunk, A) / action_mask (B, L), optional ---------------> float32 / bool tensors
```

The default template is RoboVLMs' Kosmos prompt (`robovlms/data/data_utils.py`, `preprocess_text_kosmos`):
`"<grounding>An image of a robot {instruction}"` with the instruction stripped, right padding. Kosmos-2's image
processor (CLIP statistics, 224x224 bicubic resize, no crop) equals RoboVLMs' own torchvision transform.
`save_pretrained` writes the tokenizer, `preprocessor_config.json` and `processor_config.json` (with the
template); `AutoProcessor.from_pretrained(checkpoint_dir)` loads it back after `import hf_vlmdrive`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from ...errors import UserError

DEFAULT_PROMPT_TEMPLATE = "<grounding>An image of a robot {instruction}"


def _pil(image: Any):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise UserError(f"an image must be (H, W, 3) uint8 or PIL, got an array of shape {arr.shape}")
    return Image.fromarray(arr.astype(np.uint8))


class RoboVLMProcessor(ProcessorMixin):
    """Turns frame windows, instructions and (optionally) actions into [`RoboVLMForActionPrediction`] inputs.

    Args:
        image_processor: the backbone's image processor (Kosmos-2: `CLIPImageProcessor`).
        tokenizer: the backbone's tokenizer (must add `<s>` / `</s>`).
        prompt_template (`str`, *optional*): format string with `{instruction}`; RoboVLMs' Kosmos prompt by default.
    """

    def __init__(self, image_processor=None, tokenizer=None, prompt_template: str = DEFAULT_PROMPT_TEMPLATE, **kwargs):
        if image_processor is None or tokenizer is None:
            raise UserError("RoboVLMProcessor needs the backbone's image_processor and tokenizer")
        if "{instruction}" not in prompt_template:
            raise UserError(f"RoboVLMProcessor.prompt_template must contain '{{instruction}}', got {prompt_template!r}")
        self.prompt_template = prompt_template
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_backbone(cls, backbone_name_or_path: str, prompt_template: str = DEFAULT_PROMPT_TEMPLATE, **hub_kwargs):
        """The processor of a pretrained VLM (Hub id or directory): its image processor and tokenizer."""
        from transformers import AutoImageProcessor, AutoTokenizer

        return cls(AutoImageProcessor.from_pretrained(backbone_name_or_path, **hub_kwargs),
                   AutoTokenizer.from_pretrained(backbone_name_or_path, **hub_kwargs), prompt_template=prompt_template)

    def format_prompt(self, instruction: str) -> str:
        """The text of one sample (RoboVLMs strips the instruction)."""
        return self.prompt_template.format(instruction=str(instruction).strip())

    def encode_text(self, instructions: list[str]) -> dict:
        """input_ids / attention_mask (B, T), right-padded to the longest."""
        self.tokenizer.padding_side = "right"
        enc = self.tokenizer([self.format_prompt(s) for s in instructions], padding="longest", truncation=True,
                             max_length=512, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def encode_images(self, frames: list) -> Any:
        """Per sample a list of L frames (all samples the same L) -> pixel_values (B, L, 3, S, S)."""
        counts = {len(f) for f in frames}
        if len(counts) != 1:
            raise UserError(f"every sample needs the same number of frames (window), got {sorted(counts)}")
        flat = [_pil(im) for per in frames for im in per]
        pixels = self.image_processor(images=flat, return_tensors="pt")["pixel_values"]  # (B*L, 3, S, S)
        return pixels.reshape(len(frames), counts.pop(), *pixels.shape[1:])

    def __call__(self, images=None, text=None, actions=None, action_mask=None, **kwargs) -> BatchFeature:
        """Model inputs for a batch.

        Args:
            images: per sample one frame or a list of L frames (uint8 (H, W, 3) arrays or PIL images).
            text: per sample the instruction (a string is one sample).
            actions: (B, L, chunk, A) or (B, L, A) targets, optional; action_mask: (B, L), optional.
        """
        import torch

        out: dict[str, Any] = {}
        if text is not None:
            out.update(self.encode_text([text] if isinstance(text, str) else list(text)))
        if images is not None:
            frames = [per if isinstance(per, (list, tuple)) else [per] for per in images]
            out["pixel_values"] = self.encode_images(frames)
        if actions is not None:
            out["actions"] = torch.as_tensor(np.asarray(actions, dtype=np.float32))
        if action_mask is not None:
            out["action_mask"] = torch.as_tensor(np.asarray(action_mask, dtype=bool))
        return BatchFeature(out, tensor_type=None)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "input_ids", "attention_mask"]


__all__ = ["DEFAULT_PROMPT_TEMPLATE", "RoboVLMProcessor"]
