"""One small adapter per VLM backbone: what RoboVLMs' `RoboKosMos` (and its siblings) override of `BaseRoboVLM`.

An adapter answers, for one transformers model class: the context width, how images become token
embeddings, where the word embeddings and the language model are, which parameters are the vision part,
and which modules LoRA targets. Adding a backbone (PaliGemma, Qwen-VL, ...) is one subclass registered in
`ADAPTERS` plus its `model_type` in `configuration_robovlm.SUPPORTED_BACKBONES`.

This module imports no torch layers at import time (the config reads `hidden_size` from it).
"""

from __future__ import annotations

from typing import Any


class BackboneAdapter:
    """Interface of a backbone adapter (all static: adapters hold no state)."""

    #: the transformers class `from_backbone` / `__init__` builds (an `AutoModelFor...` name or a class name)
    model_class_name: str = ""
    #: fnmatch patterns (relative to the backbone) of the vision tower and its projection
    vision_patterns: tuple[str, ...] = ()
    #: default LoRA target module names (language model attention)
    lora_targets: tuple[str, ...] = ()

    @staticmethod
    def hidden_size(config: Any) -> int:
        raise NotImplementedError

    @staticmethod
    def build(config: Any):
        raise NotImplementedError

    @staticmethod
    def encode_images(backbone, pixel_values):
        """(N, 3, H, W) -> image token embeddings (N, n_img, D), *before* the LM's embedding scale."""
        raise NotImplementedError

    @staticmethod
    def word_embedding(backbone):
        raise NotImplementedError

    @staticmethod
    def language_model(backbone):
        """The module LoRA adapts and `run_language_model` runs."""
        raise NotImplementedError

    @staticmethod
    def run_language_model(backbone, inputs_embeds, attention_mask):
        """Last hidden state (after the final norm) of the LM on `inputs_embeds` (N, S, D) -> (N, S, D)."""
        raise NotImplementedError

    @staticmethod
    def block_types() -> tuple[type, ...]:
        """Repeated blocks (for `_no_split_modules` and gradient checkpointing)."""
        return ()


class Kosmos2Adapter(BackboneAdapter):
    """Kosmos-2 (`Kosmos2ForConditionalGeneration`, as RoboVLMs loads it with `AutoModelForVision2Seq`).

    Images (RoboVLMs `RoboKosMos.model_encode_images`, = transformers' `get_image_features`): vision tower ->
    `post_layernorm` over *all* tokens -> L2 normalisation -> `image_to_text_projection` (latent queries,
    64 for the released model) -> (N, 64, 2048). The LM (`text_model.model`, a `Kosmos2TextTransformer`)
    is run on `inputs_embeds`: it multiplies them by `embed_scale` (sqrt(2048)), adds sinusoidal positions
    counted from `padding_idx + 1`, and ends with `layer_norm`; its last hidden state is what RoboVLMs reads
    as `output.hidden_states[-1]` (transformers 4.37 appends the hidden state after the final norm).
    """

    model_class_name = "Kosmos2ForConditionalGeneration"
    vision_patterns = ("vision_model.*", "image_to_text_projection.*")
    lora_targets = ("q_proj", "k_proj", "v_proj", "out_proj")

    @staticmethod
    def hidden_size(config: Any) -> int:
        return int(config.text_config.embed_dim)

    @staticmethod
    def build(config: Any):
        from transformers import Kosmos2ForConditionalGeneration

        return Kosmos2ForConditionalGeneration(config)

    @staticmethod
    def encode_images(backbone, pixel_values):
        import torch.nn.functional as F

        vision = backbone.vision_model(pixel_values=pixel_values, return_dict=True)
        feats = backbone.vision_model.model.post_layernorm(vision.last_hidden_state)  # (N, P+1, Dv)
        feats = F.normalize(feats, dim=-1)
        feats, _ = backbone.image_to_text_projection(feats)  # (N, latent_query_num, D)
        return feats

    @staticmethod
    def word_embedding(backbone):
        return backbone.text_model.model.embed_tokens

    @staticmethod
    def language_model(backbone):
        return backbone.text_model.model

    @staticmethod
    def run_language_model(backbone, inputs_embeds, attention_mask):
        out = backbone.text_model.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False,
                                        return_dict=True)
        return out.last_hidden_state

    @staticmethod
    def block_types() -> tuple[type, ...]:
        from transformers.models.kosmos2.modeling_kosmos2 import Kosmos2TextBlock, Kosmos2VisionEncoderLayer

        return (Kosmos2TextBlock, Kosmos2VisionEncoderLayer)


ADAPTERS: dict[str, type[BackboneAdapter]] = {"kosmos-2": Kosmos2Adapter}


def adapter_for(model_type: str) -> type[BackboneAdapter]:
    """The adapter of a backbone `model_type`."""
    from ...errors import UserError

    try:
        return ADAPTERS[model_type]
    except KeyError:
        raise UserError(f"no RoboVLM backbone adapter for model_type {model_type!r}; supported: {sorted(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "BackboneAdapter", "Kosmos2Adapter", "adapter_for"]
